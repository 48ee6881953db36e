"""The core sections: defaults of the original library, validators, documentation."""

from __future__ import annotations

import re

import attrs
import pytest

from nip_core.errors import NipConfigError
from nip_core.parameters import (
    AgentParameters,
    BaseRunParameters,
    HyperParameters,
    LrFactors,
    MessageRegressionParameters,
    RandomAgentParameters,
    ReinforceParameters,
    RlTrainerParameters,
    SoloAgentParameters,
    preserved_paths,
)

CORE_SECTIONS = {
    "rl": RlTrainerParameters,
    "solo_agent": SoloAgentParameters,
    "reinforce": ReinforceParameters,
    "message_regression": MessageRegressionParameters,
    "base_run": BaseRunParameters,
}


def test_builtin_plugin_registers_the_core_sections(plugin_manager):
    sections = plugin_manager.parameter_sections
    for name, cls in CORE_SECTIONS.items():
        assert sections[name].parameters_class is cls
        assert sections[name].plugin == "nip-core.parameters"


def test_rl_defaults_are_the_original_ones():
    assert attrs.asdict(RlTrainerParameters(), recurse=False) == {
        "frames_per_batch": 1000,
        "rollouts_per_iteration": None,
        "steps_per_env_per_iteration": None,
        "num_iterations": 1000,
        "num_epochs": 4,
        "minibatch_size": 64,
        "lr": 0.003,
        "anneal_lr": False,
        "max_grad_norm": 1.0,
        "loss_critic_type": "smooth_l1",
        "clip_value": False,
        "normalize_observations": True,
        "num_normalization_steps": 1000,
        "gamma": 0.9,
        "lmbda": 0.95,
        "body_lr_factor_override": None,
        "use_shared_body": True,
        "num_test_iterations": 10,
        "test_period": None,  # not in the original: it tested after training only
    }


def test_other_section_defaults_are_the_original_ones():
    assert attrs.asdict(SoloAgentParameters()) == {
        "num_epochs": 100,
        "batch_size": 256,
        "learning_rate": 0.001,
        "body_lr_factor_override": False,
    }
    # clip_epsilon: the default of the original ppo.clip_epsilon, which its REINFORCE
    # read
    assert attrs.asdict(ReinforceParameters()) == {
        "use_advantage_and_critic": False,
        "clip_epsilon": 0.2,
    }
    assert attrs.asdict(MessageRegressionParameters()) == {
        "enabled": False,
        "agents": None,
        "regression_method": "mlp",
        "test_size": 0.2,
        "reset_on_fit": True,
        "mlp_num_layers": 2,
        "mlp_hidden_size": 64,
        "mlp_activation": "relu",
        "mlp_num_epochs": 10,
        "mlp_batch_size": 64,
        "mlp_learning_rate": 0.001,
    }
    assert attrs.asdict(BaseRunParameters()) == {
        "base_run_type": "none",
        "run_id": None,
        "source": "local",
        "wandb_project": "",
        "wandb_entity": "",
    }


def test_agent_parameters_defaults():
    agent = AgentParameters()
    assert agent.agent_lr_factor == LrFactors(actor=1.0, critic=1.0)
    assert agent.body_lr_factor == LrFactors(actor=1.0, critic=1.0)
    assert agent.use_orthogonal_initialisation is True
    assert agent.orthogonal_initialisation_gain == 1.0
    assert agent.checkpoint_version == "latest"
    assert agent.checkpoint_source == "local"
    assert not agent.is_random and RandomAgentParameters().is_random


@pytest.mark.parametrize(
    ("cls", "kwargs", "path", "message"),
    [
        (RlTrainerParameters, {"num_epochs": 0}, "num_epochs", "must be >= 1"),
        (RlTrainerParameters, {"gamma": 1.5}, "gamma", "must be <= 1"),
        (RlTrainerParameters, {"lmbda": -0.1}, "lmbda", "must be >= 0"),
        (RlTrainerParameters, {"max_grad_norm": 0.0}, "max_grad_norm", "must be > 0"),
        (RlTrainerParameters, {"frames_per_batch": 0}, "frames_per_batch", ">= 1"),
        (RlTrainerParameters, {"lr": "fast"}, "lr", "expected a number"),
        (
            RlTrainerParameters,
            {"num_epochs": True},
            "num_epochs",
            "expected an integer",
        ),
        (RlTrainerParameters, {"num_epochs": 2.0}, "num_epochs", "expected an integer"),
        (RlTrainerParameters, {"clip_value": -0.2}, "clip_value", "non-negative"),
        (
            RlTrainerParameters,
            {"loss_critic_type": "l3"},
            "loss_critic_type",
            "expected one of the valid choices",
        ),
        (
            RlTrainerParameters,
            {"frames_per_batch": 10, "steps_per_env_per_iteration": 3},
            "steps_per_env_per_iteration",
            "must divide frames_per_batch (10)",
        ),
        (SoloAgentParameters, {"learning_rate": 0}, "learning_rate", "must be > 0"),
        (MessageRegressionParameters, {"test_size": 1.0}, "test_size", "must be < 1"),
        (MessageRegressionParameters, {"agents": ("a", 2)}, "agents", "expected"),
        (BaseRunParameters, {"base_run_type": "rerun_tests"}, "run_id", "is required"),
        (BaseRunParameters, {"source": "s3"}, "source", "expected one of"),
        (
            AgentParameters,
            {"orthogonal_initialisation_gain": 0.0},
            "orthogonal_initialisation_gain",
            "> 0",
        ),
        (
            AgentParameters,
            {"load_checkpoint_and_parameters": True},
            "checkpoint_run_id",
            "is required",
        ),
        (LrFactors, {"actor": -1.0}, "actor", "must be >= 0"),
    ],
)
def test_invalid_values_are_reported_with_path(cls, kwargs, path, message):
    with pytest.raises(NipConfigError) as info:
        cls(**kwargs)
    (problem,) = info.value.problems
    assert problem.path == path
    assert message in problem.message


def test_literal_choices_are_listed():
    with pytest.raises(NipConfigError) as info:
        MessageRegressionParameters(mlp_activation="gelu")
    assert info.value.problems[0].choices == ("relu", "tanh", "sigmoid")
    # once: in the choices, not in the message too
    assert str(info.value).count("relu") == 1
    assert "expected one of the valid choices (got 'gelu'); valid choices: relu" in (
        str(info.value)
    )


def test_every_bad_field_is_reported_not_only_the_first():
    with pytest.raises(NipConfigError) as info:
        RlTrainerParameters(num_epochs=0, lr=-1.0, gamma=2, minibatch_size="64", lrr=1)
    assert [p.path for p in info.value.problems] == [
        "lrr",
        "num_epochs",
        "minibatch_size",
        "lr",
        "gamma",
    ]


def test_assignment_is_validated():
    rl = RlTrainerParameters()
    with pytest.raises(NipConfigError) as info:
        rl.num_epochs = -3
    assert info.value.problems[0].path == "num_epochs"
    assert rl.num_epochs == 4
    rl.body_lr_factor_override = {"actor": 0.5}
    assert rl.body_lr_factor_override == LrFactors(actor=0.5, critic=1.0)


def test_lists_become_tuples_and_dicts_become_classes():
    regression = MessageRegressionParameters(agents=["prover", "verifier"])
    assert regression.agents == ("prover", "verifier")
    agent = AgentParameters(agent_lr_factor={"actor": 0.0, "critic": 2.0})
    assert agent.agent_lr_factor == LrFactors(actor=0.0, critic=2.0)


def test_nested_problem_paths():
    with pytest.raises(NipConfigError) as info:
        AgentParameters(agent_lr_factor={"actor": -1.0, "critc": 1.0})
    assert {p.path for p in info.value.problems} == {
        "agent_lr_factor.actor",
        "agent_lr_factor.critc",
    }


def test_construct_test_params_is_small():
    rl = RlTrainerParameters.construct_test_params()
    assert (rl.frames_per_batch, rl.num_iterations, rl.num_epochs) == (8, 2, 1)
    assert SoloAgentParameters.construct_test_params().num_epochs == 1
    assert ReinforceParameters.construct_test_params() == ReinforceParameters()


def _documented_names(cls: type) -> list[str]:
    doc = cls.__doc__ or ""
    _, _, section = doc.partition("Parameters\n    ----------\n")
    return re.findall(r"^    (\w+) :", section, flags=re.MULTILINE)


@pytest.mark.parametrize(
    "cls",
    [
        *CORE_SECTIONS.values(),
        LrFactors,
        AgentParameters,
    ],
)
def test_every_field_has_a_numpydoc_entry(cls):
    own = [f.name for f in attrs.fields(cls)]
    assert _documented_names(cls) == own


def test_hyper_parameters_documents_every_core_field():
    documented = _documented_names(HyperParameters)
    fields = [
        f.name for f in attrs.fields(HyperParameters) if not f.name.startswith("_")
    ]
    assert documented == fields


def test_preserved_paths_for_rerun_tests():
    assert preserved_paths(RlTrainerParameters(), "rerun_tests") == [
        "num_test_iterations"
    ]
    assert preserved_paths(RlTrainerParameters(), "parameters") == []


def test_nested_containers_report_element_paths():
    from nip_core.parameters import structure

    with pytest.raises(NipConfigError) as info:
        structure({"a": {"actor": -1.0}, "b": {"critic": 1.0}}, dict[str, LrFactors])
    assert [p.path for p in info.value.problems] == ["a.actor"]
    with pytest.raises(NipConfigError) as info:
        structure([{"actor": 1.0}, {"actr": 1.0}], tuple[LrFactors, ...])
    assert [p.path for p in info.value.problems] == ["[1].actr"]
    assert structure([{"actor": 0.5}], tuple[LrFactors, ...]) == (LrFactors(actor=0.5),)
