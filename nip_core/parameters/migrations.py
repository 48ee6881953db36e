"""Saved parameter dicts: the ``_meta`` record and migrations between versions.

``HyperParameters.to_dict()`` writes::

    "_meta": {
        "schema_version": 1,
        "versions": {"nip-core": "0.1.0", "nip-plugin-ppo": "0.3.1"},
        "sources": {"scenario": "nip-plugin-graph-isomorphism",
                    "sections.ppo": "nip-plugin-ppo", ...},
    }

``versions`` holds the version of the core and of every distribution that provided a
section, the scenario, the trainer or the protocol; ``sources`` says which
distribution provided which, so a dict naming a section of a plugin that is not
installed can say which plugin to install.

Migrations
----------
Plugins (and the core) register :class:`~nip_core.records.MigrationSpec` steps with
``register_parameter_migrations``. A step ``(component, from_version, to_version)``
applies to dicts whose saved version ``s`` of ``component`` satisfies
``from_version <= s < to_version``, and writes the format of ``to_version``. For
each component recorded in ``versions`` (the core first, then plugins by name),
steps are chained from the saved version up to the installed one. Versions compare
by their numeric release segments (``"1.2"`` == ``"1.2.0"``; suffixes such as
``.dev1`` are ignored).

Dicts written by the original ``nip`` library (no ``_meta``; keys such as
``_package_version``, ``_type``, ``agents_update_repr``, or the protocol name
``"pvg"``) go through the chain of the component ``"nip"`` first, which ends in the
format of nip-core |LEGACY_CORE_VERSION|; every plugin component with migrations is
then migrated from version ``"0"``, so a plugin can convert the original library's
form of its own sections. Sections the original library wrote that no installed
plugin provides are dropped. Every change is reported in one
:class:`ParameterMigrationWarning`.

A dict without ``_meta`` that does not look like the original library's (a
hand-written config) is taken to be in the current format.

Handing values over
-------------------
When the core gives up a parameter that a plugin now owns, its migration step moves
the saved value under :data:`HANDOVER_KEY` (``{"_handover": {"dataset_options":
{"make_balanced": true}}}``); the plugin's own step, which runs after the core's,
takes it from there into its section. Whatever no installed plugin took is dropped
at the end, with a message.
"""

from __future__ import annotations

import ast
import copy
import re
import warnings
from collections.abc import Mapping
from typing import Any

import attrs

from nip_core.errors import ConfigProblem, NipConfigError, NipWarning

__all__ = [
    "CORE_COMPONENT",
    "HANDOVER_KEY",
    "LEGACY_COMPONENT",
    "LEGACY_CORE_VERSION",
    "META_KEY",
    "SCHEMA_VERSION",
    "ParameterMigrationWarning",
    "SavedDict",
    "chain_migrations",
    "core_0_1_0_to_0_1_1",
    "take_handover",
    "is_legacy_dict",
    "legacy_0_1_to_1_0",
    "legacy_1_0_to_core",
    "legacy_unversioned",
    "prepare_saved_dict",
    "version_key",
]

SCHEMA_VERSION = 1
"""The layout of saved dicts (``_meta`` included) that this nip-core writes."""

META_KEY = "_meta"
CORE_COMPONENT = "nip-core"
LEGACY_COMPONENT = "nip"
"""The component name of dicts written by the original ``nip`` library."""
LEGACY_CORE_VERSION = "0.1.0"
"""The nip-core format the legacy chain ends in."""

_LEGACY_TOP_KEYS = ("_package_version", "_package_name", "_type")


class ParameterMigrationWarning(NipWarning):
    """A saved parameter dict was converted; the message lists every change."""


HANDOVER_KEY = "_handover"
"""Where a core migration step parks the values a plugin's step takes over."""


def core_0_1_0_to_0_1_1(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """nip-core 0.1.0 -> 0.1.1: ``dataset_options`` keeps only the size caps.

    The two-class reduction of many-class data (``binarification_method``,
    ``selected_classes``, ``binarification_seed``, ``make_balanced``) belongs to the
    scenario that reads it: the values are handed over (:data:`HANDOVER_KEY`).
    """
    from nip_core.parameters.dataset import MOVED_TO_SCENARIOS

    params = copy.deepcopy(params)
    options = params.get("dataset_options")
    if not isinstance(options, dict):
        return params, []
    moved = {key: options.pop(key) for key in MOVED_TO_SCENARIOS if key in options}
    if not moved:
        return params, []
    params.setdefault(HANDOVER_KEY, {}).setdefault("dataset_options", {}).update(moved)
    return params, [
        f"dataset_options.{key} left the core's section for the scenario's"
        for key in moved
    ]


def take_handover(params: dict[str, Any], section: str) -> dict[str, Any]:
    """Remove and return what a core step handed over from ``section`` (for a
    plugin's migration step)."""
    handover = params.get(HANDOVER_KEY)
    if not isinstance(handover, dict):
        return {}
    taken = handover.pop(section, None)
    if not handover:
        params.pop(HANDOVER_KEY, None)
    return dict(taken) if isinstance(taken, dict) else {}


def _drop_handover(params: dict[str, Any]) -> list[str]:
    handover = params.pop(HANDOVER_KEY, None)
    if not isinstance(handover, dict):
        return []
    return [
        f"{section}.{key} dropped: no installed plugin uses it"
        for section, values in handover.items()
        if isinstance(values, dict)
        for key in values
    ]


def version_key(version: str | None) -> tuple[int, ...]:
    """A comparable key of a version string: its numeric release segments.

    Trailing zeros are dropped so ``"1.2"`` and ``"1.2.0"`` compare equal; ``None``
    and strings without digits count as version 0.
    """
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version or "")
    if not match:
        return ()
    parts = [int(p) for p in match.group(1).split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@attrs.frozen
class SavedDict:
    """A saved dict made ready for construction.

    Parameters
    ----------
    data : dict
        The dict in the current format, without ``_meta``.
    sources : Mapping[str, str]
        From ``_meta.sources``: which distribution provided the scenario, trainer,
        protocol and each section (``"sections.<name>"``) when it was saved.
    messages : tuple[str, ...]
        One line per change the migrations made.
    """

    data: dict[str, Any]
    sources: Mapping[str, str] = attrs.field(factory=dict)
    messages: tuple[str, ...] = ()


def is_legacy_dict(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` (without ``_meta``) was written by the original library."""
    if any(key in data for key in _LEGACY_TOP_KEYS):
        return True
    if "pvg_protocol" in data or "decision_problem" in data:
        return True
    if data.get("interaction_protocol") in ("pvg", "abstract_decision_problem"):
        return True
    agents = data.get("agents")
    if isinstance(agents, Mapping):
        if "agents_update_repr" in agents:
            return True
        for agent in agents.values():
            if isinstance(agent, Mapping) and "_type" in agent:
                return True
    return False


_LEGACY_PROTOCOL_NAMES = {"pvg": "nip", "abstract_decision_problem": "adp"}
_LEGACY_SECTION_NAMES = {"pvg_protocol": "nip_protocol"}


def legacy_name_problems(data: Mapping[str, Any]) -> list[ConfigProblem]:
    """The original library's names in a config composed now (the command line, a
    config file): one problem each, naming today's name.

    :func:`prepare_saved_dict` converts a *saved* dict that looks like the
    original's; a config being written today that uses an old name is a mistake,
    not a dict to convert (``interaction_protocol=pvg`` would otherwise be taken
    for an original-library dict and converted with warnings about saved
    parameters)."""
    problems: list[ConfigProblem] = []
    protocol = data.get("interaction_protocol")
    if isinstance(protocol, str) and protocol in _LEGACY_PROTOCOL_NAMES:
        new = _LEGACY_PROTOCOL_NAMES[protocol]
        problems.append(
            ConfigProblem(
                "interaction_protocol",
                f"the original library's name for {new!r}; use {new!r}",
                protocol,
            )
        )
    for old, new in _LEGACY_SECTION_NAMES.items():
        if old in data:
            problems.append(
                ConfigProblem(old, f"the original library's name; use {new!r}")
            )
    if "decision_problem" in data:
        problems.append(
            ConfigProblem(
                "decision_problem",
                "the original library's key; set interaction_protocol instead",
            )
        )
    for key in _LEGACY_TOP_KEYS:
        if key in data:
            problems.append(
                ConfigProblem(
                    key,
                    "bookkeeping key of the original library's saved dicts; remove "
                    "it (saved dicts are converted when a run is loaded)",
                )
            )
    agents = data.get("agents")
    if isinstance(agents, Mapping):
        if "agents_update_repr" in agents:
            problems.append(
                ConfigProblem(
                    "agents.agents_update_repr",
                    "the original library's key; remove it",
                )
            )
        for name, agent in agents.items():
            if isinstance(agent, Mapping) and "_type" in agent:
                problems.append(
                    ConfigProblem(
                        f"agents.{name}._type",
                        "bookkeeping key of the original library's saved dicts; "
                        "remove it",
                    )
                )
    return problems


# --------------------------------------------------------------------------------------
# The original library's dicts (component "nip")
# --------------------------------------------------------------------------------------


def legacy_unversioned(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``nip`` 0 -> 0.1: dicts from before the original library's 0.1."""
    saved = params.get("_package_version")
    if isinstance(saved, str):
        name = params.get("_package_name")
        by = f"{name} {saved}" if isinstance(name, str) else f"version {saved}"
        return params, [
            f"the dict was written by {by}, before nip 0.1; parameters whose "
            "meaning changed since may be misread"
        ]
    return params, [
        "the dict has no package version (written before nip 0.1); parameters whose "
        "meaning changed since may be misread"
    ]


def legacy_0_1_to_1_0(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``nip`` 0.1 -> 1.0: protocol and SPG renames of the original library."""
    messages: list[str] = []
    if params.get("interaction_protocol") == "pvg":
        params["interaction_protocol"] = "nip"
        messages.append("interaction_protocol 'pvg' renamed to 'nip'")
    if "pvg_protocol" in params:
        params["nip_protocol"] = params.pop("pvg_protocol")
        messages.append("section 'pvg_protocol' renamed to 'nip_protocol'")
    if "decision_problem" in params:
        old = params.pop("decision_problem")
        new = "adp" if old == "abstract_decision_problem" else old
        if "interaction_protocol" not in params:
            params["interaction_protocol"] = new
            messages.append(
                f"'decision_problem' {old!r} became interaction_protocol {new!r}"
            )
        else:
            messages.append(
                f"'decision_problem' {old!r} dropped (interaction_protocol is set)"
            )
    if params.get("interaction_protocol") == "abstract_decision_problem":
        params["interaction_protocol"] = "adp"
        messages.append(
            "interaction_protocol 'abstract_decision_problem' renamed to 'adp'"
        )
    spg = params.get("spg")
    if isinstance(spg, dict):
        for old, new in (
            ("sos_a_param", "sos_scaling_factor"),
            ("sos_b_param", "sos_threshold_factor"),
        ):
            if old in spg:
                spg[new] = spg.pop(old)
                messages.append(f"spg.{old} renamed to spg.{new}")
    _legacy_scalar_lr_factors(params, messages)
    rl = params.get("rl")
    if isinstance(rl, dict) and "body_lr_factor" in rl:
        # before 1.0 the RL trainers passed it to every agent as the override of
        # its body factor (a number; None: no override)
        factor = rl.pop("body_lr_factor")
        if factor is None:
            messages.append("rl.body_lr_factor: null (no override) dropped")
        else:
            rl["body_lr_factor_override"] = _as_lr_factors(factor)
            messages.append(
                "rl.body_lr_factor, which the RL trainers of this version applied "
                "to every agent's body, became rl.body_lr_factor_override"
            )
    return params, messages


def _as_lr_factors(value: Any) -> Any:
    """A learning-rate factor of the original's older dicts (one number for actor
    and critic alike) as ``{actor, critic}``; anything else as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"actor": float(value), "critic": float(value)}
    return value


def _legacy_scalar_lr_factors(params: dict[str, Any], messages: list[str]) -> None:
    """Older dicts gave an agent's learning-rate factors as single numbers, used for
    the actor and the critic alike."""
    agents = params.get("agents")
    if not isinstance(agents, dict):
        return
    for name, agent in agents.items():
        if not isinstance(agent, dict):
            continue
        for factor in ("agent_lr_factor", "body_lr_factor", "gnn_lr_factor"):
            value = agent.get(factor)
            converted = _as_lr_factors(value)
            if converted is not value:
                agent[factor] = converted
                messages.append(
                    f"agents.{name}.{factor}: {value!r} became "
                    f"{{actor: {float(value)}, critic: {float(value)}}}"
                )


_SCHEDULE_REPR = re.compile(r"^\s*(\w+)\((.*)\)\s*$", re.DOTALL)


def _legacy_schedule(value: Any, path: str, messages: list[str]) -> Any:
    """The original's schedule forms -> ``{"_type": name, **fields}``."""
    if isinstance(value, str):
        match = _SCHEDULE_REPR.match(value)
        if not match:
            return value
        fields: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in match.group(2).split(","))):
            key, _, text = part.partition("=")
            try:
                fields[key.strip()] = ast.literal_eval(text.strip())
            except (ValueError, SyntaxError):
                fields[key.strip()] = text.strip()
        messages.append(f"{path}: schedule {value!r} read from its text form")
        return {"_type": match.group(1), **fields}
    if isinstance(value, Mapping) and "_type" in value:
        name = value["_type"]
        arguments = value.get(name, {})
        extra = {k: v for k, v in value.items() if k not in ("_type", name)}
        if isinstance(arguments, Mapping):
            return {"_type": name, **arguments, **extra}
    return value


def _strip_types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_types(v) for k, v in value.items() if k != "_type"}
    if isinstance(value, list):
        return [_strip_types(v) for v in value]
    return value


def legacy_1_0_to_core(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``nip`` 1.0 -> nip-core: the original library's dict layout to ours.

    Drops the original's bookkeeping keys (``_type``, ``_package_*``,
    ``agents_update_repr``), rewrites update schedules, replaces ``None`` learning-
    rate factors by the defaults they meant, and drops ``rl.body_lr_factor``
    (unread by the original 1.0's trainers).
    """
    messages: list[str] = []
    for key in ("_package_version", "_package_name"):
        params.pop(key, None)
    agents = params.get("agents")
    schedules: dict[str, Any] = {}
    if isinstance(agents, dict):
        if agents.pop("agents_update_repr", None) is not None:
            messages.append("agents.agents_update_repr dropped (it is derived)")
        for name, agent in agents.items():
            if not isinstance(agent, dict):
                continue
            if "update_schedule" in agent:
                schedules[name] = _legacy_schedule(
                    agent["update_schedule"], f"agents.{name}.update_schedule", messages
                )
            for factor in ("agent_lr_factor", "body_lr_factor", "gnn_lr_factor"):
                if factor in agent and agent[factor] is None:
                    del agent[factor]
                    messages.append(
                        f"agents.{name}.{factor}: null replaced by the default "
                        "(actor 1.0, critic 1.0), which it meant"
                    )
    params = _strip_types(params)
    for name, schedule in schedules.items():
        params["agents"][name]["update_schedule"] = schedule
    rl = params.get("rl")
    if isinstance(rl, dict) and "body_lr_factor" in rl:
        # the original 1.0's RL trainers never read it (every saved dict holds the
        # filled-in default): each agent's own body_lr_factor set its body's rate,
        # as it does here. Older dicts had theirs made an override above.
        rl.pop("body_lr_factor")
        messages.append(
            "rl.body_lr_factor dropped: the original 1.0's RL trainers did not read "
            "it; each agent's body_lr_factor sets its body's learning rate, as it "
            "did then"
        )
    _legacy_text_rl(params, messages)
    _legacy_text_agents(params, messages)
    _legacy_mnip_rounds(params, messages)
    base_run = params.get("base_run")
    if isinstance(base_run, dict):
        if (
            base_run.pop("rerun_tests_force_test_during_training_state", None)
            is not None
        ):
            messages.append(
                "base_run.rerun_tests_force_test_during_training_state dropped (runs "
                "now always record their test state)"
            )
        if base_run.get("base_run_type", "none") != "none":
            base_run.setdefault("source", "wandb")
    for agent in (params.get("agents") or {}).values():
        if isinstance(agent, dict) and agent.get("load_checkpoint_and_parameters"):
            agent.setdefault("checkpoint_source", "wandb")
    ppo = params.get("ppo")
    if (
        params.get("trainer") == "reinforce"
        and isinstance(ppo, dict)
        and "clip_epsilon" in ppo
    ):
        # the original's REINFORCE clipped its critic by the PPO section's epsilon
        reinforce = params.setdefault("reinforce", {})
        if isinstance(reinforce, dict):
            reinforce.setdefault("clip_epsilon", ppo["clip_epsilon"])
            messages.append("reinforce.clip_epsilon set from ppo.clip_epsilon")
    messages.append("the original library's bookkeeping keys (_type) dropped")
    return params, messages


_LEGACY_FIXED_ROUNDS = {"adp": 2, "merlin_arthur": 2, "solo_verifier": 1}
_LEGACY_ROUNDS_SECTION = {
    "nip": "nip_protocol",
    "debate": "debate_protocol",
    # the original's mnip read its rounds from nip_protocol
    "mnip": "nip_protocol",
}
_LEGACY_DEFAULT_MAX_ROUNDS = 8


def _legacy_episodes_per_iteration(
    params: Mapping[str, Any], rl: Mapping[str, Any]
) -> tuple[int | None, str]:
    """The episodes the original's text trainers sampled per iteration, and where
    the number came from: ``rl.frames_per_batch`` over the steps per episode
    (``rl.steps_per_env_per_iteration``, else the protocol's
    ``max_message_rounds``) when set, else ``rl.rollouts_per_iteration``; ``None``
    when neither is set (the original then sampled the whole dataset)."""
    frames = rl.get("frames_per_batch")
    if frames is not None:
        steps = rl.get("steps_per_env_per_iteration")
        where = "rl.steps_per_env_per_iteration"
        if steps is None:
            protocol = params.get("interaction_protocol", "nip")
            if protocol in _LEGACY_FIXED_ROUNDS:
                steps = _LEGACY_FIXED_ROUNDS[protocol]
                where = f"the {protocol} protocol's rounds"
            else:
                section = params.get(_LEGACY_ROUNDS_SECTION.get(protocol, ""), {})
                section = section if isinstance(section, Mapping) else {}
                steps = section.get("max_message_rounds", _LEGACY_DEFAULT_MAX_ROUNDS)
                where = "the protocol's max_message_rounds"
        steps = max(1, int(steps))
        return (
            max(1, int(frames) // steps),
            f"rl.frames_per_batch {frames} over {steps} steps an episode ({where})",
        )
    if rl.get("rollouts_per_iteration") is not None:
        return int(rl["rollouts_per_iteration"]), "rl.rollouts_per_iteration"
    return None, ""


def _legacy_text_rl(params: dict[str, Any], messages: list[str]) -> None:
    """The original's ``text_rl`` section, and the loop sizes its text trainers read
    from ``rl``: the iterations, the episodes an iteration (see
    :func:`_legacy_episodes_per_iteration`) and, with ``test_on_whole_dataset:
    false``, as many test episodes."""
    text_rl = params.get("text_rl")
    if not isinstance(text_rl, dict):
        return
    if text_rl.pop("transcript_format", None) is not None:
        messages.append(
            "text_rl.transcript_format dropped (transcripts are plain text beside "
            "the JSONL rollouts)"
        )
    whole = text_rl.pop("test_on_whole_dataset", None)
    rl = params.get("rl") if isinstance(params.get("rl"), dict) else {}
    episodes, source = _legacy_episodes_per_iteration(params, rl)
    if whole is True:
        messages.append(
            "text_rl.test_on_whole_dataset: true is now text_rl.num_test_rollouts: null"
        )
    elif whole is False and episodes is not None:
        text_rl["num_test_rollouts"] = episodes
        messages.append(
            "text_rl.test_on_whole_dataset: false is now text_rl.num_test_rollouts = "
            f"{episodes} ({source})"
        )
    elif whole is False:
        messages.append(
            "text_rl.test_on_whole_dataset: false with neither rl.frames_per_batch "
            "nor rl.rollouts_per_iteration set tested on the whole test set: "
            "text_rl.num_test_rollouts: null"
        )
    if params.get("trainer") in ("pure_text_ei", "pure_text_malt"):
        if rl.get("num_iterations") is not None:
            text_rl["num_iterations"] = rl["num_iterations"]
            messages.append(
                "rl.num_iterations moved to text_rl.num_iterations (the text "
                "trainers' own section)"
            )
        # what the text trainers read of rl now lives in text_rl: the rl values
        # would only be settings this run does not read
        for key in (
            "num_iterations",
            "frames_per_batch",
            "rollouts_per_iteration",
            "steps_per_env_per_iteration",
        ):
            rl.pop(key, None)
        if episodes is not None:
            text_rl["rollouts_per_iteration"] = episodes
            messages.append(
                f"text_rl.rollouts_per_iteration = {episodes} (the original's "
                f"episodes an iteration: {source})"
            )
        else:
            messages.append(
                "the original sampled the whole training set each iteration "
                "(neither rl.frames_per_batch nor rl.rollouts_per_iteration set), "
                "which text_rl.rollouts_per_iteration cannot say: it keeps "
                f"{text_rl.get('rollouts_per_iteration', 'its default')}; set it to "
                "the training set's size to do the same"
            )


_OPENROUTER_URL = "https://openrouter.ai/api/v1"


def _legacy_server_url(agent: Mapping[str, Any]) -> str | None:
    """The OpenAI-compatible endpoint an original text agent generated with, when it
    was not OpenAI's own API."""
    provider = str(agent.get("model_provider", "OpenAI")).lower().replace("-", "")
    if provider == "openrouter":
        return _OPENROUTER_URL
    if "vllm" in provider or provider == "selfhosted":
        if agent.get("vllm_openai_base_url"):
            return str(agent["vllm_openai_base_url"])
        host = str(agent.get("language_model_server_scheme_host", "http://localhost"))
        return f"{host.rstrip('/')}:{int(agent.get('vllm_server_port', 8000))}/v1"
    return None


def _legacy_text_agents(params: dict[str, Any], messages: list[str]) -> None:
    """The original's text-agent fields (``PureTextAgentParameters``) that are not
    agent fields here: the provider and server fields become the ``openai``
    backend's endpoint, a per-agent ``dpo_beta`` becomes ``openai_backend.dpo_beta``,
    and the rest (the dummy API, the supervisor message) are dropped, saying what
    replaces them."""
    agents = params.get("agents")
    if not isinstance(agents, dict):
        return
    urls: dict[str, str] = {}
    openai_agents: list[str] = []
    providers: dict[str, Any] = {}
    fine_tuned_at_own_server: dict[str, str] = {}
    betas: dict[str, Any] = {}
    for name, agent in agents.items():
        if not isinstance(agent, dict) or "model_provider" not in agent:
            continue
        url = _legacy_server_url(agent)
        provider = agent.pop("model_provider")
        providers[name] = provider
        host = agent.get("language_model_server_scheme_host", "http://localhost")
        port = agent.get("language_model_server_port", 5000)
        for key in (
            "vllm_openai_base_url",
            "language_model_server_scheme_host",
            "language_model_server_port",
            "vllm_server_port",
        ):
            agent.pop(key, None)
        if url is not None:
            urls[name] = url
            if url != _OPENROUTER_URL and not agent.get("freeze_agent", False):
                # the original fine-tuned open-weight models at its own language
                # model server, not at the vLLM endpoint it generated with
                fine_tuned_at_own_server[name] = f"{str(host).rstrip('/')}:{port}"
        else:
            openai_agents.append(name)
        if agent.pop("use_dummy_api", False):
            messages.append(
                f"agents.{name}.use_dummy_api dropped: serve a scripted model with "
                "`python -m nip_core.testing.openai_server` and point "
                "openai_backend.base_url at it"
            )
        supervisor = agent.pop("use_supervisor_message", "none")
        agent.pop("supervisor_name", None)
        if supervisor not in (None, "none"):
            messages.append(
                f"agents.{name}.use_supervisor_message {supervisor!r} dropped: every "
                "prompt ends with a user turn holding the turn's instructions"
            )
        if "dpo_beta" in agent:
            beta = agent.pop("dpo_beta")
            if beta is not None:
                betas[name] = beta
        tries = agent.get("num_invalid_generation_retries")
        if isinstance(tries, int) and not isinstance(tries, bool) and tries > 0:
            # the original's value was the number of attempts, the first included
            agent["num_invalid_generation_retries"] = tries - 1
            messages.append(
                f"agents.{name}.num_invalid_generation_retries {tries} -> "
                f"{tries - 1}: the original counted the first attempt among its "
                f"{tries}, here it counts the attempts after the first (the same "
                f"{tries} attempts)"
            )
    backend = params.get("openai_backend")
    backend = backend if isinstance(backend, dict) else {}
    if urls:
        chosen = next(iter(urls.values()))
        if backend.get("base_url") is None:
            backend["base_url"] = chosen
            messages.append(f"openai_backend.base_url set to {chosen}")
            if chosen == _OPENROUTER_URL:
                backend.setdefault("api_key_env", "OPENROUTER_API_KEY")
    final = backend.get("base_url")
    where = f"at {final}" if final is not None else "(OpenAI's API)"
    for name, provider in providers.items():
        messages.append(
            f"agents.{name}.model_provider {provider!r} dropped: agents generate "
            f"through the openai backend {where}"
        )
    endpoints = dict(urls)
    endpoints.update({name: "OpenAI's API" for name in openai_agents})
    if len(set(endpoints.values())) > 1:
        messages.append(
            "the agents generated at different endpoints ("
            + ", ".join(f"{n}: {u}" for n, u in endpoints.items())
            + "), which one openai backend cannot: every agent now sends its "
            f"requests {where}. To keep them apart, serve every model at one "
            "OpenAI-compatible endpoint, or run the open-weight ones locally with "
            "agents.<name>.backend=transformers"
        )
    for name, server in fine_tuned_at_own_server.items():
        messages.append(
            f"agents.{name} was fine-tuned at the original's language model server "
            f"({server}); here fine-tune jobs go to the openai backend's endpoint, "
            "which must offer OpenAI's fine-tuning API (vLLM does not): fine-tune "
            f"it locally with agents.{name}.backend=transformers"
        )
    if betas:
        chosen = next(iter(betas.values()))
        if backend.get("dpo_beta") is None:
            backend["dpo_beta"] = chosen
        messages.append(
            "agents' dpo_beta moved to openai_backend.dpo_beta = "
            f"{backend['dpo_beta']}"
            + (
                f" (the agents had {sorted(set(map(float, betas.values())))})"
                if len(set(betas.values())) > 1
                else ""
            )
        )
    if urls or betas:
        params["openai_backend"] = backend


def _legacy_mnip_rounds(params: dict[str, Any], messages: list[str]) -> None:
    """The original's ``mnip`` read its round limits from ``nip_protocol``; here
    they are ``mnip_protocol``'s."""
    if params.get("interaction_protocol") != "mnip":
        return
    nip = params.get("nip_protocol")
    if not isinstance(nip, dict):
        return
    mnip = params.setdefault("mnip_protocol", {})
    if not isinstance(mnip, dict):
        return
    for key in ("max_message_rounds", "min_message_rounds"):
        if key in nip and mnip.get(key) != nip[key]:
            before = mnip.get(key)
            mnip[key] = nip[key]
            messages.append(
                f"mnip_protocol.{key} set to {nip[key]} from nip_protocol (the "
                "original's mnip read its rounds there"
                + (f"; its unread mnip_protocol value was {before}" if before else "")
                + ")"
            )


# --------------------------------------------------------------------------------------
# Chaining
# --------------------------------------------------------------------------------------


def chain_migrations(
    data: dict[str, Any],
    component: str,
    saved_version: str | None,
    target_version: str | None,
    steps: list[Any],
) -> tuple[dict[str, Any], str | None, list[str]]:
    """Apply the steps of ``component`` from ``saved_version`` up to ``target_version``.

    Parameters
    ----------
    data : dict
        The dict; steps may change it in place.
    component : str
        The component whose steps to apply.
    saved_version : str | None
        The version the dict was written by (``None``: version 0).
    target_version : str | None
        The installed version; ``None`` applies every step that follows.
    steps : list[MigrationSpec]
        Candidate steps (of any component).

    Returns
    -------
    tuple[dict, str | None, list[str]]
        The migrated dict, the version it is now in, one message per change.

    Raises
    ------
    NipConfigError
        When two steps apply to the same version, or a step fails.
    """
    from nip_core.records import resolve_ref

    own = [s for s in steps if s.component == component]
    current = saved_version
    messages: list[str] = []
    target = version_key(target_version) if target_version is not None else None
    while True:
        here = version_key(current)
        applicable = [
            s
            for s in own
            if version_key(s.from_version) <= here < version_key(s.to_version)
            and (target is None or version_key(s.to_version) <= target)
        ]
        if not applicable:
            return data, current, messages
        if len(applicable) > 1:
            keys = ", ".join(s.key for s in applicable)
            raise NipConfigError(
                ConfigProblem(
                    META_KEY,
                    f"several migrations of {component} apply to version {current}: "
                    f"{keys} (plugins {', '.join(str(s.plugin) for s in applicable)})",
                )
            )
        step = applicable[0]
        try:
            data, step_messages = resolve_ref(step.migrate)(data)
        except NipConfigError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise NipConfigError(
                ConfigProblem(
                    META_KEY,
                    f"migration {step.key} (plugin {step.plugin}) failed: "
                    f"{type(exc).__name__}: {exc}",
                )
            ) from exc
        label = f"{component} {step.from_version} -> {step.to_version}"
        if component == LEGACY_COMPONENT and version_key(step.to_version) > (1,):
            # The original library never had this version: the step ends its chain
            label = f"{component} {step.from_version} -> {CORE_COMPONENT}"
        messages.extend(f"[{label}] {m}" for m in step_messages)
        current = step.to_version


def _read_meta(meta: Any) -> tuple[dict[str, str], dict[str, str]]:
    problems = []
    if not isinstance(meta, Mapping):
        raise NipConfigError(ConfigProblem(META_KEY, "expected a mapping", meta))
    schema = meta.get("schema_version")
    if not isinstance(schema, int) or isinstance(schema, bool):
        problems.append(
            ConfigProblem(f"{META_KEY}.schema_version", "expected an integer", schema)
        )
    elif schema > SCHEMA_VERSION:
        problems.append(
            ConfigProblem(
                f"{META_KEY}.schema_version",
                f"written by a newer nip-core (schema {schema}; this one reads up to "
                f"{SCHEMA_VERSION}); upgrade nip-core",
                schema,
            )
        )
    unknown = set(meta) - {"schema_version", "versions", "sources"}
    problems.extend(
        ConfigProblem(
            f"{META_KEY}.{k}",
            "unknown key",
            choices=("schema_version", "versions", "sources"),
        )
        for k in sorted(unknown)
    )
    out = []
    for key in ("versions", "sources"):
        value = meta.get(key, {})
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            problems.append(
                ConfigProblem(
                    f"{META_KEY}.{key}", "expected a mapping of strings", value
                )
            )
            value = {}
        out.append(dict(value))
    if problems:
        raise NipConfigError(problems)
    return out[0], out[1]


def prepare_saved_dict(data: Mapping[str, Any], pm: Any = None) -> SavedDict:
    """Strip and check ``_meta``, migrate, and warn about every change made.

    Parameters
    ----------
    data : Mapping
        A dict written by ``HyperParameters.to_dict()`` (any version), by the
        original library, or by hand. It is not modified.
    pm : NipPluginManager, optional
        The plugin manager to take migrations and installed versions from (the
        process-wide one by default).

    Returns
    -------
    SavedDict
        The dict in the current format and what ``_meta`` said about its sources.
    """
    if pm is None:
        from nip_core.plugins import get_plugin_manager

        pm = get_plugin_manager()
    params = copy.deepcopy(dict(data))
    meta = params.pop(META_KEY, None)
    messages: list[str] = []
    sources: dict[str, str] = {}
    steps = list(pm.migrations.values())
    installed = pm.plugin_versions()
    legacy = meta is None and is_legacy_dict(params)

    if meta is not None:
        versions, sources = _read_meta(meta)
    elif legacy:
        saved = params.get("_package_version")
        saved = saved if isinstance(saved, str) else None
        _check_legacy_shape(params, saved, steps)
        params, _, legacy_messages = chain_migrations(
            params, LEGACY_COMPONENT, saved, None, steps
        )
        messages.append(
            "converted a dict written by the original nip library "
            f"{saved or '(unversioned)'}"
        )
        messages.extend(legacy_messages)
        versions = {CORE_COMPONENT: LEGACY_CORE_VERSION}
        for step in steps:
            if step.component not in (LEGACY_COMPONENT, CORE_COMPONENT):
                versions.setdefault(step.component, "0")
    else:
        versions = {}

    components = sorted(versions, key=lambda c: (c != CORE_COMPONENT, c))
    for component in components:
        saved = versions[component]
        target = installed.get(component)
        if target is None:
            continue
        if version_key(saved) > version_key(target):
            messages.append(
                f"written by {component} {saved}, newer than the installed {target}; "
                "parameters it added will be reported as unknown"
            )
            continue
        params, _, step_messages = chain_migrations(
            params, component, saved, target, steps
        )
        messages.extend(step_messages)

    messages.extend(_drop_handover(params))
    if legacy:
        messages.extend(_drop_unprovided_sections(params, pm))

    if messages:
        warnings.warn(
            "the saved parameters were converted to this version:\n  - "
            + "\n  - ".join(messages),
            ParameterMigrationWarning,
            stacklevel=3,
        )
    return SavedDict(data=params, sources=sources, messages=tuple(messages))


def _check_legacy_shape(
    params: Mapping[str, Any], saved: str | None, steps: list[Any]
) -> None:
    """Refuse an original-library dict the conversion cannot read: one written by a
    version newer than the conversion knows, or with ``agents`` not a mapping."""
    problems = []
    ends = [version_key(s.to_version) for s in steps if s.component == LEGACY_COMPONENT]
    if saved is not None and ends and version_key(saved) >= max(ends):
        known = max(
            (s.from_version for s in steps if s.component == LEGACY_COMPONENT),
            key=version_key,
        )
        problems.append(
            ConfigProblem(
                "_package_version",
                "written by a version of the original nip library newer than this "
                f"converter knows (it reads versions before {max(ends)[0]}, up to "
                f"the {known} series)",
                saved,
            )
        )
    agents = params.get("agents")
    if agents is not None and not isinstance(agents, Mapping):
        problems.append(
            ConfigProblem(
                "agents", "expected a mapping of agent names to parameters", agents
            )
        )
    if problems:
        raise NipConfigError(problems)


def _drop_unprovided_sections(params: dict[str, Any], pm: Any) -> list[str]:
    """Drop the original library's sections that no installed plugin provides."""
    from nip_core.parameters.hyper_parameters import CORE_FIELD_NAMES

    sections = pm.parameter_sections
    dropped = [
        key
        for key in list(params)
        if key not in CORE_FIELD_NAMES
        and key not in sections
        and isinstance(params[key], dict)
    ]
    for key in dropped:
        del params[key]
    if not dropped:
        return []
    return [
        f"section {key!r} dropped: no installed plugin provides it" for key in dropped
    ]
