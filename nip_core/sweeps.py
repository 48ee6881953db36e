"""Sweeps that survive being killed: stable run ids, a manifest, job records.

``nip run --multirun`` hands the jobs of a sweep to a Hydra launcher (the basic one,
joblib, submitit on Slurm or locally, Ray). Three things here make such a sweep
restartable without duplicating runs:

- **Stable run ids.** Each job's run id is derived from the sweep directory's name
  and a hash of the job's validated hyper-parameters (:func:`sweep_run_id`), so the
  same job of the same sweep always writes the same run directory, whichever
  launcher runs it and in whatever order.
- **A manifest.** ``<sweep dir>/sweep.json`` records the config name and overrides
  the sweep was started with, so ``nip run --resume-sweep DIR`` needs nothing else.
- **Job records.** Every job writes ``<sweep dir>/<job>/nip_job.json`` (its run id
  and run directory) from wherever it runs, so ``nip report DIR`` finds the sweep's
  runs without a shared index that remote jobs would have to update concurrently.

On resume a job whose run finished is skipped; any other continues from its last
checkpoint (or starts, if it never wrote one).

Light: imports only the standard library.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nip_core.errors import NipError

__all__ = [
    "JOB_RECORD",
    "MANIFEST",
    "SweepError",
    "SweepManifest",
    "extension_prefix",
    "is_sweep_dir",
    "read_manifest",
    "resolve_sweep_dir",
    "run_is_finished",
    "sweep_run_dirs",
    "sweep_run_id",
    "write_job_record",
    "write_manifest",
]

MANIFEST = "sweep.json"
"""The sweep manifest's file name, in the sweep directory."""

JOB_RECORD = "nip_job.json"
"""The file each job writes into its Hydra job directory."""

_HASH_LENGTH = 10


class SweepError(NipError):
    """A sweep that cannot be started or resumed as asked."""


class SweepManifest:
    """What ``sweep.json`` holds.

    Parameters
    ----------
    config_name : str | None
        The config the sweep composes (``None``: the default config).
    overrides : list[str]
        The overrides as given on the command line.
    created : str
        When the sweep was first launched (UTC, ISO 8601).
    launches : int
        How many times it was launched (1 + the number of resumes).
    extensions : list[list[str]]
        The overrides of each extension (a resume given overrides: the sweep's own
        with those added), in order; extension ``k``'s jobs live in the job
        directories ``ext<k>-<job number>`` (:func:`extension_prefix`), and a
        resume without overrides resumes them too.
    """

    def __init__(
        self,
        config_name: str | None,
        overrides: Sequence[str],
        created: str,
        launches: int = 1,
        extensions: Sequence[Sequence[str]] = (),
    ):
        self.config_name = config_name
        self.overrides = list(overrides)
        self.created = created
        self.launches = launches
        self.extensions = [list(e) for e in extensions]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config_name": self.config_name,
            "overrides": self.overrides,
            "created": self.created,
            "launches": self.launches,
            "extensions": self.extensions,
        }


def extension_prefix(k: int) -> str:
    """The job directory prefix of a sweep's extension ``k`` (1, 2, ...)."""
    return f"ext{k}-"


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def is_sweep_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the directory of a sweep launched by ``nip run -m``."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(sweep_dir: str | os.PathLike[str]) -> SweepManifest:
    """Read ``<sweep_dir>/sweep.json``.

    Raises
    ------
    SweepError
        When the directory holds no manifest or an unreadable one.
    """
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        raise SweepError(
            f"{sweep_dir} is not the directory of a sweep started by `nip run -m` "
            f"(it has no {MANIFEST})"
        )
    try:
        data = json.loads(path.read_text())
        return SweepManifest(
            config_name=data["config_name"],
            overrides=[str(o) for o in data["overrides"]],
            created=str(data["created"]),
            launches=int(data.get("launches", 1)),
            extensions=[[str(o) for o in e] for e in data.get("extensions", [])],
        )
    except (ValueError, KeyError, TypeError) as error:
        raise SweepError(f"{path} is not a valid sweep manifest: {error}") from error


def write_manifest(
    sweep_dir: str | os.PathLike[str],
    config_name: str | None,
    overrides: Sequence[str],
    *,
    previous: SweepManifest | None = None,
    extensions: Sequence[Sequence[str]] | None = None,
) -> SweepManifest:
    """Write (or, resuming, update) the sweep manifest; return what was written.
    ``extensions``: the extensions' overrides (by default the previous ones)."""
    from nip_core.runs.io import atomic_write_json

    if extensions is None:
        extensions = previous.extensions if previous is not None else ()
    manifest = SweepManifest(
        config_name=config_name,
        overrides=overrides,
        created=previous.created if previous is not None else _utc_now(),
        launches=previous.launches + 1 if previous is not None else 1,
        extensions=extensions,
    )
    atomic_write_json(Path(sweep_dir) / MANIFEST, manifest.to_dict())
    return manifest


def resolve_sweep_dir(spec: str, runs_dir: str | os.PathLike[str] = "runs") -> Path:
    """The sweep directory named by ``spec``: a path, or a name under
    ``<runs_dir>/sweeps``.

    Raises
    ------
    SweepError
        When neither holds a sweep manifest, listing the sweeps found.
    """
    candidates = [
        Path(spec).expanduser(),
        Path(runs_dir).expanduser() / "sweeps" / spec,
    ]
    for candidate in candidates:
        if is_sweep_dir(candidate):
            return candidate
    sweeps_root = Path(runs_dir).expanduser() / "sweeps"
    known = (
        sorted(p.name for p in sweeps_root.iterdir() if is_sweep_dir(p))
        if sweeps_root.is_dir()
        else []
    )
    listing = ", ".join(known[-5:]) if known else "none"
    raise SweepError(
        f"no sweep {spec!r}: neither {candidates[0]} nor {candidates[1]} holds a "
        f"{MANIFEST} (latest sweeps in {sweeps_root}: {listing})"
    )


def experiment_hash(params_dict: Mapping[str, Any]) -> str:
    """A short hash of a hyper-parameter dict, versions (``_meta``) left out."""
    data = {key: value for key, value in params_dict.items() if key != "_meta"}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


def sweep_run_id(
    sweep_dir: str | os.PathLike[str], params_dict: Mapping[str, Any]
) -> str:
    """The run id of a sweep job: ``<sweep dir name>-<hash of the experiment>``.

    The same experiment in the same sweep always gets the same id, so a restarted
    sweep finds its runs again; two jobs of one sweep get the same id only when
    they are the same experiment (the sweep refuses that before launching).
    """
    return f"{Path(sweep_dir).name}-{experiment_hash(params_dict)}"


def run_is_finished(run_dir: str | os.PathLike[str]) -> bool:
    """Whether the run directory records a finished run."""
    path = Path(run_dir) / "run_info.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("status") == "finished"
    except ValueError:
        return False


def write_job_record(
    job_dir: str | os.PathLike[str], run_id: str, run_dir: Path
) -> None:
    """Record in a Hydra job directory which run the job writes."""
    from nip_core.runs.io import atomic_write_json

    atomic_write_json(
        Path(job_dir) / JOB_RECORD,
        {"run_id": run_id, "run_dir": str(Path(run_dir).resolve())},
    )


JOB_PROCESSES = ".job_processes"
"""In a sweep directory: one empty file per process running one of its jobs now,
named ``<host>-<pid>``. A SIGTERM to the sweep is passed on to these processes
only, not to their helpers (a W&B service, data loader workers), which they still
need to close their runs."""


@contextlib.contextmanager
def job_process_registered(sweep_dir: str | os.PathLike[str]) -> Iterator[None]:
    """This process runs one of the sweep's jobs until the block ends (see
    :data:`JOB_PROCESSES`). A registry that cannot be written is no error: the
    sweep then signals nothing in particular, as before a job started."""
    folder = Path(sweep_dir) / JOB_PROCESSES
    entry: Path | None = folder / f"{socket.gethostname()}-{os.getpid()}"
    try:
        folder.mkdir(exist_ok=True)
        entry.touch()
    except OSError:
        entry = None
    try:
        yield
    finally:
        if entry is not None:
            with contextlib.suppress(OSError):
                entry.unlink()


def forget_job_processes(sweep_dir: str | os.PathLike[str]) -> None:
    """Forget the job processes registered on this machine: a sweep launched (or
    continued) runs none of its jobs yet, and entries of processes killed outright
    (SIGKILL, out of memory) would otherwise name PIDs that new processes, a job's
    helpers among them, may come to have."""
    host = socket.gethostname()
    folder = Path(sweep_dir) / JOB_PROCESSES
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.rpartition("-")[0] == host:
            with contextlib.suppress(OSError):
                entry.unlink()


def job_process_pids(sweep_dir: str | os.PathLike[str]) -> list[int]:
    """The processes on this machine registered as running one of the sweep's jobs
    (a process killed outright stays listed: check what the PIDs are)."""
    host = socket.gethostname()
    try:
        names = [p.name for p in (Path(sweep_dir) / JOB_PROCESSES).iterdir()]
    except OSError:
        return []
    pids = []
    for name in names:
        name_host, _, pid = name.rpartition("-")
        if name_host == host and pid.isdigit():
            pids.append(int(pid))
    return sorted(pids)


def _job_order(name: str) -> tuple[int, int]:
    """A job directory's place: the first launch's jobs (``3``) by number, then
    each extension's (``ext1-0``); other names first."""
    launch, _, number = (
        name.rpartition("-") if name.startswith("ext") else ("", "", name)
    )
    try:
        return (int(launch[3:]) if launch else 0, int(number))
    except ValueError:
        return (-1, -1)


def sweep_run_dirs(sweep_dir: str | os.PathLike[str]) -> list[Path]:
    """The run directories of a sweep's jobs (from their job records), each once,
    ordered by job number; jobs whose run directory is gone are left out."""
    sweep_dir = Path(sweep_dir)
    records = []
    for record in sweep_dir.glob(f"*/{JOB_RECORD}"):
        job_num = _job_order(record.parent.name)
        try:
            run_dir = Path(json.loads(record.read_text())["run_dir"])
        except (ValueError, KeyError):
            continue
        records.append((job_num, record.parent.name, run_dir))
    found: dict[Path, Path] = {}
    for _, _, run_dir in sorted(records):
        if run_dir.is_dir():
            found.setdefault(run_dir.resolve(), run_dir)
    return list(found.values())
