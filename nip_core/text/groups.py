"""Shared model groups: text agents that share one model and one fine-tune job.

Agents whose parameters name the same ``shared_model_group`` (each agent is its own
group by default) are conditioned by their system prompts on one underlying model. A
trainer fine-tunes groups, not agents: per iteration, one job per group, on the
examples of all its agents.

A :class:`SharedModelGroup` keeps its state in a :class:`SharedModelGroupState`
(saved in the staged trainer's JSON state after every stage): the model it uses now,
the model of every iteration so far, and the fine-tune job in flight. Job names come
from the run id, iteration, group and attempt (:func:`fine_tune_job_name`); a name is
looked up with the backend before a job is created, so a run resumed after a kill
picks up its job instead of starting a second one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from nip_core.errors import BackendError, NipConfigError
from nip_core.text.backend import (
    FineTuneJob,
    FineTuneRequest,
    PreferenceExample,
    TextBackend,
    build_backend,
)

if TYPE_CHECKING:
    from nip_core.text.agents import TextWholeAgent

__all__ = [
    "SharedModelGroup",
    "SharedModelGroupState",
    "build_shared_model_groups",
    "fine_tune_job_name",
]


def fine_tune_job_name(run_id: str, iteration: int, group: str, attempt: int) -> str:
    """The name of a group's fine-tune job: unique per run, iteration and attempt."""
    name = f"nip-{run_id}-it{iteration}-{group}"
    return name if attempt == 0 else f"{name}-retry{attempt}"


@attrs.define(kw_only=True)
class SharedModelGroupState:
    """What a shared model group carries from stage to stage (JSON-able).

    Parameters
    ----------
    model_name : str
        The model the group's agents use now.
    base_model_name : str
        The model the group started from (``model_name`` of its agents).
    model_history : list[str]
        The model used in each iteration so far (index = iteration).
    job_id, job_name, job_method : str | None
        The fine-tune job in flight, if any.
    job_attempt : int
        How many jobs of the current iteration failed before (named ``-retryN``).
    num_fine_tunes : int
        Jobs that succeeded so far.
    fine_tuned_iteration : int | None
        The iteration whose job last succeeded: a run stopped while another
        group's job of that iteration was still running does not fine-tune this
        group twice when it resumes.
    """

    model_name: str
    base_model_name: str
    model_history: list[str] = attrs.field(factory=list)
    job_id: str | None = None
    job_name: str | None = None
    job_method: str | None = None
    job_attempt: int = 0
    num_fine_tunes: int = 0
    fine_tuned_iteration: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SharedModelGroupState:
        fields = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


class SharedModelGroup:
    """Text agents sharing one model (see the module docstring).

    Parameters
    ----------
    name : str
        The group's name.
    agents : Mapping[str, TextWholeAgent]
        Its agents, by name.
    backend : TextBackend
        The backend that serves and fine-tunes the model.
    """

    def __init__(
        self, name: str, agents: Mapping[str, TextWholeAgent], backend: TextBackend
    ):
        if not agents:
            raise ValueError(f"shared model group {name!r} has no agent")
        self.name = name
        self.agents = dict(agents)
        self.backend = backend
        params = next(iter(self.agents.values())).agent_params
        self.frozen = bool(params.freeze_agent)
        self.fine_tune_from_scratch = bool(params.fine_tune_from_scratch)
        self.state = SharedModelGroupState(
            model_name=params.model_name, base_model_name=params.model_name
        )
        for agent in self.agents.values():
            agent.group = self

    @property
    def agent_names(self) -> list[str]:
        return list(self.agents)

    @property
    def model_name(self) -> str:
        """The model the group's agents use now."""
        return self.state.model_name

    @property
    def has_job(self) -> bool:
        """Whether a fine-tune job is in flight."""
        return self.state.job_id is not None

    def model_at_iteration(self, iteration: int) -> str:
        """The model the group used in ``iteration`` (the current one if later)."""
        history = self.state.model_history
        if iteration < len(history):
            return history[iteration]
        return self.state.model_name

    def record_iteration(self, iteration: int) -> None:
        """Remember the model used in ``iteration`` (idempotent)."""
        history = self.state.model_history
        del history[iteration:]
        history.extend([self.state.model_name] * (iteration + 1 - len(history)))

    # ----------------------------------------------------------------------------------
    # Fine-tuning

    def _create_job(
        self,
        method: str,
        examples: Sequence[Any],
        run_id: str,
        iteration: int,
        seed: int | None = None,
    ) -> FineTuneJob:
        if self.frozen:
            raise BackendError(
                f"shared model group {self.name!r} is frozen (freeze_agent): it is "
                "never fine-tuned"
            )
        name = fine_tune_job_name(run_id, iteration, self.name, self.state.job_attempt)
        job = self.backend.find_fine_tune_job(name)
        if job is not None and job.status in ("failed", "cancelled"):
            # it ended while the run was down, before the run had recorded it
            # (else the await stage would have abandoned it): nothing else will
            # ever delete its uploads
            try:
                self.backend.cleanup_fine_tune_job(job.id)
            except BackendError:
                pass
            job = None
        if job is None:
            base = (
                self.state.base_model_name
                if self.fine_tune_from_scratch
                else self.state.model_name
            )
            job = self.backend.create_fine_tune_job(
                FineTuneRequest(
                    name=name,
                    base_model=base,
                    method=method,
                    examples=examples,
                    seed=seed,
                )
            )
        self.state.job_id = job.id
        self.state.job_name = name
        self.state.job_method = method
        return job

    def create_supervised_fine_tune_job(
        self,
        chats: Sequence[Sequence[Mapping[str, str]]],
        *,
        run_id: str,
        iteration: int,
        seed: int | None = None,
    ) -> FineTuneJob:
        """Start (or find) the group's supervised job on whole chats."""
        return self._create_job("supervised", chats, run_id, iteration, seed)

    def create_dpo_fine_tune_job(
        self,
        pairs: Sequence[PreferenceExample],
        *,
        run_id: str,
        iteration: int,
        seed: int | None = None,
    ) -> FineTuneJob:
        """Start (or find) the group's preference (DPO) job."""
        return self._create_job("dpo", pairs, run_id, iteration, seed)

    def get_fine_tune_job(self) -> FineTuneJob:
        """The state of the job in flight."""
        if self.state.job_id is None:
            raise BackendError(f"shared model group {self.name!r} has no job in flight")
        return self.backend.get_fine_tune_job(self.state.job_id)

    def get_fine_tune_job_status(self) -> str:
        """``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        return self.get_fine_tune_job().status

    def get_fine_tune_job_error(self) -> str | None:
        """Why the job in flight failed, if it did."""
        return self.get_fine_tune_job().error

    def switch_to_next_model(self, job: FineTuneJob | None = None) -> str:
        """Use the model the finished job made; delete the job's uploads.

        Returns the new model's id.
        """
        job = job if job is not None else self.get_fine_tune_job()
        if job.status != "succeeded" or not job.fine_tuned_model:
            raise BackendError(
                f"fine-tune job {job.id} of shared model group {self.name!r} has not "
                f"succeeded (status {job.status})"
            )
        try:
            self.backend.cleanup_fine_tune_job(job.id)
        finally:
            self.state.model_name = job.fine_tuned_model
            self.state.job_id = None
            self.state.job_name = None
            self.state.job_method = None
            self.state.job_attempt = 0
            self.state.num_fine_tunes += 1
        return self.state.model_name

    def abandon_failed_job(self) -> None:
        """Forget a failed job, so the next attempt gets a fresh name."""
        if self.state.job_id is not None:
            try:
                self.backend.cleanup_fine_tune_job(self.state.job_id)
            except BackendError:
                pass
        self.state.job_id = None
        self.state.job_name = None
        self.state.job_method = None
        self.state.job_attempt += 1

    def __repr__(self) -> str:
        return (
            f"SharedModelGroup({self.name!r}, agents={self.agent_names}, "
            f"model={self.model_name!r}, backend={self.backend.name!r})"
        )


def backend_name(agent_params: Any, hyper_params: Any) -> str:
    """The text backend an agent uses: its own ``backend``, else
    ``text_backend.name``."""
    backend = getattr(agent_params, "backend", None)
    if backend:
        return str(backend)
    return str(hyper_params.text_backend.name)


def build_shared_model_groups(
    hyper_params: Any,
    settings: Any,
    agents: Mapping[str, Any],
    backends: dict[str, TextBackend] | None = None,
) -> tuple[dict[str, SharedModelGroup], dict[str, TextBackend]]:
    """Group the model-backed whole agents and build the backends they use.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment.
    settings : ExperimentSettings
        The run's settings.
    agents : Mapping[str, Agent]
        Every agent (records with a ``whole`` part); random agents join no group.
    backends : dict[str, TextBackend], optional
        Backends already built, by name (reused).

    Returns
    -------
    groups : dict[str, SharedModelGroup]
    backends : dict[str, TextBackend]
    """
    from nip_core.parameters.text import shared_model_group_problems

    backends = dict(backends or {})
    members: dict[str, dict[str, Any]] = {}
    params_by_agent: dict[str, Any] = {}
    for name, agent in agents.items():
        whole = getattr(agent, "whole", agent)
        if not getattr(whole, "uses_model", False):
            continue
        params = whole.agent_params
        params_by_agent[name] = params
        group = getattr(params, "shared_model_group", None) or name
        members.setdefault(group, {})[name] = whole
    problems = shared_model_group_problems(params_by_agent, hyper_params)
    if problems:
        raise NipConfigError(problems)
    groups = {}
    for group_name, group_agents in members.items():
        params = next(iter(group_agents.values())).agent_params
        name = backend_name(params, hyper_params)
        if name not in backends:
            backends[name] = build_backend(name, hyper_params, settings)
        groups[group_name] = SharedModelGroup(group_name, group_agents, backends[name])
        if getattr(params, "load_checkpoint_and_parameters", False):
            # a model another run's fine-tune job may have made (the factory put
            # it in model_name): asked of the endpoint that made it
            backends[name].note_fine_tuned_model(params.model_name)
    return groups, backends


def text_backend_sections(hyper_params: Any, pm: Any = None) -> set[str]:
    """A text run's ``text_backend`` and the own sections of the backends its
    agents use (each agent's ``backend``, else ``text_backend.name``); empty for a
    tensor run."""
    if pm is None:
        from nip_core.plugins import get_plugin_manager

        pm = get_plugin_manager()
    scenario = pm.scenarios.get(hyper_params.scenario, None)
    if scenario is None or getattr(scenario, "data_world", "tensor") != "text":
        return set()
    names = {str(hyper_params.text_backend.name)}
    for agent_params in dict(hyper_params.agents).values():
        names.add(backend_name(agent_params, hyper_params))
    sections = {"text_backend"}
    for name in names:
        spec = pm.text_backends.get(name, None)
        if spec is not None and spec.parameter_section:
            sections.add(spec.parameter_section)
    return sections
