"""Whole text agents: prompts from a scenario's templates, responses parsed back.

A text agent is one :class:`~nip_core.scenario.agents.WholeAgent`: the factory puts it
in the ``whole`` slot of the :class:`~nip_core.scenario.agents.Agent` record. A text
scenario registers a subclass of :class:`TextWholeAgent` as its ``whole`` agent part
and writes its :meth:`~TextWholeAgent.system_prompt`; the rest is generic and can be
overridden piece by piece:

Prompt (:meth:`TextWholeAgent.build_chat`)
    The system prompt, then the episode so far as the agent saw it: its own
    responses as ``assistant`` turns, the messages of the other agents on the
    channels it can see as ``user`` turns, each under its speaker's name
    (:meth:`~TextWholeAgent.speaker_name`, :meth:`~TextWholeAgent.format_incoming`;
    the parts of a speaker's split multi-channel response are labelled with whom
    they address: ``Verifier, to Prover 0: ...``).
    With the protocol section's ``randomize_channel_order`` the channels of a round
    are shown to the verifier in an order drawn from the episode seed and round (so
    it does not learn a position bias); other agents read their own channels last
    (:meth:`~TextWholeAgent.channel_order`). The last user turn carries the
    :meth:`~TextWholeAgent.turn_notice`: the verifier's last-round notice (it must
    decide now), and, when the agent speaks on several channels at once, how to
    address each under its own header (``Question for Prover 0:``).
Response (:meth:`TextWholeAgent.parse_response`)
    Deciders' verdicts are read from a ``Decision:`` line on the scale of
    ``protocol_common.verifier_decision_spectrum`` (:mod:`nip_core.text.parsing`);
    on a decider's last turn a response without a verdict is invalid.
    The two other verdict hooks go with it: :meth:`~TextWholeAgent.verdict_instruction`
    (how the last-turn notice asks for a verdict) and
    :meth:`~TextWholeAgent.write_verdict` (a response rewritten to state a given
    verdict, as expert iteration's guess replacement does); a scenario that reads
    verdicts in its own format overrides all three. A
    multi-channel response is split at the headers, where they open a line (a
    channel addressed twice gets both of its parts). An empty response, a
    ``Decision:`` without a verdict, a missing header, a header with nothing under
    it (unless a verdict that counts ends the episode), or a response the backend
    filtered is invalid: :func:`nip_core.text.sampling.play_round` asks again (with a
    new seed) up to ``num_invalid_generation_retries`` times, then the agent sends an
    empty message and makes no decision, as in the original library.

:class:`RandomTextAgent` needs no model: it decides uniformly among the verdicts the
round allows and sends a few random words.
"""

from __future__ import annotations

import random
import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from nip_core.protocols.decisions import (
    DECISION_ACCEPT,
    DECISION_CONTINUE,
    DECISION_REJECT,
    RESTRICTION_CONTINUE_ONLY,
    RESTRICTION_GUESS_ONLY,
)
from nip_core.scenario.agent_base import WholeAgent
from nip_core.seeding import derive_seed
from nip_core.text.backend import GenerationChoice, GenerationRequest
from nip_core.text.parsing import describe_spectrum, parse_decision, write_decision

if TYPE_CHECKING:
    from nip_core.text.groups import SharedModelGroup
    from nip_core.text.rollouts import TextRollouts

__all__ = [
    "ParsedResponse",
    "RandomTextAgent",
    "TextAgent",
    "TextWholeAgent",
    "TurnContext",
    "TurnOutput",
    "request_seed",
]


@attrs.frozen(kw_only=True)
class TurnContext:
    """What an agent needs to take its turn in one episode.

    Parameters
    ----------
    rollouts : TextRollouts
        The batch being played (read the history from it, never write).
    episode : int
        The episode's index in the batch.
    round_id : int
        The round being played.
    channels : tuple[str, ...]
        The channels the agent speaks on now.
    restriction : int
        What the verifier may usefully decide now
        (:data:`~nip_core.protocols.decisions.RESTRICTION_NONE`,
        ``RESTRICTION_CONTINUE_ONLY``, ``RESTRICTION_GUESS_ONLY``).
    target_verdict : int | None
        Provers: the verdict the agent argues for (0 reject, 1 accept), if any.
    """

    rollouts: TextRollouts
    episode: int
    round_id: int
    channels: tuple[str, ...]
    restriction: int
    target_verdict: int | None = None

    @property
    def datapoint(self) -> dict[str, Any]:
        """The episode's datapoint (its fields)."""
        return self.rollouts.datapoints[self.episode]

    @property
    def seed(self) -> int:
        return int(self.rollouts["seed"][self.episode])

    @property
    def sample_key(self) -> str:
        return str(self.rollouts["sample_key"][self.episode])

    @property
    def is_last_turn(self) -> bool:
        """The verifier's last chance to decide."""
        return self.restriction == RESTRICTION_GUESS_ONLY


@attrs.frozen(kw_only=True)
class ParsedResponse:
    """What a response means: a message per channel and a decision.

    Parameters
    ----------
    messages : Mapping[str, str]
        Channel to the text sent on it.
    decision : int
        0 reject, 1 accept, 2 continue, 3 neither.
    valid : bool
        Whether the response could be understood (an invalid one is asked again).
    reason : str | None
        Why it is invalid.
    """

    messages: Mapping[str, str] = attrs.field(factory=dict)
    decision: int = DECISION_CONTINUE
    valid: bool = True
    reason: str | None = None


@attrs.frozen(kw_only=True)
class TurnOutput:
    """An agent's completed turn in one episode, as written into the rollouts."""

    messages: Mapping[str, str]
    decision: int = DECISION_CONTINUE
    raw_output: str | None = None
    prompt: tuple[dict[str, str], ...] | None = None
    valid: bool = True
    retries: int = 0
    token_limit: bool = False
    tokens: int = -1
    """Tokens generated for the turn, over every attempt (-1: not known)."""


def request_seed(seed: int, sample_key: str, round_id: int, agent: str, attempt: int):
    """The seed of one generation request (stable across processes and resumes)."""
    return derive_seed(int(seed), f"request/{sample_key}/{round_id}/{agent}/{attempt}")


class TextAgent(WholeAgent):
    """Base of text-world agents (model-backed or random)."""

    uses_model: ClassVar[bool] = True
    """Whether the agent generates through a backend (random agents do not)."""

    def forward(
        self, data: Any, environment: Any, round_id: int = 0
    ) -> dict[int, TurnOutput]:
        """This agent's turns in round ``round_id`` of the episodes ``data`` (a
        :class:`~nip_core.text.rollouts.TextRollouts`), by episode index.

        Nothing is written into ``data``; :func:`nip_core.text.sampling.play_round`
        plays every agent's turns of a round at once and steps the environment.
        """
        from nip_core.text.sampling import take_turns

        outputs = take_turns(environment, {self.agent_name: self}, data, round_id)
        return {b: out for (b, _), out in outputs.items()}

    # Helpers every text agent shares -------------------------------------------------

    @property
    def spectrum(self) -> str:
        """The verdict scale (``protocol_common.verifier_decision_spectrum``)."""
        return str(
            getattr(
                self.protocol_handler.protocol_common,
                "verifier_decision_spectrum",
                "accept_reject",
            )
        )

    @cached_property
    def channel_recipients(self) -> dict[str, tuple[str, ...]]:
        """Per channel, the other agents that speak on it at some round."""
        return {
            channel: tuple(
                n for n in self.channel_speakers(channel) if n != self.agent_name
            )
            for channel in self.protocol_handler.message_channel_names
        }

    def channel_speakers(self, channel: str) -> tuple[str, ...]:
        """The agents that speak on ``channel`` at some round, in the protocol's
        agent order."""
        handler = self.protocol_handler
        return tuple(
            name
            for name in handler.agent_names
            if any(
                handler.can_agent_be_active(name, r, channel)
                for r in range(handler.max_message_rounds)
            )
        )


class TextWholeAgent(TextAgent):
    """A model-backed text agent (see the module docstring).

    Class attributes
    ----------------
    speaker_names : Mapping[str, str]
        Display names of agents in prompts (``{"prover0": "Expert_1"}``); agents not
        named get :meth:`default_speaker_name`.
    """

    speaker_names: ClassVar[Mapping[str, str]] = {}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.group: SharedModelGroup | None = None

    # ----------------------------------------------------------------------------------
    # What a scenario supplies

    @abstractmethod
    def system_prompt(self, context: TurnContext) -> str:
        """The system prompt of this agent in one episode (the scenario's template
        filled with the datapoint, the agent's stance, the number of questions, the
        word limit ...)."""

    # ----------------------------------------------------------------------------------
    # The model

    @property
    def model_name(self) -> str:
        """The model the agent uses now (its shared model group's current one)."""
        if self.group is not None:
            return self.group.model_name
        return str(self.agent_params.model_name)

    # ----------------------------------------------------------------------------------
    # Names

    @staticmethod
    def default_speaker_name(agent_name: str) -> str:
        """``"verifier"`` -> ``"Verifier"``, ``"prover0"`` -> ``"Prover 0"``."""
        match = re.fullmatch(r"([a-z_]*?)(\d+)", agent_name)
        if match:
            base, number = match.groups()
            return f"{base.replace('_', ' ').strip().title()} {number}"
        return agent_name.replace("_", " ").title()

    def speaker_name(self, agent_name: str) -> str:
        """How ``agent_name`` is called in this agent's prompts."""
        return self.speaker_names.get(agent_name, self.default_speaker_name(agent_name))

    def channel_header(self, channel: str) -> str:
        """The header under which this agent addresses a channel's recipients when
        it speaks on several channels at once (``"Question for Prover 0:"``)."""
        names = " and ".join(
            self.speaker_name(n) for n in self.channel_recipients[channel]
        ) or channel.replace("_", " ")
        word = "Question" if self.has_decider else "Message"
        return f"{word} for {names}:"

    # ----------------------------------------------------------------------------------
    # Building the chat

    def channel_order(self, context: TurnContext, round_id: int) -> list[str]:
        """The order in which a round's channels are shown to the agent.

        A verifier's, with the protocol section's ``randomize_channel_order``, is
        drawn from the episode seed and the round (so that it learns no position
        bias between the provers). Any other agent's is fixed: the channels it
        never speaks on first, then its own, so that what is addressed to it comes
        last, right before it answers (a debate prover reads the other prover's
        exchange, then its own), as in the original library.
        """
        channels = list(self.visible_message_channel_names)
        if not self.is_verifier:
            own = [c for c in channels if self.agent_name in self.channel_speakers(c)]
            return [c for c in channels if c not in own] + own
        section_name = getattr(self.protocol_handler, "parameter_section", None)
        section = (
            getattr(self.hyper_params, section_name, None) if section_name else None
        )
        if getattr(section, "randomize_channel_order", False) and len(channels) > 1:
            rng = random.Random(
                derive_seed(context.seed, f"channel_order/{self.agent_name}/{round_id}")
            )
            rng.shuffle(channels)
        return channels

    def incoming_messages(
        self, context: TurnContext, round_id: int
    ) -> list[tuple[str, str, str]]:
        """``(speaker, channel, text)`` of the other agents in ``round_id``, on the
        channels this agent sees, in :meth:`channel_order`."""
        rollouts = context.rollouts
        b = context.episode
        me = rollouts.agent_index(self.agent_name)
        items = []
        for channel in self.channel_order(context, round_id):
            c = rollouts.channel_index(channel)
            for a, agent in enumerate(rollouts.agent_names):
                if a == me:
                    continue
                text = rollouts["agents.message"][b, round_id, a, c]
                if text is not None:
                    items.append((agent, channel, text))
        return items

    def format_incoming(
        self, context: TurnContext, round_id: int, items: Sequence[tuple[str, str, str]]
    ) -> str:
        """The user turn showing a round's messages from other agents.

        Each message stands under its speaker's name (``Verifier: ...``). A speaker
        seen on several channels in the round (a verifier that addressed each
        prover under its own header, its text split there) has each part labelled
        with whom it addressed (``Verifier, to Expert_1: ...``), so an agent that
        sees every channel (debate's provers) can tell which part is for it.
        """
        channels_of: dict[str, set[str]] = {}
        for agent, channel, _ in items:
            channels_of.setdefault(agent, set()).add(channel)
        lines = []
        for agent, channel, text in items:
            label = self.speaker_name(agent)
            if len(channels_of[agent]) > 1:
                addressees = " and ".join(
                    self.speaker_name(n)
                    for n in self.channel_speakers(channel)
                    if n != agent
                )
                if addressees:
                    label = f"{label}, to {addressees}"
            lines.append(f"{label}: {text}")
        return "\n\n".join(lines)

    def turn_notice(self, context: TurnContext) -> str | None:
        """What the agent is told at the end of its prompt, if anything.

        Deciders on their last turn are told to decide now; an agent speaking on
        several channels is told how to address each.
        """
        notes = []
        if len(context.channels) > 1:
            headers = ", ".join(f"'{self.channel_header(c)}'" for c in context.channels)
            notes.append(
                "Address each of them separately, each part starting on its own line "
                f"with its header: {headers}."
            )
        if self.has_decider:
            if context.restriction == RESTRICTION_GUESS_ONLY:
                instruction = self.verdict_instruction()
                notes.append(f"This is your last turn: you must now {instruction}.")
            elif context.restriction == RESTRICTION_CONTINUE_ONLY:
                notes.append("You cannot give your verdict yet.")
        return " ".join(notes) if notes else None

    def opening_text(self, context: TurnContext) -> str:
        """The user turn that asks for the agent's first message when nothing has
        been said to it yet."""
        return "Please begin."

    def build_chat(self, context: TurnContext) -> list[dict[str, str]]:
        """The chat the model answers (see the module docstring)."""
        rollouts = context.rollouts
        b = context.episode
        me = rollouts.agent_index(self.agent_name)
        chat = [{"role": "system", "content": self.system_prompt(context)}]
        pending: list[str] = []

        def flush() -> None:
            if pending:
                chat.append({"role": "user", "content": "\n\n".join(pending)})
                pending.clear()

        for r in range(context.round_id):
            if rollouts["agents.active"][b, r, me]:
                if not pending and chat[-1]["role"] == "system":
                    pending.append(self.opening_text(context))
                flush()
                valid = rollouts["agents.valid_response"][b, r, me]
                own = rollouts["agents.raw_output"][b, r, me] if valid else ""
                chat.append({"role": "assistant", "content": own or ""})
            items = self.incoming_messages(context, r)
            if items:
                pending.append(self.format_incoming(context, r, items))
        if not pending and chat[-1]["role"] != "user":
            pending.append(self.opening_text(context))
        notice = self.turn_notice(context)
        if notice:
            pending.append(notice)
        flush()
        return chat

    # ----------------------------------------------------------------------------------
    # Generation and parsing

    def generation_request(
        self, context: TurnContext, chat: Sequence[Mapping[str, str]], attempt: int
    ) -> GenerationRequest:
        """The request for one attempt at the agent's turn in one episode."""
        params = self.agent_params
        return GenerationRequest(
            model=self.model_name,
            messages=chat,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens_per_message,
            repetition_penalty=getattr(params, "repetition_penalty", None),
            stop=getattr(params, "stop_sequences", ()),
            seed=request_seed(
                int(self.hyper_params.seed),
                context.sample_key,
                context.round_id,
                self.agent_name,
                attempt,
            ),
        )

    def split_channels(
        self, context: TurnContext, text: str
    ) -> tuple[dict[str, str], str | None]:
        """The text to send on each channel, and why it cannot be split (or None).

        A header counts where it opens a line (after markdown: ``**``, ``#``, a
        list bullet or number, a quote mark); the same words inside a sentence
        (``... unlike my question for Prover 0: ...``) are part of the message.
        Each part runs to the next header, and a channel addressed under its
        header several times gets every part, in order (never another channel's:
        its text would reach a prover the protocol keeps apart). A channel with
        nothing under its header is invalid, as an empty response is.
        """
        if len(context.channels) == 1:
            return {context.channels[0]: text.strip()}, None
        found = []
        for channel in context.channels:
            header = self.channel_header(channel).rstrip(":")
            pattern = re.compile(
                r"^[ \t]*(?:(?:[-+>]|\d+[.)])[ \t]+)?[*_#]*[ \t]*"
                + re.escape(header)
                + r"[*_]*[ \t]*:[*_]*",
                re.IGNORECASE | re.MULTILINE,
            )
            matches = list(pattern.finditer(text))
            if not matches:
                return {}, f"no '{self.channel_header(channel)}' header"
            found.extend((m.start(), m.end(), channel) for m in matches)
        found.sort()
        parts: dict[str, list[str]] = {channel: [] for channel in context.channels}
        for i, (_, end, channel) in enumerate(found):
            stop = found[i + 1][0] if i + 1 < len(found) else len(text)
            part = text[end:stop].strip()
            if part:
                parts[channel].append(part)
        for channel in context.channels:
            if not parts[channel]:
                return {}, f"nothing under the '{self.channel_header(channel)}' header"
        return {channel: "\n\n".join(parts[channel]) for channel in parts}, None

    def verdict_instruction(self) -> str:
        """How a decider states its verdict, as an instruction completing "you must
        now ..." (the last-turn notice of :meth:`turn_notice`).

        The default: ``"end your response with 'Decision: ' followed by accept or
        reject"`` (the scale of ``protocol_common.verifier_decision_spectrum``). A
        scenario whose :meth:`parse_response` reads verdicts in another format
        overrides it.
        """
        return (
            "end your response with 'Decision: ' followed by "
            f"{describe_spectrum(self.spectrum)}"
        )

    def write_verdict(self, text: str, decision: int) -> str:
        """``text``, a response of this agent, rewritten to state ``decision``
        (:data:`~nip_core.protocols.decisions.DECISION_ACCEPT` or
        ``DECISION_REJECT``) instead of the verdict it gave.

        Expert iteration's guess replacement writes the true verdict into verifier
        responses with it, so what it returns must be what :meth:`parse_response`
        reads as ``decision`` (the trainer checks and refuses otherwise). The
        default keeps the text up to its last ``Decision:`` (all of it when it has
        none) and ends it with ``Decision: <verdict>`` on the spectrum's scale
        (:func:`~nip_core.text.parsing.verdict_text`). A scenario whose
        :meth:`parse_response` reads verdicts in another format overrides it.
        """
        return write_decision(text, decision, self.spectrum)

    def parse_response(self, context: TurnContext, text: str) -> ParsedResponse:
        """What a response means (see the module docstring)."""
        if not text.strip():
            return ParsedResponse(valid=False, reason="the response is empty")
        decision = DECISION_CONTINUE
        body = text
        if self.has_decider:
            parsed = parse_decision(text, self.spectrum)
            if not parsed.valid:
                return ParsedResponse(valid=False, reason=parsed.reason)
            decision, body = parsed.decision, parsed.text
            if (
                decision == DECISION_CONTINUE
                and context.restriction == RESTRICTION_GUESS_ONLY
            ):
                # the turn's notice asked for a verdict: a question instead would
                # end the episode unanswered (terminated), so it is asked again
                return ParsedResponse(
                    valid=False,
                    reason="this is the verifier's last turn and the response gives "
                    "no verdict",
                )
        messages, problem = self.split_channels(context, body)
        if problem is not None:
            if (
                decision != DECISION_CONTINUE
                and context.restriction != RESTRICTION_CONTINUE_ONLY
            ):
                # a verdict that counts ends the episode: nothing needs to reach
                # the channels (one given before it may count does not end it, so
                # the messages must be addressed as always)
                return ParsedResponse(
                    messages={c: body.strip() for c in context.channels},
                    decision=decision,
                )
            return ParsedResponse(valid=False, reason=problem)
        return ParsedResponse(messages=messages, decision=decision)

    def interpret(
        self, context: TurnContext, choice: GenerationChoice
    ) -> ParsedResponse:
        """Parse one completion; a filtered one is invalid."""
        if choice.filtered:
            return ParsedResponse(
                valid=False, reason="the backend filtered the response (content_filter)"
            )
        return self.parse_response(context, choice.text)


class RandomTextAgent(TextAgent):
    """A text agent that acts uniformly at random, with no model.

    Deciders pick uniformly among the verdicts the round allows (continue only before
    they may decide; accept or reject on their last turn; any of the three
    otherwise); every agent sends a few random words on each channel it speaks on.
    Seeded by the request seed, so runs are reproducible.
    """

    uses_model: ClassVar[bool] = False

    VOCABULARY: ClassVar[tuple[str, ...]] = (
        "the", "claim", "holds", "fails", "because", "check", "this", "step",
        "case", "value", "true", "false", "proof", "error", "line", "result",
    )  # fmt: skip

    def random_turn(self, context: TurnContext) -> TurnOutput:
        """This agent's turn in one episode."""
        rng = random.Random(
            request_seed(
                int(self.hyper_params.seed),
                context.sample_key,
                context.round_id,
                self.agent_name,
                0,
            )
        )
        decision = DECISION_CONTINUE
        if self.has_decider:
            if context.restriction == RESTRICTION_GUESS_ONLY:
                choices = [DECISION_REJECT, DECISION_ACCEPT]
            elif context.restriction == RESTRICTION_CONTINUE_ONLY:
                choices = [DECISION_CONTINUE]
            else:
                choices = [DECISION_REJECT, DECISION_ACCEPT, DECISION_CONTINUE]
            decision = rng.choice(choices)
        messages = {
            channel: " ".join(rng.choices(self.VOCABULARY, k=rng.randint(3, 8)))
            for channel in context.channels
        }
        text = "\n".join(messages.values())
        return TurnOutput(
            messages=messages, decision=decision, raw_output=text, tokens=0
        )
