"""Building the components of an experiment: :func:`build_scenario_instance`.

The order follows ``docs/experiment.md``:

1. the protocol handler (protocol registry; scenario specialisations first);
2. the train and test datasets (the scenario's dataset class);
3. the agents, each with its own seed (:func:`nip_core.seeding.derive_seed`): the
   parts the trainer type needs, from the agent-part registry
   (``"<scenario>/<role>"``), optionally loaded from another run's checkpoint;
4. pretrained embeddings the agents' parts ask for (pretrained-model registry);
5. for tensor trainers: the train and test environments, and the parts combined
   across agents.

Which parts an agent gets (``trainer_type``):

``"rl"``
    a body (or a policy body and a value body when ``rl.use_shared_body`` is off and
    there is a critic), a policy head and, with a critic, a value head. Random agents
    get the ``random_policy_head`` and ``constant_value_head`` roles (the core's
    generic classes when the scenario registers none) and their body is frozen.
    With ``pretrain_agents``, non-random agents also get a solo head.
``"solo_agent"``
    a body and a solo head.

Text-world scenarios that register a ``whole`` part get whole agents instead (one
part each, whatever the trainer type; random agents get the ``random_whole`` role,
the core's :class:`~nip_core.text.agents.RandomTextAgent` unless the scenario
registers its own), grouped into shared model groups with the backends they use
(:func:`nip_core.text.groups.build_shared_model_groups`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from nip_core.errors import CheckpointError, ConfigProblem, NipConfigError
from nip_core.records import resolve_ref

logger = logging.getLogger(__name__)

RANDOM_POLICY_HEAD_ROLE = "random_policy_head"
CONSTANT_VALUE_HEAD_ROLE = "constant_value_head"
RANDOM_WHOLE_ROLE = "random_whole"


def _concrete(cls: Any, what: str, spec: Any) -> Any:
    """``cls``, or a :class:`PluginError` when it is an abstract class (a method its
    base requires, such as a text agent's ``system_prompt``, was not written or was
    misspelt): instantiating it would be a bare ``TypeError``."""
    import inspect

    if inspect.isclass(cls) and inspect.isabstract(cls):
        from nip_core.errors import PluginError

        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        plugin = getattr(spec, "plugin", None)
        by = f" (plugin {plugin!r})" if plugin else ""
        raise PluginError(
            f"the {what} registered{by} as {cls.__module__}.{cls.__qualname__} is "
            f"abstract: it does not implement {missing}; write "
            f"{'that method' if ',' not in missing else 'those methods'} in the class"
        )
    return cls


def _trainer_class_and_type(hyper_params: Any) -> tuple[type, str]:
    from nip_core.plugins import get_plugin_manager

    spec = get_plugin_manager().trainers[hyper_params.trainer]
    trainer_class = _concrete(
        resolve_ref(spec.trainer_class), f"trainer {hyper_params.trainer!r}", spec
    )
    trainer_type = getattr(trainer_class, "trainer_type", None) or spec.trainer_type
    return trainer_class, trainer_type


def agent_part_flags(hyper_params: Any, trainer_class: type, trainer_type: str) -> dict:
    """Which parts the agents need: ``use_critic`` and ``use_single_body``."""
    if trainer_type != "rl":
        return {"use_critic": False, "use_single_body": True}
    uses_critic = getattr(trainer_class, "uses_critic", None)
    use_critic = bool(uses_critic(hyper_params)) if uses_critic is not None else True
    shared = bool(getattr(hyper_params.rl, "use_shared_body", True))
    return {"use_critic": use_critic, "use_single_body": shared or not use_critic}


def _part_class(scenario: str, role: str) -> type:
    from nip_core.plugins import get_plugin_manager

    registry = get_plugin_manager().agent_parts
    key = f"{scenario}/{role}"
    if key in registry:
        return _concrete(
            resolve_ref(registry[key].part_class), f"agent part {key!r}", registry[key]
        )
    if role == RANDOM_POLICY_HEAD_ROLE:
        from nip_core.scenario.agents import RandomAgentPolicyHead

        return RandomAgentPolicyHead
    if role == CONSTANT_VALUE_HEAD_ROLE:
        from nip_core.scenario.agents import ConstantAgentValueHead

        return ConstantAgentValueHead
    if role == RANDOM_WHOLE_ROLE:
        from nip_core.text.agents import RandomTextAgent

        return RandomTextAgent
    return resolve_ref(registry[key].part_class)  # raises UnknownKeyError, listing keys


# --------------------------------------------------------------------------------------
# Loading agents from other runs


def _checkpoint_source(agent_params: Any, settings: Any) -> tuple[dict, dict]:
    """``(params_dict, checkpoint)`` of the run an agent loads from."""
    from nip_core.runs.checkpoints import load_checkpoint, numbered_checkpoint_path
    from nip_core.runs.run_dir import RunDirectory

    run_id = agent_params.checkpoint_run_id
    version = agent_params.checkpoint_version
    if agent_params.checkpoint_source == "wandb":
        from nip_core.runs.wandb_api import (
            download_checkpoint,
            fetch_run_config,
            get_wandb_api,
        )

        entity = agent_params.checkpoint_entity or getattr(settings, "wandb_entity", "")
        project = agent_params.checkpoint_project or getattr(
            settings, "wandb_project", ""
        )
        api = get_wandb_api()
        params_dict = fetch_run_config(entity, project, run_id, api=api)
        checkpoint = download_checkpoint(
            entity, project, run_id, version, map_location=settings.device, api=api
        )
        return params_dict, checkpoint
    run_dir = RunDirectory(Path(settings.runs_dir) / run_id)
    params_dict = run_dir.read_hyper_params()
    if version == "latest":
        from nip_core.runs.checkpoints import latest_checkpoint_path

        path = latest_checkpoint_path(run_dir.checkpoints_dir)
    else:
        path = numbered_checkpoint_path(run_dir.checkpoints_dir, int(version))
    if path is None:
        raise CheckpointError(f"run {run_id!r} ({run_dir.path}) has no checkpoint")
    return params_dict, load_checkpoint(path, map_location=settings.device)


def _text_checkpoint_source(
    agent_params: Any, agent_name: str, settings: Any
) -> tuple[dict, str]:
    """``(params_dict, model)`` of the text run a text agent loads from: the other
    run's hyper-parameters and the model its agent's shared model group had at
    ``checkpoint_version`` (``latest``: the last one, its latest fine-tune; an
    iteration number: the model that iteration used), from the run's text state."""
    from nip_core.runs.run_dir import RunDirectory
    from nip_core.trainers.text import TEXT_STATE_FILE

    run_id = agent_params.checkpoint_run_id
    if agent_params.checkpoint_source != "local":
        raise CheckpointError(
            f"agents.{agent_name}: a text agent loads from a run directory only "
            f"(checkpoint_source: local, not {agent_params.checkpoint_source!r}); "
            "or set its model_name to the model that run made"
        )
    run_dir = RunDirectory(Path(settings.runs_dir) / run_id)
    params_dict = run_dir.read_hyper_params()
    path = Path(run_dir.checkpoints_dir) / TEXT_STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"agents.{agent_name}: run {run_id!r} has no text-run state ({path}): "
            "it is not a text run, or it stopped before it saved one"
        ) from None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"could not read {path}: {error}") from error
    saved_agents = params_dict.get("agents") or {}
    saved = saved_agents.get(agent_name, saved_agents.get("_default")) or {}
    group_name = saved.get("shared_model_group") or agent_name
    groups = state.get("shared_model_groups") or {}
    group = groups.get(group_name)
    if not isinstance(group, dict):
        raise CheckpointError(
            f"agents.{agent_name}: run {run_id!r} has no shared model group "
            f"{group_name!r} (its groups: {', '.join(groups) or 'none'}); "
            "the agent was random or not in that run"
        )
    version = str(agent_params.checkpoint_version)
    if version == "latest":
        return params_dict, str(group["model_name"])
    history = list(group.get("model_history") or [])
    if not version.isdigit() or int(version) >= len(history):
        raise CheckpointError(
            f"agents.{agent_name}.checkpoint_version: {version!r} is not an "
            f"iteration of run {run_id!r} (a text agent loads 'latest' or an "
            f"iteration from 0 to {len(history) - 1}: the model that iteration used)"
        )
    return params_dict, str(history[int(version)])


def _load_agent_parameters(
    hyper_params: Any, agent_name: str, saved_params: Mapping[str, Any]
) -> Any:
    """Replace the agent's parameters by the saved ones (keeping ``checkpoint_*``).

    The new parameters are stored under the agent's own name (the old object may be
    the ``_default`` shared with other agents).
    """
    agent_params = hyper_params.agents[agent_name]
    saved_agents = saved_params.get("agents", {})
    saved = saved_agents.get(agent_name, saved_agents.get("_default"))
    if saved is None:
        raise CheckpointError(
            f"the checkpoint run of agent {agent_name!r} has no parameters for it"
        )
    saved = {k: v for k, v in saved.items() if k not in ("_type", "is_random")}
    for name in type(agent_params).LOAD_PRESERVED_PARAMETERS:
        saved[name] = getattr(agent_params, name)
    fields = {f.name for f in attrs.fields(type(agent_params))}
    loaded = type(agent_params).from_dict(
        {k: v for k, v in saved.items() if k in fields}
    )
    # A new entry for this agent only: the old object may be the shared "_default"
    hyper_params.agents[agent_name] = loaded
    return loaded


# --------------------------------------------------------------------------------------
# Agents


def build_agents(
    hyper_params: Any,
    settings: Any,
    protocol_handler: Any,
    trainer_class: type,
    trainer_type: str,
) -> dict[str, Any]:
    """Build every agent of the protocol, in its order (see the module docstring)."""
    from nip_core.plugins import get_plugin_manager
    from nip_core.runs.checkpoints import seed_everything
    from nip_core.scenario.agents import Agent
    from nip_core.seeding import derive_seed

    flags = agent_part_flags(hyper_params, trainer_class, trainer_type)
    scenario = hyper_params.scenario
    pm = get_plugin_manager()
    whole_agents = (
        pm.scenarios[scenario].data_world == "text"
        and f"{scenario}/whole" in pm.agent_parts
    )
    pretrain = bool(getattr(hyper_params, "pretrain_agents", False))
    agents: dict[str, Any] = {}
    for agent_name in protocol_handler.agent_names:
        agent_params = hyper_params.agents[agent_name]
        checkpoint = None
        if getattr(agent_params, "load_checkpoint_and_parameters", False):
            if whole_agents:
                # a text agent: the other run's parameters and model
                saved_params, model = _text_checkpoint_source(
                    agent_params, agent_name, settings
                )
                agent_params = _load_agent_parameters(
                    hyper_params, agent_name, saved_params
                )
                agent_params = attrs.evolve(agent_params, model_name=model)
                hyper_params.agents[agent_name] = agent_params
            else:
                saved_params, checkpoint = _checkpoint_source(agent_params, settings)
                agent_params = _load_agent_parameters(
                    hyper_params, agent_name, saved_params
                )

        seed_everything(derive_seed(int(hyper_params.seed), agent_name))
        is_random = bool(getattr(agent_params, "is_random", False))

        def build(
            role: str, class_role: str | None = None, name: str = agent_name
        ) -> Any:
            cls = _part_class(scenario, class_role or role)
            return cls(
                hyper_params=hyper_params,
                settings=settings,
                agent_name=name,
                protocol_handler=protocol_handler,
            )

        parts: dict[str, Any] = {}
        if whole_agents:
            # Text world: each agent is one whole part (its model backend, or a
            # random text agent)
            role = RANDOM_WHOLE_ROLE if is_random else "whole"
            agents[agent_name] = Agent(
                agent_name=agent_name,
                agent_params=agent_params,
                whole=build("whole", role),
            )
            continue
        if flags["use_single_body"]:
            parts["body"] = build("body")
        else:
            parts["policy_body"] = build("body")
            parts["value_body"] = build("body")
        if trainer_type == "rl":
            if is_random:
                parts["policy_head"] = build("policy_head", RANDOM_POLICY_HEAD_ROLE)
                if flags["use_critic"]:
                    parts["value_head"] = build("value_head", CONSTANT_VALUE_HEAD_ROLE)
            else:
                parts["policy_head"] = build("policy_head")
                if flags["use_critic"]:
                    parts["value_head"] = build("value_head")
        if trainer_type == "solo_agent" or (pretrain and not is_random):
            if is_random:
                raise NipConfigError(
                    ConfigProblem(
                        f"agents.{agent_name}.is_random",
                        "a random agent cannot be trained with the solo_agent trainer",
                        True,
                    )
                )
            parts["solo_head"] = build("solo_head")
        if is_random:
            # A random agent's body is never read by its heads; keep it out of the
            # optimizer
            for role in ("body", "policy_body", "value_body"):
                if role in parts:
                    parts[role].requires_grad_(False)

        agent = Agent(agent_name=agent_name, agent_params=agent_params, **parts)
        if checkpoint is not None:
            saved_agents = checkpoint["trainer"]["agents"]
            if agent_name not in saved_agents:
                raise CheckpointError(
                    f"the checkpoint of run {agent_params.checkpoint_run_id!r} holds "
                    f"no agent {agent_name!r} (it has {', '.join(saved_agents)})"
                )
            saved = saved_agents[agent_name]
            for role, part in agent.parts.items():
                if role in saved:
                    part.load_state_dict(saved[role])
                elif role.endswith("body") and "body" in saved:
                    part.load_state_dict(saved["body"])
        agents[agent_name] = agent
    restrict_body_outputs(agents)
    return agents


BODY_READERS: dict[str, tuple[str, ...]] = {
    "body": ("policy_head", "value_head", "solo_head"),
    "policy_body": ("policy_head", "solo_head"),
    "value_body": ("value_head",),
}
"""The heads that read each body role's outputs."""


def restrict_body_outputs(agents: Mapping[str, Any]) -> None:
    """Tell each body which of its outputs its heads read.

    A body role is restricted to the union, over every agent, of the agent-level
    in-keys its heads declare (the union, so the combined part can stack the same
    keys for every agent). A value body thus skips what only the policy reads (see
    :meth:`nip_core.scenario.agents.AgentBody.restrict_outputs`). Roles whose heads
    read none of the body's outputs (every agent random, say) are left alone.
    """
    from tensordict.utils import unravel_key

    from nip_core.scenario.agents import AgentBody

    for body_role, head_roles in BODY_READERS.items():
        bodies = [getattr(agent, body_role, None) for agent in agents.values()]
        if not bodies or not all(isinstance(b, AgentBody) for b in bodies):
            continue
        read: set = set()
        for agent in agents.values():
            for head_role in head_roles:
                head = getattr(agent, head_role, None)
                for key in getattr(head, "agent_level_in_keys", ()) or ():
                    read.add(unravel_key(key))
        for body in bodies:
            keys = [
                k
                for k in (unravel_key(k) for k in body.agent_level_out_keys)
                if k in read
            ]
            if keys:
                body.restrict_outputs(keys)


def add_pretrained_embeddings(
    hyper_params: Any, settings: Any, agents: Mapping[str, Any], datasets: list[Any]
) -> list[str]:
    """Attach the embeddings every agent part asks for to the datasets.

    Returns the names of the models used.
    """
    from nip_core.plugins import get_plugin_manager

    names: list[str] = []
    for agent in agents.values():
        for part in agent.parts.values():
            for name in getattr(part, "required_pretrained_models", ()) or ():
                if name not in names:
                    names.append(name)
    registry = get_plugin_manager().pretrained_models
    for name in names:
        model_class = resolve_ref(registry[name].model_class)
        model = model_class(hyper_params, settings, name)
        for dataset in datasets:
            if name not in getattr(dataset, "pretrained_model_names", ()):
                model.add_to_dataset(dataset)
    return names


# --------------------------------------------------------------------------------------
# The scenario instance


def build_scenario_instance(hyper_params: Any, settings: Any) -> Any:
    """Build every component of the experiment.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment.
    settings : ExperimentSettings
        Its settings (device, data and cache directories).

    Returns
    -------
    ScenarioInstance
    """
    from nip_core.plugins import get_plugin_manager
    from nip_core.protocols import build_protocol_handler
    from nip_core.runs.checkpoints import seed_everything
    from nip_core.scenario.agents import combine_parts
    from nip_core.scenario.instance import ScenarioInstance

    seed_everything(int(hyper_params.seed))
    protocol_handler = build_protocol_handler(hyper_params, settings)
    trainer_class, trainer_type = _trainer_class_and_type(hyper_params)

    scenario_spec = get_plugin_manager().scenarios[hyper_params.scenario]
    dataset_class = resolve_ref(scenario_spec.dataset_class)
    train_dataset = dataset_class(
        hyper_params, settings, protocol_handler, split="train"
    )
    test_split = (
        "validation"
        if getattr(hyper_params, "test_dataset_split", "test") == "validation"
        else "test"
    )
    test_dataset = dataset_class(
        hyper_params, settings, protocol_handler, split=test_split
    )

    agents = build_agents(
        hyper_params, settings, protocol_handler, trainer_class, trainer_type
    )
    add_pretrained_embeddings(
        hyper_params, settings, agents, [train_dataset, test_dataset]
    )

    components: dict[str, Any] = {}
    if scenario_spec.environment_class is not None:
        environment_class = resolve_ref(scenario_spec.environment_class)
        for split, dataset in (("train", train_dataset), ("test", test_dataset)):
            components[f"{split}_environment"] = environment_class(
                hyper_params=hyper_params,
                settings=settings,
                dataset=dataset,
                protocol_handler=protocol_handler,
            )
    if scenario_spec.data_world == "text":
        from nip_core.text.groups import build_shared_model_groups

        groups, backends = build_shared_model_groups(hyper_params, settings, agents)
        components["shared_model_groups"] = groups
        components["text_backends"] = backends
    if scenario_spec.data_world == "tensor":
        first = next(iter(agents.values()))
        for role in first.parts:
            if all(getattr(agents[name], role) is not None for name in agents):
                components[f"combined_{role}"] = combine_parts(
                    agents, role, hyper_params, settings, protocol_handler
                )

    return ScenarioInstance(
        train_dataset=train_dataset,
        test_dataset=test_dataset,
        protocol_handler=protocol_handler,
        agents=agents,
        **components,
    )
