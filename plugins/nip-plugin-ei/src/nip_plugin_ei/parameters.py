"""The ``pure_text_ei`` parameter section (imports without torch)."""

from __future__ import annotations

import math
from typing import Any, Literal

from attrs import field
from attrs import validators as v

from nip_core.errors import ConfigProblem
from nip_core.parameters.base import SubParameters, parameters_class

__all__ = ["ROLLOUT_SELECTION_METHODS", "PureTextEiParameters"]

RolloutSelectionMethod = Literal["threshold", "weighted_sampling"]
ROLLOUT_SELECTION_METHODS: tuple[str, ...] = ("threshold", "weighted_sampling")


def _finite(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


def _positive(instance: Any, attribute: Any, value: Any) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value!r}")


@parameters_class
class PureTextEiParameters(SubParameters):
    """Expert iteration (section ``pure_text_ei``).

    Each iteration, every agent's episodes are filtered by the agent's episode
    reward (the sum of its rewards), and each shared model group is fine-tuned
    (supervised) on the chats of its agents' selected episodes. The verifier guess
    replacement and the other data rules shared by text trainers are in ``text_rl``.

    Parameters
    ----------
    rollout_selection_method : {"threshold", "weighted_sampling"}
        ``threshold``: keep the episodes whose reward for the agent is at least
        ``reward_threshold``. ``weighted_sampling``: draw
        ``round(weighting_sample_size_factor × N)`` episodes with probabilities
        proportional to their normalised rewards (see the other ``weighting_``
        fields).
    reward_threshold : float
        ``threshold``: the least episode reward an episode needs to be kept.
    weighting_sample_size_factor : float
        ``weighted_sampling``: the sample size as a multiple of the number of
        episodes (greater than 0; at most 1 without replacement).
    weighting_minimum : float | None
        ``weighted_sampling``: rewards below it count as it, and the weights are the
        rewards minus it. ``None``: the weights are the rewards minus the smallest
        reward.
    weighting_use_replacement : bool
        ``weighted_sampling``: draw with replacement (an episode may be drawn, and
        trained on, several times).
    weighting_epsilon : float
        ``weighted_sampling``: added, divided by the number of episodes, to the
        normalised weights (then normalised again), so that every episode has a
        chance (at least 0).
    """

    rollout_selection_method: RolloutSelectionMethod = field(
        default="threshold", validator=v.in_(ROLLOUT_SELECTION_METHODS)
    )
    reward_threshold: float = field(default=0.9, validator=_finite)
    weighting_sample_size_factor: float = field(
        default=0.5, validator=[_finite, _positive]
    )
    weighting_minimum: float | None = field(default=None, validator=_finite)
    weighting_use_replacement: bool = True
    weighting_epsilon: float = field(default=0.01, validator=[_finite, v.ge(0)])

    def consistency_problems(self) -> list[ConfigProblem]:
        problems = super().consistency_problems()
        if (
            self.rollout_selection_method == "weighted_sampling"
            and not self.weighting_use_replacement
            and self.weighting_sample_size_factor > 1
        ):
            problems.append(
                ConfigProblem(
                    "weighting_sample_size_factor",
                    "without replacement (weighting_use_replacement: false) at most "
                    "every episode can be drawn once: the factor must be at most 1",
                    self.weighting_sample_size_factor,
                )
            )
        return problems
