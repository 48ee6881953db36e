"""The trainer contract suite: checks every trainer must pass.

A trainer plugin's tests subclass :class:`TrainerContract`, name the trainer and
say how to make small hyper-parameters that train for a given number of
iterations::

    from nip_core.testing.contracts.trainer import TrainerContract

    class TestMyTrainerContract(TrainerContract):
        trainer_name = "my_trainer"

        def make_hyper_params(self, num_iterations):
            return HyperParameters(
                scenario="synthetic", trainer="my_trainer", dataset="tiny",
                rl={"num_iterations": num_iterations, "rollouts_per_iteration": 4},
                agents={"_default": {"d_hidden": 4}},
            )

The scenario the hyper-parameters name must be registered: override the
``trainer_plugins`` fixture to register it (and the trainer, when it is not an
installed plugin) with the ``register_plugin`` fixture. The synthetic scenario of
:mod:`nip_core.testing.synthetic` is the cheapest choice.

The suite checks that

- a two-iteration run writes ``metrics.jsonl`` (one record per iteration, steps
  0 and 1), ``hyper_params.json``, ``settings.json`` and a checkpoint after the last
  iteration;
- ``prepare_experiment`` reports as many iterations as the run's progress bars
  declare, and trains nothing;
- a run killed after an iteration and resumed with
  :func:`nip_core.experiment.resume_run` ends with the same metrics (timers aside)
  and the same weights as a run never interrupted (CPU, same seed);
- a run interrupted by Ctrl-C (SIGINT) finishes the iteration it is in, saves a
  checkpoint there and stops; resumed, it loses no iteration and ends as the
  uninterrupted run;
- a run whose newest checkpoint is truncated resumes from the one before, with a
  :class:`~nip_core.errors.CheckpointWarning`, and ends as the uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

TIMING_PREFIX = "timing."


class KilledForTest(Exception):
    """Raised by the kill callback to stop a run mid-training."""


def kill_after(iteration: int):
    """An iteration callback that raises :class:`KilledForTest` after ``iteration``."""

    def callback(trainer: Any, done_iteration: int, metrics: Mapping[str, Any]) -> None:
        if done_iteration == iteration:
            raise KilledForTest(f"killed after iteration {iteration}")

    return callback


@contextmanager
def python_ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handling inside the block, even in a process started
    with SIGINT ignored (a background job of a non-interactive shell, ``cmd &``,
    ignores it, and so does everything it starts): the interrupt tests need the
    signal to arrive. The disposition is put back after."""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    changed = previous is signal.SIG_IGN
    if changed:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if changed:
            signal.signal(signal.SIGINT, previous)


def interrupt_after(iteration: int):
    """An iteration callback that sends this process SIGINT (Ctrl-C) after
    ``iteration``: the run should finish the next iteration, checkpoint and stop."""

    def callback(trainer: Any, done_iteration: int, metrics: Mapping[str, Any]) -> None:
        import signal

        if done_iteration == iteration:
            signal.raise_signal(signal.SIGINT)

    return callback


def truncate_file(path: Path) -> None:
    """Cut a file to half its length, as a torn write leaves it."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def comparable_metrics(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics records without the timers (which differ between runs)."""
    return [
        {k: v for k, v in record.items() if not k.startswith(TIMING_PREFIX)}
        for record in records
    ]


def final_agent_weights(run_dir: Path) -> dict[str, Any]:
    """The agents' state dicts in a run's latest checkpoint."""
    from nip_core.runs.checkpoints import load_latest_checkpoint

    checkpoint = load_latest_checkpoint(Path(run_dir) / "checkpoints")
    assert checkpoint is not None, f"no checkpoint in {run_dir}"
    return checkpoint["trainer"]["agents"]


def assert_same_weights(left: Mapping[str, Any], right: Mapping[str, Any]) -> None:
    """Assert two nested dicts of tensors are exactly equal."""
    import torch

    assert left.keys() == right.keys()
    for key in left:
        a, b = left[key], right[key]
        if isinstance(a, Mapping):
            assert_same_weights(a, b)
        elif isinstance(a, torch.Tensor):
            assert torch.equal(a, b), f"tensor {key!r} differs"
        else:
            assert a == b, f"{key!r} differs"


def assert_same_agents(left: Any, right: Any) -> None:
    """Assert two finished experiments (what ``run_experiment`` returns) trained
    their agents to exactly the same weights, and that there are weights to
    compare."""
    expected = left.trainer.agents_state_dict()
    assert any(state for parts in expected.values() for state in parts.values()), (
        "the agents have no state to compare"
    )
    assert_same_weights(expected, right.trainer.agents_state_dict())


def record_counted_rows(monkeypatch: Any) -> list[tuple[int, int]]:
    """Record, for the rest of the test, every ``(rows computed, batch size)`` a
    policy part ran on under :func:`~nip_core.scenario.combined.counted_rows_only`
    (the list it returns fills as they run)."""
    from nip_core.scenario import combined

    calls: list[tuple[int, int]] = []
    pad = combined._pad_rows

    def counting(out: Any, rows: Any, size: int) -> Any:
        calls.append((rows.numel(), size))
        return pad(out, rows, size)

    monkeypatch.setattr(combined, "_pad_rows", counting)
    return calls


def assert_close_agents(
    left: Any, right: Any, *, rtol: float = 1e-5, atol: float = 1e-6
) -> None:
    """Assert two finished experiments trained their agents to the same weights
    to float tolerance (floating-point tensors compared with ``rtol`` and
    ``atol``, every other entry exactly), and that there are weights to
    compare."""
    import torch

    def compare(a: Any, b: Any, where: str) -> int:
        if isinstance(a, Mapping):
            assert a.keys() == b.keys(), where
            return sum(compare(a[k], b[k], f"{where}.{k}") for k in a)
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            torch.testing.assert_close(
                b, a, rtol=rtol, atol=atol, msg=lambda m: f"{where}: {m}"
            )
            return 1
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), where
        else:
            assert a == b, where
        return 0

    compared = compare(
        left.trainer.agents_state_dict(), right.trainer.agents_state_dict(), "agents"
    )
    assert compared, "the agents have no floating-point weights to compare"


class TrainerContract:
    """Checks a trainer must pass (see the module docstring)."""

    trainer_name: ClassVar[str] = ""
    num_iterations: ClassVar[int] = 3
    """Iterations of the kill-and-resume runs (killed after the second)."""

    def make_hyper_params(self, num_iterations: int) -> Any:
        """Small hyper-parameters training ``num_iterations`` iterations."""
        raise NotImplementedError(
            "a TrainerContract subclass must define make_hyper_params(num_iterations)"
        )

    def make_settings(self, root: Path, **overrides: Any) -> Any:
        """Settings writing under ``root`` (no progress bars, jsonl only)."""
        from nip_core.settings import ExperimentSettings

        values: dict[str, Any] = dict(
            runs_dir=str(root / "runs"),
            data_dir=str(root / "data"),
            cache_dir=str(root / "cache"),
            show_progress=False,
            checkpoint_period=1,
        )
        values.update(overrides)
        return ExperimentSettings(**values)

    @pytest.fixture
    def trainer_plugins(self, plugin_manager: Any) -> Any:
        """Register what the hyper-parameters need; the default registers nothing."""
        return plugin_manager

    @pytest.fixture(autouse=True)
    def _single_thread(self, single_thread: None) -> None:
        """Every contract test runs on one thread (nip-core's ``single_thread``)."""

    def test_trainer_is_registered(self, trainer_plugins: Any) -> None:
        from nip_core.plugins import get_plugin_manager
        from nip_core.records import resolve_ref
        from nip_core.trainers import Trainer

        spec = get_plugin_manager().trainers[self.trainer_name]
        assert issubclass(resolve_ref(spec.trainer_class), Trainer)

    def test_two_iteration_run_writes_metrics_and_checkpoint(
        self, trainer_plugins: Any, tmp_path: Path
    ) -> None:
        from nip_core.experiment import run_experiment
        from nip_core.runs.checkpoints import list_checkpoints
        from nip_core.runs.run_dir import RunDirectory

        result = run_experiment(
            self.make_hyper_params(2), self.make_settings(tmp_path), run_id="two"
        )
        run_dir = RunDirectory(result.run_dir)
        assert run_dir.hyper_params_path.is_file()
        assert run_dir.settings_path.is_file()
        records = run_dir.read_metrics()
        train_steps = [r["step"] for r in records if not _is_test_record(r)]
        assert train_steps[:2] == [0, 1]
        assert 2 in [i for i, _ in list_checkpoints(run_dir.checkpoints_dir)]
        assert run_dir.read_run_info()["status"] == "finished"

    def test_prepare_reports_total_iterations(
        self, trainer_plugins: Any, tmp_path: Path
    ) -> None:
        from nip_core.experiment import prepare_experiment

        prepared = prepare_experiment(
            self.make_hyper_params(2), self.make_settings(tmp_path)
        )
        assert prepared.total_iterations >= 2
        assert prepared.trainer.iteration == 0

    def test_kill_and_resume_matches_uninterrupted_run(
        self, trainer_plugins: Any, tmp_path: Path
    ) -> None:
        from nip_core.experiment import resume_run, run_experiment
        from nip_core.runs.run_dir import RunDirectory

        n = self.num_iterations
        settings = self.make_settings(tmp_path)
        whole = run_experiment(self.make_hyper_params(n), settings, run_id="whole")

        with pytest.raises(KilledForTest):
            run_experiment(
                self.make_hyper_params(n),
                settings,
                run_id="killed",
                callbacks=[kill_after(1)],
            )
        killed_dir = RunDirectory(Path(settings.runs_dir) / "killed")
        assert [r["step"] for r in killed_dir.read_metrics()] == [0, 1]
        resumed = resume_run("killed", runs_dir=settings.runs_dir)
        assert resumed.resumed_from == 2

        assert comparable_metrics(killed_dir.read_metrics()) == comparable_metrics(
            RunDirectory(whole.run_dir).read_metrics()
        )
        assert_same_weights(
            final_agent_weights(whole.run_dir), final_agent_weights(resumed.run_dir)
        )

    def test_interrupt_saves_a_checkpoint_and_resume_loses_no_iteration(
        self, trainer_plugins: Any, tmp_path: Path
    ) -> None:
        from nip_core.errors import RunInterrupted
        from nip_core.experiment import resume_run, run_experiment
        from nip_core.runs.checkpoints import list_checkpoints
        from nip_core.runs.run_dir import RunDirectory

        n = self.num_iterations
        # no periodic checkpoints: the one the interrupt saves is all there is
        settings = self.make_settings(tmp_path, checkpoint_period=None)
        whole = run_experiment(self.make_hyper_params(n), settings, run_id="whole")

        with python_ctrl_c(), pytest.raises(RunInterrupted) as info:
            run_experiment(
                self.make_hyper_params(n),
                settings,
                run_id="interrupted",
                callbacks=[interrupt_after(0)],
            )
        # Ctrl-C came after iteration 0: iteration 1 was finished and saved
        assert info.value.checkpoint_iteration == 2, (
            "Ctrl-C must stop the run at the end of an iteration, with a checkpoint: "
            "call maybe_save_checkpoint after every iteration inside "
            "checkpoint_on_interrupt()"
        )
        interrupted = RunDirectory(Path(settings.runs_dir) / "interrupted")
        assert [i for i, _ in list_checkpoints(interrupted.checkpoints_dir)] == [2]
        assert [r["step"] for r in interrupted.read_metrics()] == [0, 1]
        assert interrupted.read_run_info()["status"] == "killed"

        resumed = resume_run("interrupted", runs_dir=settings.runs_dir)
        assert resumed.resumed_from == 2
        assert comparable_metrics(interrupted.read_metrics()) == comparable_metrics(
            RunDirectory(whole.run_dir).read_metrics()
        )
        assert_same_weights(
            final_agent_weights(whole.run_dir), final_agent_weights(resumed.run_dir)
        )

    def test_a_truncated_checkpoint_falls_back_to_the_one_before(
        self, trainer_plugins: Any, tmp_path: Path
    ) -> None:
        from nip_core.errors import CheckpointWarning
        from nip_core.experiment import resume_run, run_experiment
        from nip_core.runs.checkpoints import numbered_checkpoint_path
        from nip_core.runs.run_dir import RunDirectory

        n = self.num_iterations
        settings = self.make_settings(tmp_path)
        whole = run_experiment(self.make_hyper_params(n), settings, run_id="whole")
        with pytest.raises(KilledForTest):
            run_experiment(
                self.make_hyper_params(n),
                settings,
                run_id="torn",
                callbacks=[kill_after(1)],
            )
        torn = RunDirectory(Path(settings.runs_dir) / "torn")
        truncate_file(numbered_checkpoint_path(torn.checkpoints_dir, 2))
        truncate_file(torn.checkpoints_dir / "latest.pt")

        with pytest.warns(CheckpointWarning, match="iteration 2 is trained again"):
            resumed = resume_run("torn", runs_dir=settings.runs_dir)
        assert resumed.resumed_from == 1
        assert comparable_metrics(torn.read_metrics()) == comparable_metrics(
            RunDirectory(whole.run_dir).read_metrics()
        )
        assert_same_weights(
            final_agent_weights(whole.run_dir), final_agent_weights(resumed.run_dir)
        )


def _is_test_record(record: Mapping[str, Any]) -> bool:
    return any("test_" in key for key in record if key != "step")
