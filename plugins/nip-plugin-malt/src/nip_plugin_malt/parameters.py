"""The ``pure_text_malt`` parameter section (imports without torch)."""

from __future__ import annotations

from attrs import field
from attrs import validators as v

from nip_core.parameters.base import SubParameters, parameters_class

__all__ = ["PureTextMaltParameters"]


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
    """

    num_responses_per_timestep: int = field(default=2, validator=v.ge(2))
    max_generations_per_iteration: int | None = field(
        default=20_000, validator=v.optional(v.ge(1))
    )
