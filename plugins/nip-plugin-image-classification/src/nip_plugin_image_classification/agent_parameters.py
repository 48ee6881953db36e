"""Parameters of one image classification agent (imports without torch)."""

from __future__ import annotations

from typing import Any, Literal

from attrs import field
from attrs import validators as v
from nip_core.parameters import AgentParameters, parameters_class

ActivationFunction = Literal["relu", "tanh", "sigmoid", "gelu"]
ACTIVATION_FUNCTIONS: tuple[str, ...] = ("relu", "tanh", "sigmoid", "gelu")

BuildingBlockType = Literal["conv2d", "residual_basic"]
BUILDING_BLOCK_TYPES: tuple[str, ...] = ("conv2d", "residual_basic")

_positive_int = v.and_(v.instance_of(int), v.ge(1))


def _unit_stride(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, int) or value != 1:
        raise ValueError(
            "stride must be 1: the latent-pixel grid agents message about is fixed at "
            "(H / 2**num_block_groups, W / 2**num_block_groups) by the max-pooling "
            "after each group, and a strided block would shrink it further"
        )


@parameters_class
class ImageClassificationAgentParameters(AgentParameters):
    """Parameters of an image classification agent: a CNN body and MLP heads.

    The body has ``image_classification.num_block_groups`` groups of
    ``num_blocks_per_group`` building blocks; each group doubles the channels and
    ends with a 2×2 max-pooling.

    Parameters
    ----------
    activation_function : {"relu", "tanh", "sigmoid", "gelu"}
        The non-linearity used throughout the agent.
    building_block_type : {"conv2d", "residual_basic"}
        ``conv2d``: a ``kernel_size`` convolution with "same" padding.
        ``residual_basic``: a ResNet basic block (two 3×3 convolutions with batch
        norm and a skip connection, projected by a 1×1 convolution when the number
        of channels changes).
    num_blocks_per_group : int
        Building blocks in each group.
    kernel_size : int
        Kernel size of ``conv2d`` blocks (odd, so "same" padding is symmetric).
    stride : int
        Stride of the building blocks; must be 1 (kept for configs of the original).
    pretrained_embeddings_model : str | None
        A registered pretrained model (see ``nip plugins``) whose image embeddings are
        scaled to the image size and fed to the body with the image. ``None`` uses
        none.
    pretrained_embedding_channels : int
        The embeddings are reduced to this many channels by a 1×1 convolution.
    d_latent_pixel_selector : int
        Hidden width of the MLP choosing the latent pixel to send.
    num_latent_pixel_selector_layers : int
        Layers of that MLP.
    d_decider : int
        Hidden width of the MLP deciding to accept, reject or continue.
    num_decider_layers : int
        Layers of that MLP.
    include_round_in_decider : bool
        Whether the decider sees the round number (one-hot).
    d_linear_message_selector : int
        Hidden width of the linear-message selector, when the linear message space
        is in use.
    num_linear_message_selector_layers : int
        Layers of that MLP.
    d_value : int
        Hidden width of the value MLP.
    num_value_layers : int
        Layers of that MLP.
    include_round_in_value : bool
        Whether the value MLP sees the round number (one-hot).
    """

    activation_function: ActivationFunction = field(
        default="tanh", validator=v.in_(ACTIVATION_FUNCTIONS)
    )

    building_block_type: BuildingBlockType = field(
        default="conv2d", validator=v.in_(BUILDING_BLOCK_TYPES)
    )
    num_blocks_per_group: int = field(default=2, validator=_positive_int)
    kernel_size: int = field(default=3, validator=_positive_int)
    stride: int = field(default=1, validator=_unit_stride)

    pretrained_embeddings_model: str | None = field(
        default=None, validator=v.optional(v.instance_of(str))
    )
    pretrained_embedding_channels: int = field(default=64, validator=_positive_int)

    d_latent_pixel_selector: int = field(default=16, validator=_positive_int)
    num_latent_pixel_selector_layers: int = field(default=2, validator=_positive_int)

    d_decider: int = field(default=16, validator=_positive_int)
    num_decider_layers: int = field(default=2, validator=_positive_int)
    include_round_in_decider: bool = field(default=True, validator=v.instance_of(bool))

    d_linear_message_selector: int = field(default=16, validator=_positive_int)
    num_linear_message_selector_layers: int = field(default=2, validator=_positive_int)

    d_value: int = field(default=16, validator=_positive_int)
    num_value_layers: int = field(default=2, validator=_positive_int)
    include_round_in_value: bool = field(default=True, validator=v.instance_of(bool))

    @classmethod
    def construct_test_params(cls) -> ImageClassificationAgentParameters:
        """The smallest agent: one block per group and one-layer, width-1 heads."""
        return cls(
            building_block_type="conv2d",
            num_blocks_per_group=1,
            d_latent_pixel_selector=1,
            num_latent_pixel_selector_layers=1,
            d_decider=1,
            num_decider_layers=1,
            d_linear_message_selector=1,
            num_linear_message_selector_layers=1,
            d_value=1,
            num_value_layers=1,
        )
