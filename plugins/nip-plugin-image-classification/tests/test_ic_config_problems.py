"""Settings the chosen dataset cannot satisfy are refused before anything runs
(``ScenarioSpec.config_problems``), with the dotted path, the value and the valid
range; a damaged raw file is one ``nip: error:`` line."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
from nip_core.cli.main import main
from nip_core.errors import NipConfigError

from nip_plugin_image_classification.checks import (
    config_problems,
    largest_num_block_groups,
)
from nip_plugin_image_classification.datasets import IMAGE_DATASETS
from nip_plugin_image_classification.parameters import ImageClassificationParameters

CONFIG = "image_classification/digits_solo_agent"


@pytest.fixture(autouse=True)
def _scenario_registered(ic_in_global_manager):
    yield


CASES = {
    "num_block_groups": (
        ["image_classification.num_block_groups=4"],
        "image_classification.num_block_groups: pools the 8×8 images of 'digits' to "
        "an empty grid; at most 3 for this dataset (got 4)",
    ),
    "num_block_groups_mnist": (
        ["dataset=mnist", "image_classification.num_block_groups=5"],
        "image_classification.num_block_groups: pools the 28×28 images of 'mnist' to "
        "an empty grid; at most 4 for this dataset (got 5)",
    ),
    "selected_classes": (
        [
            "image_classification.binarification_method=select_two",
            "image_classification.selected_classes=[3,10]",
        ],
        "image_classification.selected_classes: names a class outside 0..9, the "
        "classes of 'digits' (got (3, 10))",
    ),
    "test_dataset_split": (
        ["test_dataset_split=validation"],
        "test_dataset_split: image dataset 'digits' has no validation split (got "
        "'validation'); valid choices: test",
    ),
    "pretrained_model": (
        ["agents._default.pretrained_embeddings_model=foo"],
        "agents._default.pretrained_embeddings_model: unknown pretrained model (got "
        "'foo'); valid choices: resnet18",
    ),
    "pretrained_model_original_name": (
        ["agents.verifier.pretrained_embeddings_model=SamAdamDay/resnet18_cifar10"],
        "agents.verifier.pretrained_embeddings_model: unknown pretrained model; did "
        "you mean 'resnet18'? (the original library's '<hub user>/<model>_<dataset>' "
        "name; here the dataset is the run's) (got 'SamAdamDay/resnet18_cifar10'); "
        "valid choices: resnet18",
    ),
    "dataset_path": (
        ["dataset=./data/my_set"],
        "dataset: unknown dataset of scenario 'image_classification' (it reads only "
        "its named datasets, not a path or another folder of the data directory) "
        "(got './data/my_set'); valid choices: "
        "digits, mnist, fashion_mnist, kmnist, cifar10, cifar100, svhn",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["show", "run"])
def test_refused_before_anything_runs(case, command, tmp_path, capsys):
    overrides, expected = CASES[case]
    runs, data = tmp_path / "runs", tmp_path / "data"
    argv = ["config", "show"] if command == "show" else ["run"]
    status = main(
        [
            *argv,
            "-c",
            CONFIG,
            *overrides,
            "solo_agent.num_epochs=1",
            f"run.runs_dir={runs}",
            f"run.data_dir={data}",
        ]
    )
    out, err = capsys.readouterr()
    assert status == 2, err
    assert err == f"nip: error: invalid configuration: 1 problem\n  - {expected}\n"
    assert out == ""
    assert not runs.exists()
    assert not data.exists()


def test_validate_refuses_a_config_file(tmp_path, capsys):
    path = tmp_path / "nbg.yaml"
    path.write_text(
        "defaults:\n  - /image_classification/digits_solo_agent\n  - _self_\n"
        "image_classification:\n  num_block_groups: 4\n"
    )
    status = main(["config", "validate", str(path)])
    _, err = capsys.readouterr()
    assert status == 2, err
    assert (
        "  - image_classification.num_block_groups: pools the 8×8 images of 'digits' "
        "to an empty grid; at most 3 for this dataset (got 4)\n" in err
    )


def test_negative_binarification_seed_is_a_config_error(tmp_path, capsys):
    status = main(
        [
            "config",
            "show",
            "-c",
            CONFIG,
            "image_classification.binarification_seed=-1",
        ]
    )
    _, err = capsys.readouterr()
    assert status == 2, err
    assert err == (
        "nip: error: invalid configuration: 1 problem\n"
        "  - image_classification.binarification_seed: must be >= 0 (got -1)\n"
    )
    with pytest.raises(NipConfigError, match="binarification_seed: must be >= 0"):
        ImageClassificationParameters(binarification_seed=-3)
    assert ImageClassificationParameters(binarification_seed=0).binarification_seed == 0


@pytest.mark.parametrize(
    ("dataset", "largest"),
    [("digits", 3), ("mnist", 4), ("cifar10", 5), ("svhn", 5)],
)
def test_largest_num_block_groups_matches_the_networks(dataset, largest):
    from nip_plugin_image_classification.networks import latent_size

    info = IMAGE_DATASETS[dataset]
    assert largest_num_block_groups(info) == largest
    assert latent_size(info.height, largest) >= 1
    assert latent_size(info.height, largest + 1) == 0


def test_settings_that_fit_have_no_problems():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hyper_params = SimpleNamespace(
            dataset="cifar100",
            test_dataset_split="test",
            agents={},
            image_classification=ImageClassificationParameters(
                num_block_groups=5,
                binarification_method="select_two",
                selected_classes=(10, 99),
            ),
        )
    assert config_problems(hyper_params) == []
    # selected_classes only matter to select_two
    hyper_params.dataset = "digits"
    hyper_params.image_classification = ImageClassificationParameters(
        selected_classes=(10, 99)
    )
    assert config_problems(hyper_params) == []


def test_damaged_raw_file_is_one_error_line(tmp_path, capsys):
    from test_damaged_files import write_mnist

    folder = write_mnist(tmp_path / "data", compress=True)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    status = main(
        [
            "run",
            "-c",
            CONFIG,
            "dataset=mnist",
            "solo_agent.num_epochs=1",
            f"run.runs_dir={tmp_path / 'runs'}",
            f"run.data_dir={tmp_path / 'data'}",
        ]
    )
    _, err = capsys.readouterr()
    assert status == 1, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"nip: error: image dataset 'mnist' (train split): {path} is damaged (it "
        "ends too early: truncated, or only partly downloaded); delete it so that the "
        "next run downloads it again (with `nip-plugin-image-classification"
        "[torchvision]` installed), or replace it with a good copy (source: "
        "http://yann.lecun.com/exdb/mnist/)"
    )


def test_a_folder_in_the_data_directory_is_not_a_dataset(tmp_path, capsys):
    (tmp_path / "data" / "image_classification" / "foo").mkdir(parents=True)
    status = main(
        [
            "run",
            "-c",
            CONFIG,
            "dataset=foo",
            f"run.runs_dir={tmp_path / 'runs'}",
            f"run.data_dir={tmp_path / 'data'}",
        ]
    )
    _, err = capsys.readouterr()
    assert status == 2, err
    assert err == (
        "nip: error: invalid configuration: 1 problem\n"
        "  - dataset: unknown dataset of scenario 'image_classification' (it reads "
        "only its named datasets, not a path or another folder of the data "
        "directory) (got 'foo'); valid choices: digits, "
        "mnist, fashion_mnist, kmnist, cifar10, cifar100, svhn\n"
    )
    assert not (tmp_path / "runs").exists()
