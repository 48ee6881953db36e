"""Kill tests: real signals to a real ``nip`` process.

- Ctrl-C (SIGINT) in the middle of an iteration: the process finishes the
  iteration, saves a checkpoint, prints how to resume and exits with 130; resumed,
  the run loses no iteration and ends exactly as an uninterrupted run.
- SIGKILL, then the newest checkpoint truncated (a torn write): ``nip resume``
  falls back to the previous checkpoint, says which one and what is redone, and
  ends exactly as an uninterrupted run.

The process is ``tests/runs/kill_driver.py``: the ``nip`` command with the
synthetic scenario registered and every iteration slowed down, so that a signal
lands inside one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nip_core.runs.checkpoints import list_checkpoints
from nip_core.runs.run_dir import RunDirectory
from nip_core.testing.contracts.trainer import (
    assert_same_weights,
    comparable_metrics,
    final_agent_weights,
    truncate_file,
)

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("kill_driver.py")
ITERATIONS = 6
CONFIG = f"""\
# @package _global_
defaults:
  - /base
  - _self_
scenario: synthetic
trainer: reinforce
dataset: tiny
interaction_protocol: nip
d_representation: 4
agents:
  _default: {{d_hidden: 4}}
rl:
  frames_per_batch: null
  rollouts_per_iteration: 4
  num_iterations: {ITERATIONS}
  num_epochs: 1
  minibatch_size: 6
  num_test_iterations: 1
  normalize_observations: false
nip_protocol: {{min_message_rounds: 1, max_message_rounds: 3}}
synthetic: {{num_bits: 6, train_size: 16, test_size: 8}}
run:
  show_progress: false
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "kill.yaml").write_text(CONFIG)
    return tmp_path


def _env(sleep: float = 0.0) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        NIP_DISABLE_PLUGIN_AUTOLOAD="1",
        NIP_TEST_ITERATION_SLEEP=str(sleep),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("NIP_STRICT_PLUGINS", None)
    return env


def _default_sigint() -> None:
    # Started from a background job of a non-interactive shell (`cmd &`), this
    # process ignores SIGINT and so would its child: give the child the default,
    # as a terminal would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _nip(work: Path, *args: str, sleep: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), *args],
        cwd=work,
        env=_env(sleep),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def _finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(
                f"nip ended before the signal (status {process.returncode}):\n{err}"
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("nip did not get far enough in time")
        time.sleep(0.02)


def _metrics_lines(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def _reference(work: Path) -> Path:
    status, err = _finish(_nip(work, "run", "-c", "kill", "run.run_id=whole"))
    assert status == 0, err
    return work / "runs" / "whole"


def _assert_same_as(run_dir: Path, reference: Path) -> None:
    assert comparable_metrics(RunDirectory(run_dir).read_metrics()) == (
        comparable_metrics(RunDirectory(reference).read_metrics())
    )
    assert_same_weights(final_agent_weights(reference), final_agent_weights(run_dir))


def test_ctrl_c_saves_a_checkpoint_and_resume_loses_no_iteration(work: Path) -> None:
    run_dir = work / "runs" / "ctrlc"
    process = _nip(
        work,
        "run",
        "-c",
        "kill",
        "run.run_id=ctrlc",
        "run.checkpoint_period=null",  # no periodic checkpoint to fall back on
        sleep=0.4,
    )
    _wait_for(lambda: _metrics_lines(run_dir) >= 2, process)
    done_at_signal = _metrics_lines(run_dir)
    process.send_signal(signal.SIGINT)
    status, err = _finish(process)

    assert status == 130, err
    assert "Traceback" not in err
    assert "stopping at the end of this iteration" in err
    [saved] = [i for i, _ in list_checkpoints(run_dir / "checkpoints")]
    # the iteration under way at Ctrl-C was finished and saved, nothing after it
    assert saved in (done_at_signal, done_at_signal + 1)
    assert _metrics_lines(run_dir) == saved
    assert (
        f"nip: interrupted: run ctrlc saved a checkpoint after iteration {saved}; "
        "continue it with: nip resume ctrlc" in err
    )
    info = RunDirectory(run_dir).read_run_info()
    assert info["status"] == "killed"
    # what run_info.json says is what nip said, not a bare KeyboardInterrupt
    assert info["error"] == (
        f"interrupted: run ctrlc saved a checkpoint after iteration {saved}; "
        "continue it with: nip resume ctrlc"
    )

    status, err = _finish(_nip(work, "resume", "ctrlc"))
    assert status == 0, err
    _assert_same_as(run_dir, _reference(work))


def test_ctrl_c_twice_stops_at_once(work: Path) -> None:
    run_dir = work / "runs" / "twice"
    process = _nip(work, "run", "-c", "kill", "run.run_id=twice", sleep=2.0)
    _wait_for(lambda: _metrics_lines(run_dir) >= 1, process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    status, err = _finish(process)
    assert status == 130, err
    assert "Traceback" not in err
    assert "nip: interrupted: run twice" in err
    assert "nip resume twice" in err
    # stopped inside the second iteration, before any checkpoint was due
    assert "stopped before its first checkpoint" in err
    assert _metrics_lines(run_dir) == 1


def test_sigterm_stops_at_once_marks_the_run_killed_and_says_how_to_resume(
    work: Path,
) -> None:
    # `kill`, `timeout`, a Slurm cancellation: the run must not be left marked
    # "running" with nothing said
    run_dir = work / "runs" / "termed"
    process = _nip(work, "run", "-c", "kill", "run.run_id=termed", sleep=2.0)
    _wait_for(lambda: _metrics_lines(run_dir) >= 1, process)
    process.send_signal(signal.SIGTERM)
    status, err = _finish(process)
    assert status == 143, err
    assert "Traceback" not in err
    assert "nip: terminated (SIGTERM): run termed" in err
    assert "nip resume termed" in err
    info = RunDirectory(run_dir).read_run_info()
    assert info["status"] == "killed"
    assert info["error"].startswith("terminated (SIGTERM): run termed ")
    assert info["error"].endswith("nip resume termed")
    status, err = _finish(_nip(work, "resume", "termed"))
    assert status == 0, err
    assert RunDirectory(run_dir).read_run_info()["status"] == "finished"


def test_ctrl_c_in_a_sweep_says_how_to_continue_the_sweep(work: Path) -> None:
    sweep_dir = work / "runs" / "sweeps" / "stopped"
    process = _nip(
        work,
        "run",
        "-m",
        "-c",
        "kill",
        "seed=1,2",
        f"hydra.sweep.dir={sweep_dir}",
        sleep=2.0,
    )
    _wait_for(lambda: any(sweep_dir.glob("*/nip_job.json")), process)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    status, err = _finish(process)
    assert status == 130, err
    assert "Traceback" not in err
    assert (
        f"nip: interrupted: sweep {sweep_dir} stopped; its finished runs are kept, "
        f"the others continue from their last checkpoint with: nip run -m "
        f"--resume-sweep {sweep_dir}"
    ) in err


def test_truncated_newest_checkpoint_resumes_from_the_previous_one(
    work: Path,
) -> None:
    run_dir = work / "runs" / "torn"
    process = _nip(
        work,
        "run",
        "-c",
        "kill",
        "run.run_id=torn",
        "run.checkpoint_period=1",
        sleep=0.4,
    )
    checkpoints = run_dir / "checkpoints"
    _wait_for(lambda: len(list_checkpoints(checkpoints)) >= 3, process)
    process.kill()  # SIGKILL: no handler, no cleanup
    process.communicate()
    newest, newest_path = list_checkpoints(checkpoints)[-1]
    truncate_file(newest_path)
    truncate_file(checkpoints / "latest.pt")

    status, err = _finish(_nip(work, "resume", "torn"))
    assert status == 0, err
    assert "Traceback" not in err
    # latest.pt repeats the newest numbered one and is tried next: both named
    assert (
        f"nip: warning: unreadable checkpoints iter_{newest:06d}.pt, latest.pt "
        "skipped" in err
    )
    assert (
        f"continuing from iter_{newest - 1:06d}.pt (iteration {newest - 1}): "
        f"iteration {newest} is trained again" in err
    )
    _assert_same_as(run_dir, _reference(work))
