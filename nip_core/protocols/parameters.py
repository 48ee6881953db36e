"""Parameter sections of the interaction protocols.

The sections registered by the core's built-in protocol plugin:

========================  =================================================
section                   class
========================  =================================================
``protocol_common``       :class:`CommonProtocolParameters`
``nip_protocol``          :class:`NipProtocolParameters`
``debate_protocol``       :class:`DebateProtocolParameters`
``mnip_protocol``         :class:`MnipProtocolParameters`
``zk_protocol``           :class:`ZkProtocolParameters`
========================  =================================================

This module must import without torch: configurations are validated (and ``nip
plugins`` lists sections) before anything heavy is imported.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import attrs
from attrs import field

from nip_core.parameters.base import SubParameters, parameters_class
from nip_core.parameters.validation import ValueProblem

GuessType: TypeAlias = Literal["zero", "one", "y"]
"""The verdicts ``force_guess`` can force: always reject, always accept, the truth."""

GUESS_CHOICES: tuple[str, ...] = ("zero", "one", "y")

VerifierDecisionSpectrumType: TypeAlias = Literal[
    "accept_reject",
    "likert_scale_4",
    "likert_scale_5",
    "likert_scale_6",
    "likert_scale_7",
    "likert_scale",
    "likert_scale_no_undecided",
    "out_of_10",
    "out_of_100",
]
"""The scales a text verifier can give its verdict on."""

VERIFIER_DECISION_SPECTRUM_CHOICES: tuple[str, ...] = (
    "accept_reject",
    "likert_scale_4",
    "likert_scale_5",
    "likert_scale_6",
    "likert_scale_7",
    "likert_scale",
    "likert_scale_no_undecided",
    "out_of_10",
    "out_of_100",
)


# --------------------------------------------------------------------------------------
# Validators
# --------------------------------------------------------------------------------------


def _is_bool(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be true or false, got {value!r}")


def _is_number(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    # bool is an int subclass, but a reward of ``True`` is always a mistake
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number, got {value!r}")


def _is_optional_number(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        _is_number(instance, attribute, value)


def _is_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an integer, got {value!r}")


def _in_choices(choices: tuple[str, ...], optional: bool = False):
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if optional and value is None:
            return
        if value not in choices:
            # The problem's path and value are shown beside the message
            suffix = " (or null)" if optional else ""
            raise ValueProblem(f"must be one of the valid choices{suffix}", choices)

    return check


def _rounds_at_least_one(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    _is_int(instance, attribute, value)
    if value < 1:
        raise ValueProblem("must be at least 1")


def _rounds_in_order(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Check ``max_message_rounds >= min_message_rounds``, once per broken rule.

    attrs runs validators after every field is stored at construction, and before
    storing on assignment. So at construction a field's stored value equals
    ``value``; the check is then left to ``max_message_rounds`` alone, and an
    assignment to either field is checked against the other's stored value.
    """
    stored = getattr(instance, attribute.name, None)
    if attribute.name == "min_message_rounds" and stored == value:
        return
    values = {
        "min_message_rounds": getattr(instance, "min_message_rounds", None),
        "max_message_rounds": getattr(instance, "max_message_rounds", None),
        attribute.name: value,
    }
    minimum = values["min_message_rounds"]
    maximum = values["max_message_rounds"]
    if isinstance(minimum, int) and isinstance(maximum, int) and maximum < minimum:
        if attribute.name == "max_message_rounds":
            raise ValueProblem(f"must be at least min_message_rounds ({minimum})")
        raise ValueProblem(f"must be at most max_message_rounds ({maximum})")


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------


@parameters_class
class CommonProtocolParameters(SubParameters):
    """Parameters common to every interaction protocol (section ``protocol_common``).

    Parameters
    ----------
    verifier_first : bool
        Whether the verifier speaks first (nip, debate, mnip).
    randomize_prover_stance : bool
        Whether, per episode, the verdict a single prover argues for is random. The
        stance is read from the episode's ``prover_stance`` if the environment
        provides it, and is ``seed % 2`` otherwise (1 = argues for accept). Only for
        protocols with exactly one prover.
    prover_reward : float
        The reward a prover gets when the verifier gives the verdict the prover argues
        for (accept, unless the stance is randomized or the protocol assigns stances).
    prover_invalid_response_penalty : float | None
        The reward of a prover whose response is invalid (text scenarios that report
        ``("agents", "valid_response")``); the episode is then terminated. ``None``:
        no penalty.
    verifier_reward : float
        The verifier's reward for a correct verdict.
    verifier_incorrect_penalty : float
        The verifier's reward for a wrong verdict.
    verifier_neither_accept_nor_reject_reward : float | None
        Text scenarios: the reward when the verifier neither accepts nor rejects;
        ``None`` means the mid-point of ``verifier_reward`` and
        ``verifier_incorrect_penalty``.
    verifier_terminated_penalty : float
        The verifier's reward when the episode reaches ``max_message_rounds`` without
        a verdict.
    verifier_no_guess_reward : float
        The verifier's reward for each of its turns on which it continues.
    shared_reward : bool
        Whether every prover gets the verifier's reward (overrides ``prover_reward``).
    force_guess : {"zero", "one", "y"} | None
        Replace the verifier's verdict on each of its turns from round
        ``min_message_rounds - 1`` on by reject (``"zero"``), accept (``"one"``) or
        the true label (``"y"``). The forced verdict ends the episode and decides
        every reward. ``None``: the verifier's own decision counts.
    zero_knowledge : bool
        Wrap the protocol in its zero-knowledge version (adds ``adversarial_verifier``
        and ``simulator``; see section ``zk_protocol``).
    verifier_decision_spectrum : str
        Text scenarios: the scale the verifier states its verdict on.
    """

    verifier_first: bool = field(default=True, validator=_is_bool)
    randomize_prover_stance: bool = field(default=False, validator=_is_bool)

    prover_reward: float = field(default=1.0, validator=_is_number)
    prover_invalid_response_penalty: float | None = field(
        default=None, validator=_is_optional_number
    )
    verifier_reward: float = field(default=1.0, validator=_is_number)
    verifier_incorrect_penalty: float = field(default=-1.0, validator=_is_number)
    verifier_neither_accept_nor_reject_reward: float | None = field(
        default=None, validator=_is_optional_number
    )
    verifier_terminated_penalty: float = field(default=-1.0, validator=_is_number)
    verifier_no_guess_reward: float = field(default=0.0, validator=_is_number)
    shared_reward: bool = field(default=False, validator=_is_bool)

    force_guess: GuessType | None = field(
        default=None, validator=_in_choices(GUESS_CHOICES, optional=True)
    )

    zero_knowledge: bool = field(default=False, validator=_is_bool)

    verifier_decision_spectrum: VerifierDecisionSpectrumType = field(
        default="accept_reject",
        validator=_in_choices(VERIFIER_DECISION_SPECTRUM_CHOICES),
    )


@parameters_class
class LongProtocolParameters(SubParameters):
    """Round limits of a protocol with a configurable number of rounds.

    Parameters
    ----------
    max_message_rounds : int
        The number of rounds after which the episode ends (rounds ``0`` to
        ``max_message_rounds - 1``). Each round is one move by one or more agents.
    min_message_rounds : int
        The verifier's verdicts count only from round ``min_message_rounds - 1`` on.
    allow_unread_rounds : bool
        Accept a ``max_message_rounds`` whose last round(s) the verifier never reads
        (8 rounds with the verifier first, as the original library's ``ppo_gi``
        had) without the warning nip gives about it.
    """

    max_message_rounds: int = field(
        default=8, validator=[_rounds_at_least_one, _rounds_in_order]
    )
    min_message_rounds: int = field(
        default=1, validator=[_rounds_at_least_one, _rounds_in_order]
    )
    allow_unread_rounds: bool = field(default=False, validator=_is_bool)


@parameters_class
class NipProtocolParameters(LongProtocolParameters):
    """Parameters of the ``nip`` protocol (section ``nip_protocol``).

    Parameters
    ----------
    max_message_rounds : int
        The number of rounds after which the episode ends.
    min_message_rounds : int
        The verifier's verdicts count only from round ``min_message_rounds - 1`` on.
    allow_unread_rounds : bool
        Accept last rounds the verifier never reads, without a warning.
    """


@parameters_class
class TwoProverProtocolParameters(LongProtocolParameters):
    """Round limits and turn order of a protocol with two provers.

    The base of ``debate_protocol`` and ``mnip_protocol``, which have the same fields
    with the same defaults.

    Parameters
    ----------
    max_message_rounds : int
        The number of rounds after which the episode ends.
    min_message_rounds : int
        The verifier's verdicts count only from round ``min_message_rounds - 1`` on.
    allow_unread_rounds : bool
        Accept last rounds the verifier never reads, without a warning.
    sequential : bool
        Whether the provers speak one after the other (verifier, first prover, second
        prover) instead of simultaneously.
    prover0_first : bool
        With ``sequential``, whether ``prover0`` speaks before ``prover1``.
    randomize_channel_order : bool
        Text scenarios: whether the order the verifier reads the provers' channels in
        is random per episode.
    """

    sequential: bool = field(default=False, validator=_is_bool)
    prover0_first: bool = field(default=True, validator=_is_bool)
    randomize_channel_order: bool = field(default=True, validator=_is_bool)


@parameters_class
class DebateProtocolParameters(TwoProverProtocolParameters):
    """Parameters of the ``debate`` protocol (section ``debate_protocol``).

    Parameters
    ----------
    max_message_rounds : int
        The number of rounds after which the episode ends.
    min_message_rounds : int
        The verifier's verdicts count only from round ``min_message_rounds - 1`` on.
    allow_unread_rounds : bool
        Accept last rounds the verifier never reads, without a warning.
    sequential : bool
        Whether the provers speak one after the other (verifier, first prover, second
        prover) instead of simultaneously.
    prover0_first : bool
        With ``sequential``, whether ``prover0`` speaks before ``prover1``.
    randomize_channel_order : bool
        Text scenarios: whether the order the verifier reads the provers' channels in
        is random per episode.
    """


@parameters_class
class MnipProtocolParameters(TwoProverProtocolParameters):
    """Parameters of the ``mnip`` protocol (section ``mnip_protocol``).

    Parameters
    ----------
    max_message_rounds : int
        The number of rounds after which the episode ends.
    min_message_rounds : int
        The verifier's verdicts count only from round ``min_message_rounds - 1`` on.
    allow_unread_rounds : bool
        Accept last rounds the verifier never reads, without a warning.
    sequential : bool
        Whether the provers speak one after the other (verifier, first prover, second
        prover) instead of simultaneously.
    prover0_first : bool
        With ``sequential``, whether ``prover0`` speaks before ``prover1``.
    randomize_channel_order : bool
        Text scenarios: whether the order the verifier reads the provers' channels in
        is random per episode.
    """


@parameters_class
class ZkProtocolParameters(SubParameters):
    """Parameters of zero-knowledge protocols (section ``zk_protocol``).

    Used when ``protocol_common.zero_knowledge`` is true.

    Parameters
    ----------
    simulator_reward_coefficient : float
        The simulator's reward is this times the sum of two cosine similarities
        between its logits and the adversarial verifier's (messages on the active
        channels, and decisions where a verdict can count: the verifier's turns
        from round ``min_message_rounds - 1`` on).
    aux_prover_reward_coefficient : float
        Each prover gets this times the simulator's reward added to its own.
    """

    simulator_reward_coefficient: float = field(default=1.0, validator=_is_number)
    aux_prover_reward_coefficient: float = field(default=1.0, validator=_is_number)


PROTOCOL_SECTIONS: dict[str, type[SubParameters]] = {
    "protocol_common": CommonProtocolParameters,
    "nip_protocol": NipProtocolParameters,
    "debate_protocol": DebateProtocolParameters,
    "mnip_protocol": MnipProtocolParameters,
    "zk_protocol": ZkProtocolParameters,
}
"""The sections the built-in protocols read, by section name."""

__all__ = [
    "CommonProtocolParameters",
    "DebateProtocolParameters",
    "GUESS_CHOICES",
    "GuessType",
    "LongProtocolParameters",
    "MnipProtocolParameters",
    "NipProtocolParameters",
    "PROTOCOL_SECTIONS",
    "TwoProverProtocolParameters",
    "VERIFIER_DECISION_SPECTRUM_CHOICES",
    "VerifierDecisionSpectrumType",
    "ZkProtocolParameters",
]
