"""The measuring tools of benchmarks/training_speed.py that figures in
benchmarks/README.md rest on: the recorder of the loop's matrix products and the
FLOPs it counts for them (``--matmul-ceiling``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "training_speed.py"


@pytest.fixture(scope="module")
def training_speed():
    spec = importlib.util.spec_from_file_location("training_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model_step() -> None:
    """Forward and backward of linear layers (addmm, mm) and an attention-like
    batched product (bmm)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 5)
    x = torch.randn(7, 6)
    q = torch.randn(3, 4, 2, requires_grad=True)
    k = torch.randn(3, 2, 5, requires_grad=True)
    loss = linear(x).sum() + torch.bmm(q, k).sum()
    loss.backward()


def test_recorder_counts_the_flops_torch_counts(training_speed):
    recorder = training_speed._matmul_recorder()
    with FlopCounterMode(display=False) as counter, recorder:
        _model_step()
    names = {name for name, _ in recorder.calls}
    assert names == {"addmm", "mm", "bmm"}
    recorded = sum(
        training_speed._product_flops(name, operands) * count
        for (name, operands), count in recorder.calls.items()
    )
    # every FLOP torch's counter counts here is a recorded product's
    assert recorded == counter.get_total_flops()
    # forward addmm 7x6x5, weight grad mm 5x7x6, (input needs no grad); bmm forward
    # 3x4x2x5 and its two gradients
    assert recorded == 2 * (7 * 6 * 5 + 5 * 7 * 6) + 3 * 2 * (3 * 4 * 2 * 5)


def test_recorder_keeps_strides(training_speed):
    recorder = training_speed._matmul_recorder()
    a = torch.randn(4, 3)
    b = torch.randn(5, 3)
    with recorder:
        torch.mm(a, b.t())
    ((name, operands),) = recorder.calls
    assert name == "mm"
    assert operands == (((4, 3), (3, 1)), ((3, 5), (1, 3)))


def test_recorder_enters_again(training_speed):
    """The run enters the same recorder around collection, advantage and update."""
    recorder = training_speed._matmul_recorder()
    a = torch.randn(2, 2)
    for _ in range(3):
        with recorder:
            torch.mm(a, a)
    assert sum(recorder.calls.values()) == 3


def test_time_products_sums_calls(training_speed):
    calls = {
        ("mm", (((8, 4), (4, 1)), ((4, 2), (2, 1)))): 3,
        ("bmm", (((2, 3, 4), (12, 4, 1)), ((2, 4, 5), (20, 5, 1)))): 2,
    }
    threads = torch.get_num_threads()
    timed = training_speed.time_products(calls, threads=1)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(threads)
    assert timed["calls"] == 5
    assert timed["distinct_products"] == 2
    assert timed["flops"] == 3 * 2 * 8 * 4 * 2 + 2 * 2 * 2 * 3 * 4 * 5
    assert timed["seconds"] > 0
    assert set(timed["by_op"]) == {"mm", "bmm"}


def test_external_baseline_command_is_filled_in_and_read(training_speed, tmp_path):
    import argparse
    import shlex
    import sys

    script = tmp_path / "other.py"
    script.write_text(
        "import json, sys\n"
        "print('noise')\n"
        "print(json.dumps({'fps': 12.5, 'peak_rss_gb': 3.0, 'argv': sys.argv[1:]}))\n"
    )
    args = argparse.Namespace(iterations=4, warmup=1, threads=2)
    template = (
        f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} "
        "{protocol} {setting} {iterations} {warmup} {threads}"
    )
    result = training_speed._spawn_external(args, "debate", "ppo_gi", template)
    assert result["fps"] == 12.5 and result["peak_rss_gb"] == 3.0
    assert result["argv"] == ["debate", "ppo_gi", "4", "1", "2"]
    assert result["external"] is True and result["protocol"] == "debate"
    assert "12.5 frames/s  peak 3.00 GB" in training_speed._row(result)

    failing = f"{shlex.quote(sys.executable)} -c 'print(1)'"
    result = training_speed._spawn_external(args, "nip", "ppo_gi", failing)
    assert "error" in result
    assert training_speed._row(result).endswith("FAILED: 1")


@pytest.mark.parametrize(
    ("main", "baseline", "expected_main", "expected_baseline"),
    [
        (None, "false", None, "false"),  # today's default against every row
        ("false", None, "false", "false"),  # both as asked
        ("true", "false", "true", "false"),
    ],
)
def test_counted_rows_switch_reaches_each_process(
    training_speed, monkeypatch, main, baseline, expected_main, expected_baseline
):
    """``--counted-rows`` and ``--baseline-counted-rows`` (run.counted_rows) are
    passed to the processes they are meant for, and to no other."""
    import json
    import subprocess
    from types import SimpleNamespace

    commands: list[list[str]] = []

    def run(command, **kwargs):
        commands.append(command)
        return SimpleNamespace(returncode=0, stdout=json.dumps({"fps": 1.0}))

    monkeypatch.setattr(subprocess, "run", run)
    args = training_speed.main.__globals__["argparse"].Namespace(
        scenario="synthetic",
        iterations=1,
        warmup=0,
        threads=1,
        workdir="/tmp/x",
        device="cpu",
        compile_loss=False,
        agent_threads=None,
        counted_rows=main,
        data_dir=None,
        profile=False,
        torch_profile=False,
        matmul_ceiling=False,
        override=[],
    )

    def passed(command):
        if "--counted-rows" not in command:
            return None
        return command[command.index("--counted-rows") + 1]

    training_speed._spawn(args, "nip", "default")
    training_speed._spawn(
        args, "nip", "default", {"counted_rows": baseline, "overrides": []}
    )
    assert [passed(c) for c in commands] == [expected_main, expected_baseline]
