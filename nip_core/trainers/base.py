"""Base classes of every trainer.

``Trainer`` is the common base of both data worlds; ``TensorDictTrainer`` adds what
tensor-world trainers share (device, torch contexts, agent parts). Long loops are
methods decorated with :func:`attach_progress_bar`, which gives them a progress bar
with an ETA and declares how many iterations they run, so
:meth:`Trainer.get_total_num_iterations` (and ``prepare_experiment``) can report the
length of a whole run before it starts.
"""

from __future__ import annotations

import functools
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from nip_core.errors import ConfigProblem
from nip_core.runs.checkpoints import restore_rng_state, save_checkpoint
from nip_core.runs.context import RunContext

if TYPE_CHECKING:
    from pathlib import Path

    from nip_core.runs.run_dir import RunDirectory
    from nip_core.settings import ExperimentSettings

logger = logging.getLogger(__name__)

AGENT_PART_NAMES: tuple[str, ...] = (
    "body",
    "policy_body",
    "value_body",
    "policy_head",
    "value_head",
    "solo_head",
    "whole",
)
"""Attribute names of agent parts on :class:`nip_core.scenario.Agent`."""


def agent_part_modules(agent: Any) -> dict[str, Any]:
    """The torch modules among an agent's parts, by part name."""
    import torch

    parts = {}
    for name in AGENT_PART_NAMES:
        part = getattr(agent, name, None)
        if isinstance(part, torch.nn.Module):
            parts[name] = part
    return parts


@attrs.frozen(kw_only=True)
class ResumePoint:
    """Where a run directory says a killed run continues.

    Parameters
    ----------
    checkpoint : Any
        What the trainer restores from (``run.resume_checkpoint``): a checkpoint
        dict, or a staged trainer's saved state.
    iteration : int
        The completed training iterations.
    metrics_records : int | None
        How many records of ``metrics.jsonl`` the saved state accounts for; the rest
        were logged after it and are dropped. ``None``: drop the records of step
        ``iteration`` and later.
    """

    checkpoint: Any
    iteration: int
    metrics_records: int | None = None


class IterationContext:
    """The progress bar and iteration count of one decorated loop.

    Parameters
    ----------
    trainer : Trainer
        The trainer running the loop.
    num_iterations : int
        How many iterations the loop runs.
    initial : int
        Iterations already done (when resuming), shown as progress from the start.
    """

    def __init__(self, trainer: Trainer, num_iterations: int, initial: int = 0):
        self.trainer = trainer
        self.num_iterations = num_iterations
        self.initial = initial
        self.progress_bar: Any = None

    def __enter__(self) -> IterationContext:
        from tqdm.auto import tqdm

        self.progress_bar = tqdm(
            total=self.num_iterations,
            initial=self.initial,
            disable=not self.trainer.settings.show_progress,
            dynamic_ncols=True,
            leave=False,
        )
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.progress_bar.close()

    def set_description(self, description: str) -> None:
        """Set the text before the bar (``"Training"``, ``"Testing"``)."""
        self.progress_bar.set_description(description)

    def set_postfix(self, **values: Any) -> None:
        """Show values after the bar (a running loss, say)."""
        self.progress_bar.set_postfix(values, refresh=False)

    def step(self, n: int = 1) -> None:
        """Advance the bar by ``n`` iterations."""
        self.progress_bar.update(n)


def attach_progress_bar(
    num_iterations_func: Callable[[Any], int],
    initial_func: Callable[[Any], int] | None = None,
) -> Callable[[Callable], Callable]:
    """Run a trainer method with a progress bar, declaring its iteration count.

    The decorated method receives an ``iteration_context`` keyword argument
    (:class:`IterationContext`). ``num_iterations_func(trainer)`` must be computable
    as soon as the trainer exists: :meth:`Trainer.get_total_num_iterations` sums it
    over every decorated method.

    Parameters
    ----------
    num_iterations_func : Callable[[Trainer], int]
        The number of iterations of the loop.
    initial_func : Callable[[Trainer], int], optional
        Iterations already done when the method starts (resumed runs).
    """

    def decorator(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(trainer: Trainer, *args: Any, **kwargs: Any) -> Any:
            total = num_iterations_func(trainer)
            initial = initial_func(trainer) if initial_func is not None else 0
            with IterationContext(trainer, total, initial) as iteration_context:
                return method(
                    trainer, *args, iteration_context=iteration_context, **kwargs
                )

        wrapper._num_iterations_func = num_iterations_func  # type: ignore[attr-defined]
        return wrapper

    return decorator


class Trainer(ABC):
    """Base class of every trainer.

    A trainer takes the scenario instance (datasets, agents, protocol handler,
    environments) and runs the whole training: seeding, the training loop, the test
    loop, logging, checkpointing.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment.
    scenario_instance : ScenarioInstance
        The experiment's components.
    settings : ExperimentSettings
        Settings that do not affect results (device, run directory, loggers).
    run : RunContext, optional
        Where metrics, checkpoints and rollouts go; an in-memory context when not
        given.
    """

    trainer_type: ClassVar[str] = "rl"
    """Which agent parts the factory builds: ``"rl"`` (bodies, policy and value
    heads) or ``"solo_agent"`` (bodies and solo heads), or a plugin's own value."""

    supports_sharding: ClassVar[bool] = False
    """Whether the trainer runs sharded (``distributed.num_shards > 1``) and across
    processes (``torchrun``); see :mod:`nip_core.trainers.sharding`. Runs of
    trainers that do not are refused before they start."""

    @classmethod
    def sharding_config_problems(cls, hyper_params: Any) -> list[ConfigProblem]:
        """Why a sharded run of this trainer with these parameters cannot be, as
        far as the parameters alone tell (an empty list when it can). Asked when
        a config is validated with ``distributed.num_shards > 1`` (``nip config
        validate``, a sweep's check of every job) and before a sharded run starts.
        Subclasses extend it with settings of theirs that sharding cannot
        reproduce; what needs the built run (the environments' batch) goes in
        their ``sharding_problems``."""
        if cls.supports_sharding:
            return []
        trainer = hyper_params.trainer
        num_shards = int(hyper_params.distributed.num_shards)
        return [
            ConfigProblem(
                "trainer",
                f"the {trainer} trainer cannot run sharded (distributed.num_shards="
                f"{num_shards}) nor across processes (torchrun); run it in one "
                "process with distributed.num_shards=1",
                trainer,
            )
        ]

    def __init__(
        self,
        hyper_params: Any,
        scenario_instance: Any,
        settings: ExperimentSettings,
        run: RunContext | None = None,
    ):
        self.hyper_params = hyper_params
        self.scenario_instance = scenario_instance
        self.settings = settings
        self.run = run if run is not None else RunContext()
        self.iteration = 0
        # The shards of this process (nip_core.trainers.sharding); None for the
        # plain single-process loop. Set by trainers that shard when they train.
        self.sharding: Any = None

    # ------------------------------------------------------------------------------
    # Shortcuts

    @property
    def protocol_handler(self) -> Any:
        return self.scenario_instance.protocol_handler

    @property
    def agent_names(self) -> list[str]:
        return list(self.protocol_handler.agent_names)

    @property
    def num_agents(self) -> int:
        return len(self.agent_names)

    @property
    def max_message_rounds(self) -> int:
        return self.protocol_handler.max_message_rounds

    # ------------------------------------------------------------------------------
    # Training

    @abstractmethod
    def train(self) -> None:
        """Train the agents: seed, train loop, test loop, save."""

    def get_total_num_iterations(self) -> int:
        """The sum of the iteration counts of every progress-bar method."""
        total = 0
        for _, member in inspect.getmembers(type(self), predicate=inspect.isfunction):
            func = getattr(member, "_num_iterations_func", None)
            if func is not None:
                total += int(func(self))
        return total

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.run.log_metrics(step, metrics)

    # ------------------------------------------------------------------------------
    # Episode pictures

    EPISODE_PICTURES_PER_SAMPLE: ClassVar[int] = 4
    """Episodes of each rollout sample drawn while training: drawing one takes a
    sizeable fraction of a second, which a run keeping many samples would spend in
    every sampled iteration (the sample keeps them all; ``nip report --episodes N``
    draws more)."""

    def draw_episodes(
        self, episodes: Sequence[Mapping[str, Any]], iteration: int
    ) -> list[Path]:
        """Draw the first :attr:`EPISODE_PICTURES_PER_SAMPLE` of ``episodes`` (as a
        rollout sample file holds them) with the scenario's episode renderer, if it
        has one, to ``plots/iter_{iteration:06d}_{k}.png``; return the pictures
        written.

        A renderer is a plugin's drawing code, and a picture is not worth a run: a
        renderer that raises does not stop training. A :class:`PluginWarning` says
        which renderer failed and why, what it left of the failed picture is
        removed, and the run draws no more pictures (its rollout samples are kept,
        and ``nip report --episodes N`` draws them once the renderer is fixed).
        """
        if getattr(self, "_episode_renderer_failed", False) or not episodes:
            return []
        from nip_core.plugins import get_plugin_manager
        from nip_core.records import resolve_ref

        spec = get_plugin_manager().episode_renderers.get(
            self.hyper_params.scenario, None
        )
        if spec is None:
            return []
        plots_dir = self.run.run_dir.plots_dir
        written: list[Path] = []
        path = None
        try:
            renderer = resolve_ref(spec.renderer)
            plots_dir.mkdir(parents=True, exist_ok=True)
            for k, episode in enumerate(episodes[: self.EPISODE_PICTURES_PER_SAMPLE]):
                path = plots_dir / f"iter_{iteration:06d}_{k}.png"
                renderer(episode, path)
                if path.is_file():
                    written.append(path)
        except Exception as error:
            import contextlib
            import warnings

            from nip_core.plugins import PluginWarning

            self._episode_renderer_failed = True
            if path is not None:  # what the renderer left of the failed picture
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            warnings.warn(
                f"the {self.hyper_params.scenario!r} episode renderer of plugin "
                f"{spec.plugin!r} ({spec.renderer}) failed at iteration {iteration}: "
                f"{type(error).__name__}: {error}. Training goes on without episode "
                "pictures; the rollout samples are kept, and `nip report "
                "--episodes N` draws them once the renderer works",
                PluginWarning,
                stacklevel=2,
            )
        return written

    # ------------------------------------------------------------------------------
    # Checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training, besides the RNG states (saved by
        the checkpoint itself). Subclasses extend the dict."""
        return {"iteration": self.iteration}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.iteration = int(state["iteration"])

    def saves_checkpoints(self) -> bool:
        """Whether this trainer writes checkpoints: not in in-memory runs or test
        runs (sharded across processes, the processes of the writing run take part:
        rank 0 gathers and writes)."""
        writes = (
            self.run.writes_files
            if getattr(self, "sharding", None) is None
            else self.sharding.main_writes_files
        )
        return writes and not self.settings.test_run

    def checkpoint_on_interrupt(self) -> AbstractContextManager:
        """The context of a training loop in which Ctrl-C stops the run at the end
        of the current iteration, after its checkpoint (see
        :meth:`maybe_save_checkpoint`); a no-op for trainers that save none.

        :meth:`TensorDictTrainer._build_train_context` enters it; a trainer with a
        loop of its own enters it around the loop, which must call
        :meth:`maybe_save_checkpoint` after every iteration.
        """
        if not self.saves_checkpoints():
            return nullcontext()
        return self.run.deferred_interrupts(
            on_leave=lambda: self.save_checkpoint(self.iteration)
        )

    def save_checkpoint(self, iteration: int) -> None:
        """Save a checkpoint after ``iteration`` completed training iterations.

        Does nothing for in-memory runs and test runs. Logs the checkpoint as an
        artifact (W&B) when a remote logger is on.
        """
        if not self.saves_checkpoints():
            return
        self.iteration = iteration
        # Sharded, every process takes part in building the state (rank 0 gathers
        # the shards' states); only rank 0 writes it
        state = self.state_dict()
        if not self.run.writes_files:
            return
        path = save_checkpoint(self.run.run_dir.checkpoints_dir, iteration, state)
        self.run.checkpoint_iteration = iteration
        from nip_core.runs.wandb_api import checkpoint_alias

        self.run.log_artifact(
            path,
            f"checkpoint-{self.run.run_dir.run_id}",
            "checkpoint",
            aliases=(checkpoint_alias(iteration),),
        )

    def maybe_save_checkpoint(self, iteration: int) -> bool:
        """Checkpoint if ``iteration`` is a multiple of ``checkpoint_period``.

        Call it at the end of every training iteration, where the trainer's state
        is consistent: it is also where a run interrupted by Ctrl-C saves its
        checkpoint and stops.

        Raises
        ------
        KeyboardInterrupt
            When Ctrl-C asked the run to stop (after the checkpoint is saved).
        """
        if self.run.interrupt_requested:
            self.save_checkpoint(iteration)
            raise KeyboardInterrupt
        period = self.settings.checkpoint_period
        if period is not None and iteration % period == 0:
            self.save_checkpoint(iteration)
            return True
        return False

    @classmethod
    def find_resume_point(
        cls, run_dir: RunDirectory, settings: ExperimentSettings
    ) -> ResumePoint | None:
        """Where a run in ``run_dir`` would continue, or ``None`` to start afresh.

        The default reads the newest checkpoint (``checkpoints/latest.pt``);
        trainers that save their state differently override it.
        """
        from nip_core.runs.checkpoints import load_latest_checkpoint

        checkpoint = load_latest_checkpoint(run_dir.checkpoints_dir, settings.device)
        if checkpoint is None:
            return None
        return ResumePoint(
            checkpoint=checkpoint, iteration=int(checkpoint["iteration"])
        )

    def restore_from_checkpoint(self) -> int:
        """Load the run's resume checkpoint, if any; return the iterations done."""
        checkpoint = self.run.resume_checkpoint
        if checkpoint is None:
            return 0
        self.load_state_dict(checkpoint["trainer"])
        restore_rng_state(checkpoint["rng"])
        self.iteration = int(checkpoint["iteration"])
        logger.info("resuming from iteration %d", self.iteration)
        return self.iteration


class TensorDictTrainer(Trainer):
    """Base class of trainers whose data are tensors and TensorDicts.

    Subclasses implement :meth:`train`, usually as a train loop and a test loop
    (both decorated with :func:`attach_progress_bar`), each run inside the stack
    :meth:`_build_train_context` / :meth:`_build_test_context` fill::

        with ExitStack() as stack:
            self._build_train_context(stack)
            self._run_train_loop()
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        import torch

        self.device = torch.device(self.settings.device)

    @property
    def agents(self) -> dict[str, Any]:
        return self.scenario_instance.agents

    def _attention_context(self, train: bool) -> AbstractContextManager | None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        # On CPU, the MATH kernel: for the short sequences of tensor scenarios it
        # is faster than the flash kernel (graph isomorphism's 23 tokens with
        # 4-dimensional heads: 5.9 against 7.9 ms per forward and backward at
        # minibatch 256). On GPUs the memory-efficient kernel is not
        # deterministic, so it is opt-in.
        if self.device.type == "cpu":
            return sdpa_kernel(SDPBackend.MATH) if train else None
        backends = [
            SDPBackend.MATH,
            SDPBackend.CUDNN_ATTENTION,
            SDPBackend.FLASH_ATTENTION,
        ]
        if self.settings.enable_efficient_attention:
            backends.append(SDPBackend.EFFICIENT_ATTENTION)
        return sdpa_kernel(backends)

    def _build_train_context(self, stack: ExitStack) -> list[Any]:
        """Enter the contexts of the training loop into ``stack``; return them.

        Among them :meth:`checkpoint_on_interrupt`: Ctrl-C in the loop stops the
        run at the end of the iteration, with a checkpoint.
        """
        entered = [stack.enter_context(self.checkpoint_on_interrupt())]
        attention = self._attention_context(train=True)
        if attention is not None:
            entered.append(stack.enter_context(attention))
        return entered

    def _build_test_context(self, stack: ExitStack) -> list[Any]:
        """Enter the contexts of the test loop (no gradients) into ``stack``."""
        import torch

        entered = []
        attention = self._attention_context(train=False)
        if attention is not None:
            entered.append(stack.enter_context(attention))
        entered.append(stack.enter_context(torch.no_grad()))
        return entered

    def agents_state_dict(self) -> dict[str, dict[str, Any]]:
        """State dicts of every agent part, by agent then part name."""
        return {
            name: {
                part_name: module.state_dict()
                for part_name, module in agent_part_modules(agent).items()
            }
            for name, agent in self.agents.items()
        }

    def load_agents_state_dict(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        for name, parts in state.items():
            modules = agent_part_modules(self.agents[name])
            for part_name, part_state in parts.items():
                modules[part_name].load_state_dict(part_state)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["agents"] = self.agents_state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.load_agents_state_dict(state["agents"])

    def set_agents_mode(self, train: bool) -> None:
        for agent in self.agents.values():
            for module in agent_part_modules(agent).values():
                module.train(train)
