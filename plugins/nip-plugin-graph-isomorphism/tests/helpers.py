"""Helpers shared by the plugin's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nip_core.parameters import HyperParameters

from nip_plugin_graph_isomorphism.agent_parameters import (
    GraphIsomorphismAgentParameters,
)


def tiny_hyper_params(
    interaction_protocol: str = "nip",
    zero_knowledge: bool = False,
    trainer: str = "solo_agent",
    **agent_overrides: Any,
) -> HyperParameters:
    """Tiny agents on the `test` dataset, 3-round protocols."""
    agent = GraphIsomorphismAgentParameters.construct_test_params()
    for key, value in agent_overrides.items():
        setattr(agent, key, value)
    return HyperParameters(
        scenario="graph_isomorphism",
        trainer=trainer,
        dataset="test",
        interaction_protocol=interaction_protocol,
        protocol_common={"zero_knowledge": zero_knowledge},
        agents={"_default": agent},
        nip_protocol={"max_message_rounds": 3},
        debate_protocol={"max_message_rounds": 3},
        mnip_protocol={"max_message_rounds": 3},
        rl={"frames_per_batch": None, "rollouts_per_iteration": 4},
    )


def settings(tmp_path: Path) -> Any:
    from nip_core.settings import ExperimentSettings

    return ExperimentSettings(
        data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache")
    )
