"""build_protocol_handler: registry lookup, scenario specialisations, zero knowledge."""

from __future__ import annotations

import warnings

import pytest

from nip_core import hookimpl
from nip_core.errors import NipConfigError, UnknownKeyError
from nip_core.protocols import build_protocol_handler
from nip_core.protocols.base import ProtocolParameterView, ProtocolWarning
from nip_core.protocols.main_protocols import (
    DebateProtocolHandler,
    MnipProtocolHandler,
    NipProtocolHandler,
)
from nip_core.protocols.zero_knowledge import ZeroKnowledgeProtocolHandler
from nip_core.records import ProtocolSpec, ScenarioSpec, TrainerSpec


class SpecialNipHandler(NipProtocolHandler):
    """A scenario's own version of nip (used through its reference)."""


class SpecialZkHandler(ZeroKnowledgeProtocolHandler):
    """A scenario's own zero-knowledge wrapper."""


class ToyPlugin:
    """Registers a tensor scenario that specialises nip, a text scenario, a trainer
    and two protocols of a plugin (one for the tensor world only)."""

    @hookimpl
    def register_scenarios(self):
        common = dict(
            agent_parameters_class="nip_core.parameters:AgentParameters",
            dataset_class="toy.data:Dataset",
            default_dataset="toy",
        )
        return [
            ScenarioSpec(
                name="toy_tensor",
                protocol_handlers={
                    "nip": f"{__name__}:SpecialNipHandler",
                    "zero_knowledge": f"{__name__}:SpecialZkHandler",
                },
                **common,
            ),
            ScenarioSpec(
                name="toy_limited",
                supported_protocols=("nip", "debate"),
                **common,
            ),
            ScenarioSpec(name="toy_text", data_world="text", **common),
        ]

    @hookimpl
    def register_trainers(self):
        return [TrainerSpec(name="toy_trainer", trainer_class="toy.trainer:Trainer")]

    @hookimpl
    def register_protocols(self):
        return [
            ProtocolSpec(
                name="plugin_debate",
                handler_class=f"{__name__}:DebateProtocolHandler",
                agent_names=("prover0", "prover1", "verifier"),
                parameter_section="debate_protocol",
                data_worlds=("tensor", "text"),
                supports_zero_knowledge=True,
            ),
            ProtocolSpec(
                name="tensor_debate",
                handler_class=f"{__name__}:DebateProtocolHandler",
                agent_names=("prover0", "prover1", "verifier"),
                parameter_section="debate_protocol",
                data_worlds=("tensor",),
            ),
        ]


def view(
    protocol: str, scenario: str | None = None, **sections
) -> ProtocolParameterView:
    return ProtocolParameterView(
        interaction_protocol=protocol, scenario=scenario, **sections
    )


def build(hyper_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProtocolWarning)
        return build_protocol_handler(hyper_params)


@pytest.fixture
def toy(plugin_manager, register_plugin):
    register_plugin(ToyPlugin(), name="toy")
    return plugin_manager


def test_registered_handlers_without_a_scenario(plugin_manager) -> None:
    assert type(build(view("nip"))) is NipProtocolHandler
    assert type(build(view("mnip"))) is MnipProtocolHandler


def test_unknown_protocol_lists_the_known_ones(plugin_manager) -> None:
    with pytest.raises(UnknownKeyError, match="mnip"):
        build(view("mnipp"))


def test_scenario_specialisation_comes_first(toy) -> None:
    assert type(build(view("nip", "toy_tensor"))) is SpecialNipHandler
    assert type(build(view("debate", "toy_tensor"))) is DebateProtocolHandler


def test_zero_knowledge_wraps_the_handler(plugin_manager) -> None:
    handler = build(view("debate", protocol_common={"zero_knowledge": True}))
    assert type(handler) is ZeroKnowledgeProtocolHandler
    assert type(handler.base_protocol) is DebateProtocolHandler
    assert handler.agent_names[-2:] == ["adversarial_verifier", "simulator"]


def test_scenario_can_replace_the_zero_knowledge_wrapper(toy) -> None:
    handler = build(view("nip", "toy_tensor", protocol_common={"zero_knowledge": True}))
    assert type(handler) is SpecialZkHandler
    assert type(handler.base_protocol) is SpecialNipHandler


def test_zero_knowledge_needs_support(plugin_manager) -> None:
    with pytest.raises(NipConfigError, match="no zero-knowledge version") as info:
        build(view("solo_verifier", protocol_common={"zero_knowledge": True}))
    assert info.value.problems[0].path == "protocol_common.zero_knowledge"


def test_zero_knowledge_needs_the_tensor_world(toy) -> None:
    with pytest.raises(NipConfigError, match="only tensor scenarios"):
        build(
            view("plugin_debate", "toy_text", protocol_common={"zero_knowledge": True})
        )


def test_supported_protocols_are_enforced(toy) -> None:
    assert type(build(view("debate", "toy_limited"))) is DebateProtocolHandler
    with pytest.raises(NipConfigError, match="does not support") as info:
        build(view("mnip", "toy_limited"))
    assert info.value.problems[0].choices == ("nip", "debate")


def test_data_world_is_enforced(toy) -> None:
    with pytest.raises(NipConfigError, match="cannot step the text world"):
        build(view("tensor_debate", "toy_text"))
    assert type(build(view("nip", "toy_text"))) is NipProtocolHandler
    assert type(build(view("plugin_debate", "toy_text"))) is DebateProtocolHandler


def test_settings_device_is_used(plugin_manager) -> None:
    class Settings:
        device = "meta"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProtocolWarning)
        handler = build_protocol_handler(view("mnip"), Settings())
    assert handler.agent_channel_visibility_mask.device.type == "meta"


def test_through_hyper_parameters(toy) -> None:
    from nip_core.parameters import HyperParameters

    hyper_params = HyperParameters(
        scenario="toy_tensor",
        trainer="toy_trainer",
        interaction_protocol="mnip",
        agents={"_default": {}},
        mnip_protocol={"min_message_rounds": 2, "max_message_rounds": 5},
        protocol_common={"verifier_first": False},
    )
    handler = build(hyper_params)
    assert type(handler) is MnipProtocolHandler
    assert (handler.min_message_rounds, handler.max_message_rounds) == (2, 5)
    assert handler.max_verifier_questions == 2

    zk_params = HyperParameters(
        scenario="toy_tensor",
        trainer="toy_trainer",
        interaction_protocol="nip",
        agents={"_default": {}},
        nip_protocol={"max_message_rounds": 3},
        protocol_common={"zero_knowledge": True},
        zk_protocol={"simulator_reward_coefficient": 0.5},
    )
    handler = build(zk_params)
    assert type(handler) is SpecialZkHandler
    assert handler.max_message_rounds == 3
    assert handler.max_reward("simulator") == 2.0  # 2 turns x 0.5 x (1 + 1)


# --------------------------------------------------------------------------------------
# protocol_problems: what only the handler can tell, found when a config is validated


@pytest.fixture
def synthetic(register_plugin, tmp_path):
    from nip_core.testing.synthetic import SYNTHETIC_PLUGIN
    from nip_core.testing.synthetic.fixtures import SyntheticScenario

    register_plugin(SYNTHETIC_PLUGIN, name="synthetic")
    return SyntheticScenario(tmp_path)


def _validated(synthetic, protocol="nip", **overrides):
    from nip_core.cli.compose import build_experiment

    return build_experiment(synthetic.hyper_params_dict(protocol, **overrides))


def test_frames_per_batch_must_fit_the_protocols_rounds(synthetic):
    # 3 rounds per episode: 10 frames cannot be split into whole episodes
    with pytest.raises(NipConfigError) as info:
        _validated(synthetic, rl={"frames_per_batch": 10})
    (problem,) = info.value.problems
    assert problem.path == "rl.frames_per_batch"
    assert problem.value == 10
    assert "protocol 'nip' plays up to 3 rounds" in problem.message
    assert "use 9 or 12" in problem.message
    # a multiple is fine, and so is any number with its own steps per iteration
    hyper_params, _ = _validated(synthetic, rl={"frames_per_batch": 12})
    assert hyper_params.rl.frames_per_batch == 12
    _validated(synthetic, rl={"frames_per_batch": 10, "steps_per_env_per_iteration": 5})
    # debate's rounds are its own section's
    with pytest.raises(NipConfigError, match="protocol 'debate' plays up to 4"):
        _validated(
            synthetic,
            "debate",
            rl={"frames_per_batch": 10},
            debate_protocol={"max_message_rounds": 4},
        )
    # the solo-agent trainer collects no frames: not its business
    _validated(synthetic, trainer="solo_agent", rl={"frames_per_batch": 10})


def test_a_shared_bodys_factors_must_agree_before_anything_runs(synthetic):
    # one body, one learning rate: found at validation (a sweep checks every job
    # before launching any), not when the optimizer is built
    critic = {"use_advantage_and_critic": True}
    shared = {"use_shared_body": True}
    split = {"agent_lr_factor": {"actor": 1.0, "critic": 0.5}}
    with pytest.raises(NipConfigError) as info:
        _validated(synthetic, rl=shared, reinforce=critic, agents={"verifier": split})
    (problem,) = info.value.problems
    assert problem.path == "agents.verifier.agent_lr_factor"
    assert problem.value == {"actor": 1.0, "critic": 0.5}
    assert "rl.use_shared_body=false" in problem.message
    # the override is every agent's: one problem, at its own path
    override = {**shared, "body_lr_factor_override": {"actor": 2.0, "critic": 1.0}}
    with pytest.raises(NipConfigError) as info:
        _validated(synthetic, rl=override, reinforce=critic)
    assert [p.path for p in info.value.problems] == ["rl.body_lr_factor_override"]
    # separate bodies, no critic, or a random agent: nothing to agree on
    _validated(
        synthetic,
        rl={"use_shared_body": False},
        reinforce=critic,
        agents={"verifier": split},
    )
    _validated(synthetic, rl=shared, agents={"verifier": split})
    _validated(
        synthetic,
        rl=shared,
        reinforce=critic,
        agents={"prover": {"is_random": True, **split}},
    )


def test_a_protocol_its_settings_make_unplayable_names_its_section(synthetic):
    with pytest.raises(NipConfigError) as info:
        _validated(
            synthetic,
            protocol_common={"verifier_first": False},
            nip_protocol={"max_message_rounds": 1, "min_message_rounds": 1},
        )
    (problem,) = info.value.problems
    assert problem.path == "nip_protocol.max_message_rounds"
    assert problem.value == 1
    assert problem.message.endswith(
        "Set max_message_rounds to at least 2, or let the verifier go first "
        "(protocol_common.verifier_first=true)"
    )
