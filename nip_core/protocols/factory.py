"""Build the protocol handler an experiment asks for."""

from __future__ import annotations

import warnings
from typing import Any

from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.protocols.base import ProtocolHandler
from nip_core.protocols.zero_knowledge import ZeroKnowledgeProtocolHandler
from nip_core.records import resolve_ref

__all__ = ["ZERO_KNOWLEDGE_KEY", "build_protocol_handler", "protocol_problems"]

ZERO_KNOWLEDGE_KEY = "zero_knowledge"
"""A key of ``ScenarioSpec.protocol_handlers`` that replaces the zero-knowledge
wrapper class for that scenario."""


def build_protocol_handler(
    hyper_params: Any, settings: Any = None, *, plugin_manager: Any = None
) -> ProtocolHandler:
    """Build the handler of ``hyper_params.interaction_protocol``.

    The handler class is the scenario's specialisation of the protocol
    (``ScenarioSpec.protocol_handlers[name]``) if it has one, else the registered
    protocol's ``handler_class``. With ``protocol_common.zero_knowledge`` the handler
    is wrapped in :class:`ZeroKnowledgeProtocolHandler` (or the scenario's
    ``protocol_handlers["zero_knowledge"]``).

    Parameters
    ----------
    hyper_params : HyperParameters
        Read for ``interaction_protocol``, ``scenario`` (may be ``None``) and the
        protocol sections.
    settings : ExperimentSettings | None
        Passed to the handler (its ``device``).
    plugin_manager : NipPluginManager | None
        The manager to ask; the process-wide one by default.

    Raises
    ------
    NipConfigError
        The scenario does not support the protocol, the protocol cannot step the
        scenario's data world, or zero knowledge was asked of a protocol without it.
    UnknownKeyError
        The protocol or scenario is not registered (the message lists known keys).
    """
    if plugin_manager is None:
        from nip_core.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    name = hyper_params.interaction_protocol
    scenario_name = getattr(hyper_params, "scenario", None)
    scenario = (
        None if scenario_name is None else plugin_manager.scenarios[scenario_name]
    )
    specialisations = dict(scenario.protocol_handlers) if scenario is not None else {}

    if scenario is not None and scenario.supported_protocols is not None:
        if name not in scenario.supported_protocols:
            raise NipConfigError(
                ConfigProblem(
                    path="interaction_protocol",
                    message=f"scenario {scenario.name!r} does not support it",
                    value=name,
                    choices=tuple(scenario.supported_protocols),
                )
            )

    spec = plugin_manager.protocols.get(name, None)
    if name in specialisations:
        handler_ref = specialisations[name]
    else:
        if spec is None:
            spec = plugin_manager.protocols[name]  # raises, listing the known keys
        handler_ref = spec.handler_class
        data_world = scenario.data_world if scenario is not None else "tensor"
        if data_world not in spec.data_worlds:
            raise NipConfigError(
                ConfigProblem(
                    path="interaction_protocol",
                    message=(
                        f"protocol {name!r} cannot step the {data_world} world of "
                        f"scenario {scenario_name!r} (it supports: "
                        f"{', '.join(spec.data_worlds)})"
                    ),
                    value=name,
                )
            )

    handler_class = resolve_ref(handler_ref)
    handler = handler_class(hyper_params, settings)

    if not hyper_params.protocol_common.zero_knowledge:
        return handler
    supported = (
        spec.supports_zero_knowledge
        if spec is not None
        else handler_class.can_be_zero_knowledge
    )
    if not supported or not handler_class.can_be_zero_knowledge:
        raise NipConfigError(
            ConfigProblem(
                path="protocol_common.zero_knowledge",
                message=f"protocol {name!r} has no zero-knowledge version",
                value=True,
            )
        )
    if scenario is not None and scenario.data_world != "tensor":
        raise NipConfigError(
            ConfigProblem(
                path="protocol_common.zero_knowledge",
                message=(
                    "zero-knowledge rewards compare message logits, which only tensor "
                    f"scenarios have; {scenario.name!r} is a {scenario.data_world} "
                    "scenario"
                ),
                value=True,
            )
        )
    wrapper = resolve_ref(
        specialisations.get(ZERO_KNOWLEDGE_KEY, ZeroKnowledgeProtocolHandler)
    )
    return wrapper(hyper_params, settings, base_protocol=handler)


def protocol_problems(hyper_params: Any, *, plugin_manager: Any = None) -> list:
    """What stops ``hyper_params`` from running that only its protocol handler can
    tell, found before anything runs (``nip config show``, ``nip config validate``,
    a sweep's check of every job and ``nip run`` all ask): the handler cannot be
    built with these settings (no verifier ever acts, say), or a tensor-world RL
    trainer's ``rl.frames_per_batch`` is not a multiple of the steps each
    environment takes per iteration (the protocol's ``max_message_rounds`` unless
    ``rl.steps_per_env_per_iteration`` says otherwise), or what the trainer's own
    check (``TrainerSpec.config_problems``) finds with the handler, or the
    scenario's own check (``ScenarioSpec.config_problems``, also run when the
    handler cannot be built). Each problem names the setting to change.
    """
    from nip_core.protocols.handler import ProtocolSpecificationError

    if plugin_manager is None:
        from nip_core.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    name = hyper_params.interaction_protocol
    try:
        # its warnings (rounds the verifier never reads ...) come when the run
        # builds it, once
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            handler = build_protocol_handler(
                hyper_params, plugin_manager=plugin_manager
            )
    except NipConfigError as error:
        return list(error.problems) + scenario_problems(
            hyper_params, plugin_manager=plugin_manager
        )
    except ProtocolSpecificationError as error:
        section = f"{name}_protocol"
        has_section = getattr(hyper_params, section, None) is not None
        return scenario_problems(hyper_params, plugin_manager=plugin_manager) + [
            ConfigProblem(
                path=section if has_section else "interaction_protocol",
                message=f"protocol {name!r} cannot be played with these settings: "
                f"{error}",
            )
        ]
    problems = []
    scenario = plugin_manager.scenarios.get(hyper_params.scenario, None)
    trainer = plugin_manager.trainers.get(hyper_params.trainer, None)
    rl = getattr(hyper_params, "rl", None)
    if (
        scenario is not None
        and scenario.data_world == "tensor"
        and trainer is not None
        and "rl" in trainer.parameter_sections
        and rl is not None
        and rl.frames_per_batch is not None
        and rl.steps_per_env_per_iteration is None
    ):
        from nip_core.parameters.trainers import frames_per_batch_problem

        rounds = int(handler.max_message_rounds)
        problem = frames_per_batch_problem(
            rl.frames_per_batch,
            rounds,
            f"the steps each environment takes per iteration: protocol {name!r} "
            f"plays up to {rounds} rounds (its max_message_rounds)",
        )
        if problem is not None:
            problems.append(problem)
    check = getattr(trainer, "config_problems", None)
    if check is not None:
        problems.extend(resolve_ref(check)(hyper_params, handler))
    problems.extend(_sharding_problems(hyper_params, trainer))
    return problems + scenario_problems(hyper_params, plugin_manager=plugin_manager)


def _sharding_problems(hyper_params: Any, trainer: Any) -> list:
    """With ``distributed.num_shards > 1``: what the trainer class says stops a
    sharded run (``Trainer.sharding_config_problems``), as the run would refuse."""
    distributed = getattr(hyper_params, "distributed", None)
    if trainer is None or distributed is None:
        return []
    if int(getattr(distributed, "num_shards", 1)) <= 1:
        return []
    trainer_class = resolve_ref(trainer.trainer_class)
    check = getattr(trainer_class, "sharding_config_problems", None)
    return list(check(hyper_params)) if check is not None else []


def scenario_problems(hyper_params: Any, *, plugin_manager: Any = None) -> list:
    """What the scenario's own check (``ScenarioSpec.config_problems``) finds in
    ``hyper_params``: settings that do not fit together for its data (a pooling
    depth too large for the dataset's images, say), found before anything runs."""
    if plugin_manager is None:
        from nip_core.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    scenario = plugin_manager.scenarios.get(hyper_params.scenario, None)
    check = getattr(scenario, "config_problems", None)
    if check is None:
        return []
    return list(resolve_ref(check)(hyper_params))
