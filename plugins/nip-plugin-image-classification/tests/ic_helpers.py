"""Tiny experiment pieces for the plugin's tests (no core experiment factory needed)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from nip_core.parameters.agents import AgentsParameters, RandomAgentParameters
from nip_core.parameters.dataset import DatasetParameters
from nip_core.protocols.base import ProtocolParameterView
from nip_core.protocols.factory import build_protocol_handler
from nip_core.protocols.parameters import (
    CommonProtocolParameters,
    DebateProtocolParameters,
    MnipProtocolParameters,
    NipProtocolParameters,
)

from nip_plugin_image_classification.agent_parameters import (
    ImageClassificationAgentParameters,
)
from nip_plugin_image_classification.parameters import ImageClassificationParameters

PROTOCOLS: tuple[str, ...] = (
    "nip",
    "adp",
    "debate",
    "merlin_arthur",
    "mnip",
    "solo_verifier",
    "multi_channel_test",
)


def _split_options(options: dict) -> tuple[dict, dict]:
    """Image-classification fields and ``dataset_options`` fields of one mapping."""
    sizes = {
        k: v for k, v in options.items() if k in ("max_train_size", "max_test_size")
    }
    return {k: v for k, v in options.items() if k not in sizes}, sizes


def tiny_agent_params(**overrides: Any) -> ImageClassificationAgentParameters:
    values = dict(
        num_blocks_per_group=1,
        d_latent_pixel_selector=4,
        num_latent_pixel_selector_layers=1,
        d_decider=4,
        num_decider_layers=2,
        d_value=4,
        num_value_layers=1,
    )
    values.update(overrides)
    return ImageClassificationAgentParameters(**values)


def make_hyper_params(
    protocol: str = "nip",
    *,
    zero_knowledge: bool = False,
    agents: dict[str, Any] | None = None,
    dataset: str = "digits",
    max_message_rounds: int = 3,
    message_size: int = 1,
    num_block_groups: int = 1,
    initial_num_channels: int = 2,
    frames_per_batch: int = 12,
    **dataset_options: Any,
) -> SimpleNamespace:
    """A stand-in for ``HyperParameters`` with the fields this plugin reads."""
    common = CommonProtocolParameters(zero_knowledge=zero_knowledge)
    nip = NipProtocolParameters(max_message_rounds=max_message_rounds)
    debate = DebateProtocolParameters(max_message_rounds=max_message_rounds)
    mnip = MnipProtocolParameters(max_message_rounds=max_message_rounds)
    return SimpleNamespace(
        scenario="image_classification",
        dataset=dataset,
        interaction_protocol=protocol,
        seed=3,
        message_size=message_size,
        d_representation=8,
        include_linear_message_space=False,
        d_linear_message_space=2,
        agents=AgentsParameters(agents or {"_default": tiny_agent_params()}),
        image_classification=ImageClassificationParameters(
            num_block_groups=num_block_groups,
            initial_num_channels=initial_num_channels,
            **_split_options(dataset_options)[0],
        ),
        dataset_options=DatasetParameters(**_split_options(dataset_options)[1]),
        protocol_common=common,
        nip_protocol=nip,
        debate_protocol=debate,
        mnip_protocol=mnip,
        rl=SimpleNamespace(
            frames_per_batch=frames_per_batch,
            steps_per_env_per_iteration=None,
            rollouts_per_iteration=None,
        ),
    )


def make_handler(hyper_params: SimpleNamespace) -> Any:
    view = ProtocolParameterView(
        interaction_protocol=hyper_params.interaction_protocol,
        protocol_common=hyper_params.protocol_common,
        nip_protocol=hyper_params.nip_protocol,
        debate_protocol=hyper_params.debate_protocol,
        mnip_protocol=hyper_params.mnip_protocol,
    )
    return build_protocol_handler(view)


def make_settings(data_dir: Any) -> SimpleNamespace:
    return SimpleNamespace(data_dir=str(data_dir), ignore_cache=False, device="cpu")


def random_agent() -> RandomAgentParameters:
    return RandomAgentParameters()
