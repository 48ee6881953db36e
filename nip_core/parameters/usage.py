"""Which parameter sections a run reads.

Every config carries every section (as the original library's did: one override
switches the trainer or the protocol). Some sections belong to one kind of
component: a trainer's (``ppo``, ``pure_text_ei``), a protocol's
(``debate_protocol``), a scenario's (``code_validation``), a text backend's
(``openai_backend``), or a mode's (``zk_protocol`` with zero knowledge,
``solo_agent`` with pretraining). A run reads such an *owned* section only when it
uses its owner. The other sections (``protocol_common``, ``dataset_options``,
``distributed``, ...) belong to the core and are read by every run.

``nip config show`` hides what a run does not read, a text run warns about
settings in sections only other trainers or backends read, and ``nip report``
does not tell runs apart by settings they do not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "TENSOR_WORLD_AGENT_FIELDS",
    "TENSOR_WORLD_FIELDS",
    "owned_sections",
    "read_sections",
    "unread_agent_fields",
    "unread_fields",
    "unread_paths",
]

TENSOR_WORLD_FIELDS: tuple[str, ...] = (
    "functionalize_modules",
    "pretrain_agents",
    "d_representation",
    "message_size",
    "include_linear_message_space",
    "d_linear_message_space",
)
"""Fields of the hyper-parameters themselves that only the tensor world reads: the
agents' networks, message spaces and pre-training. A text run reads none of
them."""

TENSOR_WORLD_AGENT_FIELDS: tuple[str, ...] = (
    "agent_lr_factor",
    "body_lr_factor",
    "update_schedule",
    "use_manual_architecture",
    "normalize_message_history",
    "use_orthogonal_initialisation",
    "orthogonal_initialisation_gain",
)
"""Fields every agent's parameters have (``AgentParameters``'s) that only the
tensor world reads: learning-rate factors, update schedules and network
initialisation. A text agent reads none of them (it is fine-tuned through its
backend, frozen with ``freeze_agent``). ``load_checkpoint_and_parameters`` and the
``checkpoint_*`` fields are not among them: building the agents reads them in
either world (:func:`nip_core.factory.build_agents` replaces a text agent's
parameters by the other run's too)."""

ZERO_KNOWLEDGE_SECTION = "zk_protocol"
PRETRAINING_SECTION = "solo_agent"


def _plugin_manager(pm: Any) -> Any:
    if pm is None:
        from nip_core.plugins import get_plugin_manager

        pm = get_plugin_manager()
    return pm


def owned_sections(hyper_params: Any, pm: Any = None) -> dict[str, str]:
    """The sections of ``hyper_params`` that belong to a component, with the kind
    of their owner: ``"trainer"``, ``"protocol"``, ``"scenario"``, ``"text
    backend"`` or ``"mode"`` (zero knowledge, pretraining).

    A section two kinds claim keeps the first in that order (``solo_agent`` is the
    ``solo_agent`` trainer's, and pretraining reads it too).
    """
    pm = _plugin_manager(pm)
    owners: dict[str, str] = {}
    for spec in pm.trainers.values():
        for name in spec.parameter_sections:
            owners.setdefault(name, "trainer")
    for spec in pm.protocols.values():
        if spec.parameter_section:
            owners.setdefault(spec.parameter_section, "protocol")
    for name in pm.scenarios:
        owners.setdefault(name, "scenario")
    for spec in pm.text_backends.values():
        if spec.parameter_section:
            owners.setdefault(spec.parameter_section, "text backend")
    owners.setdefault(ZERO_KNOWLEDGE_SECTION, "mode")
    owners.setdefault(PRETRAINING_SECTION, "mode")
    sections = hyper_params.sections
    return {name: kind for name, kind in owners.items() if name in sections}


def read_sections(hyper_params: Any, pm: Any = None) -> set[str]:
    """The owned sections (:func:`owned_sections`) this run reads: its trainer's
    ``parameter_sections``, its protocol's section, its scenario's own section,
    ``zk_protocol`` with zero knowledge, ``solo_agent`` with ``pretrain_agents``,
    and for a text scenario ``text_backend`` and the sections of the backends its
    agents use."""
    from nip_core.text.groups import text_backend_sections

    pm = _plugin_manager(pm)
    read: set[str] = {hyper_params.scenario}
    trainer = pm.trainers.get(hyper_params.trainer, None)
    if trainer is not None:
        read.update(trainer.parameter_sections)
    protocol = pm.protocols.get(hyper_params.interaction_protocol, None)
    if protocol is not None and protocol.parameter_section:
        read.add(protocol.parameter_section)
    if hyper_params.zero_knowledge:
        read.add(ZERO_KNOWLEDGE_SECTION)
    if hyper_params.pretrain_agents and not _is_text_run(hyper_params, pm):
        read.add(PRETRAINING_SECTION)
    read |= text_backend_sections(hyper_params, pm)
    return read & set(hyper_params.sections)


def _is_text_run(hyper_params: Any, pm: Any) -> bool:
    scenario = pm.scenarios.get(hyper_params.scenario, None)
    return getattr(scenario, "data_world", "tensor") == "text"


def unread_fields(hyper_params: Any, pm: Any = None) -> list[str]:
    """The fields of ``hyper_params`` itself (not of its sections) this run does
    not read: in a text run the tensor world's (:data:`TENSOR_WORLD_FIELDS`), and
    those its scenario or trainer declares unread (``unread_parameters`` naming
    no section, such as ``test_size``). In the order of the fields."""
    import attrs

    pm = _plugin_manager(pm)
    unread: set[str] = set()
    if _is_text_run(hyper_params, pm):
        unread.update(TENSOR_WORLD_FIELDS)
    for spec in (
        pm.scenarios.get(hyper_params.scenario, None),
        pm.trainers.get(hyper_params.trainer, None),
    ):
        for path in getattr(spec, "unread_parameters", ()) or ():
            if "." not in path:
                unread.add(path)
    return [f.name for f in attrs.fields(type(hyper_params)) if f.name in unread]


def unread_agent_fields(hyper_params: Any, pm: Any = None) -> list[str]:
    """The fields of the agents' parameters this run does not read: in a text run
    the tensor world's (:data:`TENSOR_WORLD_AGENT_FIELDS`)."""
    pm = _plugin_manager(pm)
    return list(TENSOR_WORLD_AGENT_FIELDS) if _is_text_run(hyper_params, pm) else []


def unread_paths(hyper_params: Any, pm: Any = None) -> frozenset[str]:
    """Every parameter this run does not read, as dotted paths (those of
    ``hyper_params.to_dict()`` flattened; a path stands for the keys below it):
    the owned sections it does not read (:func:`read_sections`), its unread
    fields of the hyper-parameters themselves (:func:`unread_fields`), the
    dotted ``unread_parameters`` of its scenario and trainer
    (``text_rl.verifier_guess_replacement_proportion`` in a MALT run), and in a
    text run each agent's tensor-world fields (``agents.verifier.agent_lr_factor``,
    :func:`unread_agent_fields`). Runs that differ only there run the same
    experiment."""
    pm = _plugin_manager(pm)
    paths = set(owned_sections(hyper_params, pm)) - read_sections(hyper_params, pm)
    paths.update(unread_fields(hyper_params, pm))
    for spec in (
        pm.scenarios.get(hyper_params.scenario, None),
        pm.trainers.get(hyper_params.trainer, None),
    ):
        for path in getattr(spec, "unread_parameters", ()) or ():
            if "." in path:
                paths.add(path)
    agent_fields = unread_agent_fields(hyper_params, pm)
    for key in dict(hyper_params.agents):
        paths.update(f"agents.{key}.{name}" for name in agent_fields)
    return frozenset(paths)


def agent_fields_at_default(
    agents: Any, names: Sequence[str]
) -> dict[str, dict[str, bool]]:
    """Per agent key of ``agents`` (``_default`` included), each of ``names`` its
    parameters have, and whether it is at its default (:func:`field_default`)."""
    import attrs

    found: dict[str, dict[str, bool]] = {}
    for key, agent in dict(agents).items():
        if not attrs.has(type(agent)):
            continue
        fields = attrs.fields_dict(type(agent))
        found[key] = {
            name: getattr(agent, name) == field_default(type(agent), name)
            for name in names
            if name in fields
        }
    return found


def field_default(cls: type, name: str) -> Any:
    """The default of the attrs field ``name`` of ``cls`` (a factory's made anew);
    ``attrs.NOTHING`` when it has none."""
    import attrs

    default = attrs.fields_dict(cls)[name].default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:
            return attrs.NOTHING
        return default.factory()
    return default
