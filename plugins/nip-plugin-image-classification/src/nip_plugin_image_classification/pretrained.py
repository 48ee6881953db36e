"""Pretrained image models whose embeddings agents can read beside the image.

A :class:`PretrainedImageModel` embeds every image of a processed dataset as a
feature map ``(channels, height, width)``; the core's
:class:`~nip_core.scenario.pretrained.PretrainedModel` caches the result keyed by the
model and the dataset's own cache key, and attaches it to the dataset.

Register a model with the ``register_pretrained_models`` hook (a
:class:`~nip_core.records.PretrainedModelSpec` whose ``model_class`` is a subclass)
and name it in an agent's ``pretrained_embeddings_model``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
from nip_core.errors import MissingPluginError
from nip_core.scenario.pretrained import PretrainedModel
from torch import Tensor, nn
from torch.nn import functional as F

from nip_plugin_image_classification.datasets import ImageDatasetInfo, get_dataset_info


class PretrainedImageModel(PretrainedModel):
    """Base class of pretrained models that embed the images of a dataset.

    Subclasses set :attr:`embedding_channels` and :attr:`embedding_downscale_factor`
    and implement :meth:`load_model`; override :meth:`embed` when the model's
    embedding is not ``model(images)``.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters (``dataset``).
    settings : ExperimentSettings
        The run's settings (``device``, ``cache_dir``, ``ignore_cache``).
    model_name : str
        The model's registry key.

    Class attributes
    ----------------
    embedding_channels : int
        Channels of the embedding.
    embedding_downscale_factor : int
        The embedding's height and width are the image's divided by this (rounded
        up).
    batch_size : int
        Images embedded per forward pass.
    """

    embedding_channels: ClassVar[int]
    embedding_downscale_factor: ClassVar[int] = 1
    batch_size: ClassVar[int] = 256

    @abstractmethod
    def load_model(self) -> nn.Module:
        """Build or load the network (called only when embeddings are computed)."""

    def embed(self, model: nn.Module, images: Tensor) -> Tensor:
        """The embeddings of a batch of images scaled to [-1, 1], ``(N, C, H, W)``."""
        return model(images)

    @property
    def dataset_info(self) -> ImageDatasetInfo:
        """The run's dataset."""
        return get_dataset_info(str(self.hyper_params.dataset))

    @property
    def embedding_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one embedding for the run's dataset."""
        info = self.dataset_info
        factor = self.embedding_downscale_factor
        return (
            self.embedding_channels,
            -(-info.height // factor),
            -(-info.width // factor),
        )

    @property
    def device(self) -> torch.device:
        return torch.device(getattr(self.settings, "device", None) or "cpu")

    @torch.no_grad()
    def compute_embeddings(self, images: Tensor) -> Tensor:
        """Embed images in batches on the run's device; returned on the CPU."""
        model = self.load_model().to(self.device)
        model.eval()
        chunks = []
        for start in range(0, images.shape[0], self.batch_size):
            batch = images[start : start + self.batch_size].to(self.device)
            chunks.append(self.embed(model, batch).to("cpu", torch.float32))
        embeddings = (
            torch.cat(chunks) if chunks else torch.empty(0, *self.embedding_shape)
        )
        if tuple(embeddings.shape[1:]) != self.embedding_shape:
            raise ValueError(
                f"pretrained model {self.model_name!r} produced embeddings of shape "
                f"{tuple(embeddings.shape[1:])}, but declares {self.embedding_shape}"
            )
        return embeddings

    def generate_embeddings(self, dataset: Any) -> Tensor:
        return self.compute_embeddings(dataset.data["image"])


class Resnet18PretrainedModel(PretrainedImageModel):
    """ResNet-18 trained on the run's dataset, from the Hugging Face hub via timm.

    The models are those of the original library (``SamAdamDay/resnet18_<dataset>``);
    the embedding is the last feature map (stride 4 on these small images, 512
    channels). Needs ``pip install timm`` and a network connection on first use.
    """

    hub_user: ClassVar[str] = "SamAdamDay"
    embedding_channels: ClassVar[int] = 512
    embedding_downscale_factor: ClassVar[int] = 4

    @property
    def timm_uri(self) -> str:
        return f"hf_hub:{self.hub_user}/resnet18_{self.dataset_info.name}"

    def load_model(self) -> nn.Module:
        try:
            import timm
        except ImportError as error:
            raise MissingPluginError(
                f"the pretrained model {self.model_name!r} needs the package timm: "
                "`pip install timm` (it then downloads "
                f"{self.timm_uri} on first use)"
            ) from error
        model = timm.create_model(self.timm_uri, pretrained=True)
        data_config = timm.data.resolve_data_config(model=model)
        self._input_size = tuple(data_config["input_size"][-2:])
        self._mean = torch.tensor(data_config["mean"]).view(1, -1, 1, 1)
        self._std = torch.tensor(data_config["std"]).view(1, -1, 1, 1)
        return model

    def embed(self, model: nn.Module, images: Tensor) -> Tensor:
        images = (images + 1.0) / 2.0
        if tuple(images.shape[-2:]) != self._input_size:
            images = F.interpolate(images, size=self._input_size, mode="bilinear")
        images = (images - self._mean.to(images.device)) / self._std.to(images.device)
        return model.forward_features(images)
