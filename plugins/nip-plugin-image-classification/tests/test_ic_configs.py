"""The plugin's experiment configs compose and validate; one PPO config runs."""

from __future__ import annotations

import warnings

import attrs
import pytest
from nip_core.cli.main import main
from nip_core.testing.configs import compose_experiments, config_names

import nip_plugin_image_classification.plugin as ic_plugin
from nip_plugin_image_classification.datasets import DATASET_NAMES

EXPERIMENTS = config_names(ic_plugin.CONFIG_DIR, "image_classification")
PROTOCOLS = ("nip", "adp", "debate", "merlin_arthur", "mnip")


@pytest.fixture(autouse=True)
def _scenario_registered(ic_in_global_manager):
    yield


def _needs_ppo(name: str) -> bool:
    return "solo_agent" not in name


def _ppo_installed() -> bool:
    from nip_core.plugins import get_plugin_manager

    return "vanilla_ppo" in get_plugin_manager().trainers


def _compose(names, overrides=()):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compose_experiments(
            names,
            *overrides,
            first_dirs=[("image_classification", ic_plugin.CONFIG_DIR)],
        )


def test_every_protocol_and_trainer_has_a_config_on_both_datasets():
    for dataset in ("digits", "cifar10"):
        for protocol in PROTOCOLS:
            for trainer in ("vanilla_ppo", "spg"):
                assert (
                    f"image_classification/{dataset}_{protocol}_{trainer}"
                    in EXPERIMENTS
                )
        assert f"image_classification/{dataset}_solo_agent" in EXPERIMENTS
        assert (
            f"image_classification/{dataset}_solo_verifier_vanilla_ppo" in EXPERIMENTS
        )
    assert "image_classification/ppo_ic" in EXPERIMENTS


def test_configs_compose_into_valid_experiments():
    names = [n for n in EXPERIMENTS if _ppo_installed() or not _needs_ppo(n)]
    for name, (hyper_params, _settings) in _compose(names).items():
        stem = name.split("/", 1)[1]
        assert hyper_params.scenario == "image_classification", name
        if stem != "ppo_ic":
            dataset, rest = stem.split("_", 1)
            assert hyper_params.dataset == dataset, name
            if rest == "solo_agent":
                assert hyper_params.trainer == "solo_agent", name
            else:
                assert rest.endswith(hyper_params.trainer), name
                assert rest.startswith(hyper_params.interaction_protocol), name
    assert {"image_classification/digits_solo_agent"} <= set(names)


@pytest.mark.skipif(not _ppo_installed(), reason="nip-plugin-ppo is not installed")
def test_ppo_ic_keeps_the_original_settings():
    hyper_params, _ = _compose(["image_classification/ppo_ic"])[
        "image_classification/ppo_ic"
    ]
    assert hyper_params.dataset == "cifar10"
    assert hyper_params.trainer == "vanilla_ppo"
    assert hyper_params.seed == 8144
    assert hyper_params.image_classification.binarification_method == "select_two"
    assert hyper_params.agents["prover"].num_blocks_per_group == 4
    assert hyper_params.agents["prover"].num_decider_layers == 3
    assert hyper_params.agents["prover"].pretrained_embeddings_model == "resnet18"
    assert hyper_params.agents["verifier"].num_blocks_per_group == 1
    assert hyper_params.agents["verifier"].pretrained_embeddings_model is None
    # the 1.0 script (earlier versions had 1024)
    assert hyper_params.rl.frames_per_batch == 256
    assert hyper_params.rl.num_epochs == 10
    assert hyper_params.rl.lr == 0.0003
    assert hyper_params.ppo.entropy_eps == 0.001
    assert hyper_params.nip_protocol.min_message_rounds == 3
    assert hyper_params.nip_protocol.max_message_rounds == 8
    assert hyper_params.image_classification.initial_num_channels == 16


def test_zero_knowledge_config_turns_it_on():
    if not _ppo_installed():
        pytest.skip("nip-plugin-ppo is not installed")
    name = "image_classification/digits_nip_zk_vanilla_ppo"
    hyper_params, _ = _compose([name])[name]
    assert hyper_params.protocol_common.zero_knowledge is True


@pytest.mark.slow
@pytest.mark.skipif(not _ppo_installed(), reason="nip-plugin-ppo is not installed")
def test_digits_nip_ppo_config_runs_end_to_end(tmp_path):
    from nip_core.experiment import run_experiment

    name = "image_classification/digits_nip_vanilla_ppo"
    hyper_params, settings = _compose(
        [name],
        [
            "rl.rollouts_per_iteration=4",
            "rl.num_iterations=2",
            "rl.minibatch_size=8",
            "rl.num_epochs=1",
            "dataset_options.max_train_size=16",
            "dataset_options.max_test_size=8",
        ],
    )[name]
    settings = attrs.evolve(
        settings,
        data_dir=str(tmp_path / "data"),
        runs_dir=str(tmp_path / "runs"),
        cache_dir=str(tmp_path / "cache"),
        show_progress=False,
    )
    result = run_experiment(hyper_params, settings)
    final = result.metrics[-1]
    assert 0.0 <= final["test_mean_accuracy"] <= 1.0
    assert "verifier.test_mean_episode_reward" in final


@pytest.mark.parametrize("name", ["mydigits", "./data/mine", "stray"])
def test_only_the_named_datasets_are_accepted(name, tmp_path, monkeypatch, capsys):
    # image classification reads only its named sets: no builder, no path to the
    # user's own images, no other folder in the data directory; the hint must
    # suggest none of them, and the problem comes at validation, before a run
    # directory exists
    from nip_core.errors import NipConfigError
    from nip_core.parameters import HyperParameters

    monkeypatch.setenv("NIP_DATA_DIR", str(tmp_path))
    for folder in ("stray", "digits"):
        (tmp_path / "image_classification" / folder / "raw").mkdir(parents=True)
    with pytest.raises(NipConfigError) as info:
        HyperParameters("image_classification", "solo_agent", dataset=name).validate()
    (problem,) = info.value.problems
    assert problem.path == "dataset"
    assert problem.value == name
    assert problem.choices == DATASET_NAMES
    assert ("did you mean 'digits'?" in problem.message) == (name == "mydigits")
    assert "reads only its named datasets, not a path" in problem.message
    assert "give a path" not in problem.message
    assert "nip datasets generate" not in problem.message
    # and `nip datasets list` shows only the named sets on disk
    assert main(["datasets", "list"]) == 0
    listed = capsys.readouterr().out.split("image_classification (")[1]
    assert "on disk:         digits\n" in listed
    assert "stray" not in listed


def test_generate_says_the_scenario_has_no_builder(capsys):
    # the plugin is installed: no "missing plugin" hint, but what it reads
    assert main(["datasets", "generate", "image_classification", "mine"]) == 2
    err = capsys.readouterr().err
    assert "scenario 'image_classification' has no dataset builder" in err
    assert "digits, mnist" in err
    assert "not installed" not in err
