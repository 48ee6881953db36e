"""Fine-tune jobs of the ``transformers`` backend: a registry on disk and the worker
processes that train.

Each job is a directory under the registry's root (``<run_dir>/transformers_jobs/``,
or ``<cache_dir>/transformers/jobs/`` for runs without a run directory)::

    <job id>/
        job.json         the job's record (written by the run's process only)
        request.json     what to train: method, base model, examples, parameters
        worker.log       the workers' output, every attempt appended
        progress.json    step, total steps, loss (written by the worker)
        checkpoints/     the last training checkpoint
        model/           the fine-tuned model, once complete (its path is the id)
        result.json      succeeded or failed (written by the worker, last)
        worker_exit.json how the last forked worker ended
        tmp/             the worker's temporary directory while it trains

The record is the truth a resumed run reads: jobs are found by name (so a resumed
run never starts a second job), a job whose worker died without a result (killed,
out of memory, the machine restarted, the run killed with its process group) is
started again, continuing from its last checkpoint, up to
``max_worker_restarts`` times. Jobs wait, queued, while ``max_concurrent_jobs`` of
the registry's jobs train. Every look at a job (``get``, ``find``) brings the
records up to date and starts what can start, so the trainer's polling drives the
queue and nothing runs in the background of the run's own process.

Every change to the registry happens under a file lock, so two processes looking
at the same run directory never start a job twice.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

from nip_core.errors import BackendError
from nip_core.runs.io import atomic_write_json

__all__ = [
    "FINISHED",
    "JOB_METRICS",
    "JobManager",
    "JobRecord",
    "WorkerHandle",
    "launch_worker",
    "start_zygote",
    "stop_worker",
    "worker_alive",
]

JOB_FILE = "job.json"
LOG_FILE = "worker.log"
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
ZYGOTE_READY_TIMEOUT = 900.0
"""Seconds the warm worker process may take to import torch, transformers and TRL."""


# --------------------------------------------------------------------------------------
# Worker processes


@attrs.frozen(kw_only=True)
class WorkerHandle:
    """A worker process: its pid and start time (which tell it from a later process
    given the same pid), and how it was started."""

    pid: int
    create_time: float
    start: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerHandle:
        return cls(
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            start=str(data["start"]),
        )


class _Zygote:
    """The warm process that forks workers (:mod:`nip_plugin_transformers.worker`)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nip_plugin_transformers.worker", "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            close_fds=True,
        )
        self.ready = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self, timeout: float, what: str) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendError(
                    f"the warm worker process gave no answer within {timeout:g} s "
                    f"({what}); set transformers_backend.worker_start: spawn to start "
                    "each worker as a fresh interpreter"
                )
            readable, _, _ = select.select([stdout], [], [], remaining)
            if readable:
                line = stdout.readline()
                if not line:
                    raise BackendError(
                        f"the warm worker process ended ({what}); set "
                        "transformers_backend.worker_start: spawn to start each worker "
                        "as a fresh interpreter"
                    )
                return json.loads(line)

    def wait_ready(self) -> None:
        if self.ready:
            return
        answer = self._read(ZYGOTE_READY_TIMEOUT, "importing torch, transformers, TRL")
        if not answer.get("ready"):
            raise BackendError(
                "the warm worker process could not import what training needs:\n"
                f"{answer.get('error', '')}"
            )
        self.ready = True

    def fork(self, job_dir: Path, log: Path) -> int:
        self.wait_ready()
        stdin = self.process.stdin
        assert stdin is not None
        request = {"job_dir": str(job_dir), "log": str(log), "env": dict(os.environ)}
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        answer = self._read(60.0, f"starting the worker of {job_dir.name}")
        if "pid" not in answer:
            raise BackendError(
                f"could not start the worker of {job_dir.name}: {answer.get('error')}"
            )
        return int(answer["pid"])

    def close(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


_LOCK = threading.Lock()
_ZYGOTE: _Zygote | None = None
_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


def _fork_available() -> bool:
    return hasattr(os, "fork") and sys.platform != "win32"


def _zygote() -> _Zygote:
    global _ZYGOTE
    if _ZYGOTE is None or not _ZYGOTE.alive():
        if _ZYGOTE is not None:
            _ZYGOTE.close()
        _ZYGOTE = _Zygote()
    return _ZYGOTE


def start_zygote() -> None:
    """Start the warm worker process now (it imports while the run samples), unless
    it runs already. Returns at once."""
    if not _fork_available():
        return
    with _LOCK:
        _zygote()


@atexit.register
def _close_zygote() -> None:
    global _ZYGOTE
    with _LOCK:
        if _ZYGOTE is not None:
            _ZYGOTE.close()
            _ZYGOTE = None


def _create_time(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def launch_worker(job_dir: Path, start: str) -> WorkerHandle:
    """Start a worker process for the job in ``job_dir``.

    ``start`` is ``"fork"`` (from the warm process; falls back to ``spawn`` where
    there is no ``fork``) or ``"spawn"`` (a fresh interpreter).
    """
    log = job_dir / LOG_FILE
    if start == "fork" and _fork_available():
        with _LOCK:
            pid = _zygote().fork(job_dir, log)
    else:
        start = "spawn"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "nip_plugin_transformers.worker", str(job_dir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        pid = process.pid
        _SPAWNED[pid] = process
    try:
        created = _create_time(pid)
    except Exception:  # noqa: BLE001 - the worker ended already
        created = time.time()
    return WorkerHandle(pid=pid, create_time=created, start=start)


def worker_alive(handle: WorkerHandle) -> bool:
    """Whether the worker still runs (not ended, not a zombie, not a later process
    that got its pid)."""
    import psutil

    spawned = _SPAWNED.get(handle.pid)
    if spawned is not None and spawned.poll() is not None:
        return False
    try:
        process = psutil.Process(handle.pid)
        if abs(process.create_time() - handle.create_time) > 1.0:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def worker_exit_code(job_dir: Path, handle: WorkerHandle) -> int | None:
    """How the worker ended, when known (negative: killed by that signal)."""
    spawned = _SPAWNED.pop(handle.pid, None)
    if spawned is not None:
        return spawned.poll()
    # The warm process writes the status when it reaps the worker, a moment after
    # the worker died: wait for it a little when that process still runs
    deadline = time.monotonic() + (1.0 if _zygote_running() else 0.0)
    while True:
        try:
            data = json.loads((job_dir / "worker_exit.json").read_text("utf-8"))
            if data.get("pid") == handle.pid:
                return int(data["exit_code"])
        except (OSError, json.JSONDecodeError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _zygote_running() -> bool:
    return _ZYGOTE is not None and _ZYGOTE.alive()


def stop_worker(handle: WorkerHandle, grace: float = 5.0) -> None:
    """End a worker: SIGTERM, then SIGKILL after ``grace`` seconds."""
    import psutil

    if not worker_alive(handle):
        return
    try:
        process = psutil.Process(handle.pid)
        process.terminate()
        try:
            process.wait(timeout=grace)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)
    except psutil.Error:
        pass
    spawned = _SPAWNED.get(handle.pid)
    if spawned is not None:
        spawned.poll()


def describe_exit(code: int | None) -> str:
    """An exit status in words."""
    if code is None:
        return "ended without a result (its exit status is unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (often: out of memory)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {code} without a result"


# --------------------------------------------------------------------------------------
# The registry

JOB_METRICS: tuple[str, ...] = (
    "num_examples_cut",
    "num_examples_left_out",
    "steps",
)
"""Figures of a finished job's summary (``nip_model.json``) its record reports
(:attr:`nip_core.text.backend.FineTuneJob.metrics`): text trainers log them. Not
``train_loss``: a job resumed from its checkpoint averages only the steps after
the resume, so a killed run would log another value than one never stopped."""


@attrs.define(kw_only=True)
class JobRecord:
    """A job as the registry records it (``job.json``)."""

    id: str
    name: str
    method: str
    base_model: str
    seed: int
    num_examples: int
    created_at: float
    status: str = "queued"
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    worker: dict[str, Any] | None = None
    fine_tuned_model: str | None = None
    error: str | None = None
    metrics: dict[str, float] = attrs.field(factory=dict)
    events: list[str] = attrs.field(factory=list)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        fields = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def note(self, event: str) -> None:
        self.events.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {event}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:60] or "job"


class JobManager:
    """The jobs of one registry directory (see the module docstring).

    Parameters
    ----------
    root : Path
        The registry's directory.
    max_worker_restarts, max_concurrent_jobs : int
        See :class:`~nip_plugin_transformers.parameters.TransformersBackendParameters`.
    worker_start : {"fork", "spawn"}
        How workers start.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_worker_restarts: int,
        max_concurrent_jobs: int,
        worker_start: str,
    ):
        self.root = Path(root)
        self.max_worker_restarts = max_worker_restarts
        self.max_concurrent_jobs = max_concurrent_jobs
        self.worker_start = worker_start

    def _lock(self) -> Any:
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".registry.lock"), timeout=600)

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    # ----------------------------------------------------------------------------------
    # Records

    def _load(self, job_id: str) -> JobRecord:
        path = self.job_dir(job_id) / JOB_FILE
        try:
            return JobRecord.from_dict(json.loads(path.read_text("utf-8")))
        except FileNotFoundError:
            from nip_core.text.backend import FineTuneJobNotFoundError

            raise FineTuneJobNotFoundError(
                f"no fine-tune job {job_id!r} in {self.root} (the transformers "
                "backend keeps its jobs in the run directory)"
            ) from None
        except (OSError, json.JSONDecodeError, TypeError) as error:
            raise BackendError(f"could not read {path}: {error}") from error

    def _save(self, record: JobRecord) -> None:
        atomic_write_json(self.job_dir(record.id) / JOB_FILE, record.to_dict())

    def _records(self) -> list[JobRecord]:
        if not self.root.is_dir():
            return []
        records = []
        for path in self.root.glob(f"*/{JOB_FILE}"):
            records.append(self._load(path.parent.name))
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # ----------------------------------------------------------------------------------
    # Keeping the records up to date

    def _read_result(self, record: JobRecord) -> dict[str, Any] | None:
        from nip_plugin_transformers.training import RESULT_FILE

        path = self.job_dir(record.id) / RESULT_FILE
        try:
            return json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def _adopt(self, record: JobRecord, result: dict[str, Any]) -> None:
        record.finished_at = float(result.get("time") or time.time())
        if result.get("status") == "succeeded":
            record.status = "succeeded"
            record.fine_tuned_model = str(result["fine_tuned_model"])
            summary = result.get("summary") or {}
            record.metrics = {
                key: float(summary[key])
                for key in JOB_METRICS
                if isinstance(summary.get(key), int | float)
            }
            record.note("succeeded")
        else:
            record.status = "failed"
            log = self.job_dir(record.id) / LOG_FILE
            record.error = f"{result.get('error', 'no reason given')} (log: {log})"
            record.note(f"failed: {result.get('error')}")
        record.worker = None

    def _refresh(self, record: JobRecord) -> bool:
        """Bring one record up to date; whether it changed."""
        if record.finished or record.status == "queued":
            return False
        result = self._read_result(record)
        if result is not None:
            self._adopt(record, result)
            return True
        handle = WorkerHandle.from_dict(record.worker) if record.worker else None
        if handle is not None and worker_alive(handle):
            return False
        result = self._read_result(record)  # it may have finished meanwhile
        if result is not None:
            self._adopt(record, result)
            return True
        code = None
        if handle is not None:
            code = worker_exit_code(self.job_dir(record.id), handle)
        reason = describe_exit(code)
        record.worker = None
        if record.attempts <= self.max_worker_restarts:
            record.status = "queued"
            record.note(
                f"attempt {record.attempts}: the worker {reason}; starting again"
            )
        else:
            log = self.job_dir(record.id) / LOG_FILE
            record.status = "failed"
            record.finished_at = time.time()
            record.error = (
                f"the worker process of fine-tune job {record.name!r} died "
                f"{record.attempts} time(s) (the last {reason}); see {log}. Raise "
                "transformers_backend.max_worker_restarts, or lower batch_size / "
                "max_seq_length if it ran out of memory"
            )
            record.note(f"attempt {record.attempts}: the worker {reason}; giving up")
        return True

    def _launch(self, record: JobRecord) -> None:
        job_dir = self.job_dir(record.id)
        (job_dir / "worker_exit.json").unlink(missing_ok=True)
        record.attempts += 1
        try:
            handle = launch_worker(job_dir, self.worker_start)
        except BackendError as error:
            record.status = "failed"
            record.finished_at = time.time()
            record.error = str(error)
            record.note(f"attempt {record.attempts}: could not start: {error}")
            return
        record.status = "running"
        record.started_at = time.time()
        record.worker = handle.to_dict()
        checkpoints = sorted((job_dir / "checkpoints").glob("checkpoint-*"))
        where = f", continuing from {checkpoints[-1].name}" if checkpoints else ""
        record.note(
            f"attempt {record.attempts}: worker {handle.pid} started "
            f"({handle.start}){where}"
        )

    def _update(self) -> list[JobRecord]:
        """Refresh every unfinished record and start queued jobs (under the lock)."""
        records = self._records()
        for record in records:
            if self._refresh(record):
                self._save(record)
        running = sum(1 for r in records if r.status == "running")
        for record in records:
            if running >= self.max_concurrent_jobs:
                break
            if record.status == "queued":
                self._launch(record)
                self._save(record)
                if record.status == "running":
                    running += 1
        return records

    # ----------------------------------------------------------------------------------
    # The operations

    def create(
        self,
        *,
        name: str,
        method: str,
        base_model: str,
        seed: int,
        request: dict[str, Any],
    ) -> JobRecord:
        """Register a job (its ``request.json`` is written first) and start it when a
        slot is free."""
        from nip_plugin_transformers.training import REQUEST_FILE

        with self._lock():
            job_id = f"{_slug(name)}-{uuid.uuid4().hex[:8]}"
            job_dir = self.job_dir(job_id)
            job_dir.mkdir(parents=True)
            atomic_write_json(job_dir / REQUEST_FILE, request)
            record = JobRecord(
                id=job_id,
                name=name,
                method=method,
                base_model=base_model,
                seed=seed,
                num_examples=len(request["examples"]),
                created_at=time.time(),
            )
            record.note("created")
            self._save(record)
            records = self._update()
            return next(r for r in records if r.id == job_id)

    def get(self, job_id: str) -> JobRecord:
        """A job's record, up to date (queued jobs start when a slot is free)."""
        with self._lock():
            self._load(job_id)
            records = self._update()
            return next(r for r in records if r.id == job_id)

    def find(self, name: str) -> JobRecord | None:
        """The newest job created with this name, up to date, or ``None``."""
        with self._lock():
            records = self._update()
        matching = [r for r in records if r.name == name]
        return matching[-1] if matching else None

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job that has not finished (its worker is ended)."""
        with self._lock():
            record = self._load(job_id)
            if self._refresh(record):
                self._save(record)
            if not record.finished:
                if record.worker:
                    stop_worker(WorkerHandle.from_dict(record.worker))
                result = self._read_result(record)
                if result is not None and result.get("status") == "succeeded":
                    self._adopt(record, result)  # it finished before the cancel
                else:
                    record.status = "cancelled"
                    record.finished_at = time.time()
                    record.worker = None
                    record.note("cancelled")
                self._save(record)
            self._update()
            return record

    def cleanup(self, job_id: str) -> None:
        """Delete a finished job's training data and checkpoints (its model stays)."""
        from nip_plugin_transformers.training import REQUEST_FILE, SCRATCH_DIR

        with self._lock():
            record = self._load(job_id)
            if not record.finished:
                return
            job_dir = self.job_dir(job_id)
            (job_dir / REQUEST_FILE).unlink(missing_ok=True)
            shutil.rmtree(job_dir / "checkpoints", ignore_errors=True)
            shutil.rmtree(job_dir / "model.partial", ignore_errors=True)
            shutil.rmtree(job_dir / SCRATCH_DIR, ignore_errors=True)
