"""Testing a run across processes: the same experiment under ``torchrun`` and in one
process, compared.

A test writes an experiment *spec* (JSON) and runs it with :func:`run_worker`:
under ``torchrun --standalone --nproc-per-node N`` or as a plain process. Each
process runs :func:`worker_main` (``python -m nip_core.testing.torchrun SPEC``),
which registers the plugins the spec asks for, runs or resumes the experiment, and
leaves in the spec's ``out`` directory, per rank, the trained agents
(``agents_rank{r}.pt``) and what the process saw of the run
(``process_rank{r}.json``: world size, run id, whether it wrote the run directory,
the iteration it resumed from). :func:`assert_same_agents` and
:func:`assert_same_metrics` then compare with a reference run.

Spec keys: ``hyper_params`` and ``settings`` (keyword arguments of
:class:`~nip_core.parameters.HyperParameters` and
:class:`~nip_core.settings.ExperimentSettings`), ``out``; optionally ``synthetic``
(register the synthetic scenario, default true), ``installed_plugins`` (load the
installed plugins too, default false), ``stop_after`` (every process stops after
that training iteration, as a killed run would), ``resume`` with ``run_id`` and
``runs_dir`` (resume that run instead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "assert_same_agents",
    "assert_same_metrics",
    "flatten_state",
    "process_records",
    "run_in_this_process",
    "run_worker",
    "worker_main",
]

STOPPED = 3
"""The exit status of a worker stopped by ``stop_after``."""


def worker_main(spec_path: str) -> int:
    """Run one process of a spec (see the module docstring); return its status."""
    import torch

    from nip_core import distributed
    from nip_core.testing.fixtures import isolated_plugin_manager
    from nip_core.testing.synthetic.plugin import SYNTHETIC_PLUGIN

    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    plugins = {"synthetic": SYNTHETIC_PLUGIN} if spec.get("synthetic", True) else {}
    with isolated_plugin_manager(
        plugins, autoload=bool(spec.get("installed_plugins", False))
    ):
        from nip_core.experiment import resume_run, run_experiment
        from nip_core.parameters import HyperParameters
        from nip_core.settings import ExperimentSettings

        callbacks = []
        stop_after = spec.get("stop_after")
        if stop_after is not None:

            def stop(trainer: Any, iteration: int, metrics: Any) -> None:
                if iteration == stop_after:
                    raise KeyboardInterrupt

            callbacks.append(stop)
        try:
            if spec.get("resume"):
                result = resume_run(
                    spec["run_id"],
                    spec["runs_dir"],
                    callbacks=callbacks,
                    show_progress=False,
                )
            else:
                result = run_experiment(
                    HyperParameters(**spec["hyper_params"]),
                    ExperimentSettings(**spec["settings"]),
                    callbacks=callbacks,
                )
        except KeyboardInterrupt:
            # torchrun reports any worker's failure as its own status 1: leave a
            # mark that this one stopped as asked
            (out / f"stopped_rank{distributed.rank()}").touch()
            return STOPPED
    rank = distributed.rank()
    torch.save(result.trainer.agents_state_dict(), out / f"agents_rank{rank}.pt")
    (out / f"process_rank{rank}.json").write_text(
        json.dumps(
            {
                "world_size": distributed.world_size(),
                "run_id": result.run_id,
                "writes_run_dir": result.run_dir is not None,
                "resumed_from": result.resumed_from,
            }
        )
    )
    return 0


def run_worker(
    spec: Mapping[str, Any],
    spec_path: str | os.PathLike[str],
    nproc: int | None,
    *,
    timeout: float = 300,
) -> list[str]:
    """Run a spec under ``torchrun`` with ``nproc`` processes (gloo on CPU), or as
    one plain process (``nproc=None``).

    Returns the marks of the processes that stopped as asked (``stop_after``).

    Raises
    ------
    AssertionError
        When a process failed otherwise, with the end of its output.
    """
    path = Path(spec_path)
    path.write_text(json.dumps(spec))
    launcher = (
        []
        if nproc is None
        else [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            # its logs beside the spec: by default torchrun writes them to a
            # torchelastic_* directory in the temporary directory, never removed
            f"--log-dir={path.parent / 'torchrun-logs'}",
        ]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, *launcher, "-m", "nip_core.testing.torchrun", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    stopped = sorted(p.name for p in Path(spec["out"]).glob("stopped_rank*"))
    if stopped:
        return stopped
    if completed.returncode != 0:
        raise AssertionError(
            f"the worker failed (status {completed.returncode}):\n"
            f"{completed.stderr[-6000:]}"
        )
    return []


def run_in_this_process(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run a spec's experiment here (its plugins registered by the caller); return
    the trained agents' state."""
    from nip_core.experiment import run_experiment
    from nip_core.parameters import HyperParameters
    from nip_core.settings import ExperimentSettings

    result = run_experiment(
        HyperParameters(**spec["hyper_params"]), ExperimentSettings(**spec["settings"])
    )
    return result.trainer.agents_state_dict()


def process_records(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """What each process saw of the run, by rank."""
    paths = sorted(Path(out).glob("process_rank*.json"))
    return [json.loads(p.read_text()) for p in paths]


def flatten_state(state: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested state dict as ``{"agent.part.name": tensor}``."""
    flat: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, Mapping):
            flat.update(flatten_state(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def assert_same_agents(
    expected: Mapping[str, Any], actual: Mapping[str, Any], tolerance: float = 1e-5
) -> None:
    """Every parameter and buffer equal to ``tolerance`` (absolute and relative)."""
    import torch

    expected, actual = flatten_state(expected), flatten_state(actual)
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        torch.testing.assert_close(
            actual[key].float(),
            value.float(),
            rtol=tolerance,
            atol=tolerance,
            msg=lambda message, key=key: f"{key}: {message}",
        )


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def assert_same_metrics(
    expected_run: str | os.PathLike[str],
    actual_run: str | os.PathLike[str],
    tolerance: float = 1e-5,
) -> None:
    """The same records, step by step, with every value but the timers equal to
    ``tolerance``."""
    import math

    expected_records = _read_metrics(Path(expected_run))
    actual_records = _read_metrics(Path(actual_run))
    assert [r["step"] for r in actual_records] == [r["step"] for r in expected_records]
    for want, got in zip(expected_records, actual_records, strict=True):
        keys = {k for k in want if not k.startswith("timing.")}
        assert keys == {k for k in got if not k.startswith("timing.")}
        for key in sorted(keys):
            a, b = want[key], got[key]
            if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
                assert math.isnan(b), f"step {want['step']}, {key}: {b} instead of nan"
            elif isinstance(a, float) or isinstance(b, float):
                assert math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance), (
                    f"step {want['step']}, {key}: {b} instead of {a}"
                )
            else:
                assert a == b, f"step {want['step']}, {key}: {b} instead of {a}"


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
