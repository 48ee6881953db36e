"""Base classes of protocol handlers.

A protocol handler implements an interaction protocol: which agents there are, which
message channels, who sees which channel, who is active in which round, when the
verifier may decide, and the done signals and rewards of each step.

The classes, from general to specific:

:class:`ProtocolHandler`
    The interface every environment and trainer relies on, and everything derived
    from a protocol's structure (masks, indices, validation, the even-rounds
    warning). Independent of the data world.
:class:`SingleVerifierProtocolHandler`
    The stepping rules of protocols with one verifier called ``"verifier"`` (done
    signals, termination, rewards). The step reads plain arrays from a mapping (a
    ``TensorDict``, a dict, or any mapping with tuple keys for nested entries), so
    a text-world handler reuses it after filling in the same keys.
:class:`DeterministicProtocolHandler`
    A mixin for protocols whose schedule depends on the round only: subclasses
    define :meth:`~DeterministicProtocolHandler.is_agent_active`, and the masks are
    tabulated once.

Step inputs (keys of ``env_td``; ``...`` is the batch shape)
-----------------------------------------------------------
``"round"`` : long ``[...]``
    The round being played (0-based).
``"seed"`` : long ``[...]``
    The episode's seed, drawn at reset. Seed-dependent protocols (merlin_arthur) and
    randomized prover stances read it.
``"y"`` : long ``[..., 1]``
    The label (1: the claim holds, accept is right). ``[...]`` is accepted too.
``"done"`` : bool ``[...]``
    Whether the episode was already over before this step.
``"terminated"`` : bool ``[...]``
    Whether the episode was already terminated before this step.
``("agents", "decision")`` : long ``[..., agents]``
    Each agent's decision this step: 0 reject, 1 accept, 2 continue; text worlds
    may also give 3, neither accept nor reject (a verdict that ends the episode
    with ``verifier_neither_accept_nor_reject_reward``). Only the verifiers'
    entries are read.
``("agents", "done")`` : bool ``[..., agents]``, optional
    Which agents were already done (zeros when absent).
``"prover_stance"`` : long ``[...]``, optional
    With ``randomize_prover_stance``: the verdict the single prover argues for; when
    absent it is ``seed % 2``.
``("agents", "valid_response")`` : bool ``[..., agents]``, optional
    Text worlds: whether each agent's response was valid (see
    ``protocol_common.prover_invalid_response_penalty``).

Zero-knowledge handlers read two more keys (see
:class:`~nip_core.protocols.zero_knowledge.ZeroKnowledgeProtocolHandler`).

Step outputs
------------
``shared_done`` : bool ``[...]``
    The episode is over: already done, a verdict was given, or it was terminated.
    (Unlike the original library, termination is included, so the environment copies
    it to ``"done"`` unchanged.)
``agent_done`` : bool ``[..., agents]``
    Per-agent done; ``shared_done`` implies every agent is done.
``terminated`` : bool ``[...]``
    The episode reached its last round (``max_message_rounds - 1``) without a
    verdict (or was already terminated, or a prover's response was invalid).
``reward`` : float ``[..., agents]``
    Each agent's reward for this step; zero in rows that were already done.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import cached_property
from typing import Any, ClassVar, NamedTuple

import attrs
import torch
from tensordict import TensorDictBase
from torch import Tensor

from nip_core.errors import ConfigProblem, NipConfigError, PluginError
from nip_core.protocols.decisions import (
    DECISION_ACCEPT,
    DECISION_CONTINUE,
    DECISION_NEITHER,
    DECISION_REJECT,
    RESTRICTION_CONTINUE_ONLY,
    RESTRICTION_GUESS_ONLY,
    RESTRICTION_NONE,
)
from nip_core.protocols.parameters import (
    CommonProtocolParameters,
    DebateProtocolParameters,
    MnipProtocolParameters,
    NipProtocolParameters,
    ZkProtocolParameters,
)

__all__ = [
    "DECISION_ACCEPT",
    "DECISION_CONTINUE",
    "DECISION_NEITHER",
    "DECISION_REJECT",
    "DeterministicProtocolHandler",
    "ProtocolHandler",
    "ProtocolParameterView",
    "ProtocolSpecificationError",
    "ProtocolStepInputs",
    "ProtocolStepResult",
    "ProtocolWarning",
    "RESTRICTION_CONTINUE_ONLY",
    "RESTRICTION_GUESS_ONLY",
    "RESTRICTION_NONE",
    "SingleVerifierProtocolHandler",
    "read_entry",
    "validate_agent_names",
]


class ProtocolSpecificationError(PluginError):
    """A protocol handler's definition is inconsistent (names, channels, schedule)."""


class ProtocolWarning(UserWarning):
    """A protocol configuration that works but is probably not what was meant."""


# --------------------------------------------------------------------------------------
# Parameters a handler reads
# --------------------------------------------------------------------------------------


def _section(value: Any, cls: type) -> Any:
    return cls(**value) if isinstance(value, Mapping) else value


@attrs.define(kw_only=True)
class ProtocolParameterView:
    """The parts of the hyper-parameters a protocol handler reads.

    Handlers take a :class:`~nip_core.parameters.HyperParameters`; this stand-in
    carries just the protocol sections, for building handlers without a whole
    experiment (tests, notebooks). Build it with
    :meth:`ProtocolHandler.from_sections`.

    Parameters
    ----------
    interaction_protocol : str
        The protocol's registry key.
    scenario : str | None
        The scenario's registry key, if any.
    protocol_common, nip_protocol, debate_protocol, mnip_protocol, zk_protocol
        The protocol sections (defaults when not given).
    extra_sections : dict
        Further sections (a plugin protocol's own), read as attributes.
    """

    interaction_protocol: str = "nip"
    scenario: str | None = None
    protocol_common: CommonProtocolParameters = attrs.field(
        factory=CommonProtocolParameters,
        converter=lambda value: _section(value, CommonProtocolParameters),
    )
    nip_protocol: NipProtocolParameters = attrs.field(
        factory=NipProtocolParameters,
        converter=lambda value: _section(value, NipProtocolParameters),
    )
    debate_protocol: DebateProtocolParameters = attrs.field(
        factory=DebateProtocolParameters,
        converter=lambda value: _section(value, DebateProtocolParameters),
    )
    mnip_protocol: MnipProtocolParameters = attrs.field(
        factory=MnipProtocolParameters,
        converter=lambda value: _section(value, MnipProtocolParameters),
    )
    zk_protocol: ZkProtocolParameters = attrs.field(
        factory=ZkProtocolParameters,
        converter=lambda value: _section(value, ZkProtocolParameters),
    )
    extra_sections: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_sections(cls, **sections: Any) -> ProtocolParameterView:
        """Build from keyword arguments; names that are not fields of this class go
        to ``extra_sections``."""
        known = {
            name: value for name, value in sections.items() if name in _VIEW_FIELDS
        }
        extra = {
            name: value for name, value in sections.items() if name not in _VIEW_FIELDS
        }
        return cls(**known, extra_sections=extra)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes attrs did not define
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            extra = object.__getattribute__(self, "extra_sections")
        except AttributeError:
            raise AttributeError(name) from None
        if name in extra:
            return extra[name]
        raise AttributeError(
            f"no parameter section {name!r}; give it to from_sections({name}=...)"
        )


_VIEW_FIELDS = frozenset(f.name for f in attrs.fields(ProtocolParameterView))


# --------------------------------------------------------------------------------------
# Step inputs and outputs
# --------------------------------------------------------------------------------------


class ProtocolStepResult(NamedTuple):
    """What one protocol step returns (unpacks as a 4-tuple)."""

    shared_done: Tensor
    agent_done: Tensor
    terminated: Tensor
    reward: Tensor


def read_entry(env_td: Any, key: str | tuple[str, ...], default: Any = None) -> Any:
    """Read ``key`` from a TensorDict, a nested dict or a mapping with tuple keys.

    Returns ``default`` when the key is absent.
    """
    if isinstance(env_td, TensorDictBase):
        return env_td.get(key, default)
    if isinstance(key, tuple) and len(key) == 1:
        key = key[0]
    try:
        return env_td[key]
    except (KeyError, TypeError, IndexError):
        pass
    if not isinstance(key, tuple):
        return default
    node: Any = env_td
    for part in key:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return default
    return node


def _as_tensor(value: Any, device: torch.device | None = None) -> Tensor:
    return torch.as_tensor(value, device=device)


@attrs.define(kw_only=True)
class ProtocolStepInputs:
    """The arrays a protocol step reads, as tensors (see the module docstring).

    Parameters
    ----------
    round : Tensor
        long ``[...]``.
    seed : Tensor
        long ``[...]``.
    y : Tensor
        long ``[...]`` (the trailing 1 of ``env_td["y"]`` removed).
    decision : Tensor
        long ``[..., agents]``.
    done : Tensor
        bool ``[...]``.
    agent_done : Tensor
        bool ``[..., agents]``.
    terminated : Tensor
        bool ``[...]``.
    prover_stance : Tensor | None
        long ``[...]`` when given.
    valid_response : Tensor | None
        bool ``[..., agents]`` when given.
    source : Any
        The mapping the inputs were read from (for handler-specific keys).
    """

    round: Tensor
    seed: Tensor
    y: Tensor
    decision: Tensor
    done: Tensor
    agent_done: Tensor
    terminated: Tensor
    prover_stance: Tensor | None = None
    valid_response: Tensor | None = None
    source: Any = None

    @classmethod
    def from_env_td(cls, env_td: Any, num_agents: int) -> ProtocolStepInputs:
        """Read the inputs from ``env_td``, checking that the shapes agree."""

        def required(key: str | tuple[str, ...]) -> Tensor:
            value = read_entry(env_td, key)
            if value is None:
                raise KeyError(
                    f"the protocol step needs the key {key!r} in the environment "
                    "TensorDict (see nip_core.protocols.base for the keys and shapes)"
                )
            return _as_tensor(value)

        round_id = required("round").long()
        batch_shape = round_id.shape
        device = round_id.device
        seed = required("seed").long()
        y = required("y").long()
        if y.shape == (*batch_shape, 1):
            y = y.squeeze(-1)
        decision = required(("agents", "decision")).long()
        done = required("done").bool()
        terminated = required("terminated").bool()
        if done.shape == (*batch_shape, 1):
            done = done.squeeze(-1)
        if terminated.shape == (*batch_shape, 1):
            terminated = terminated.squeeze(-1)
        agent_done_value = read_entry(env_td, ("agents", "done"))
        if agent_done_value is None:
            agent_done = torch.zeros(
                (*batch_shape, num_agents), dtype=torch.bool, device=device
            )
        else:
            agent_done = _as_tensor(agent_done_value).bool()
            # TorchRL keeps a trailing feature dimension of 1 on per-agent entries
            if agent_done.shape == (*batch_shape, num_agents, 1):
                agent_done = agent_done.squeeze(-1)
        stance_value = read_entry(env_td, "prover_stance")
        prover_stance = (
            None if stance_value is None else _as_tensor(stance_value).long()
        )
        valid_value = read_entry(env_td, ("agents", "valid_response"))
        valid_response = None if valid_value is None else _as_tensor(valid_value).bool()

        expected = {
            "seed": (seed, batch_shape),
            "y": (y, batch_shape),
            "done": (done, batch_shape),
            "terminated": (terminated, batch_shape),
            "('agents', 'decision')": (decision, (*batch_shape, num_agents)),
            "('agents', 'done')": (agent_done, (*batch_shape, num_agents)),
        }
        if prover_stance is not None:
            expected["prover_stance"] = (prover_stance, batch_shape)
        if valid_response is not None:
            expected["('agents', 'valid_response')"] = (
                valid_response,
                (*batch_shape, num_agents),
            )
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != tuple(shape):
                raise ValueError(
                    f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)} "
                    f"(batch shape {tuple(batch_shape)} from 'round', {num_agents} "
                    "agents)"
                )
        return cls(
            round=round_id,
            seed=seed,
            y=y,
            decision=decision,
            done=done,
            agent_done=agent_done,
            terminated=terminated,
            prover_stance=prover_stance,
            valid_response=valid_response,
            source=env_td,
        )

    def restricted_to_agents(self, count: int) -> ProtocolStepInputs:
        """The same inputs with the agent dimension cut to the first ``count``."""
        return attrs.evolve(
            self,
            decision=self.decision[..., :count],
            agent_done=self.agent_done[..., :count],
            valid_response=(
                None
                if self.valid_response is None
                else self.valid_response[..., :count]
            ),
        )


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

        True for the verifiers on rounds they may guess in, from round
        ``min_message_rounds - 1`` on; false for every other agent. Trainers use it
        to leave ignored decisions out of log-probabilities and entropies.
        """
        round_id = torch.as_tensor(round_id).long()
        guess = self.get_verifier_guess_mask_from_rounds_and_seed(round_id, seed)
        counts = guess & (round_id >= self.min_message_rounds - 1)
        mask = torch.zeros(
            (*round_id.shape, self.num_agents), dtype=torch.bool, device=round_id.device
        )
        for name in self.verifier_names:
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
            raise ProtocolSpecificationError(
                f"{owner}: no verifier is ever active in rounds 0 to {max_rounds - 1}"
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

    def _warn_about_wasted_rounds(self) -> None:
        if not self.warn_about_wasted_rounds:
            return
        last_turn = max(self.verifier_turn_rounds)
        last_round = self.max_message_rounds - 1
        if last_turn < last_round:
            wasted = (
                f"round {last_round}"
                if last_turn == last_round - 1
                else f"rounds {last_turn + 1} to {last_round}"
            )
            section = self.parameter_section or "the protocol's section"
            warnings.warn(
                f"{type(self).__name__}: the verifier's last turn is round "
                f"{last_turn}, so {wasted} of max_message_rounds="
                f"{self.max_message_rounds} can never be read by the verifier; the "
                "episode then terminates with verifier_terminated_penalty. Set "
                f"{section}.max_message_rounds to {last_turn + 1} (or change who "
                "goes first).",
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


# --------------------------------------------------------------------------------------
# One verifier
# --------------------------------------------------------------------------------------


class SingleVerifierProtocolHandler(ProtocolHandler, ABC):
    """The stepping rules of a protocol with one verifier, ``"verifier"``.

    Each step (rows already done get nothing and stay done):

    - The verdict is the verifier's decision with ``force_guess`` applied. It counts
      on the verifier's turn, if it is not 2 (continue), from round
      ``min_message_rounds - 1`` on; a counted verdict ends the episode.
    - Verifier: ``verifier_reward`` for a right verdict (accept iff ``y = 1``),
      ``verifier_incorrect_penalty`` for a wrong one,
      ``verifier_neither_accept_nor_reject_reward`` for a verdict of 3 (text worlds:
      neither accept nor reject), ``verifier_no_guess_reward`` on each of its turns
      it continues (or its verdict is ignored), and
      ``verifier_terminated_penalty`` when round ``max_message_rounds - 1`` ends
      without a verdict (the episode is then terminated).
    - Provers: ``shared_reward`` gives each prover the verifier's reward. Otherwise
      a prover gets ``prover_reward`` when the verdict is the one it argues for
      (:meth:`get_prover_target_verdicts`): a single prover argues for accept (or its
      stance, with ``randomize_prover_stance``); with two provers the first argues
      for reject and the second for accept.
    - ``prover_invalid_response_penalty`` (when set and the step inputs carry
      ``("agents", "valid_response")``): a prover with an invalid response gets it,
      and the episode is terminated.
    """

    verifier_name: ClassVar[str] = "verifier"

    @property
    def verifier_names(self) -> list[str]:
        return [self.verifier_name]

    @property
    def verifier_index(self) -> int:
        return self.agent_index(self.verifier_name)

    @property
    def verifier_neither_accept_nor_reject_reward(self) -> float:
        """Text worlds: the reward for neither accepting nor rejecting."""
        common = self.protocol_common
        if common.verifier_neither_accept_nor_reject_reward is not None:
            return common.verifier_neither_accept_nor_reject_reward
        return (common.verifier_reward + common.verifier_incorrect_penalty) / 2

    def get_prover_target_verdicts(
        self, inputs: ProtocolStepInputs
    ) -> dict[str, Tensor | int | None]:
        """The verdict each prover is rewarded for (``None``: no verdict reward).

        One prover: its stance (accept, or per episode with
        ``randomize_prover_stance``; an explicit ``prover_stance`` input wins over
        the seed). Two provers: the first (``prover0``) reject, the second accept.
        More provers: none, unless a subclass says otherwise.
        """
        provers = self.prover_names
        if len(provers) == 1:
            if self.protocol_common.randomize_prover_stance:
                if inputs.prover_stance is not None:
                    return {provers[0]: inputs.prover_stance}
                return {provers[0]: self.get_prover_stance_from_seed(inputs.seed)}
            return {provers[0]: DECISION_ACCEPT}
        if len(provers) == 2:
            return {provers[0]: DECISION_REJECT, provers[1]: DECISION_ACCEPT}
        return {name: None for name in provers}

    def step_interaction_protocol(self, env_td: Any) -> ProtocolStepResult:
        inputs = ProtocolStepInputs.from_env_td(env_td, self.num_agents)
        return self.step_from_inputs(inputs)

    def step_from_inputs(self, inputs: ProtocolStepInputs) -> ProtocolStepResult:
        """The step on already-read inputs (see :meth:`step_interaction_protocol`)."""
        common = self.protocol_common
        v = self.verifier_index
        round_id = inputs.round
        already_done = inputs.done
        verifier_already_done = already_done | inputs.agent_done[..., v]

        guess_mask = self.get_verifier_guess_mask_from_rounds_and_seed(
            round_id, inputs.seed
        )
        decision = self.get_effective_verifier_decision(
            inputs.decision[..., v], inputs.y
        )
        decided = self.get_decision_made_mask(round_id, guess_mask, decision)
        decided = decided & ~verifier_already_done

        new_terminated = (
            (round_id >= self.max_message_rounds - 1) & ~decided & ~already_done
        )
        terminated = inputs.terminated | new_terminated

        zeros = torch.zeros(round_id.shape, dtype=torch.float, device=round_id.device)
        verifier_reward = torch.where(
            decided & (decision == inputs.y),
            torch.full_like(zeros, float(common.verifier_reward)),
            zeros,
        )
        neither = decision == DECISION_NEITHER
        verifier_reward = torch.where(
            decided & (decision != inputs.y) & ~neither,
            torch.full_like(zeros, float(common.verifier_incorrect_penalty)),
            verifier_reward,
        )
        neither_reward = float(self.verifier_neither_accept_nor_reject_reward)
        verifier_reward = torch.where(
            decided & neither, torch.full_like(zeros, neither_reward), verifier_reward
        )
        verifier_reward = torch.where(
            new_terminated & ~verifier_already_done,
            torch.full_like(zeros, float(common.verifier_terminated_penalty)),
            verifier_reward,
        )
        continued = guess_mask & ~decided & ~verifier_already_done & ~terminated
        verifier_reward = torch.where(
            continued,
            torch.full_like(zeros, float(common.verifier_no_guess_reward)),
            verifier_reward,
        )

        reward = torch.zeros(
            (*round_id.shape, self.num_agents),
            dtype=torch.float,
            device=round_id.device,
        )
        reward[..., v] = verifier_reward

        if common.shared_reward:
            for index in self.prover_indices:
                reward[..., index] = verifier_reward
        else:
            targets = self.get_prover_target_verdicts(inputs)
            for name, target in targets.items():
                if target is None:
                    continue
                won = decided & (
                    decision == torch.as_tensor(target, device=decision.device)
                )
                reward[..., self.agent_index(name)] = won.float() * float(
                    common.prover_reward
                )

        if (
            common.prover_invalid_response_penalty is not None
            and inputs.valid_response is not None
        ):
            for index in self.prover_indices:
                invalid = ~inputs.valid_response[..., index] & ~already_done
                reward[..., index] = torch.where(
                    invalid,
                    torch.full_like(
                        zeros, float(common.prover_invalid_response_penalty)
                    ),
                    reward[..., index],
                )
                terminated = terminated | invalid

        shared_done = already_done | decided | terminated
        agent_done = inputs.agent_done | shared_done[..., None]
        return ProtocolStepResult(shared_done, agent_done, terminated, reward)

    # ----- Reward ranges

    def _verifier_reward_range(self) -> tuple[float, float]:
        common = self.protocol_common
        turns = max(self.max_verifier_questions, 1)
        no_guess = common.verifier_no_guess_reward
        verdicts = (
            common.verifier_reward,
            common.verifier_incorrect_penalty,
            self.verifier_neither_accept_nor_reject_reward,
        )
        # A verdict on the k-th turn follows k - 1 continues; termination follows a
        # continue on every turn.
        highest = max(
            max(verdicts) + max(0.0, (turns - 1) * no_guess),
            turns * no_guess + common.verifier_terminated_penalty,
        )
        lowest = min(
            min(verdicts) + min(0.0, (turns - 1) * no_guess),
            turns * no_guess + common.verifier_terminated_penalty,
        )
        return float(lowest), float(highest)

    def _prover_reward_range(self, agent_name: str) -> tuple[float, float]:
        common = self.protocol_common
        if common.shared_reward:
            return self._verifier_reward_range()
        dummy = ProtocolStepInputs(
            round=torch.zeros(()),
            seed=torch.zeros((), dtype=torch.long),
            y=torch.zeros((), dtype=torch.long),
            decision=torch.zeros(self.num_agents, dtype=torch.long),
            done=torch.zeros((), dtype=torch.bool),
            agent_done=torch.zeros(self.num_agents, dtype=torch.bool),
            terminated=torch.zeros((), dtype=torch.bool),
        )
        values = [0.0]
        if self.get_prover_target_verdicts(dummy).get(agent_name) is not None:
            values.append(float(common.prover_reward))
        if common.prover_invalid_response_penalty is not None:
            values.append(float(common.prover_invalid_response_penalty))
        return min(values), max(values)

    def max_reward(self, agent_name: str) -> float:
        if agent_name == self.verifier_name:
            return self._verifier_reward_range()[1]
        if agent_name in self.prover_names:
            return self._prover_reward_range(agent_name)[1]
        raise KeyError(f"no agent {agent_name!r} in {type(self).__name__}")

    def min_reward(self, agent_name: str) -> float:
        if agent_name == self.verifier_name:
            return self._verifier_reward_range()[0]
        if agent_name in self.prover_names:
            return self._prover_reward_range(agent_name)[0]
        raise KeyError(f"no agent {agent_name!r} in {type(self).__name__}")
