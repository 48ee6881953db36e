"""The protocol handler interface, :class:`ProtocolHandler`, and
:class:`DeterministicProtocolHandler` for schedules that depend on the round only;
the errors and warnings of protocol definitions."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import Tensor

from nip_core.errors import ConfigProblem, NipConfigError, NipWarning, PluginError
from nip_core.protocols.parameter_view import ProtocolParameterView
from nip_core.protocols.parameters import (
    CommonProtocolParameters,
)
from nip_core.protocols.step import (
    DECISION_ACCEPT,
    DECISION_NEITHER,
    DECISION_REJECT,
    RESTRICTION_CONTINUE_ONLY,
    RESTRICTION_GUESS_ONLY,
    RESTRICTION_NONE,
    ProtocolStepResult,
)


class ProtocolSpecificationError(PluginError):
    """A protocol handler's definition is inconsistent (names, channels, schedule)."""


class ProtocolWarning(NipWarning):
    """A protocol configuration that works but is probably not what was meant."""


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def validate_agent_names(
    agent_names: list[str] | tuple[str, ...],
    exemptions: frozenset[tuple[str, str]] = frozenset(),
    *,
    owner: str = "protocol",
) -> None:
    """Check a protocol's agent names.

    Names must be non-empty Python identifiers, unique, and none may be a substring
    of another (agent names are matched inside keys, prompts and file names), except
    for the ``(shorter, longer)`` pairs in ``exemptions``.

    Raises
    ------
    ProtocolSpecificationError
        Naming every offending name.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for name in agent_names:
        if not isinstance(name, str) or not name.isidentifier():
            problems.append(f"{name!r} is not a valid agent name (use snake_case)")
        if name in seen:
            problems.append(f"{name!r} appears twice")
        seen.add(name)
    for shorter in agent_names:
        for longer in agent_names:
            if shorter == longer or not isinstance(shorter, str):
                continue
            if shorter in longer and (shorter, longer) not in exemptions:
                problems.append(
                    f"{shorter!r} is a substring of {longer!r}; rename one of them "
                    "(e.g. 'prover0' and 'prover1' instead of 'prover' and 'prover1')"
                )
    if problems:
        raise ProtocolSpecificationError(
            f"invalid agent names in {owner}: " + "; ".join(problems)
        )


# --------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------


class ProtocolHandler(ABC):
    """Base class of protocol handlers.

    Subclasses define:

    - ``agent_names``, ``message_channel_names``, ``agent_channel_visibility``,
      ``max_message_rounds``, ``min_message_rounds`` (properties or class
      attributes);
    - :meth:`can_agent_be_active` (the schedule, for pure-Python callers);
    - :meth:`get_active_agents_mask_from_rounds_and_seed` (the schedule as tensors);
    - :meth:`step_interaction_protocol`;
    - :meth:`max_reward` and :meth:`min_reward`.

    A subclass sets its own attributes *before* calling ``super().__init__``, which
    validates the handler (names, channels, visibility, schedule, round limits) and
    warns about rounds no verifier can use.

    Parameters
    ----------
    hyper_params : HyperParameters | ProtocolParameterView
        The experiment's parameters; handlers read ``protocol_common`` and their own
        section from it.
    settings : ExperimentSettings | None
        The experiment's settings; only ``settings.device`` is read (where the
        structural masks live; step inputs may be on any device).
    """

    can_be_zero_knowledge: ClassVar[bool] = True
    """Whether the zero-knowledge wrapper may wrap this handler."""

    agent_name_substring_exemptions: ClassVar[frozenset[tuple[str, str]]] = frozenset()
    """``(shorter, longer)`` agent-name pairs allowed to be substrings of each other."""

    warn_about_wasted_rounds: ClassVar[bool] = True
    """Whether to warn when rounds after the verifier's last turn are wasted. Off for
    protocols whose rounds the user cannot configure."""

    parameter_section: ClassVar[str | None] = None
    """The parameter section holding the protocol's own parameters, if any."""

    def __init__(self, hyper_params: Any, settings: Any = None):
        self.hyper_params = hyper_params
        self.settings = settings
        device = getattr(settings, "device", None) if settings is not None else None
        self.device = torch.device(device if device is not None else "cpu")
        self._validate()

    @classmethod
    def from_sections(cls, settings: Any = None, **sections: Any) -> ProtocolHandler:
        """Build the handler from parameter sections instead of a whole experiment.

        Parameters
        ----------
        settings : ExperimentSettings | None
            As for the constructor.
        **sections
            ``protocol_common=...``, ``nip_protocol=...`` (objects or dicts), and
            optionally ``interaction_protocol`` and ``scenario``. Sections not given
            take their defaults.
        """
        view = ProtocolParameterView.from_sections(**sections)
        return cls(view, settings)

    # ----- Structure (defined by subclasses)

    @property
    @abstractmethod
    def agent_names(self) -> list[str]:
        """The agents' names, in the order of the agent dimension."""

    @property
    @abstractmethod
    def message_channel_names(self) -> list[str]:
        """The message channels' names, in the order of the channel dimension."""

    @property
    @abstractmethod
    def agent_channel_visibility(self) -> list[tuple[str, str]]:
        """``(agent, channel)`` pairs: the agent can see (and may write to) the
        channel."""

    @property
    @abstractmethod
    def max_message_rounds(self) -> int:
        """The number of rounds; the episode ends after round ``max - 1``."""

    @property
    @abstractmethod
    def min_message_rounds(self) -> int:
        """Verdicts count only from round ``min_message_rounds - 1`` on."""

    @abstractmethod
    def can_agent_be_active(
        self, agent_name: str, round_id: int, channel_name: str
    ) -> bool:
        """Whether the agent may send a message on the channel in the round.

        For seed-dependent protocols: whether it does for some seed.
        """

    @abstractmethod
    def get_active_agents_mask_from_rounds_and_seed(
        self, round_id: Tensor, seed: Tensor | None
    ) -> Tensor:
        """Which agents send messages on which channels.

        Parameters
        ----------
        round_id : Tensor
            long ``[...]``.
        seed : Tensor | None
            long ``[...]``, the episodes' seeds (ignored by deterministic protocols).

        Returns
        -------
        active : Tensor
            bool ``[..., agents, channels]``, on ``round_id``'s device. Rounds outside
            ``[0, max_message_rounds)`` have no active agent.
        """

    @abstractmethod
    def step_interaction_protocol(self, env_td: Any) -> ProtocolStepResult:
        """Compute the done signals and rewards of one step.

        See the module docstring for the keys of ``env_td`` and the outputs.
        """

    @abstractmethod
    def max_reward(self, agent_name: str) -> float:
        """An upper bound of the agent's return in one episode."""

    @abstractmethod
    def min_reward(self, agent_name: str) -> float:
        """A lower bound of the agent's return in one episode."""

    # ----- Derived structure

    @property
    def protocol_common(self) -> CommonProtocolParameters:
        """The ``protocol_common`` section."""
        return self.hyper_params.protocol_common

    @property
    def num_agents(self) -> int:
        return len(self.agent_names)

    @property
    def num_message_channels(self) -> int:
        return len(self.message_channel_names)

    @staticmethod
    def is_prover(agent_name: str) -> bool:
        """Agents are provers iff their name contains ``"prover"``."""
        return "prover" in agent_name

    @staticmethod
    def is_verifier_name(agent_name: str) -> bool:
        """Agents are verifiers iff their name contains ``"verifier"``."""
        return "verifier" in agent_name

    @property
    def prover_names(self) -> list[str]:
        """The provers, in agent order."""
        return [name for name in self.agent_names if self.is_prover(name)]

    @property
    def verifier_names(self) -> list[str]:
        """The verifiers, in agent order."""
        return [name for name in self.agent_names if self.is_verifier_name(name)]

    @property
    def decider_names(self) -> list[str]:
        """The agents that need a decision head (the verifiers, by default)."""
        return self.verifier_names

    @property
    def prover_indices(self) -> list[int]:
        return [self.agent_names.index(name) for name in self.prover_names]

    def agent_index(self, agent_name: str) -> int:
        """The position of the agent in the agent dimension."""
        try:
            return self.agent_names.index(agent_name)
        except ValueError:
            raise KeyError(
                f"no agent {agent_name!r} in this protocol; agents: "
                f"{', '.join(self.agent_names)}"
            ) from None

    def channel_index(self, channel_name: str) -> int:
        """The position of the channel in the channel dimension."""
        try:
            return self.message_channel_names.index(channel_name)
        except ValueError:
            raise KeyError(
                f"no channel {channel_name!r} in this protocol; channels: "
                f"{', '.join(self.message_channel_names)}"
            ) from None

    @cached_property
    def agent_channel_visibility_mask(self) -> Tensor:
        """bool ``[agents, channels]``: ``mask[a, c]`` iff agent ``a`` sees channel
        ``c``."""
        mask = torch.zeros(
            (self.num_agents, self.num_message_channels),
            dtype=torch.bool,
            device=self.device,
        )
        for agent_name, channel_name in self.agent_channel_visibility:
            mask[self.agent_index(agent_name), self.channel_index(channel_name)] = True
        return mask

    def get_agent_visible_channels(self, agent_name: str) -> list[str]:
        """The channels the agent sees, in channel order."""
        visible = {c for a, c in self.agent_channel_visibility if a == agent_name}
        return [c for c in self.message_channel_names if c in visible]

    def can_agent_see_channel(self, agent_name: str, channel_name: str) -> bool:
        return (agent_name, channel_name) in self.agent_channel_visibility

    def can_agent_be_active_any_channel(self, agent_name: str, round_id: int) -> bool:
        """Whether the agent may be active on some channel in the round."""
        return any(
            self.can_agent_be_active(agent_name, round_id, channel)
            for channel in self.message_channel_names
        )

    @cached_property
    def verifier_turn_rounds(self) -> tuple[int, ...]:
        """The rounds in which some verifier may be active."""
        return tuple(
            round_id
            for round_id in range(self.max_message_rounds)
            if any(
                self.can_agent_be_active_any_channel(name, round_id)
                for name in self.verifier_names
            )
        )

    @property
    def max_verifier_questions(self) -> int:
        """The most turns the verifier gets: its active rounds in the schedule.

        For alternating schedules this is ``ceil(max / 2)`` when the verifier goes
        first and ``floor(max / 2)`` otherwise.
        """
        return len(self.verifier_turn_rounds)

    @cached_property
    def agent_first_active_round(self) -> dict[str, int]:
        """The first round in which each agent may be active."""
        first: dict[str, int] = {}
        for round_id in range(self.max_message_rounds):
            for name in self.agent_names:
                if name not in first and self.can_agent_be_active_any_channel(
                    name, round_id
                ):
                    first[name] = round_id
        return first

    @property
    def default_stackelberg_sequence(self) -> tuple[tuple[str, ...], ...]:
        """Leaders first: the verifiers, then every other agent (agent order)."""
        verifiers = tuple(self.verifier_names)
        others = tuple(name for name in self.agent_names if name not in verifiers)
        return tuple(group for group in (verifiers, others) if group)

    def reward_mid_point_estimate(self, agent_name: str) -> float:
        """The middle of the agent's reward range."""
        return (self.max_reward(agent_name) + self.min_reward(agent_name)) / 2

    # ----- Decisions

    def get_verifier_guess_mask_from_rounds_and_seed(
        self, round_id: Tensor, seed: Tensor | None
    ) -> Tensor:
        """Where a verifier may give a verdict: bool ``[...]``.

        A verifier may decide in the rounds it is active in (on any channel).
        """
        active = self.get_active_agents_mask_from_rounds_and_seed(round_id, seed)
        indices = [self.agent_index(name) for name in self.verifier_names]
        return active[..., indices, :].flatten(-2).any(dim=-1)

    def get_decision_mask_from_rounds_and_seed(
        self, round_id: Tensor, seed: Tensor | None
    ) -> Tensor:
        """Whose decision takes effect: bool ``[..., agents]``.

        True for the deciders (:attr:`decider_names`: the verifiers, and under
        zero knowledge the simulator, whose decision logits its reward compares
        with the adversarial verifier's) on rounds the verifier may guess in, from
        round ``min_message_rounds - 1`` on; false for every other agent. Trainers
        use it to leave ignored decisions out of log-probabilities and entropies,
        so a decider left out here would never train its decision head.
        """
        round_id = torch.as_tensor(round_id).long()
        guess = self.get_verifier_guess_mask_from_rounds_and_seed(round_id, seed)
        counts = guess & (round_id >= self.min_message_rounds - 1)
        mask = torch.zeros(
            (*round_id.shape, self.num_agents), dtype=torch.bool, device=round_id.device
        )
        for name in self.decider_names:
            mask[..., self.agent_index(name)] = counts
        return mask

    def get_decision_restriction_from_rounds_and_seed(
        self, round_id: Tensor, seed: Tensor | None
    ) -> Tensor:
        """What the verifier may usefully decide: long ``[...]``.

        :data:`RESTRICTION_CONTINUE_ONLY` (1) where a verdict would be ignored (not
        a verifier turn, or before round ``min_message_rounds - 1``),
        :data:`RESTRICTION_GUESS_ONLY` (2) on the verifier's last possible turn
        (continuing there can only end in termination), :data:`RESTRICTION_NONE` (0)
        otherwise. Environments put this in the observation (``decision_restriction``)
        so a decision head can mask the choices; the step rules do not depend on it.
        """
        round_id = torch.as_tensor(round_id).long()
        guess = self.get_verifier_guess_mask_from_rounds_and_seed(round_id, seed)
        # Every round of the schedule at once, along a trailing dimension: one call
        # of the guess mask instead of one per round (this runs every step).
        rounds = torch.arange(self.max_message_rounds, device=round_id.device)
        all_rounds = rounds.expand(*round_id.shape, self.max_message_rounds)
        all_seeds = (
            None
            if seed is None
            else torch.as_tensor(seed, device=round_id.device)
            .long()[..., None]
            .expand(all_rounds.shape)
        )
        all_guesses = self.get_verifier_guess_mask_from_rounds_and_seed(
            all_rounds, all_seeds
        )
        later_turn = (all_guesses & (all_rounds > round_id[..., None])).any(dim=-1)
        counts = round_id >= self.min_message_rounds - 1
        restriction = torch.full_like(round_id, RESTRICTION_CONTINUE_ONLY)
        restriction = torch.where(
            guess & counts, torch.full_like(round_id, RESTRICTION_NONE), restriction
        )
        restriction = torch.where(
            guess & counts & ~later_turn,
            torch.full_like(round_id, RESTRICTION_GUESS_ONLY),
            restriction,
        )
        return restriction

    def get_effective_verifier_decision(self, decision: Tensor, y: Tensor) -> Tensor:
        """The verdict that counts: ``decision`` with ``force_guess`` applied.

        With ``protocol_common.force_guess`` set, every decision is replaced by the
        forced verdict (``"zero"``: reject, ``"one"``: accept, ``"y"``: the label),
        so the verifier gives it on its first turn from round
        ``min_message_rounds - 1`` on, and the rewards follow it. Environments may
        write the result back so logged decisions match what happened.
        """
        force = self.protocol_common.force_guess
        if force is None:
            return decision
        if force == "zero":
            return torch.full_like(decision, DECISION_REJECT)
        if force == "one":
            return torch.full_like(decision, DECISION_ACCEPT)
        return torch.broadcast_to(y, decision.shape).to(decision.dtype).clone()

    def get_decision_made_mask(
        self, round_id: Tensor, guess_mask: Tensor, decision: Tensor
    ) -> Tensor:
        """Where a (forced) decision is a verdict that counts: bool ``[...]``.

        ``decision`` must already have ``force_guess`` applied. A verdict counts on
        the verifier's turn, if it is not "continue", from round
        ``min_message_rounds - 1`` on.
        """
        is_verdict = (
            (decision == DECISION_REJECT)
            | (decision == DECISION_ACCEPT)
            | (decision == DECISION_NEITHER)
        )
        return guess_mask & is_verdict & (round_id >= self.min_message_rounds - 1)

    # ----- Prover stance

    def get_prover_stance_from_seed(self, seed: Tensor) -> Tensor:
        """The verdict the single prover argues for in each episode: long ``[...]``.

        With ``protocol_common.randomize_prover_stance`` it is ``seed % 2`` (1:
        accept, 0: reject); otherwise always 1.
        """
        if self.protocol_common.randomize_prover_stance:
            return torch.remainder(seed.long(), 2)
        return torch.ones_like(seed, dtype=torch.long)

    # ----- Validation

    def _validate(self) -> None:
        validate_agent_names(
            list(self.agent_names),
            self.agent_name_substring_exemptions,
            owner=type(self).__name__,
        )
        owner = type(self).__name__
        channels = list(self.message_channel_names)
        if not channels:
            raise ProtocolSpecificationError(f"{owner} has no message channel")
        if len(set(channels)) != len(channels):
            raise ProtocolSpecificationError(
                f"{owner} has duplicate channel names: {channels}"
            )
        if not self.verifier_names:
            raise ProtocolSpecificationError(
                f"{owner} has no verifier (an agent whose name contains 'verifier')"
            )
        for name in self.verifier_names:
            if name not in self.agent_names:
                raise ProtocolSpecificationError(
                    f"{owner} has no verifier: its verifier {name!r} is not among its "
                    f"agents {list(self.agent_names)}"
                )
        for agent_name, channel_name in self.agent_channel_visibility:
            if agent_name not in self.agent_names:
                raise ProtocolSpecificationError(
                    f"{owner}: agent_channel_visibility names unknown agent "
                    f"{agent_name!r}"
                )
            if channel_name not in channels:
                raise ProtocolSpecificationError(
                    f"{owner}: agent_channel_visibility names unknown channel "
                    f"{channel_name!r}"
                )
        for name in self.agent_names:
            if not self.get_agent_visible_channels(name):
                raise ProtocolSpecificationError(
                    f"{owner}: agent {name!r} sees no channel"
                )

        min_rounds, max_rounds = self.min_message_rounds, self.max_message_rounds
        if min_rounds < 1 or max_rounds < min_rounds:
            raise NipConfigError(
                ConfigProblem(
                    path="",
                    message=(
                        f"{owner} needs 1 <= min_message_rounds <= max_message_rounds"
                    ),
                    value=(min_rounds, max_rounds),
                )
            )
        for round_id in range(max_rounds):
            for agent_name in self.agent_names:
                for channel_name in channels:
                    if self.can_agent_be_active(
                        agent_name, round_id, channel_name
                    ) and not self.can_agent_see_channel(agent_name, channel_name):
                        raise ProtocolSpecificationError(
                            f"{owner}: agent {agent_name!r} is active on channel "
                            f"{channel_name!r} in round {round_id} but cannot see it"
                        )
        if not self.verifier_turn_rounds:
            section = self.parameter_section
            first = self._first_verifier_round_after(max_rounds)
            if section and first is not None:
                # the rounds come from the user's config: too few of them
                raise NipConfigError(
                    ConfigProblem(
                        path=f"{section}.max_message_rounds",
                        message=(
                            f"{owner}: the verifier never gets a turn in rounds 0 "
                            f"to {max_rounds - 1} (with these settings its first "
                            f"turn is round {first}), so no episode could end "
                            "with a verdict. Set max_message_rounds to at least "
                            f"{first + 1}"
                            + (
                                ""
                                if self.protocol_common.verifier_first
                                else ", or let the verifier go first "
                                "(protocol_common.verifier_first=true)"
                            )
                        ),
                        value=max_rounds,
                    )
                )
            raise ProtocolSpecificationError(
                f"{owner}: no verifier is ever active in rounds 0 to {max_rounds - 1}"
            )
        last_turn = max(self.verifier_turn_rounds)
        if last_turn < min_rounds - 1:
            section = self.parameter_section
            raise NipConfigError(
                ConfigProblem(
                    path=f"{section}.min_message_rounds"
                    if section
                    else "min_message_rounds",
                    message=(
                        f"{owner}: no verdict can ever count: verdicts count from "
                        f"round min_message_rounds - 1 = {min_rounds - 1} on, and the "
                        f"verifier's last turn is round {last_turn} "
                        f"(max_message_rounds={max_rounds}), so every episode would "
                        "end cut off. Set min_message_rounds to at most "
                        f"{last_turn + 1}, or raise max_message_rounds"
                    ),
                    value=min_rounds,
                )
            )

        common = self.protocol_common
        if common.randomize_prover_stance and len(self.prover_names) != 1:
            raise NipConfigError(
                ConfigProblem(
                    path="protocol_common.randomize_prover_stance",
                    message=(
                        "randomized prover stances need exactly one prover; "
                        f"{owner} has {len(self.prover_names)}"
                    ),
                    value=True,
                )
            )
        self._warn_about_wasted_rounds()

    def _first_verifier_round_after(self, start: int, span: int = 64) -> int | None:
        """The first round from ``start`` in which a deterministic schedule
        (``is_agent_active``, unbounded by ``max_message_rounds``) lets a verifier
        act, looking ``span`` rounds ahead; ``None`` when there is none or the
        schedule cannot say."""
        is_active = getattr(self, "is_agent_active", None)
        if is_active is None:
            return None
        for round_id in range(start, start + span):
            try:
                if any(
                    is_active(name, round_id, channel)
                    for name in self.verifier_names
                    for channel in self.message_channel_names
                ):
                    return round_id
            except Exception:  # noqa: BLE001 - a schedule defined up to its rounds
                return None
        return None

    def _warn_about_wasted_rounds(self) -> None:
        if not self.warn_about_wasted_rounds:
            return
        section = self.parameter_section
        if section and getattr(
            getattr(self.hyper_params, section, None), "allow_unread_rounds", False
        ):
            return  # the config says it means it
        last_turn = max(self.verifier_turn_rounds)
        last_round = self.max_message_rounds - 1
        if last_turn < last_round:
            wasted = (
                f"round {last_round}"
                if last_turn == last_round - 1
                else f"rounds {last_turn + 1} to {last_round}"
            )
            opt_out = ""
            if section and hasattr(
                getattr(self.hyper_params, section, None), "allow_unread_rounds"
            ):
                opt_out = (
                    f", or {section}.allow_unread_rounds=true to keep the rounds "
                    "without this warning"
                )
            section = section or "the protocol's section"
            warnings.warn(
                f"{type(self).__name__}: the verifier's last turn is round "
                f"{last_turn}, so {wasted} of max_message_rounds="
                f"{self.max_message_rounds} can never be read by the verifier; the "
                "episode then terminates with verifier_terminated_penalty. Set "
                f"{section}.max_message_rounds to {last_turn + 1} (or change who "
                f"goes first){opt_out}.",
                ProtocolWarning,
                stacklevel=4,
            )


# --------------------------------------------------------------------------------------
# Deterministic schedules
# --------------------------------------------------------------------------------------


class DeterministicProtocolHandler(ProtocolHandler, ABC):
    """A handler whose schedule depends on the round only.

    Subclasses define :meth:`is_agent_active`; the schedule is tabulated once as
    ``active_agents_mask`` (bool ``[max_message_rounds, agents, channels]``).
    """

    @abstractmethod
    def is_agent_active(
        self, agent_name: str, round_id: int, channel_name: str
    ) -> bool:
        """Whether the agent sends a message on the channel in the round."""

    def can_agent_be_active(
        self, agent_name: str, round_id: int, channel_name: str
    ) -> bool:
        if not 0 <= round_id < self.max_message_rounds:
            return False
        return bool(self.is_agent_active(agent_name, round_id, channel_name))

    @cached_property
    def active_agents_mask(self) -> Tensor:
        """bool ``[max_message_rounds, agents, channels]``."""
        mask = torch.zeros(
            (self.max_message_rounds, self.num_agents, self.num_message_channels),
            dtype=torch.bool,
        )
        for round_id in range(self.max_message_rounds):
            for a, agent_name in enumerate(self.agent_names):
                for c, channel_name in enumerate(self.message_channel_names):
                    mask[round_id, a, c] = self.can_agent_be_active(
                        agent_name, round_id, channel_name
                    )
        return mask.to(self.device)

    @cached_property
    def _padded_masks(self) -> dict[torch.device, Tensor]:
        return {}

    def _padded_mask_on(self, device: torch.device) -> Tensor:
        # One extra all-false row stands for every round outside the schedule
        cache = self._padded_masks
        if device not in cache:
            padding = torch.zeros(
                (1, self.num_agents, self.num_message_channels), dtype=torch.bool
            )
            cache[device] = torch.cat([self.active_agents_mask.cpu(), padding]).to(
                device
            )
        return cache[device]

    def get_active_agents_mask_from_rounds_and_seed(
        self, round_id: Tensor, seed: Tensor | None = None
    ) -> Tensor:
        round_id = torch.as_tensor(round_id).long()
        table = self._padded_mask_on(round_id.device)
        max_rounds = self.max_message_rounds
        in_range = (round_id >= 0) & (round_id < max_rounds)
        index = torch.where(in_range, round_id, torch.full_like(round_id, max_rounds))
        return table[index]
