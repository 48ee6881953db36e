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

from typing import Any

__all__ = ["owned_sections", "read_sections"]

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
    if hyper_params.pretrain_agents:
        read.add(PRETRAINING_SECTION)
    read |= text_backend_sections(hyper_params, pm)
    return read & set(hyper_params.sections)
