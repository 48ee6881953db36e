"""The ``pure_text_malt`` parameter section (imports without torch)."""

from __future__ import annotations

from typing import Literal

from attrs import field
from attrs import validators as v

from nip_core.parameters.base import SubParameters, parameters_class

__all__ = ["NODE_VALUES", "PureTextMaltParameters"]

NodeValue = Literal["leaves", "branches"]
NODE_VALUES: tuple[str, ...] = ("leaves", "branches")


@parameters_class
class PureTextMaltParameters(SubParameters):
    """Multi-agent LLM training (section ``pure_text_malt``).

    Parameters
    ----------
    num_responses_per_timestep : int
        ``K``: the responses sampled at every turn, so every node of a response tree
        whose episode goes on has ``K`` children (at least 2). A tree has up to
        ``K ** max_message_rounds`` leaves.
    max_generations_per_iteration : int | None
        The most turns an iteration's trees may need (counted before sampling, as
        if no episode ended early, without retries): above it the run is refused,
        saying how to lower the count. ``None``: no limit.
    node_value : {"leaves", "branches"}
        How a node's value is formed from the episodes below it. ``leaves``: the
        mean reward of the leaves (the sampled episodes) below it, every leaf
        weighing the same, so a branch whose episode ended early counts as one leaf
        (the original library's rule). ``branches``: the mean of its children's
        values, so each of a node's ``K`` responses weighs the same however soon its
        episode ended (an ended branch counts as the padded subtree of identical
        leaves it stands for). The two agree on trees whose episodes all run the
        same number of rounds.
    """

    num_responses_per_timestep: int = field(default=2, validator=v.ge(2))
    max_generations_per_iteration: int | None = field(
        default=20_000, validator=v.optional(v.ge(1))
    )
    node_value: NodeValue = field(default="leaves", validator=v.in_(NODE_VALUES))
