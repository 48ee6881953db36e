"""Fine-tune jobs: the registry on disk, worker processes killed and restarted,
cancelling, queueing, both ways of starting workers."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from tf_helpers import chat, make_backend, wait_for

from nip_core.text.backend import FineTuneRequest


def _request(base: Path, name: str, count: int = 4, seed: int = 1) -> FineTuneRequest:
    return FineTuneRequest(
        name=name,
        base_model=str(base),
        method="supervised",
        examples=[
            chat(f"What is {i} plus {i}?", f"It is {2 * i}.") for i in range(count)
        ],
        seed=seed,
    )


def _record(backend: Any, job_id: str) -> dict[str, Any]:
    return json.loads((backend.jobs.job_dir(job_id) / "job.json").read_text())


def _wait_until(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _kill_worker(backend: Any, job_id: str) -> int:
    """SIGKILL the job's worker once it has saved a checkpoint; its pid."""
    job_dir = backend.jobs.job_dir(job_id)
    _wait_until(
        lambda: any((job_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    )
    pid = _record(backend, job_id)["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def _adapter(job: Any) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(Path(job.fine_tuned_model) / "adapter_model.safetensors"))


def test_a_killed_worker_is_restarted_and_continues(
    backend_factory: Any, tiny_model: Path
) -> None:
    backend = backend_factory(lora="on", checkpoint_steps=1, batch_size=1)
    job = backend.create_fine_tune_job(_request(tiny_model, "killed", count=12))
    pid = _kill_worker(backend, job.id)
    job = wait_for(backend, job.id)
    assert job.status == "succeeded", job.error
    record = _record(backend, job.id)
    assert record["attempts"] == 2
    events = "\n".join(record["events"])
    assert "was killed by SIGKILL" in events
    assert "continuing from checkpoint-" in events
    assert record["worker"] is None and pid
    summary = json.loads((Path(job.fine_tuned_model) / "nip_model.json").read_text())
    assert summary["resumed_from"] and summary["steps"] == 12
    # continuing from the checkpoint trains the model an uninterrupted job trains
    calm = wait_for(
        backend,
        backend.create_fine_tune_job(_request(tiny_model, "calm", count=12)).id,
    )
    left, right = _adapter(job), _adapter(calm)
    for key in left:
        assert (left[key] - right[key]).abs().max() < 1e-5, key


def test_a_new_process_finds_the_job_and_restarts_its_dead_worker(
    tmp_path: Path, tiny_model: Path
) -> None:
    """What a resumed run sees after a kill that took the worker with it."""
    first = make_backend(tmp_path, lora="on", checkpoint_steps=1)
    job = first.create_fine_tune_job(_request(tiny_model, "resumed", count=8))
    _kill_worker(first, job.id)
    first.close()
    second = make_backend(tmp_path, lora="on", checkpoint_steps=1)
    try:
        found = second.find_fine_tune_job("resumed")
        assert found is not None and found.id == job.id
        assert wait_for(second, job.id).status == "succeeded"
        assert second.find_fine_tune_job("never-created") is None
    finally:
        second.close()


def test_a_worker_that_keeps_dying_fails_the_job_clearly(
    backend_factory: Any, tiny_model: Path
) -> None:
    backend = backend_factory(checkpoint_steps=1, max_worker_restarts=0, batch_size=1)
    job = backend.create_fine_tune_job(_request(tiny_model, "doomed", count=24))
    _kill_worker(backend, job.id)
    job = wait_for(backend, job.id)
    assert job.status == "failed"
    assert "died 1 time(s)" in job.error
    assert "SIGKILL" in job.error
    assert "worker.log" in job.error
    assert "max_worker_restarts" in job.error


def test_cancel_ends_the_worker(backend_factory: Any, tiny_model: Path) -> None:
    import psutil

    backend = backend_factory(checkpoint_steps=1, batch_size=1)
    job = backend.create_fine_tune_job(_request(tiny_model, "cancelled", count=64))
    job_dir = backend.jobs.job_dir(job.id)
    _wait_until(lambda: (job_dir / "progress.json").is_file())
    pid = _record(backend, job.id)["worker"]["pid"]
    cancelled = backend.cancel_fine_tune_job(job.id)
    assert cancelled.status == "cancelled"
    assert backend.get_fine_tune_job(job.id).status == "cancelled"
    assert not psutil.pid_exists(pid) or (
        psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    )
    # a cancelled name is created again when asked
    assert backend.find_fine_tune_job("cancelled").status == "cancelled"


def test_jobs_queue_behind_the_concurrency_limit(
    backend_factory: Any, tiny_model: Path
) -> None:
    backend = backend_factory(max_concurrent_jobs=1, checkpoint_steps=1, batch_size=1)
    first = backend.create_fine_tune_job(_request(tiny_model, "first", count=16))
    second = backend.create_fine_tune_job(_request(tiny_model, "second", count=2))
    assert first.status == "running"
    assert second.status == "queued"
    assert wait_for(backend, second.id).status == "succeeded"
    assert backend.get_fine_tune_job(first.id).status == "succeeded"
    assert (
        _record(backend, second.id)["started_at"]
        >= (_record(backend, first.id)["finished_at"])
    )


def test_cleanup_keeps_the_model_only(backend_factory: Any, tiny_model: Path) -> None:
    backend = backend_factory(checkpoint_steps=1)
    job = wait_for(
        backend, backend.create_fine_tune_job(_request(tiny_model, "clean")).id
    )
    job_dir = backend.jobs.job_dir(job.id)
    assert (job_dir / "request.json").is_file()
    assert (job_dir / "checkpoints").is_dir()
    backend.cleanup_fine_tune_job(job.id)
    assert not (job_dir / "request.json").exists()
    assert not (job_dir / "checkpoints").exists()
    assert Path(job.fine_tuned_model).is_dir()
    assert backend.get_fine_tune_job(job.id).status == "succeeded"


def test_a_failing_job_says_why(backend_factory: Any, tiny_model: Path) -> None:
    # (nothing to train on within 8 tokens: the worker fails, and says why)
    backend = backend_factory(max_seq_length=8)
    job = wait_for(
        backend, backend.create_fine_tune_job(_request(tiny_model, "bad")).id
    )
    assert job.status == "failed"
    assert "transformers_backend.max_seq_length=8 tokens" in job.error
    assert "worker.log" in job.error


def test_jobs_without_a_run_directory_live_in_the_cache(
    tmp_path: Path, tiny_model: Path
) -> None:
    backend = make_backend(tmp_path, run_id=None)
    try:
        job = wait_for(
            backend, backend.create_fine_tune_job(_request(tiny_model, "cached")).id
        )
        assert Path(job.fine_tuned_model).is_relative_to(
            tmp_path / "cache" / "transformers" / "jobs"
        )
    finally:
        backend.close()


@pytest.mark.slow
def test_spawned_workers(backend_factory: Any, tiny_model: Path) -> None:
    """``worker_start: spawn``: a fresh interpreter per job (where fork is not)."""
    backend = backend_factory(worker_start="spawn")
    job = wait_for(
        backend, backend.create_fine_tune_job(_request(tiny_model, "spawned")).id
    )
    assert job.status == "succeeded", job.error
    assert "(spawn)" in "\n".join(_record(backend, job.id)["events"])


def test_progress_keeps_the_last_loss_past_the_closing_summary(tmp_path) -> None:
    # the trainer's last log (train_runtime, train_loss) has no "loss": the file
    # must still show the last training loss
    import json
    import types

    from nip_plugin_transformers.training import PROGRESS_FILE, _Progress

    callback = _Progress.make(tmp_path)
    state = types.SimpleNamespace(global_step=1, max_steps=2, epoch=0.5)
    callback.on_log(None, state, None, logs={"loss": 3.5, "learning_rate": 0.01})
    state.global_step = 2
    callback.on_log(None, state, None, logs={"loss": 2.25})
    callback.on_log(None, state, None, logs={"train_runtime": 1.0, "train_loss": 2.9})
    progress = json.loads((tmp_path / PROGRESS_FILE).read_text())
    assert progress["loss"] == 2.25
    assert progress["step"] == 2 and progress["max_steps"] == 2


def test_a_test_runs_jobs_are_its_own_and_removed(
    tmp_path: Path, tiny_model: Path
) -> None:
    """A second test run with the same run id used to find the first's job by name
    and take its model as if it had trained it (whatever its settings)."""
    first = make_backend(tmp_path, run_id="tt", test_run=True)
    scratch = first.jobs.root
    try:
        assert not scratch.is_relative_to(tmp_path)
        job = wait_for(first, first.create_fine_tune_job(_request(tiny_model, "n")).id)
        assert job.status == "succeeded"
        assert Path(job.fine_tuned_model).is_relative_to(scratch)
        second = make_backend(tmp_path, run_id="tt", test_run=True)
        try:
            assert second.jobs.root != scratch
            assert second.find_fine_tune_job("n") is None
        finally:
            second.close()
    finally:
        first.close()
    # nothing left: a test run writes nothing
    assert not scratch.exists()
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "cache" / "transformers" / "jobs").exists()


@pytest.mark.parametrize("worker_start", ["fork", "spawn"])
def test_a_job_leaves_nothing_in_the_temporary_directory(
    backend_factory: Any,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    worker_start: str,
) -> None:
    """A forked worker ends with ``os._exit``, which runs no finaliser: the files
    ``datasets`` keeps in the temporary directory (``hf_datasets-*``) would be left
    there after every job, unless the worker's temporary directory is its own."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))  # what the worker inherits
    backend = backend_factory(worker_start=worker_start)
    job = wait_for(
        backend, backend.create_fine_tune_job(_request(tiny_model, "tidy")).id
    )
    assert job.status == "succeeded", job.error
    assert sorted(p.name for p in system_tmp.iterdir()) == []
    assert not (backend.jobs.job_dir(job.id) / "tmp").exists()
