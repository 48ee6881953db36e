"""Code validation agents: prompts from the package's Jinja2 templates.

System prompts live in ``templates/<protocol>/<role>.j2`` (``role`` is
``verifier`` or ``prover``; two-prover protocols use one prover template, filled
with the prover's own name and stance). They are rendered with:

``question``, ``solution``
    The datapoint.
``max_questions``
    The verifier's questions: its turns in the protocol's schedule less the last
    one, which is the verdict.
``max_response_words``
    The agent's word limit.
``stance``
    Provers: ``"accept"`` or ``"reject"``, the verdict the protocol rewards the
    prover for (so prompts and rewards agree: in ``debate``, ``merlin_arthur`` and
    ``mnip`` ``prover0`` argues for reject and ``prover1`` for accept; a single
    prover's stance is randomized per datapoint with
    ``protocol_common.randomize_prover_stance``).
``verifier_name``, ``prover_name``, ``prover_names``, ``other_prover``
    Display names (``Verifier``, ``Expert``, ``Expert_1``, ``Expert_2``).
``headers``
    The verifier's multi-channel headers (``Question for Expert_1:``).
``decision_scale``, ``decision_example``
    The verdict scale of ``protocol_common.verifier_decision_spectrum``.
``randomized_stance``
    Whether a single prover's stance is randomized.
``shared_reward``
    Whether the provers are paid the verifier's reward
    (``protocol_common.shared_reward``): the prompts then tell every agent that the
    provers are rewarded when the verdict is correct, not a stance's verdict.

An agent's ``system_prompt_template_path`` replaces its template. Each turn ends
with a notice: the verifier is told how many questions it has left, or that it must
decide now; a prover is told to answer and which verdict to argue for (with a
shared reward: to help the verifier judge correctly).
"""

from __future__ import annotations

from functools import cache, cached_property
from pathlib import Path
from typing import Any, ClassVar

from nip_core.protocols.decisions import (
    DECISION_ACCEPT,
    RESTRICTION_CONTINUE_ONLY,
    RESTRICTION_GUESS_ONLY,
)
from nip_core.text.agents import TextWholeAgent, TurnContext
from nip_core.text.backend import GenerationRequest
from nip_core.text.parsing import describe_spectrum, verdict_text

__all__ = ["CodeValidationAgent", "render_template", "template_environment"]

STANCE_WORDS = {0: "reject", 1: "accept"}


@cache
def template_environment() -> Any:
    """The Jinja2 environment over the package's ``templates/`` (strict: a missing
    variable is an error)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("nip_plugin_code_validation", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render_template(name: str, **context: Any) -> str:
    """Render a packaged template (``"nip/verifier.j2"``)."""
    return template_environment().get_template(name).render(**context).strip()


def _spectrum_words(spectrum: str) -> tuple[str, str]:
    scale = describe_spectrum(spectrum)
    example = f"Decision: {verdict_text(DECISION_ACCEPT, spectrum)}"
    return scale, example


class CodeValidationAgent(TextWholeAgent):
    """A code validation agent (verifier or prover) of any supported protocol."""

    TWO_PROVER_NAMES: ClassVar[dict[str, str]] = {
        "prover0": "Expert_1",
        "prover1": "Expert_2",
    }

    @property
    def protocol(self) -> str:
        return str(self.hyper_params.interaction_protocol)

    @cached_property
    def _names(self) -> dict[str, str]:
        handler = self.protocol_handler
        names = {name: "Verifier" for name in handler.verifier_names}
        provers = list(handler.prover_names)
        if len(provers) == 1:
            names[provers[0]] = "Expert"
        elif self.protocol == "merlin_arthur":
            # the verifier is not told which side the expert took
            names.update(dict.fromkeys(provers, "Expert"))
        else:
            names.update({p: self.TWO_PROVER_NAMES.get(p, p) for p in provers})
        return names

    def speaker_name(self, agent_name: str) -> str:
        return self._names.get(agent_name, self.default_speaker_name(agent_name))

    # ----------------------------------------------------------------------------------
    # The schedule

    @cached_property
    def verifier_turn_rounds(self) -> list[int]:
        """The rounds the verifier may speak in (on some channel)."""
        handler = self.protocol_handler
        verifier = handler.verifier_names[0]
        return [
            r
            for r in range(handler.max_message_rounds)
            if any(
                handler.can_agent_be_active(verifier, r, c)
                for c in handler.message_channel_names
            )
        ]

    @property
    def max_questions(self) -> int:
        return max(0, len(self.verifier_turn_rounds) - 1)

    # ----------------------------------------------------------------------------------
    # Prompts

    def template_name(self) -> str:
        role = "verifier" if self.is_verifier else "prover"
        return f"{self.protocol}/{role}.j2"

    def stance(self, context: TurnContext) -> str:
        target = context.target_verdict
        return STANCE_WORDS.get(target if target is not None else DECISION_ACCEPT)

    def template_context(self, context: TurnContext) -> dict[str, Any]:
        handler = self.protocol_handler
        datapoint = context.datapoint
        provers = list(handler.prover_names)
        scale, example = _spectrum_words(self.spectrum)
        values: dict[str, Any] = {
            "question": datapoint["question"],
            "solution": str(datapoint["solution"]).rstrip(),
            "max_questions": self.max_questions,
            "max_response_words": int(self.agent_params.max_response_words),
            "verifier_name": "Verifier",
            "prover_names": [self.speaker_name(p) for p in provers],
            "prover_name": (
                self.speaker_name(self.agent_name)
                if self.is_prover
                else self.speaker_name(provers[0])
                if provers
                else "Expert"
            ),
            "headers": [
                self.channel_header(c) for c in self.visible_message_channel_names
            ]
            if self.is_verifier
            else [],
            "decision_scale": scale,
            "decision_example": example,
            "randomized_stance": bool(handler.protocol_common.randomize_prover_stance),
            "shared_reward": self.shared_reward,
            "stance": self.stance(context) if self.is_prover else "",
            "other_prover": next(
                (self.speaker_name(p) for p in provers if p != self.agent_name), ""
            ),
        }
        return values

    def system_prompt(self, context: TurnContext) -> str:
        values = self.template_context(context)
        path = self.agent_params.system_prompt_template_path
        if path is not None:
            import jinja2
            from nip_core.errors import ConfigProblem, NipConfigError

            try:
                template = template_environment().from_string(
                    Path(path).expanduser().read_text(encoding="utf-8")
                )
                return template.render(**values).strip()
            except (jinja2.TemplateError, OSError, UnicodeDecodeError) as error:
                # (validation checked its syntax and variables; this is what only
                # rendering shows, an attribute of a string, say)
                raise NipConfigError(
                    ConfigProblem(
                        f"agents.{self.agent_name}.system_prompt_template_path",
                        f"the template cannot be rendered: {type(error).__name__}: "
                        f"{error}",
                        path,
                    )
                ) from error
        return render_template(self.template_name(), **values)

    @property
    def shared_reward(self) -> bool:
        """Whether the provers are paid the verifier's reward."""
        return bool(self.protocol_handler.protocol_common.shared_reward)

    def aim(self, context: TurnContext) -> str:
        """What a prover's messages aim at, completing "arguing ..." / "helping
        ...": its stance's verdict, or with a shared reward the correct one."""
        if self.shared_reward:
            return "helping it judge the solution correctly"
        return f"arguing that it should {self.stance(context)} the solution"

    def opening_text(self, context: TurnContext) -> str:
        if self.is_verifier:
            return "Please begin."
        return f"Write your message to the Verifier, {self.aim(context)}."

    def turn_notice(self, context: TurnContext) -> str | None:
        if self.is_prover:
            if context.round_id == 0:
                return None
            return (
                f"Answer the Verifier, {self.aim(context)} "
                f"(under {self.agent_params.max_response_words} words)."
            )
        scale, _ = _spectrum_words(self.spectrum)
        if context.restriction == RESTRICTION_GUESS_ONLY:
            return (
                "You cannot ask any more questions: give your verdict now. End your "
                f"response with a line 'Decision: ' followed by {scale}."
            )
        notes = []
        if len(context.channels) > 1:
            headers = ", ".join(f"'{self.channel_header(c)}'" for c in context.channels)
            notes.append(
                "To ask, write one question per expert, each on its own line under "
                f"its header: {headers}."
            )
        if context.restriction == RESTRICTION_CONTINUE_ONLY:
            notes.append("You cannot give your verdict yet: ask your question.")
        else:
            left = sum(1 for r in self.verifier_turn_rounds if r >= context.round_id)
            questions = max(0, left - 1)
            notes.append(
                f"You have {questions} "
                f"{'question' if questions == 1 else 'questions'} left. Ask a "
                "question, or give your verdict with a line 'Decision: ' followed "
                f"by {scale}."
            )
        return " ".join(notes)

    def generation_request(
        self, context: TurnContext, chat: Any, attempt: int
    ) -> GenerationRequest:
        request = super().generation_request(context, chat, attempt)
        if request.max_tokens is None:
            import attrs

            request = attrs.evolve(
                request, max_tokens=self.agent_params.effective_max_tokens
            )
        return request
