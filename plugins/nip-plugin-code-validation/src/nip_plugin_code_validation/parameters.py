"""Parameters of the code validation scenario (no torch).

- :class:`CodeValidationAgentParameters`: each agent's model and sampling, on top of
  :class:`~nip_core.parameters.text.TextAgentParameters`.
- :class:`CodeValidationParameters`: the section ``code_validation`` (dataset
  filters, the LLM judge).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from attrs import field
from attrs import validators as v
from nip_core.errors import ConfigProblem
from nip_core.parameters import SubParameters, parameters_class
from nip_core.parameters.text import TextAgentParameters

__all__ = [
    "APPS_DIFFICULTIES",
    "TEMPLATE_VARIABLES",
    "CodeValidationAgentParameters",
    "CodeValidationParameters",
]

TEMPLATE_VARIABLES: frozenset[str] = frozenset(
    {
        "question",
        "solution",
        "max_questions",
        "max_response_words",
        "verifier_name",
        "prover_names",
        "prover_name",
        "headers",
        "decision_scale",
        "decision_example",
        "randomized_stance",
        "shared_reward",
        "stance",
        "other_prover",
    }
)
"""The variables a system prompt template is rendered with (see
:mod:`nip_plugin_code_validation.agents`)."""

AppsDifficulty = Literal["introductory", "interview", "competition"]
APPS_DIFFICULTIES: tuple[str, ...] = ("introductory", "interview", "competition")


@parameters_class
class CodeValidationAgentParameters(TextAgentParameters):
    """An agent of the code validation scenario.

    Parameters
    ----------
    model_name : str
        The model the agent starts from (default: the original library's
        ``gpt-4o-mini-2024-07-18``; with the ``transformers`` backend, a local model
        directory or its default model).
    max_response_words : int
        The word limit the prompts state (150, as the original).
    max_tokens_per_message : int | None
        The most tokens a response may have; ``None``: 1.5 × ``max_response_words``
        plus room for the verdict line, as the original derived it.
    system_prompt_template_path : str | None
        A Jinja2 template file replacing the packaged system prompt of this agent
        (the same variables are available: see the scenario's docs page).
    """

    model_name: str = "gpt-4o-mini-2024-07-18"
    system_prompt_template_path: str | None = None

    @property
    def effective_max_tokens(self) -> int:
        """The token limit of one response (see ``max_tokens_per_message``)."""
        if self.max_tokens_per_message is not None:
            return int(self.max_tokens_per_message)
        return int(self.max_response_words * 1.5) + 16

    def consistency_problems(self) -> list[ConfigProblem]:
        problems = super().consistency_problems()
        path = self.system_prompt_template_path
        if path is not None and not Path(path).expanduser().is_file():
            problems.append(
                ConfigProblem(
                    "system_prompt_template_path", "no such template file", path
                )
            )
        elif path is not None:
            problem = template_problem(Path(path).expanduser())
            if problem is not None:
                problems.append(
                    ConfigProblem("system_prompt_template_path", problem, path)
                )
        return problems

    @classmethod
    def construct_test_params(cls) -> CodeValidationAgentParameters:
        return cls(num_invalid_generation_retries=3, max_response_words=40)


def template_problem(path: Path) -> str | None:
    """What is wrong with a system prompt template file, or ``None``: text that is
    not UTF-8, Jinja2 syntax errors (with the line), variables the prompts are not
    rendered with (listing those they are)."""
    import jinja2
    import jinja2.meta

    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return "the template is not UTF-8 text"
    except OSError as error:
        return f"cannot read the template: {error.strerror or error}"
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    try:
        parsed = environment.parse(source)
    except jinja2.TemplateSyntaxError as error:
        return f"Jinja2 syntax error on line {error.lineno}: {error.message}"
    unknown = sorted(jinja2.meta.find_undeclared_variables(parsed) - TEMPLATE_VARIABLES)
    if unknown:
        return (
            f"the template uses {', '.join(unknown)}, which the prompts are not "
            f"rendered with; the variables are: {', '.join(sorted(TEMPLATE_VARIABLES))}"
        )
    return None


@parameters_class
class CodeValidationParameters(SubParameters):
    """The code validation scenario (section ``code_validation``).

    Parameters
    ----------
    apps_difficulty : {"introductory", "interview", "competition"}
        ``buggy_apps`` and ``apps``: the difficulty of the APPS problems kept.
    apps_exclude_flagged : bool
        ``buggy_apps``: leave out rows the OpenAI moderation API flagged.
    apps_solution_number : int
        ``apps``: which of a problem's solutions is used (problems with fewer are
        left out).
    judge_model : str | None
        The model of the ``code_validation_judge`` rollout analyser; ``None``: the
        verifier's model.
    judge_backend : str | None
        Its text backend; ``None``: ``text_backend.name``.
    judge_max_episodes : int | None
        The most episodes the judge reads per batch (the first ones); ``None``: all.
    """

    apps_difficulty: AppsDifficulty = "interview"
    apps_exclude_flagged: bool = True
    apps_solution_number: int = field(default=0, validator=v.ge(0))
    judge_model: str | None = None
    judge_backend: str | None = None
    judge_max_episodes: int | None = field(default=None, validator=v.optional(v.ge(1)))
