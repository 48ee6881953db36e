"""The neural networks of image classification agents, as plain torch modules.

The agent parts in :mod:`nip_plugin_image_classification.agents` wrap these modules in
the core's TensorDict agent-part interface; keeping the networks plain makes their
shapes easy to test and reuse.

Every module accepts any number of leading batch dimensions. In the dimension names
below, ``channel`` is a *message* channel (how groups of agents talk); channels of an
image or a feature map are ``image_channel`` / ``latent_channel``.
"""

from __future__ import annotations

import torch
from nip_core.scenario.networks import (  # noqa: F401 (re-exported)
    ACTIVATIONS,
    RoundMlp,
    activation,
    mlp,
)
from torch import Tensor, nn
from torch.nn import functional as F


def latent_size(size: int, num_block_groups: int) -> int:
    """The size of a side of the latent grid: each group's max-pooling halves it."""
    for _ in range(num_block_groups):
        size //= 2
    return size


def upsample_latent(grid: Tensor, block: int, size: tuple[int, int]) -> Tensor:
    """``(..., h, w)`` latent values onto the ``size`` image grid: each latent pixel
    onto the ``block`` × ``block`` image pixels it pools, the rows and columns past
    ``h * block`` and ``w * block`` (which floor pooling leaves out) zero. Where the
    image's sides are multiples of ``block`` this is nearest-neighbour upsampling."""
    out = grid.repeat_interleave(block, dim=-2).repeat_interleave(block, dim=-1)
    pad_h, pad_w = size[0] - out.shape[-2], size[1] - out.shape[-1]
    if pad_h or pad_w:
        out = F.pad(out, (0, pad_w, 0, pad_h))
    return out


class _Flat4d(nn.Module):
    """Apply a module made for ``(N, C, H, W)`` to ``(..., C, H, W)``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        batch_shape = x.shape[:-3]
        out = self.module(x.reshape(-1, *x.shape[-3:]))
        return out.reshape(*batch_shape, *out.shape[-3:])


class ResidualBasicBlock(nn.Module):
    """A ResNet basic block: two 3×3 convolutions with batch norm and a skip path.

    When the number of channels changes, the skip path is a 1×1 convolution with
    batch norm, as in ResNet.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


def build_block(
    block_type: str, in_channels: int, out_channels: int, kernel_size: int
) -> nn.Module:
    """One building block of the given type."""
    if block_type == "conv2d":
        return nn.Conv2d(in_channels, out_channels, kernel_size, padding="same")
    if block_type == "residual_basic":
        return ResidualBasicBlock(in_channels, out_channels)
    raise ValueError(f"unknown building block type {block_type!r}")


class ImageEncoder(nn.Module):
    """The body network: image and message history in, two representations out.

    1. The message history (one-hot latent pixels per round, channel and position)
       is upsampled (nearest) onto the image grid and concatenated with the image
       (and the scaled pretrained embeddings, when used).
    2. A per-pixel two-layer MLP (1×1 convolutions) maps that to
       ``initial_num_channels`` channels.
    3. ``num_block_groups`` groups of building blocks follow, each doubling the
       channels and ending with a 2×2 max-pooling: the result is one vector per
       latent pixel.
    4. The most recent message is appended as extra channels of the latent grid.
    5. Global mean pooling gives the image-level vector; linear maps give both
       representations their final width ``d_representation``.

    Parameters
    ----------
    image_shape : tuple[int, int, int]
        ``(image_channels, height, width)``.
    history_channels : int
        ``rounds × visible message channels × message size``.
    message_channels : int
        ``visible message channels × message size``.
    num_block_groups, initial_num_channels : int
        The scenario's CNN shape.
    block_type : str
        ``conv2d`` or ``residual_basic``.
    num_blocks_per_group, kernel_size : int
        Per-agent CNN shape.
    d_representation : int
        Width of the output representations.
    activation_name : str
        Non-linearity.
    embedding_shape : tuple[int, int, int] | None
        ``(channels, height, width)`` of pretrained embeddings, if used.
    embedding_channels : int
        Channels the embeddings are reduced to by a 1×1 convolution.
    d_linear_message_history : int
        Width of the flattened linear message history appended to the image-level
        vector (0 when the linear message space is not used).
    """

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        history_channels: int,
        message_channels: int,
        num_block_groups: int,
        initial_num_channels: int,
        block_type: str,
        num_blocks_per_group: int,
        kernel_size: int,
        d_representation: int,
        activation_name: str,
        embedding_shape: tuple[int, int, int] | None = None,
        embedding_channels: int = 0,
        d_linear_message_history: int = 0,
    ):
        super().__init__()
        image_channels, self.height, self.width = image_shape
        self.latent_height = latent_size(self.height, num_block_groups)
        self.latent_width = latent_size(self.width, num_block_groups)
        # a latent pixel pools this many image pixels a side (the max-poolings
        # floor: rows and columns past latent_size * block are pooled by none)
        self.block = 2**num_block_groups
        if self.latent_height < 1 or self.latent_width < 1:
            raise ValueError(
                f"{num_block_groups} block groups shrink a {self.height}×{self.width} "
                "image to nothing; use fewer image_classification.num_block_groups"
            )
        self.message_channels = message_channels
        self.embedding_shape = embedding_shape

        in_channels = history_channels + image_channels
        self.embedding_projection: nn.Module | None = None
        if embedding_shape is not None:
            self.embedding_projection = nn.Conv2d(
                embedding_shape[0], embedding_channels, kernel_size=1
            )
            in_channels += embedding_channels

        self.initial_encoder = _Flat4d(
            nn.Sequential(
                nn.Conv2d(in_channels, in_channels, kernel_size=1),
                activation(activation_name),
                nn.Conv2d(in_channels, initial_num_channels, kernel_size=1),
            )
        )

        layers: list[nn.Module] = []
        channels = initial_num_channels
        for _ in range(num_block_groups):
            out_channels = 2 * channels
            for block_index in range(num_blocks_per_group):
                block_in = channels if block_index == 0 else out_channels
                layers.append(
                    build_block(block_type, block_in, out_channels, kernel_size)
                )
                layers.append(activation(activation_name))
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            channels = out_channels
        self.cnn = _Flat4d(nn.Sequential(*layers))
        self.latent_num_channels = channels

        d_latent = channels + message_channels
        self.latent_pixel_output = nn.Linear(d_latent, d_representation)
        self.image_level_output = nn.Linear(
            d_latent + d_linear_message_history, d_representation
        )

    def _scale_embeddings(self, embeddings: Tensor) -> Tensor:
        batch_shape = embeddings.shape[:-3]
        flat = embeddings.reshape(-1, *embeddings.shape[-3:]).to(torch.float32)
        if flat.shape[-2:] != (self.height, self.width):
            if flat.shape[-2] >= self.height and flat.shape[-1] >= self.width:
                flat = F.adaptive_avg_pool2d(flat, (self.height, self.width))
            else:
                flat = F.interpolate(
                    flat, size=(self.height, self.width), mode="nearest"
                )
        flat = self.embedding_projection(flat)
        return flat.reshape(*batch_shape, *flat.shape[-3:])

    def forward(
        self,
        x: Tensor,
        image: Tensor,
        message: Tensor | None = None,
        ignore_message: Tensor | None = None,
        embeddings: Tensor | None = None,
        linear_message_history: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Encode a batch.

        Parameters
        ----------
        x : Tensor
            ``(... round channel position latent_height latent_width)``.
        image : Tensor
            ``(... image_channel height width)``.
        message : Tensor, optional
            ``(... channel position latent_height latent_width)``; zeros if absent.
        ignore_message : Tensor, optional
            ``(...)`` booleans: zero the message where true (round 0).
        embeddings : Tensor, optional
            ``(... embedding_channel embedding_height embedding_width)``.
        linear_message_history : Tensor, optional
            ``(... round channel position linear_message)``.

        Returns
        -------
        image_level_repr : Tensor
            ``(... d_representation)``.
        latent_pixel_level_repr : Tensor
            ``(... latent_height latent_width d_representation)``.
        """
        batch_shape = image.shape[:-3]
        history = x.to(torch.float32).reshape(
            *batch_shape, -1, self.latent_height, self.latent_width
        )
        history = upsample_latent(
            history.reshape(-1, *history.shape[-3:]),
            self.block,
            (self.height, self.width),
        ).reshape(*batch_shape, -1, self.height, self.width)
        features = [history, image.to(torch.float32)]
        if self.embedding_projection is not None:
            if embeddings is None:
                raise ValueError("this body needs pretrained embeddings")
            features.append(self._scale_embeddings(embeddings))
        hidden = self.initial_encoder(torch.cat(features, dim=-3))
        latent = self.cnn(hidden)

        if message is None:
            message = latent.new_zeros(
                *batch_shape,
                self.message_channels,
                self.latent_height,
                self.latent_width,
            )
        else:
            message = message.to(torch.float32).reshape(
                *batch_shape, -1, self.latent_height, self.latent_width
            )
            if ignore_message is not None:
                message = torch.where(
                    ignore_message[..., None, None, None], 0.0, message
                )
        latent = torch.cat([latent, message], dim=-3)

        image_level = latent.mean(dim=(-2, -1))
        if linear_message_history is not None:
            image_level = torch.cat(
                [image_level, linear_message_history.flatten(len(batch_shape))], dim=-1
            )
        latent_pixel_level = self.latent_pixel_output(latent.movedim(-3, -1))
        return self.image_level_output(image_level), latent_pixel_level


class LatentPixelSelector(nn.Module):
    """Logits over latent pixels for each visible channel and message position.

    ``(... latent_height latent_width d)`` → ``(... channel position
    latent_height*latent_width)``.
    """

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        num_layers: int,
        num_channels: int,
        message_size: int,
        activation_name: str,
    ):
        super().__init__()
        self.num_channels = num_channels
        self.message_size = message_size
        self.mlp = mlp(
            d_in, d_hidden, num_channels * message_size, num_layers, activation_name
        )

    def forward(self, latent_pixel_level_repr: Tensor) -> Tensor:
        logits = self.mlp(latent_pixel_level_repr)  # (... lh lw channel*position)
        logits = logits.flatten(-3, -2)  # (... lh*lw channel*position)
        logits = logits.unflatten(-1, (self.num_channels, self.message_size))
        return logits.movedim(-3, -1)
