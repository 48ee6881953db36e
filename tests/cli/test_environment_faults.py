"""Faults of the machine, not of nip: each is one ``nip: error:`` line.

A runs directory on a read-only file system, a disk that fills up during a run,
memory that runs out, a reader that closes the pipe (``nip ... | head``): the
command says what and where in one line, marks the run failed where it still can,
and shows no traceback.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nip_core.cli.main import main
from nip_core.runs.run_dir import RunDirectory

CONFIG = """\
# @package _global_
defaults:
  - /base
  - _self_
scenario: synthetic
trainer: reinforce
dataset: tiny
d_representation: 4
agents:
  _default: {d_hidden: 4}
rl:
  frames_per_batch: null
  rollouts_per_iteration: 4
  num_iterations: 2
  num_epochs: 1
  minibatch_size: 6
  num_test_iterations: 1
  normalize_observations: false
nip_protocol: {min_message_rounds: 1, max_message_rounds: 3}
synthetic: {num_bits: 6, train_size: 16, test_size: 8}
run:
  show_progress: false
  checkpoint_period: 1
"""


@pytest.fixture
def work(synthetic_scenario, tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "exp.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NIP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("nip: error:")]


def test_a_read_only_runs_directory_is_one_error_line(work: Path, monkeypatch, capsys):
    real_mkdir = Path.mkdir
    read_only = work / "readonly"

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(read_only)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    status = main(["run", "-c", "exp", f"run.runs_dir={read_only}", "run.run_id=r"])
    _, err = capsys.readouterr()
    assert status == 1
    assert "Traceback" not in err
    [line] = _errors(err)
    assert line.startswith(f"nip: error: cannot write {read_only}")
    assert "the file system is read-only" in line
    assert "run.runs_dir=DIR" in line


def test_a_disk_that_fills_during_a_run_marks_it_failed(
    work: Path, monkeypatch, capsys
):
    import nip_core.runs.io as io

    real_atomic_write = io.atomic_write

    def full_for_checkpoints(path, write):
        if "checkpoints" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_atomic_write(path, write)

    monkeypatch.setattr(io, "atomic_write", full_for_checkpoints)
    status = main(["run", "-c", "exp", "run.run_id=full"])
    _, err = capsys.readouterr()
    assert status == 1
    assert "Traceback" not in err
    [line] = _errors(err)
    assert "iter_000001.pt: the disk is full" in line
    info = RunDirectory(work / "runs" / "full").read_run_info()
    assert info["status"] == "failed"
    assert "No space left on device" in info["error"]


def test_running_out_of_memory_is_one_error_line(work: Path, monkeypatch, capsys):
    from nip_core.trainers.rl import TensorDictRlTrainer

    def allocate(self, *args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
            "can't allocate memory: you tried to allocate 140737488355328 bytes. "
            "Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(TensorDictRlTrainer, "_train_on_rollout", allocate)
    status = main(["run", "-c", "exp", "run.run_id=oom"])
    _, err = capsys.readouterr()
    assert status == 1
    assert "Traceback" not in err
    [line] = _errors(err)
    assert line.startswith("nip: error: out of memory (can't allocate memory")
    assert "rl.frames_per_batch" in line
    assert RunDirectory(work / "runs" / "oom").read_run_info()["status"] == "failed"


def test_a_bug_still_shows_its_traceback(work: Path, monkeypatch):
    from nip_core.trainers.rl import TensorDictRlTrainer

    def bug(self, *args, **kwargs):
        raise RuntimeError("a bug in a trainer")

    monkeypatch.setattr(TensorDictRlTrainer, "_train_on_rollout", bug)
    with pytest.raises(RuntimeError, match="a bug in a trainer"):
        main(["run", "-c", "exp", "run.run_id=bug"])


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    env = dict(os.environ, NIP_DISABLE_PLUGIN_AUTOLOAD="1")
    env.pop("NIP_STRICT_PLUGINS", None)
    for command in (["plugins"], ["datasets", "list"]):
        process = subprocess.Popen(
            [sys.executable, "-m", "nip_core.cli.main", *command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        process.stdout.close()  # the reader is gone before anything is written
        err = process.stderr.read()
        process.wait(timeout=120)
        assert "Traceback" not in err, err
        assert "BrokenPipeError" not in err, err
        assert process.returncode == 141
