"""The plugin's configs compose and validate; a missing trainer or backend plugin
gives one clear message saying what to install."""

from __future__ import annotations

import warnings

import pytest
from nip_core.cli.compose import (
    SearchDir,
    build_experiment,
    compose,
    hydra_app,
    to_plain_dict,
)
from nip_core.errors import NipConfigError

import nip_plugin_code_validation.plugin as cv_plugin
from nip_plugin_code_validation.plugin import PROTOCOLS

GROUP = cv_plugin.CONFIG_DIR / "code_validation"
EXPERIMENTS = sorted(
    f"code_validation/{p.stem}" for p in GROUP.glob("*.yaml") if "base" not in p.stem
)


def _compose(name, overrides=()):
    from nip_core.builtin.configs import CORE_CONFIG_DIR

    search = [
        SearchDir("code_validation", cv_plugin.CONFIG_DIR),
        SearchDir("nip-core", CORE_CONFIG_DIR),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with hydra_app(search) as app:
            config = to_plain_dict(compose(app, name, list(overrides)))
    return config


def test_every_protocol_and_trainer_has_a_config() -> None:
    for protocol in PROTOCOLS:
        for trainer in ("pure_text_ei", "pure_text_malt"):
            assert f"code_validation/{protocol}_{trainer}" in EXPERIMENTS
    assert "code_validation/default" in EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_config_validates_with_a_known_trainer(code_validation_plugin, name) -> None:
    config = _compose(name, ["trainer=synthetic_text_sft", "text_backend.name=openai"])
    # the stand-in trainer replaces the trainer's own section too (it comes with a
    # plugin these tests do not load)
    for section in ("pure_text_ei", "pure_text_malt"):
        config.pop(section, None)
    hyper_params, _ = build_experiment(config, config_name=name)
    assert hyper_params.scenario == "code_validation"
    assert hyper_params.dataset == "humaneval_buggy"
    stem = name.split("/", 1)[1]
    if stem != "default":
        assert stem.startswith(hyper_params.interaction_protocol)


def test_missing_trainer_plugin_says_what_to_install(code_validation_plugin) -> None:
    with pytest.raises(NipConfigError) as info:
        build_experiment(_compose("code_validation/debate_pure_text_malt"))
    message = str(info.value)
    assert "pure_text_malt" in message and "nip-plugin-malt" in message


def test_default_says_what_to_install(code_validation_plugin) -> None:
    with pytest.raises(NipConfigError) as info:
        build_experiment(_compose("code_validation/default"))
    message = str(info.value)
    # "pip install nip-plugin-transformers", or "installed but not loaded" where
    # it is installed beside this plugin
    assert "nip-plugin-transformers" in message
    assert "nip-plugin-ei" in message


@pytest.mark.parametrize("protocol", ["nip", "debate", "mnip"])
def test_default_keeps_every_protocol_to_three_rounds(
    code_validation_plugin, protocol
) -> None:
    # the CPU-sized config's round cap holds whichever protocol is chosen
    # (humaneval_base gives the protocols with rounds of their own 7)
    config = _compose(
        "code_validation/default",
        [
            f"interaction_protocol={protocol}",
            "trainer=synthetic_text_sft",
            "text_backend.name=openai",
        ],
    )
    config.pop("pure_text_ei", None)
    config.pop("transformers_backend", None)
    hyper_params, _ = build_experiment(config, config_name="code_validation/default")
    assert hyper_params.interaction_protocol == protocol
    section = getattr(hyper_params, f"{protocol}_protocol")
    assert section.max_message_rounds == 3


def test_zero_knowledge_is_refused_clearly(code_validation_plugin) -> None:
    config = _compose(
        "code_validation/nip_pure_text_ei",
        ["trainer=synthetic_text_sft", "protocol_common.zero_knowledge=true"],
    )
    with pytest.raises(NipConfigError, match="zero-knowledge protocols need"):
        build_experiment(config)


def test_config_show_of_a_text_run_hides_the_tensor_worlds_fields(capsys):
    import yaml
    from nip_core.cli.main import main

    assert main(["config", "show", "-c", "code_validation/default"]) == 0
    out = capsys.readouterr().out
    config = yaml.safe_load(out)
    for name in ("d_representation", "message_size", "pretrain_agents"):
        assert name not in config
    assert "fields this run does not read, at their defaults, not shown" in out
    # a field set is shown, and the run is told it has no effect
    with pytest.warns(Warning, match="the text world does not read message_size=4"):
        status = main(
            ["config", "show", "-c", "code_validation/default", "message_size=4"]
        )
    assert status == 0
    assert yaml.safe_load(capsys.readouterr().out)["message_size"] == 4
    # --all shows every field
    assert main(["config", "show", "-c", "code_validation/default", "--all"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert "d_representation" in shown
    assert "update_schedule" in shown["agents"]["_default"]


def test_config_show_of_a_text_run_hides_the_tensor_agents_fields(capsys):
    import yaml
    from nip_core.cli.main import main

    assert main(["config", "show", "-c", "code_validation/default"]) == 0
    out = capsys.readouterr().out
    default = yaml.safe_load(out)["agents"]["_default"]
    # the text agent's fields, is_random, and loading from another run (read in
    # both worlds); none of the tensor agents'
    assert sorted(default) == [
        "backend",
        "checkpoint_entity",
        "checkpoint_project",
        "checkpoint_run_id",
        "checkpoint_source",
        "checkpoint_version",
        "fine_tune_from_scratch",
        "freeze_agent",
        "is_random",
        "load_checkpoint_and_parameters",
        "max_response_words",
        "max_tokens_per_message",
        "model_name",
        "num_invalid_generation_retries",
        "repetition_penalty",
        "shared_model_group",
        "stop_sequences",
        "system_prompt_template_path",
        "temperature",
        "top_p",
    ]
    assert (
        "# 7 agent fields this run does not read (the tensor world's), at their "
        "defaults, not shown (agent_lr_factor, body_lr_factor, " in out
    )
    # one set is shown, and warned about: a text agent does not read it
    with pytest.warns(
        Warning,
        match=r"does not read agents\._default\.use_orthogonal_initialisation=False",
    ):
        status = main(
            [
                "config",
                "show",
                "-c",
                "code_validation/default",
                "agents._default.use_orthogonal_initialisation=false",
            ]
        )
    assert status == 0
    default = yaml.safe_load(capsys.readouterr().out)["agents"]["_default"]
    assert default["use_orthogonal_initialisation"] is False
    assert "agent_lr_factor" not in default
