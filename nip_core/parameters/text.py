"""Parameters of the text world: text agents, the staged text trainer, backends.

=====================  ===============================================================
section / class        what it holds
=====================  ===============================================================
``text_rl``            :class:`TextRlParameters`: the staged text trainer's loop
                       (iterations, rollouts, test scheme, fine-tune data rules)
``text_backend``       :class:`TextBackendParameters`: which text-model backend agents
                       use by default, request concurrency, retries and timeouts
``openai_backend``     :class:`OpenAiBackendParameters`: the ``openai`` backend's
                       endpoint (any OpenAI-compatible server) and fine-tune options
agent parameters       :class:`TextAgentParameters`: the base of every text
                       scenario's agent parameters (model, shared model group,
                       sampling, retries, freezing)
=====================  ===============================================================

API keys are never parameters: a backend reads them from the environment variable
its section names (``openai_backend.api_key_env``).

This module imports without torch.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs
from attrs import field
from attrs import validators as v

from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.parameters.agents import AgentParameters
from nip_core.parameters.base import SubParameters, parameters_class
from nip_core.parameters.base_run import base_run_preserve, resume_overridable

__all__ = [
    "OpenAiBackendParameters",
    "TEST_SCHEMES",
    "TextAgentParameters",
    "TextBackendParameters",
    "TextRlParameters",
    "shared_model_group_problems",
    "shown_api_key_env",
]

TestScheme = Literal["none", "all", "last", "first_and_last"]
TEST_SCHEMES: tuple[str, ...] = ("none", "all", "last", "first_and_last")

AnnealingType = Literal["none", "linear", "exponential"]
TokenLimitParameter = Literal["auto", "max_tokens", "max_completion_tokens"]


def _string_tuple(value: Any) -> tuple[Any, ...]:
    """One string or several: ``"END"`` is ``("END",)``, not its letters."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if value is not None else ()


def _non_empty_strings(instance: Any, attribute: Any, value: Any) -> None:
    if any(not isinstance(item, str) or not item for item in value):
        raise ValueError("must be non-empty strings")


def _finite(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


def _positive_finite(instance: Any, attribute: Any, value: Any) -> None:
    _finite(instance, attribute, value)
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value!r}")


def _non_empty_or_none(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and not str(value).strip():
        raise ValueError(f"{attribute.name} must not be empty (use null for none)")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _masked(text: str) -> str:
    """A value that may be a secret, shown by its first characters only."""
    return f"{text[:4]}... ({len(text)} characters)" if len(text) > 8 else "..."


def shown_api_key_env(value: str) -> str:
    """A value of ``openai_backend.api_key_env`` as messages and saved files show
    it: the name of an environment variable as it is; anything else (most likely
    the API key itself, pasted in) by its first characters only.

    Parameters
    ----------
    value : str
        The value given for ``api_key_env``.
    """
    return value if _ENV_NAME.fullmatch(value) else _masked(value)


def _unknown_backend(name: str, known: Any = ()) -> str:
    from nip_core.parameters.validation import closest
    from nip_core.plugin_catalogue import missing_key_hint

    message = "unknown text backend"
    suggestion = closest(str(name), known)
    if suggestion:
        message += f"; did you mean {suggestion!r}?"
    try:
        hint = missing_key_hint("text_backend", name)
    except Exception:  # noqa: BLE001 - a hint must never hide the real problem
        hint = None
    return message + (f"; {hint}" if hint else "")


# --------------------------------------------------------------------------------------
# The staged text trainer
# --------------------------------------------------------------------------------------


def _names_tuple(value: Any) -> Any:
    """A list of names as a tuple; a string is left as it is, for the type check to
    say that a list is expected (``tuple("decisions")`` would be its letters)."""
    if isinstance(value, str | bytes):
        return value
    try:
        return tuple(value)
    except TypeError:
        return value


@parameters_class
class TextRlParameters(SubParameters):
    """Parameters of staged text trainers (section ``text_rl``).

    Every iteration samples ``rollouts_per_iteration`` episodes, logs their
    statistics, tests when the ``test_scheme`` says so, and fine-tunes each shared
    model group on what the trainer selects from them.

    Parameters
    ----------
    num_iterations : int
        Sample-and-fine-tune iterations (at least 1).
    rollouts_per_iteration : int
        Episodes sampled per iteration (at least 1). Datapoints are drawn in a seeded
        order; each pass over the training set is a fresh permutation.
    num_test_rollouts : int | None
        Episodes of each test: the first this many test datapoints, in order.
        ``None``: the whole test set. Kept when re-running the tests of a base run.
    test_scheme : {"none", "all", "last", "first_and_last"}
        When the agents are tested: never; at every iteration (before its
        fine-tuning) and after training; after training only; or at the first
        iteration and after training. Kept when re-running the tests of a base run.
    fine_tune_on_all_previous_rollouts : bool
        Fine-tune on the rollouts of every iteration so far, not just the latest.
    min_fine_tune_examples : int
        A group with fewer selected examples than this keeps its model for the
        iteration (the metrics say so). OpenAI refuses fewer than 10.
    verifier_guess_replacement_proportion : float
        Expert iteration: the proportion of verifier examples whose final message
        gets the true verdict written in, in [0, 1].
    verifier_guess_replacement_annealing : {"none", "linear", "exponential"}
        How that proportion decreases over iterations.
    verifier_guess_replacement_annealing_rate : float
        The rate of the annealing: linear subtracts ``rate × iteration``,
        exponential multiplies by ``(1 - rate) ** iteration`` (rate in [0, 1]).
    verifier_guess_replacement_keeps_reasoning : bool
        Whether a message with the true verdict written in keeps the verifier's
        text before its verdict (which may argue for the other verdict); off, the
        message is the verdict alone, as in the original library.
    save_transcripts : bool
        Also write a readable transcript beside each iteration's rollouts.
    rollout_analysers : tuple[str, ...]
        Rollout analysers (registry keys, see ``nip plugins``) run on every batch of
        rollouts logged, their metrics logged as ``analysis.<name>.<metric>``
        (:mod:`nip_core.text.analysis`). Kept when re-running the tests of a base
        run.
    """

    retired_keys: ClassVar[Mapping[str, str]] = {
        "test_on_whole_dataset": "the original library's key; use "
        "text_rl.num_test_rollouts (null: the whole test set)",
        "transcript_format": "the original library's key; transcripts are plain "
        "text beside the JSONL rollouts, remove it",
    }

    num_iterations: int = field(default=8, validator=v.ge(1))
    rollouts_per_iteration: int = field(default=64, validator=v.ge(1))
    num_test_rollouts: int | None = field(
        default=None,
        validator=v.optional(v.ge(1)),
        metadata=base_run_preserve("rerun_tests"),
    )
    test_scheme: TestScheme = field(
        default="last", metadata=base_run_preserve("rerun_tests")
    )
    fine_tune_on_all_previous_rollouts: bool = False
    min_fine_tune_examples: int = field(default=10, validator=v.ge(1))
    verifier_guess_replacement_proportion: float = field(
        default=0.0, validator=[_finite, v.ge(0), v.le(1)]
    )
    verifier_guess_replacement_annealing: AnnealingType = "none"
    verifier_guess_replacement_annealing_rate: float = field(
        default=0.1, validator=[_finite, v.ge(0), v.le(1)]
    )
    verifier_guess_replacement_keeps_reasoning: bool = True
    save_transcripts: bool = True
    rollout_analysers: tuple[str, ...] = field(
        default=(), converter=_names_tuple, metadata=base_run_preserve("rerun_tests")
    )

    def consistency_problems(self) -> list[ConfigProblem]:
        from nip_core.text.analysis import rollout_analyser_problems

        return [
            *super().consistency_problems(),
            *rollout_analyser_problems(self.rollout_analysers, None),
        ]

    @classmethod
    def construct_test_params(cls) -> TextRlParameters:
        """Two iterations of a handful of episodes."""
        return cls(
            num_iterations=2,
            rollouts_per_iteration=4,
            num_test_rollouts=4,
            min_fine_tune_examples=1,
        )

    def guess_replacement_proportion(self, iteration: int) -> float:
        """The verifier guess-replacement proportion at ``iteration`` (annealed).

        ``none``: the proportion ``p``; ``linear``: ``max(0, p - rate × iteration)``;
        ``exponential``: ``p × (1 - rate) ** iteration``; rounded to 12 decimal
        places, so that decimal settings give decimal values (0.3 - 0.1 is 0.2,
        not 0.19999999999999998, whose share of 10 examples would be 1, not 2).
        """
        base = self.verifier_guess_replacement_proportion
        rate = self.verifier_guess_replacement_annealing_rate
        if self.verifier_guess_replacement_annealing == "linear":
            value = max(0.0, base - rate * iteration)
        elif self.verifier_guess_replacement_annealing == "exponential":
            value = base * (1.0 - rate) ** iteration
        else:
            value = base
        return max(0.0, round(float(value), 12))


# --------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------


@parameters_class
class TextBackendParameters(SubParameters):
    """Which text-model backend agents use, and how requests are made (section
    ``text_backend``).

    Parameters
    ----------
    name : str
        The default backend of text agents: a key of the text-backend registry
        (``openai``; plugins add more, e.g. ``transformers``). An agent's own
        ``backend`` parameter overrides it.
    max_concurrency : int
        Requests in flight at once, per backend (at least 1).
    max_retries : int
        Retries of a request that failed for a passing reason (rate limit, server
        error, timeout, lost connection, malformed reply) before the run stops with
        a clear error (at least 0).
    retry_initial_delay : float
        Seconds before the first retry; each further retry doubles it, with jitter
        (greater than 0).
    retry_max_delay : float
        The longest wait between two retries, in seconds (greater than 0).
    request_timeout : float
        Seconds a single request may take before it counts as timed out (greater
        than 0).
    fine_tune_poll_interval : float
        Seconds between two looks at a running fine-tune job (greater than 0).
    """

    name: str = field(default="openai", validator=_non_empty_or_none)
    max_concurrency: int = field(
        default=8, validator=v.ge(1), metadata=resume_overridable()
    )
    max_retries: int = field(
        default=6, validator=v.ge(0), metadata=resume_overridable()
    )
    retry_initial_delay: float = field(
        default=1.0, validator=_positive_finite, metadata=resume_overridable()
    )
    retry_max_delay: float = field(
        default=60.0, validator=_positive_finite, metadata=resume_overridable()
    )
    request_timeout: float = field(
        default=120.0, validator=_positive_finite, metadata=resume_overridable()
    )
    fine_tune_poll_interval: float = field(
        default=10.0, validator=_positive_finite, metadata=resume_overridable()
    )

    def consistency_problems(self) -> list[ConfigProblem]:
        problems = super().consistency_problems()
        from nip_core.plugins import get_plugin_manager

        backends = get_plugin_manager().registry("text_backend")
        if self.name not in backends:
            problems.append(
                ConfigProblem(
                    "name",
                    _unknown_backend(self.name, backends),
                    self.name,
                    tuple(backends),
                )
            )
        if self.retry_max_delay < self.retry_initial_delay:
            problems.append(
                ConfigProblem(
                    "retry_max_delay",
                    "must be at least retry_initial_delay "
                    f"({self.retry_initial_delay})",
                    self.retry_max_delay,
                )
            )
        return problems


ENV_BASE_URL = "OPENAI_BASE_URL"
"""The environment variable the ``openai`` backend takes its endpoint from when
``openai_backend.base_url`` is null (as the openai client does)."""


def _url_problem(url: Any) -> str | None:
    """Why ``url`` cannot be an endpoint, or ``None``."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "must be an http:// or https:// URL (e.g. http://localhost:8000/v1)"
    if "@" in urllib.parse.urlsplit(url).netloc:
        return (
            "must not carry credentials (user:password@): a run saves its endpoint; "
            "put the key in the environment variable named by "
            "openai_backend.api_key_env"
        )
    return None


def _without_credentials(url: Any) -> Any:
    """``url`` with any ``user:password@`` masked, for messages."""
    if not isinstance(url, str):
        return url
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


@parameters_class
class OpenAiBackendParameters(SubParameters):
    """The ``openai`` backend: any OpenAI-compatible endpoint (section
    ``openai_backend``).

    Parameters
    ----------
    base_url : str | None
        The endpoint, e.g. ``http://localhost:8000/v1`` for a vLLM or llama.cpp
        server, ``https://openrouter.ai/api/v1``. ``None``: ``$OPENAI_BASE_URL``,
        else OpenAI's own API.
    api_key_env : str
        The environment variable holding the API key. Required for OpenAI's own API;
        for another endpoint a missing key is sent as a placeholder (local servers
        usually need none). Whitespace around the key (a file's final newline) is
        dropped; a key with a space, control or non-ASCII character inside is
        refused when the backend is built.
    fine_tune_epochs : int | None
        Epochs of each fine-tune job; ``None``: the endpoint's default.
    fine_tune_learning_rate_multiplier : float | None
        The learning-rate multiplier of fine-tune jobs; ``None``: the default.
    fine_tune_batch_size : int | None
        The batch size of fine-tune jobs; ``None``: the default.
    dpo_beta : float | None
        The β of preference (DPO) jobs; ``None``: the default.
    token_limit_parameter : {"auto", "max_tokens", "max_completion_tokens"}
        The request field that carries an agent's token limit. ``auto``:
        ``max_completion_tokens`` for OpenAI's own API (its reasoning models refuse
        ``max_tokens``), ``max_tokens`` for other endpoints (every
        OpenAI-compatible server reads it); an endpoint that refuses the one sent
        as unsupported (a 400 naming it) gets the other from then on.
    """

    base_url: str | None = field(
        default=None, validator=_non_empty_or_none, metadata=resume_overridable()
    )
    base_urls: tuple[str, ...] | None = field(
        default=None, metadata=resume_overridable()
    )
    max_concurrency_per_server: int | None = field(
        default=None, validator=v.optional(v.ge(1)), metadata=resume_overridable()
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        validator=_non_empty_or_none,
        metadata=resume_overridable(),
    )
    fine_tune_epochs: int | None = field(default=None, validator=v.optional(v.ge(1)))
    fine_tune_learning_rate_multiplier: float | None = field(
        default=None, validator=_positive_finite
    )
    fine_tune_batch_size: int | None = field(
        default=None, validator=v.optional(v.ge(1))
    )
    dpo_beta: float | None = field(default=None, validator=_positive_finite)
    token_limit_parameter: TokenLimitParameter = field(
        default="auto", metadata=resume_overridable()
    )

    def __attrs_post_init__(self) -> None:
        if isinstance(self.api_key_env, str) and _ENV_NAME.fullmatch(self.api_key_env):
            # its value is a key whatever the name: never saved or shown
            from nip_core.settings import declare_secret_env_var

            declare_secret_env_var(self.api_key_env)

    def resolved_from_environment(self) -> OpenAiBackendParameters:
        """With ``base_url`` null (and no ``base_urls``), the endpoint of
        ``$OPENAI_BASE_URL`` written in: a run saves the endpoint it used, and its
        resume goes there even from a shell without the variable (not to OpenAI's
        API with the real key)."""
        if self.base_url is not None or self.base_urls:
            return self
        url = os.environ.get(ENV_BASE_URL, "").strip()
        if not url:
            return self
        problem = _url_problem(url)
        if problem is not None:
            raise NipConfigError(
                ConfigProblem(
                    "base_url",
                    f"taken from the environment variable {ENV_BASE_URL}, which "
                    + problem,
                    _without_credentials(url),
                )
            )
        return attrs.evolve(self, base_url=url)

    def consistency_problems(self) -> list[ConfigProblem]:
        problems = super().consistency_problems()
        urls = [("base_url", self.base_url)] if self.base_url is not None else []
        urls += [(f"base_urls.{i}", url) for i, url in enumerate(self.base_urls or ())]
        for path, url in urls:
            problem = _url_problem(url)
            if problem is not None:
                problems.append(ConfigProblem(path, problem, _without_credentials(url)))
        if isinstance(self.api_key_env, str) and not _ENV_NAME.fullmatch(
            self.api_key_env
        ):
            # most likely the key itself: never echoed whole
            problems.append(
                ConfigProblem(
                    "api_key_env",
                    "must be the name of the environment variable that holds the "
                    "API key (e.g. OPENAI_API_KEY: letters, digits and underscores), "
                    "not the key itself; export the key as that variable",
                    shown_api_key_env(self.api_key_env),
                )
            )
        if self.base_url is not None and self.base_urls:
            problems.append(
                ConfigProblem(
                    "base_urls",
                    "give either base_url (one endpoint) or base_urls (several), "
                    "not both",
                    list(self.base_urls),
                )
            )
        if self.base_urls is not None and not self.base_urls:
            problems.append(
                ConfigProblem("base_urls", "must name at least one endpoint (or null)")
            )
        return problems


# --------------------------------------------------------------------------------------
# Text agents
# --------------------------------------------------------------------------------------


@parameters_class
class TextAgentParameters(AgentParameters):
    """Parameters every text-world agent has (the base of a text scenario's class).

    Parameters
    ----------
    model_name : str
        The model the agent starts from: a model id of its backend (an OpenAI model,
        a model served by a local server, a local model directory).
    backend : str | None
        The agent's text backend (a key of the text-backend registry); ``None``:
        ``text_backend.name``.
    shared_model_group : str | None
        Agents naming the same group share one model and one fine-tune job per
        iteration; they must agree on ``model_name``, ``backend``, ``freeze_agent``
        and ``fine_tune_from_scratch``. ``None``: a group of its own, named after
        the agent.
    temperature : float | None
        Sampling temperature, in [0, 2]; ``None``: the backend's default.
    top_p : float | None
        Nucleus sampling mass, in (0, 1]; ``None``: the backend's default.
    repetition_penalty : float | None
        Above 0: the logits of tokens already in the chat or the response are
        divided by it when positive, multiplied when negative (above 1: fewer
        repeats). ``None``: none, and nothing is sent. vLLM and llama.cpp servers
        and the ``transformers`` backend take it; OpenAI's own API refuses it.
    max_tokens_per_message : int | None
        The most tokens one response may have; a response cut there is flagged as
        hitting the token limit. ``None``: no limit besides the model's.
    stop_sequences : tuple[str, ...]
        A response ends before the first of these strings and does not hold it
        (sent to the backend as ``stop``; OpenAI's API takes at most 4). Empty:
        none.
    max_response_words : int
        The word limit prompts tell the agent to keep to (at least 1).
    num_invalid_generation_retries : int
        How often an invalid response (unparsable, filtered) is asked again before
        the agent sends an empty message and makes no decision (at least 0).
    freeze_agent : bool
        Never fine-tune the agent's model.
    fine_tune_from_scratch : bool
        Fine-tune each iteration from the starting model (``model_name``) instead of
        from the latest fine-tuned one.
    """

    model_name: str = ""
    backend: str | None = field(default=None, validator=_non_empty_or_none)
    shared_model_group: str | None = field(default=None, validator=_non_empty_or_none)
    temperature: float | None = field(
        default=None, validator=v.optional([_finite, v.ge(0), v.le(2)])
    )
    top_p: float | None = field(
        default=None, validator=v.optional([_finite, v.gt(0), v.le(1)])
    )
    repetition_penalty: float | None = field(default=None, validator=_positive_finite)
    max_tokens_per_message: int | None = field(
        default=None, validator=v.optional(v.ge(1))
    )
    stop_sequences: tuple[str, ...] = field(
        default=(), converter=_string_tuple, validator=_non_empty_strings
    )
    max_response_words: int = field(default=150, validator=v.ge(1))
    num_invalid_generation_retries: int = field(default=20, validator=v.ge(0))
    freeze_agent: bool = False
    fine_tune_from_scratch: bool = True

    GROUP_FIELDS: ClassVar[tuple[str, ...]] = (
        "model_name",
        "backend",
        "freeze_agent",
        "fine_tune_from_scratch",
    )
    """Fields every agent of a shared model group must agree on."""

    def consistency_problems(self) -> list[ConfigProblem]:
        problems = super().consistency_problems()
        if not self.model_name.strip():
            problems.append(
                ConfigProblem(
                    "model_name",
                    "a text agent needs a model (the id its backend knows it by)",
                    self.model_name,
                )
            )
        if self.backend is not None:
            from nip_core.plugins import get_plugin_manager

            backends = get_plugin_manager().registry("text_backend")
            if self.backend not in backends:
                problems.append(
                    ConfigProblem(
                        "backend",
                        _unknown_backend(self.backend, backends),
                        self.backend,
                        tuple(backends),
                    )
                )
        return problems

    @classmethod
    def cross_agent_problems(
        cls, agents: Mapping[str, AgentParameters], hyper_params: Any
    ) -> list[ConfigProblem]:
        """Problems that involve several agents: shared model groups that disagree.

        Called by :class:`~nip_core.parameters.HyperParameters` validation with the
        protocol's agents (each name to its parameters, ``_default`` resolved).
        """
        return shared_model_group_problems(agents, hyper_params)


def _group_value(params: Any, name: str, hyper_params: Any) -> Any:
    value = getattr(params, name)
    if name == "backend" and value is None:
        section = getattr(hyper_params, "text_backend", None)
        return getattr(section, "name", None)
    return value


def shared_model_group_problems(
    agents: Mapping[str, AgentParameters], hyper_params: Any
) -> list[ConfigProblem]:
    """Shared model groups whose agents disagree on a field they must share.

    Random agents belong to no group. One problem per group and field, naming the
    agents and their values.
    """
    groups: dict[str, list[str]] = {}
    for name, params in agents.items():
        if not isinstance(params, TextAgentParameters):
            continue
        group = params.shared_model_group or name
        groups.setdefault(group, []).append(name)
    problems: list[ConfigProblem] = []
    for group, names in groups.items():
        if len(names) < 2:
            continue
        for field_name in TextAgentParameters.GROUP_FIELDS:
            values = {
                name: _group_value(agents[name], field_name, hyper_params)
                for name in names
            }
            if len(set(values.values())) > 1:
                listed = ", ".join(f"{n}={val!r}" for n, val in values.items())
                problems.append(
                    ConfigProblem(
                        f"agents.{names[0]}.shared_model_group",
                        f"the agents of shared model group {group!r} must agree on "
                        f"{field_name}, but they differ: {listed}",
                        group,
                    )
                )
    return problems
