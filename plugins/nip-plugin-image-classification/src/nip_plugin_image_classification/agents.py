"""Agent parts of the image classification scenario: a CNN body and MLP heads.

The networks themselves are in :mod:`nip_plugin_image_classification.networks`; the
classes here give them the core's TensorDict agent-part interface (see
:mod:`nip_core.scenario.agents`).

Body outputs (agent level):

- ``"image_level_repr"`` ``(*batch, d_representation)``;
- ``"latent_pixel_level_repr"`` ``(*batch, latent_height, latent_width,
  d_representation)``.

Every agent's body has the same input shapes: the combined parts zero the message
channels an agent cannot see. Heads produce logits for the channels the agent sees
and leave the others at 0 (the agent is never active on them).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import torch
from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.scenario import keys as K
from nip_core.scenario.agents import (
    AgentBody,
    AgentPolicyHead,
    TensorDictAgentPartMixin,
)
from nip_core.scenario.heads import RepresentationSoloHead, RepresentationValueHead
from nip_core.scenario.parts import uses_batch_statistics
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import Tensor

from nip_plugin_image_classification.data import image_classification_options
from nip_plugin_image_classification.datasets import get_dataset_info
from nip_plugin_image_classification.environment import latent_grid_shape
from nip_plugin_image_classification.networks import (
    ImageEncoder,
    LatentPixelSelector,
    RoundMlp,
    mlp,
)

IMAGE_LEVEL_REPR = "image_level_repr"
LATENT_PIXEL_LEVEL_REPR = "latent_pixel_level_repr"
BODY_OUT_KEYS: tuple[str, ...] = (IMAGE_LEVEL_REPR, LATENT_PIXEL_LEVEL_REPR)

DEFAULT_D_REPRESENTATION = 16


class ImageClassificationAgentPartMixin(TensorDictAgentPartMixin):
    """Shapes every image classification part needs."""

    @property
    def d_representation(self) -> int:
        """Width of the body's representations (``hyper_params.d_representation``)."""
        return int(
            getattr(self.hyper_params, "d_representation", DEFAULT_D_REPRESENTATION)
        )

    @cached_property
    def image_shape(self) -> tuple[int, int, int]:
        """``(image_channel, height, width)``."""
        info = get_dataset_info(str(self.hyper_params.dataset))
        return (info.num_channels, info.height, info.width)

    @cached_property
    def latent_shape(self) -> tuple[int, int]:
        """``(latent_height, latent_width)``: the message grid."""
        return latent_grid_shape(self.hyper_params)

    @property
    def num_latent_pixels(self) -> int:
        return self.latent_shape[0] * self.latent_shape[1]


class ImageClassificationAgentBody(ImageClassificationAgentPartMixin, AgentBody):
    """The CNN body (see :class:`~.networks.ImageEncoder`).

    Reads ``image``, ``message_history`` and ``message`` (zeros when absent, as in
    supervised training on dataset batches), the pretrained embeddings named by
    ``pretrained_embeddings_model`` and, with the linear message space,
    ``linear_message_history``.

    The body of a random agent (``is_random``) has no network: it outputs zeros of
    the real body's shapes, which its heads never read but the combined body stacks
    with the other agents' outputs.
    """

    agent_level_out_keys: ClassVar[tuple[NestedKey, ...]] = BODY_OUT_KEYS

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        agent_name: str,
        protocol_handler: Any,
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            agent_name=agent_name,
            protocol_handler=protocol_handler,
        )
        params = self.agent_params
        self.is_random_agent = bool(getattr(params, "is_random", False))
        self.encoder: ImageEncoder | None = None
        if self.is_random_agent:
            self.dummy_parameter = torch.nn.Parameter(
                torch.zeros((), device=self._default_device)
            )
            return
        problems = []
        for flag in ("use_manual_architecture", "normalize_message_history"):
            if getattr(params, flag, False):
                problems.append(
                    ConfigProblem(
                        f"agents.{agent_name}.{flag}",
                        "is not available in the image classification scenario",
                        True,
                    )
                )
        if problems:
            raise NipConfigError(problems)

        ic_options = image_classification_options(hyper_params)
        # Raises a config error naming the largest valid num_block_groups.
        latent_grid_shape(hyper_params)
        rounds, channels = self.max_message_rounds, self.num_message_channels
        embedding_shape = None
        if self.pretrained_model is not None:
            embedding_shape = self.pretrained_model.embedding_shape
        d_linear_history = 0
        if self.include_linear_message_space:
            d_linear_history = (
                rounds * channels * self.message_size * self.d_linear_message_space
            )
        self.encoder = ImageEncoder(
            image_shape=self.image_shape,
            history_channels=rounds * channels * self.message_size,
            message_channels=channels * self.message_size,
            num_block_groups=int(ic_options.num_block_groups),
            initial_num_channels=int(ic_options.initial_num_channels),
            block_type=params.building_block_type,
            num_blocks_per_group=params.num_blocks_per_group,
            kernel_size=params.kernel_size,
            d_representation=self.d_representation,
            activation_name=params.activation_function,
            embedding_shape=embedding_shape,
            embedding_channels=params.pretrained_embedding_channels,
            d_linear_message_history=d_linear_history,
        ).to(self._default_device)
        self.init_weights()

    def _random_agent_outputs(self, tensordict: TensorDictBase) -> TensorDictBase:
        batch = tensordict.batch_size
        image = tensordict.get("image")
        zero = self.dummy_parameter * 0
        return TensorDict(
            {
                IMAGE_LEVEL_REPR: image.new_zeros(*batch, self.d_representation) + zero,
                LATENT_PIXEL_LEVEL_REPR: image.new_zeros(
                    *batch, *self.latent_shape, self.d_representation
                )
                + zero,
            },
            batch_size=batch,
        )

    @cached_property
    def pretrained_model(self) -> Any:
        """The model named by ``pretrained_embeddings_model``, or ``None``."""
        name = getattr(self.agent_params, "pretrained_embeddings_model", None)
        if name is None:
            return None
        from nip_core.plugins import get_plugin_manager
        from nip_core.records import resolve_ref

        spec = get_plugin_manager().pretrained_models[name]
        return resolve_ref(spec.model_class)(self.hyper_params, self.settings, name)

    @property
    def pretrained_model_name(self) -> str | None:
        return (
            None if self.pretrained_model is None else self.pretrained_model.model_name
        )

    @property
    def required_pretrained_models(self) -> tuple[str, ...]:
        name = self.pretrained_model_name
        return () if name is None else (name,)

    @property
    def env_level_in_keys(self) -> tuple[NestedKey, ...]:  # type: ignore[override]
        keys: tuple[NestedKey, ...] = ("image", K.MESSAGE_HISTORY, K.MESSAGE)
        if self.pretrained_model_name is not None:
            keys = (*keys, (K.PRETRAINED_EMBEDDINGS, self.pretrained_model_name))
        if self.include_linear_message_space:
            keys = (*keys, K.LINEAR_MESSAGE_HISTORY)
        return keys

    def _empty_history(self, image: Tensor) -> Tensor:
        return image.new_zeros(
            *image.shape[:-3],
            self.max_message_rounds,
            self.num_message_channels,
            self.message_size,
            *self.latent_shape,
        )

    @property
    def concurrent_safe(self) -> bool:
        """The CNN draws no random numbers (no dropout or noise): it may run beside
        the other agents' bodies on ``run.agent_threads`` threads."""
        return True

    @property
    def rows_independent(self) -> bool:
        """Each image apart, except for batch norm in training mode, which
        normalises with the batch's statistics."""
        return not uses_batch_statistics(self)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.encoder is None:
            return self._random_agent_outputs(tensordict)
        image = tensordict.get("image")
        history = tensordict.get(K.MESSAGE_HISTORY, None)
        if history is None:
            history = self._empty_history(image)
        embeddings = None
        if self.pretrained_model_name is not None:
            embeddings = tensordict.get(
                (K.PRETRAINED_EMBEDDINGS, self.pretrained_model_name)
            )
        linear_history = None
        if self.include_linear_message_space:
            linear_history = tensordict.get(K.LINEAR_MESSAGE_HISTORY, None)
            if linear_history is None:
                linear_history = image.new_zeros(
                    *image.shape[:-3],
                    self.max_message_rounds,
                    self.num_message_channels,
                    self.message_size,
                    self.d_linear_message_space,
                )
        image_level, latent_pixel_level = self.encoder(
            history,
            image,
            message=tensordict.get(K.MESSAGE, None),
            embeddings=embeddings,
            linear_message_history=linear_history,
        )
        return TensorDict(
            {
                IMAGE_LEVEL_REPR: image_level,
                LATENT_PIXEL_LEVEL_REPR: latent_pixel_level,
            },
            batch_size=tensordict.batch_size,
        )


class ImageClassificationAgentPolicyHead(
    ImageClassificationAgentPartMixin, AgentPolicyHead
):
    """Latent-pixel selector, and the decider for agents that decide.

    Outputs ``main_message_logits`` ``(*batch, channel, position,
    latent_height*latent_width)`` (zeros on channels the agent cannot see),
    ``decision_logits`` ``(*batch, 3)`` (zeros without a decider) and, with the linear
    message space, ``linear_message_logits`` ``(*batch, channel, position, D)``.
    """

    agent_level_in_keys: ClassVar[tuple[NestedKey, ...]] = BODY_OUT_KEYS

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        agent_name: str,
        protocol_handler: Any,
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            agent_name=agent_name,
            protocol_handler=protocol_handler,
        )
        params = self.agent_params
        self.latent_pixel_selector = LatentPixelSelector(
            d_in=self.d_representation,
            d_hidden=params.d_latent_pixel_selector,
            num_layers=params.num_latent_pixel_selector_layers,
            num_channels=self.num_visible_channels,
            message_size=self.message_size,
            activation_name=params.activation_function,
        )
        self.decider: RoundMlp | None = None
        if self.has_decider:
            self.decider = RoundMlp(
                self.d_representation,
                params.d_decider,
                3,
                params.num_decider_layers,
                params.activation_function,
                num_rounds=(
                    self.round_one_hot_size if params.include_round_in_decider else None
                ),
            )
        self.linear_message_selector = None
        if self.include_linear_message_space:
            self.linear_message_selector = mlp(
                self.d_representation,
                params.d_linear_message_selector,
                self.num_visible_channels
                * self.message_size
                * self.d_linear_message_space,
                params.num_linear_message_selector_layers,
                params.activation_function,
            )
        self.to(self._default_device)
        self.init_weights()

    @property
    def concurrent_safe(self) -> bool:
        """MLPs: no random numbers, nothing shared (the head may run in its
        body's tasks on ``run.agent_threads`` threads)."""
        return True

    @property
    def rows_independent(self) -> bool:
        """MLPs on each row's representation: the head may run on the rows where
        the agent's choices count alone (``counted_rows_only``)."""
        return True

    @property
    def env_level_in_keys(self) -> tuple[NestedKey, ...]:  # type: ignore[override]
        if self.decider is not None and self.decider.num_rounds is not None:
            return (K.ROUND,)
        return ()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        batch = tensordict.batch_size
        image_level = tensordict.get(IMAGE_LEVEL_REPR)
        visible = self.latent_pixel_selector(tensordict.get(LATENT_PIXEL_LEVEL_REPR))
        out = {
            K.MAIN_MESSAGE_LOGITS: self.scatter_to_channels(visible, len(batch)),
        }
        if self.decider is not None:
            out[K.DECISION_LOGITS] = self.decider(
                image_level, tensordict.get(K.ROUND, None)
            )
        else:
            out[K.DECISION_LOGITS] = image_level.new_zeros(*batch, 3)
        if self.linear_message_selector is not None:
            linear = self.linear_message_selector(image_level).unflatten(
                -1,
                (
                    self.num_visible_channels,
                    self.message_size,
                    self.d_linear_message_space,
                ),
            )
            out[K.LINEAR_MESSAGE_LOGITS] = self.scatter_to_channels(linear, len(batch))
        return TensorDict(out, batch_size=batch)


class ImageClassificationAgentValueHead(
    ImageClassificationAgentPartMixin, RepresentationValueHead
):
    """An MLP on the image-level representation (and the round): ``value``
    ``(*batch,)`` (see :class:`~nip_core.scenario.heads.RepresentationValueHead`)."""

    representation_key: ClassVar[NestedKey] = IMAGE_LEVEL_REPR


class ImageClassificationSoloAgentHead(
    ImageClassificationAgentPartMixin, RepresentationSoloHead
):
    """Two logits (label 0, label 1) from the image-level representation, for
    supervised training of an agent alone (``solo_agent``, pre-training; see
    :class:`~nip_core.scenario.heads.RepresentationSoloHead`)."""

    representation_key: ClassVar[NestedKey] = IMAGE_LEVEL_REPR
