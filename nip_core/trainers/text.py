"""``PureTextRlTrainer``: the text world's staged training loop.

Every iteration runs these stages, one at a time; after each, the trainer's
:class:`TextTrainerState` is saved (``checkpoints/text_state.json``, atomically) and
a killed run resumes at the stage it stopped in (``nip resume``, no prompt):

``sample_rollouts``
    ``text_rl.rollouts_per_iteration`` episodes on training datapoints drawn in a
    seeded order that continues where the last iteration stopped; saved as
    ``rollouts/iter_000003.jsonl`` (and a transcript), which later stages and a
    resumed run read back.
``log_stats``
    The rollouts' statistics (:mod:`nip_core.text.stats`) and the stage timers.
``test_during_training``
    The test loop, when ``text_rl.test_scheme`` asks for it at this iteration
    (``all``: every iteration; ``first_and_last``: the first).
``create_fine_tune_jobs``
    The subclass's :meth:`PureTextRlTrainer._stage_create_fine_tune_jobs`: select
    examples from the rollouts and start one job per shared model group (job names
    are looked up first, so a resumed run never starts a job twice).
``await_fine_tune_jobs``
    Poll the jobs; each group switches to its new model. A failed job stops the run
    with the backend's error; ``nip resume`` starts it again under a new name.

After the last iteration, ``test`` runs the test loop on the final models (unless
the scheme is ``none``), then the state is ``done``.

Only :meth:`~PureTextRlTrainer._stage_create_fine_tune_jobs` must be written by a
subclass (the ``pure_text_ei`` and ``pure_text_malt`` plugins). Subclasses that
sample differently override :meth:`~PureTextRlTrainer._sample_rollouts` (used by the
test loop too) or only :meth:`~PureTextRlTrainer._sample_training_rollouts`, and
:meth:`~PureTextRlTrainer._get_log_stats` to add statistics.

With ``base_run.base_run_type: rerun_tests``, the trainer instead tests the models
a previous run used, iteration by iteration as the test scheme says.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs

from nip_core.errors import BackendError, BackendWarning, CheckpointError
from nip_core.runs.io import atomic_write_json
from nip_core.seeding import derive_seed
from nip_core.text.analysis import (
    RolloutAnalyser,
    analyse_rollouts,
    build_rollout_analysers,
)
from nip_core.text.backend import (
    FineTuneJob,
    FineTuneJobNotFoundError,
    PreferenceExample,
)
from nip_core.text.data import draw_indices
from nip_core.text.groups import SharedModelGroup, SharedModelGroupState
from nip_core.text.rollouts import TextRollouts
from nip_core.text.sampling import TurnProgress, sample_rollouts
from nip_core.text.stats import text_rollout_statistics
from nip_core.trainers.base import (
    IterationContext,
    ResumePoint,
    Trainer,
    attach_progress_bar,
)

__all__ = ["STAGES", "TEXT_STATE_FILE", "PureTextRlTrainer", "TextTrainerState"]

MAX_LOST_JOBS = 3
"""How many times in a row a group's job may be lost (the backend answering that it
does not know it) and be created again before the run stops."""

STAGES: tuple[str, ...] = (
    "sample_rollouts",
    "log_stats",
    "test_during_training",
    "create_fine_tune_jobs",
    "await_fine_tune_jobs",
    "test",
    "done",
)
"""The stages, in the order an iteration runs them (``test`` and ``done`` at the
end)."""

TEXT_STATE_FILE = "text_state.json"
"""The staged trainer's state, in the run directory's ``checkpoints/``."""

STATE_FORMAT = 1


@attrs.define(kw_only=True)
class TextTrainerState:
    """What a staged text trainer carries from stage to stage (saved as JSON).

    Parameters
    ----------
    iteration : int
        The iteration being run (completed iterations, once ``test`` is reached).
    train_loop_stage : str
        The stage to run next (one of :data:`STAGES`).
    shared_model_groups : dict[str, SharedModelGroupState]
        Each group's models and job in flight.
    train_data_offset : int
        Training datapoints drawn so far (the seeded order continues from here).
    metrics_records : int
        Metric records logged when the state was saved (a resumed run drops any
        logged after).
    timings : dict[str, float]
        The current iteration's stage timers (seconds), logged with its metrics.
    fine_tune_summary : dict[str, Any]
        What the current iteration's fine-tune stage decided (logged after it).
    base_run_state_artifact_version : int
        When re-running a base run's tests: the next of its models to test.
    extra : dict[str, Any]
        A subclass's own JSON-able state.
    """

    iteration: int = 0
    train_loop_stage: str = "sample_rollouts"
    shared_model_groups: dict[str, SharedModelGroupState] = attrs.field(factory=dict)
    train_data_offset: int = 0
    metrics_records: int = 0
    timings: dict[str, float] = attrs.field(factory=dict)
    fine_tune_summary: dict[str, Any] = attrs.field(factory=dict)
    base_run_state_artifact_version: int = 0
    extra: dict[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["shared_model_groups"] = {
            name: group.to_dict() for name, group in self.shared_model_groups.items()
        }
        data["format"] = STATE_FORMAT
        return json.loads(json.dumps(data))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextTrainerState:
        if data.get("format") != STATE_FORMAT:
            raise CheckpointError(
                f"unknown text trainer state format {data.get('format')!r} (this "
                f"version reads format {STATE_FORMAT})"
            )
        fields = {f.name for f in attrs.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["shared_model_groups"] = {
            name: SharedModelGroupState.from_dict(group)
            for name, group in data.get("shared_model_groups", {}).items()
        }
        state = cls(**values)
        if state.train_loop_stage not in STAGES:
            raise CheckpointError(
                f"the saved text trainer state names an unknown stage "
                f"{state.train_loop_stage!r}; stages: {', '.join(STAGES)}"
            )
        return state


_NAMES_ITS_SETTING = re.compile(r"[a-z_]+_backend\.[a-z_.]+: ")
"""A backend error that opens with the dotted path of the setting it is about."""


def _num_iterations(trainer: PureTextRlTrainer) -> int:
    return trainer.num_iterations


def _iterations_done(trainer: PureTextRlTrainer) -> int:
    return trainer.state.iteration


class PureTextRlTrainer(Trainer):
    """Base class of text-world trainers (see the module docstring).

    Subclasses implement :meth:`_stage_create_fine_tune_jobs`.
    """

    trainer_type: ClassVar[str] = "text"
    State: ClassVar[type[TextTrainerState]] = TextTrainerState

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        instance = self.scenario_instance
        self.train_environment = instance.train_environment
        self.test_environment = instance.test_environment
        if self.train_environment is None or self.test_environment is None:
            raise CheckpointError(
                f"scenario {self.hyper_params.scenario!r} gives no environment "
                "class; text scenarios need one (nip_core.text.environment."
                "TextEnvironment or a subclass) in their ScenarioSpec"
            )
        self.state = self.State(
            shared_model_groups={
                name: group.state for name, group in self.shared_model_groups.items()
            }
        )
        self._rollouts: dict[tuple[str, int], TextRollouts] = {}
        self._checked_models = False

    # ----------------------------------------------------------------------------------
    # Shortcuts

    @property
    def text_rl(self) -> Any:
        return self.hyper_params.text_rl

    @property
    def agents(self) -> dict[str, Any]:
        return self.scenario_instance.agents

    @property
    def shared_model_groups(self) -> dict[str, SharedModelGroup]:
        return self.scenario_instance.shared_model_groups

    @property
    def num_iterations(self) -> int:
        return 1 if self.settings.test_run else int(self.text_rl.num_iterations)

    @property
    def rollouts_per_iteration(self) -> int:
        return 2 if self.settings.test_run else int(self.text_rl.rollouts_per_iteration)

    @property
    def run_id(self) -> str:
        """The run's id (fine-tune job names derive from it)."""
        if self.run.run_dir is not None:
            return self.run.run_dir.run_id
        if self.settings.run_id:
            return str(self.settings.run_id)
        run_id = self.__dict__.get("_memory_run_id")
        if run_id is None:
            from nip_core.runs.run_dir import new_run_id

            run_id = self.__dict__["_memory_run_id"] = new_run_id()
        return run_id

    @property
    def writes_files(self) -> bool:
        return self.run.writes_files and not self.settings.test_run

    # ----------------------------------------------------------------------------------
    # State

    @classmethod
    def state_path(cls, run_dir: Any) -> Path:
        return Path(run_dir.checkpoints_dir) / TEXT_STATE_FILE

    @classmethod
    def find_resume_point(cls, run_dir: Any, settings: Any) -> ResumePoint | None:
        path = cls.state_path(run_dir)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"could not read {path}: {error}") from error
        state = cls.State.from_dict(data)
        return ResumePoint(
            checkpoint=data,
            iteration=state.iteration,
            metrics_records=state.metrics_records,
        )

    def state_dict(self) -> dict[str, Any]:
        return self.state.to_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.state = self.State.from_dict(state)
        for name, group_state in self.state.shared_model_groups.items():
            if name not in self.shared_model_groups:
                raise CheckpointError(
                    f"the saved state has shared model group {name!r}, which this "
                    f"experiment does not ({', '.join(self.shared_model_groups)})"
                )
            group = self.shared_model_groups[name]
            group.state = group_state
            # the models its fine-tune jobs made, for backends that route by model
            for model in {*group_state.model_history, group_state.model_name}:
                if model != group_state.base_model_name:
                    group.backend.note_fine_tuned_model(model)
        self.iteration = self.state.iteration

    def save_state(self) -> None:
        """Save the state (after every stage)."""
        self.state.metrics_records = self.run.metrics_records
        self.state.shared_model_groups = {
            name: group.state for name, group in self.shared_model_groups.items()
        }
        self.iteration = self.state.iteration
        if self.writes_files:
            atomic_write_json(self.state_path(self.run.run_dir), self.state.to_dict())
            self.run.checkpoint_iteration = self.state.iteration
            self.run.checkpoint_note = (
                f"stage {self.state.train_loop_stage!r} of iteration "
                f"{self.state.iteration}"
            )

    def _go_to(self, stage: str) -> None:
        self.state.train_loop_stage = stage
        self.save_state()
        self.run.run_stage_callbacks(self, self.state.iteration, stage)

    # ----------------------------------------------------------------------------------
    # Rollout files

    def rollouts_path(self, split: str, iteration: int) -> Path | None:
        """Where an iteration's rollouts are saved (``None`` for in-memory runs)."""
        if not self.writes_files:
            return None
        prefix = "" if split == "train" else f"{split}_"
        return self.run.run_dir.rollouts_dir / f"{prefix}iter_{iteration:06d}.jsonl"

    def save_rollouts(self, rollouts: TextRollouts, split: str, iteration: int) -> None:
        self._rollouts[(split, iteration)] = rollouts
        path = self.rollouts_path(split, iteration)
        if path is None:
            return
        if self.text_rl.save_transcripts:
            rollouts.write_transcript(path.with_suffix(".transcript.txt"))
        rollouts.save_jsonl(path)

    def _render_episodes(self, rollouts: TextRollouts, iteration: int) -> None:
        """Every ``run.rollout_sample_period`` iterations, draw the first of the
        iteration's training episodes (at most ``run.num_rollout_samples``) with
        :meth:`draw_episodes`: each is given the episode as its line of the
        rollouts file holds it."""
        period = self.settings.rollout_sample_period
        if period is None or not self.writes_files or iteration % period != 0:
            return
        count = min(
            self.EPISODE_PICTURES_PER_SAMPLE,
            int(self.settings.num_rollout_samples),
            rollouts.batch_size,
        )
        self.draw_episodes([rollouts.episode_dict(k) for k in range(count)], iteration)

    def load_rollouts(self, split: str, iteration: int) -> TextRollouts:
        """An iteration's rollouts, from memory or the run directory."""
        cached = self._rollouts.get((split, iteration))
        if cached is not None:
            return cached
        path = self.rollouts_path(split, iteration)
        if path is None or not path.is_file():
            raise CheckpointError(
                f"the {split} rollouts of iteration {iteration} are missing "
                f"({path}); the run cannot continue from its saved state"
            )
        rollouts = TextRollouts.load_jsonl(path)
        self._rollouts[(split, iteration)] = rollouts
        return rollouts

    def rollouts_for_fine_tuning(self, iteration: int | None = None) -> TextRollouts:
        """The training rollouts to fine-tune on at ``iteration`` (the current one):
        those of every iteration so far with ``text_rl.
        fine_tune_on_all_previous_rollouts``, else the iteration's own."""
        iteration = self.state.iteration if iteration is None else iteration
        if not self.text_rl.fine_tune_on_all_previous_rollouts:
            return self.load_rollouts("train", iteration)
        return TextRollouts.concatenate(
            [self.load_rollouts("train", i) for i in range(iteration + 1)]
        )

    # ----------------------------------------------------------------------------------
    # Sampling

    def _progress(self, description: str) -> tuple[Any, TurnProgress]:
        """A tqdm bar of turns and the :class:`~nip_core.text.sampling.
        TurnProgress` that moves it: its total is the turns the sampling
        announces, which fall to the turns played as episodes end early."""
        from tqdm.auto import tqdm

        bar = tqdm(
            desc=description,
            unit="turn",
            disable=not self.settings.show_progress,
            leave=False,
            dynamic_ncols=True,
            # every turn shown: a batch's turns end together, and tqdm's default
            # (at most one refresh per 0.1 s, then fewer as it learns the rate)
            # showed the first of each batch only, minutes behind on a CPU
            mininterval=0,
            miniters=1,
        )

        def expect(n: int) -> None:
            bar.total = (bar.total or 0) + n
            bar.refresh()

        return bar, TurnProgress(advance=bar.update, expect=expect)

    def _sample_rollouts(
        self, environment: Any, datapoint_indices: Sequence[int], iteration: int
    ) -> TextRollouts:
        """Play one episode per datapoint (used for training and testing)."""
        bar, update = self._progress(
            f"Sampling {environment.split} rollouts (iteration {iteration})"
        )
        try:
            return sample_rollouts(
                environment,
                self.agents,
                datapoint_indices,
                iteration=iteration,
                progress=update,
            )
        finally:
            bar.close()

    def _sample_training_rollouts(
        self, datapoint_indices: Sequence[int], iteration: int
    ) -> TextRollouts:
        """The training rollouts of an iteration, on the datapoints drawn for it.

        By default one episode per datapoint (:meth:`_sample_rollouts`). A trainer
        that samples training episodes differently (MALT's response trees)
        overrides this; the test loop keeps :meth:`_sample_rollouts`. A long
        sampling may save partial work and ``self.save_state()`` in between: a
        killed run comes back to this stage with the same datapoints.
        """
        return self._sample_rollouts(
            self.train_environment, datapoint_indices, iteration
        )

    def check_models(self, fine_tuning: bool = True) -> None:
        """Ask each backend whether it knows its groups' current models and, when
        ``fine_tuning``, whether it can fine-tune the models that the groups which
        train start from (once)."""
        if self._checked_models:
            return
        for group in self.shared_model_groups.values():
            with self._naming_group(group):
                group.backend.check_model(group.model_name)
                if fine_tuning and not group.frozen:
                    base = (
                        group.state.base_model_name
                        if group.fine_tune_from_scratch
                        else group.model_name
                    )
                    group.backend.check_fine_tune_model(base)
        self._checked_models = True

    @staticmethod
    @contextlib.contextmanager
    def _naming_group(group: Any) -> Iterator[None]:
        """A backend's error about a group's model, led by the settings it came
        from (``agents.<name>.model_name``), or by the group when its model is one
        it was fine-tuned to."""
        try:
            yield
        except BackendError as error:
            if _NAMES_ITS_SETTING.match(str(error)):
                # about a backend setting (transformers_backend.lora_target_modules),
                # which the message names: the agents' model_name is not the cause
                raise
            configured = {
                str(agent.agent_params.model_name) for agent in group.agents.values()
            }
            if group.model_name in configured:
                where = ", ".join(
                    f"agents.{name}.model_name" for name in group.agent_names
                )
            else:
                where = f"shared model group {group.name!r} (its fine-tuned model)"
            raise BackendError(f"{where}: {error}") from None

    # ----------------------------------------------------------------------------------
    # Statistics

    def _get_log_stats(
        self, rollouts: TextRollouts, *, train: bool = True
    ) -> dict[str, Any]:
        """The statistics logged for a batch of rollouts (``test_`` prefixed for
        tests). Subclasses may add to the dict."""
        prefix = "" if train else "test_"
        stats = text_rollout_statistics(rollouts, prefix=prefix)
        stats[f"{prefix}num_rollouts"] = rollouts.batch_size
        stats.update(analyse_rollouts(self.rollout_analysers, rollouts, prefix))
        return stats

    @property
    def rollout_analysers(self) -> dict[str, RolloutAnalyser]:
        """The analysers of ``text_rl.rollout_analysers`` (built on first use)."""
        analysers = self.__dict__.get("_rollout_analysers")
        if analysers is None:
            analysers = build_rollout_analysers(
                self.text_rl.rollout_analysers, self.hyper_params, self.settings
            )
            self.__dict__["_rollout_analysers"] = analysers
        return analysers

    def close_rollout_analysers(self) -> None:
        """Release the analysers (called when training ends, however it ends)."""
        for analyser in self.__dict__.pop("_rollout_analysers", {}).values():
            analyser.close()

    # ----------------------------------------------------------------------------------
    # The loop

    def train(self) -> None:
        try:
            self._train()
        finally:
            self.close_rollout_analysers()

    def _train(self) -> None:
        resume = self.run.resume_checkpoint
        if resume is not None:
            self.load_state_dict(resume)
        base = self.run.base_checkpoint
        if base is not None and self._is_rerun_tests():
            self._rerun_tests(base)
            return
        if self.state.train_loop_stage == "done":
            return
        self._run_train_loop()

    @attach_progress_bar(_num_iterations, initial_func=_iterations_done)
    def _run_train_loop(self, iteration_context: IterationContext) -> None:
        stages: dict[str, Callable[[], str]] = {
            "sample_rollouts": self._stage_sample_rollouts,
            "log_stats": self._stage_log_stats,
            "test_during_training": self._stage_test_during_training,
            "create_fine_tune_jobs": self._run_create_fine_tune_jobs,
            "await_fine_tune_jobs": self._stage_await_fine_tune_jobs,
            "test": self._stage_test,
        }
        while self.state.train_loop_stage != "done":
            stage = self.state.train_loop_stage
            iteration_context.set_description(
                f"Iteration {self.state.iteration}: {stage.replace('_', ' ')}"
            )
            iteration_before = self.state.iteration
            next_stage = stages[stage]()
            self._go_to(next_stage)
            if self.state.iteration > iteration_before:
                iteration_context.step()
                metrics = self.run.history[-1] if self.run.history else {}
                self.run.run_callbacks(self, iteration_before, metrics)

    def _stage_sample_rollouts(self) -> str:
        self.check_models()
        iteration = self.state.iteration
        start = time.perf_counter()
        for group in self.shared_model_groups.values():
            group.record_iteration(iteration)
        dataset = self.train_environment.dataset
        count = self.rollouts_per_iteration
        indices = draw_indices(
            int(self.hyper_params.seed),
            "text_data/train",
            len(dataset),
            self.state.train_data_offset,
            count,
        )
        rollouts = self._sample_training_rollouts(indices, iteration)
        self.save_rollouts(rollouts, "train", iteration)
        self._render_episodes(rollouts, iteration)
        self.state.train_data_offset += count
        self.state.timings = {"sample_rollouts_s": time.perf_counter() - start}
        self.state.fine_tune_summary = {}
        return "log_stats"

    def _stage_log_stats(self) -> str:
        iteration = self.state.iteration
        rollouts = self.load_rollouts("train", iteration)
        stats = self._get_log_stats(rollouts, train=True)
        for name, group in self.shared_model_groups.items():
            stats[f"{name}.num_fine_tunes"] = group.state.num_fine_tunes
        for name, seconds in self.state.timings.items():
            stats[f"timing.{name}"] = seconds
        self.log_metrics(iteration, stats)
        return "test_during_training"

    def test_now(self, iteration: int) -> bool:
        """Whether the test scheme tests during training at ``iteration``."""
        scheme = self.text_rl.test_scheme
        return scheme == "all" or (scheme == "first_and_last" and iteration == 0)

    def _stage_test_during_training(self) -> str:
        if self.test_now(self.state.iteration):
            self._run_test(self.state.iteration)
        return "create_fine_tune_jobs"

    def _run_test(self, step: int) -> dict[str, Any]:
        """Test the agents as they are now; log at ``step``."""
        start = time.perf_counter()
        dataset = self.test_environment.dataset
        count = len(dataset)
        if self.text_rl.num_test_rollouts is not None:
            count = min(count, int(self.text_rl.num_test_rollouts))
        if self.settings.test_run:
            count = min(count, 2)
        indices = list(range(count))
        rollouts = self._sample_rollouts(self.test_environment, indices, step)
        self.save_rollouts(rollouts, "test", step)
        stats = self._get_log_stats(rollouts, train=False)
        stats["timing.test_s"] = time.perf_counter() - start
        self.log_metrics(step, stats)
        return stats

    def _run_create_fine_tune_jobs(self) -> str:
        start = time.perf_counter()
        iteration = self.state.iteration
        rollouts = self.load_rollouts("train", iteration)
        # Run again after a failed or lost job: the groups whose jobs of this
        # iteration succeeded are not fine-tuned again, so what their jobs reported
        # (trained tokens, steps, ...) is kept for the iteration's metrics.
        reported = {
            key: value
            for key, value in self.state.fine_tune_summary.items()
            if any(
                key.startswith(f"{name}.")
                and group.state.fine_tuned_iteration == iteration
                for name, group in self.shared_model_groups.items()
            )
        }
        summary = self._stage_create_fine_tune_jobs(rollouts) or {}
        self.state.fine_tune_summary = {**reported, **summary}
        self.state.timings["create_fine_tune_jobs_s"] = time.perf_counter() - start
        return "await_fine_tune_jobs"

    @abstractmethod
    def _stage_create_fine_tune_jobs(self, rollouts: TextRollouts) -> dict[str, Any]:
        """Start one fine-tune job per shared model group (the subclass's rule).

        Use :meth:`create_fine_tune_job` for each group (it skips frozen groups and
        groups with too few examples, and names the job). Return the metrics to log
        after the jobs finish (``{"<group>.num_examples": ...}``).
        """

    def create_fine_tune_job(
        self,
        group: SharedModelGroup,
        method: str,
        examples: Sequence[Any],
        summary: dict[str, Any],
    ) -> FineTuneJob | None:
        """Start (or find) ``group``'s job for this iteration, recording in
        ``summary`` how many examples it has and whether it was fine-tuned.

        Frozen groups and groups with fewer than ``text_rl.min_fine_tune_examples``
        examples keep their model (``<group>.fine_tuned`` is 0).
        """
        name = group.name
        summary[f"{name}.num_examples"] = len(examples)
        if group.frozen:
            summary[f"{name}.fine_tuned"] = 0
            return None
        if len(examples) < int(self.text_rl.min_fine_tune_examples):
            summary[f"{name}.fine_tuned"] = 0
            summary[f"{name}.too_few_examples"] = 1
            return None
        summary[f"{name}.fine_tuned"] = 1
        iteration = self.state.iteration
        if group.state.fine_tuned_iteration == iteration:
            # its job of this iteration succeeded before the run stopped
            return None
        if group.state.job_id is not None:
            # created before a kill: the state remembers it
            try:
                return group.get_fine_tune_job()
            except FineTuneJobNotFoundError as error:
                self._lost_job(group, error)
        seed = derive_seed(int(self.hyper_params.seed), f"fine_tune/{iteration}/{name}")
        if method == "dpo":
            pairs = [
                e
                if isinstance(e, PreferenceExample)
                else PreferenceExample.from_dict(e)
                for e in examples
            ]
            return group.create_dpo_fine_tune_job(
                pairs, run_id=self.run_id, iteration=iteration, seed=seed
            )
        return group.create_supervised_fine_tune_job(
            examples, run_id=self.run_id, iteration=iteration, seed=seed
        )

    def _lost_job(self, group: SharedModelGroup, error: Exception) -> None:
        """A job the backend no longer knows (an endpoint restarted or moved):
        forget it, so that it is created again under its next name."""
        warnings.warn(
            f"fine-tune job {group.state.job_id} ({group.state.job_name}) of shared "
            f"model group {group.name!r} is no longer known to the backend ({error}); "
            "starting it again",
            BackendWarning,
            stacklevel=2,
        )
        group.abandon_failed_job()
        # saved as the fine-tune stage (as a failed job is): a run stopped from
        # here on, by this error or a kill, creates the job again when resumed; a
        # state saved at the await stage would wait for the other groups' jobs
        # only and go on with this group never fine-tuned
        self.state.train_loop_stage = "create_fine_tune_jobs"
        self.save_state()
        if group.state.job_attempt > MAX_LOST_JOBS:
            raise BackendError(
                f"the fine-tune jobs of shared model group {group.name!r} were lost "
                f"{group.state.job_attempt} times in iteration {self.state.iteration} "
                f"(last: {error}); check the endpoint, then `nip resume` starts the "
                "job again"
            )

    def _stage_await_fine_tune_jobs(self) -> str:
        start = time.perf_counter()
        interval = float(self.hyper_params.text_backend.fine_tune_poll_interval)
        waiting = {
            name: group
            for name, group in self.shared_model_groups.items()
            if group.has_job
        }
        while waiting:
            for name, group in list(waiting.items()):
                try:
                    job = group.get_fine_tune_job()
                except FineTuneJobNotFoundError as error:
                    # start it again (the groups whose jobs succeeded are kept)
                    self._lost_job(group, error)
                    return "create_fine_tune_jobs"
                if not job.finished:
                    continue
                if job.status == "succeeded":
                    # what the backend reports of the job (examples it left out
                    # for length, steps, loss) is logged with the group's count
                    self._record_job_metrics(group, job)
                    group.switch_to_next_model(job)
                    group.state.fine_tuned_iteration = self.state.iteration
                    del waiting[name]
                    continue
                group.abandon_failed_job()
                self.state.train_loop_stage = "create_fine_tune_jobs"
                self.save_state()
                raise BackendError(
                    f"fine-tune job {job.id} ({job.name}) of shared model group "
                    f"{name!r} {job.status}: {job.error or 'no reason given'}. "
                    "`nip resume` starts it again, with the run's settings."
                )
            if waiting:
                time.sleep(interval)
        self.state.timings["await_fine_tune_jobs_s"] = time.perf_counter() - start
        record = {f"fine_tune.{k}": v for k, v in self.state.fine_tune_summary.items()}
        for name in ("create_fine_tune_jobs_s", "await_fine_tune_jobs_s"):
            record[f"timing.{name}"] = self.state.timings.get(name, 0.0)
        self.log_metrics(self.state.iteration, record)
        self.state.iteration += 1
        if self.state.iteration < self.num_iterations:
            return "sample_rollouts"
        return "test"

    def _record_job_metrics(self, group: SharedModelGroup, job: FineTuneJob) -> None:
        """Add what the backend reports of ``group``'s succeeded job to the
        iteration's fine-tune summary, never over what the trainer recorded.

        A resumed fine-tune stage keeps the trainer's values over the reported ones
        (see :meth:`_run_create_fine_tune_jobs`), so letting a reported figure win
        here would make an uninterrupted run log other values than a resumed one.
        """
        summary = self.state.fine_tune_summary
        for key, value in job.metrics.items():
            metric = f"{group.name}.{key}"
            if metric in summary:
                warnings.warn(
                    f"the {group.backend.name} backend reports the fine-tune figure "
                    f"{key!r} of shared model group {group.name!r}, a name the "
                    "trainer records itself: the trainer's value is logged (rename "
                    "the backend's figure to log both)",
                    BackendWarning,
                    stacklevel=2,
                )
                continue
            summary[metric] = value

    def _stage_test(self) -> str:
        if self.text_rl.test_scheme != "none":
            self._run_test(self.num_iterations)
        return "done"

    # ----------------------------------------------------------------------------------
    # Re-running the tests of a base run

    def _is_rerun_tests(self) -> bool:
        base_run = getattr(self.hyper_params, "base_run", None)
        return getattr(base_run, "base_run_type", "none") == "rerun_tests"

    def rerun_test_iterations(self) -> list[int]:
        """The iterations whose models the test scheme tests (``num_iterations``
        stands for the final models)."""
        scheme = self.text_rl.test_scheme
        final = [self.num_iterations]
        if scheme == "all":
            return [*range(self.num_iterations), *final]
        if scheme == "first_and_last":
            return [0, *final]
        if scheme == "last":
            return final
        return []

    def _rerun_tests(self, base: Mapping[str, Any]) -> None:
        base_state = self.State.from_dict(base)
        iterations = self.rerun_test_iterations()
        while self.state.base_run_state_artifact_version < len(iterations):
            step = iterations[self.state.base_run_state_artifact_version]
            for name, group in self.shared_model_groups.items():
                saved = base_state.shared_model_groups.get(name)
                if saved is None:
                    raise CheckpointError(
                        f"the base run has no shared model group {name!r}"
                    )
                history = saved.model_history
                group.state.model_name = (
                    history[step] if step < len(history) else saved.model_name
                )
            self._checked_models = False
            self.check_models(fine_tuning=False)
            self._run_test(step)
            self.state.base_run_state_artifact_version += 1
            self.save_state()
        self.state.train_loop_stage = "done"
        self.save_state()
