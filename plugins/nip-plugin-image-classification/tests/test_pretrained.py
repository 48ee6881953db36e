"""Pretrained embeddings, with a small model built here (no hub download)."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from ic_helpers import make_handler, make_hyper_params, make_settings, tiny_agent_params
from nip_core import hookimpl
from nip_core.errors import MissingPluginError
from nip_core.records import PretrainedModelSpec
from nip_core.scenario import keys as K
from tensordict import TensorDict
from torch import nn

import nip_plugin_image_classification.plugin as ic_plugin
from nip_plugin_image_classification.agents import ImageClassificationAgentBody
from nip_plugin_image_classification.data import ImageClassificationDataset
from nip_plugin_image_classification.pretrained import (
    PretrainedImageModel,
    Resnet18PretrainedModel,
)


class TinyConvModel(PretrainedImageModel):
    """A 2×2, stride-2 convolution with fixed weights: 3 channels at half size."""

    embedding_channels: ClassVar[int] = 3
    embedding_downscale_factor: ClassVar[int] = 2
    batch_size: ClassVar[int] = 7
    loads: ClassVar[int] = 0

    def load_model(self) -> nn.Module:
        type(self).loads += 1
        torch.manual_seed(0)
        return nn.Conv2d(1, 3, kernel_size=2, stride=2)


class TinyModelPlugin:
    @hookimpl
    def register_pretrained_models(self):
        return [
            PretrainedModelSpec(
                name="tiny_conv",
                model_class=TinyConvModel,
                scenario="image_classification",
            )
        ]


@pytest.fixture
def with_tiny_model(register_plugin):
    register_plugin(ic_plugin, name="image_classification")
    register_plugin(TinyModelPlugin(), name="tiny_model")
    TinyConvModel.loads = 0


def test_embeddings_are_computed_once_then_read_from_the_cache(
    tmp_path, with_tiny_model
):
    hyper_params = make_hyper_params(
        "nip", binarification_method="select_two", max_train_size=20
    )
    settings = make_settings(tmp_path)
    settings.cache_dir = str(tmp_path / "cache")
    handler = make_handler(hyper_params)
    dataset = ImageClassificationDataset(hyper_params, settings, handler, "train")
    model = TinyConvModel(hyper_params, settings, "tiny_conv")
    assert model.embedding_shape == (3, 4, 4)

    model.add_to_dataset(dataset)
    assert TinyConvModel.loads == 1
    embeddings = dataset[0 : len(dataset)][K.PRETRAINED_EMBEDDINGS, "tiny_conv"]
    assert embeddings.shape == (20, 3, 4, 4)
    expected = TinyConvModel.load_model(model)(dataset.data["image"]).detach()
    torch.testing.assert_close(embeddings, expected)

    again = ImageClassificationDataset(hyper_params, settings, handler, "train")
    TinyConvModel(hyper_params, settings, "tiny_conv").add_to_dataset(again)
    assert TinyConvModel.loads == 2  # the one call above, for `expected`; none here
    torch.testing.assert_close(
        again[0:20][K.PRETRAINED_EMBEDDINGS, "tiny_conv"], embeddings
    )
    # A batch of datapoints carries its embeddings.
    assert again[0:4][K.PRETRAINED_EMBEDDINGS, "tiny_conv"].shape == (4, 3, 4, 4)


def test_body_reads_the_embeddings(tmp_path, with_tiny_model):
    hyper_params = make_hyper_params(
        "nip",
        agents={
            "_default": tiny_agent_params(
                pretrained_embeddings_model="tiny_conv", pretrained_embedding_channels=2
            )
        },
    )
    handler = make_handler(hyper_params)
    body = ImageClassificationAgentBody(
        hyper_params, make_settings(tmp_path), "verifier", handler
    )
    assert body.required_pretrained_models == ("tiny_conv",)
    assert (K.PRETRAINED_EMBEDDINGS, "tiny_conv") in body.in_keys
    image = torch.randn(4, 1, 8, 8)
    embeddings = torch.randn(4, 3, 4, 4)
    td = TensorDict(
        {"image": image, K.PRETRAINED_EMBEDDINGS: {"tiny_conv": embeddings}},
        batch_size=(4,),
    )
    out = body(td)
    assert out["image_level_repr"].shape == (4, 8)
    changed = td.clone()
    changed[K.PRETRAINED_EMBEDDINGS, "tiny_conv"] = embeddings + 1.0
    assert not torch.allclose(
        body(changed)["image_level_repr"], out["image_level_repr"]
    )


def test_resnet18_without_timm_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)
    hyper_params = make_hyper_params("nip", dataset="cifar10")
    model = Resnet18PretrainedModel(hyper_params, make_settings(tmp_path), "resnet18")
    assert model.embedding_shape == (512, 8, 8)
    assert model.timm_uri == "hf_hub:SamAdamDay/resnet18_cifar10"
    with pytest.raises(MissingPluginError, match="pip install timm"):
        model.load_model()
