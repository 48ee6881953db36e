"""Text-model backends: the base class and the records they exchange.

A backend generates chat completions and runs fine-tuning jobs for the text world's
agents. The core registers ``openai`` (:mod:`nip_core.text.openai_backend`); plugins
register more through the ``register_text_backends`` hook (a local ``transformers``
backend, a vLLM engine, another API).

Generation
----------
:meth:`TextBackend.generate` takes a batch of :class:`GenerationRequest` and returns
one :class:`GenerationResult` per request, in order. The default implementation runs
:meth:`TextBackend.agenerate` for every request concurrently, at most
``text_backend.max_concurrency`` at a time, on an event loop the backend owns (a
background thread, so it works from synchronous code and inside notebooks).
Passing faults (rate limits, server errors, timeouts, lost connections, malformed
replies) are raised by backends as :class:`RetryableBackendError` and retried with
exponential backoff and jitter (``text_backend.max_retries``,
``retry_initial_delay``, ``retry_max_delay``); then the request fails with a
:class:`~nip_core.errors.BackendError` that says what and where. A backend that
batches in-process (a local model) overrides :meth:`~TextBackend.generate` instead.

Requests carry a ``seed``: backends that honour seeds (``supports_seed``) give the same
completion for the same request, which makes retried requests and resumed runs
reproduce their results.

Fine-tuning
-----------
A :class:`FineTuneRequest` is supervised (whole chats; train on the assistant
messages) or preference-based (DPO pairs). Jobs are named by the caller (from run id,
iteration and shared model group): :meth:`~TextBackend.find_fine_tune_job` looks a
name up before :meth:`~TextBackend.create_fine_tune_job` starts a new one, so a
resumed run never starts a job twice. :meth:`~TextBackend.get_fine_tune_job` polls,
:meth:`~TextBackend.cancel_fine_tune_job` cancels, and
:meth:`~TextBackend.cleanup_fine_tune_job` deletes what was uploaded for the job.
Requests carry a seed derived from the experiment's, so backends that can seed a
job train the same model when a run is repeated or resumed; before the first
rollouts, trainers ask :meth:`~TextBackend.check_fine_tune_model` whether the models
they will fine-tune can be (a quantised local file cannot).

This module imports neither torch nor any client library.
"""

from __future__ import annotations

import asyncio
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, ClassVar, Literal, TypeVar

import attrs

from nip_core.errors import BackendError

__all__ = [
    "FINISH_REASONS",
    "FineTuneJob",
    "FineTuneJobNotFoundError",
    "FineTuneRequest",
    "GenerationChoice",
    "GenerationRequest",
    "GenerationResult",
    "JOB_STATUSES",
    "PreferenceExample",
    "RetryPolicy",
    "RetryableBackendError",
    "TextBackend",
    "build_backend",
    "cut_at_stop",
]

T = TypeVar("T")

ChatMessage = Mapping[str, str]
"""One chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""

FinishReason = Literal["stop", "length", "content_filter"]
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "content_filter")
"""Why generation stopped: naturally, at the token limit, or filtered."""

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
FINISHED_JOB_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def _messages(value: Any) -> tuple[dict[str, str], ...]:
    return tuple(
        {"role": str(m["role"]), "content": str(m["content"])} for m in value or ()
    )


def _stop_strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    strings = tuple(str(s) for s in value or ())
    if any(not s for s in strings):
        raise ValueError("a stop sequence must not be empty")
    return strings


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class GenerationRequest:
    """One chat completion to generate.

    Parameters
    ----------
    model : str
        The model id.
    messages : tuple[dict, ...]
        The chat so far (``role``, ``content``), ending with the turn to answer.
    temperature, top_p : float | None
        Sampling parameters; ``None``: the backend's default.
    max_tokens : int | None
        The most tokens to generate; ``None``: no limit besides the model's.
    repetition_penalty : float | None
        Divides the positive logits (multiplies the negative ones) of tokens already
        in the chat or the completion by it (above 1: fewer repeats); ``None``: the
        backend's default (none). Not every endpoint takes it: vLLM and llama.cpp
        servers and the transformers backend do, OpenAI's own API does not.
    seed : int | None
        The sampling seed (honoured by backends with ``supports_seed``).
    n : int
        How many completions to sample for this chat.
    stop : tuple[str, ...]
        Generation ends before the first of these strings, which the completion
        does not hold (``finish_reason`` ``"stop"``). Empty: none. A backend that
        cannot stop early still has its completions cut there by the sampler
        (:func:`cut_at_stop`), so it only spends the tokens after them.
    """

    model: str
    messages: tuple[dict[str, str], ...] = attrs.field(converter=_messages)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    n: int = 1
    repetition_penalty: float | None = None
    stop: tuple[str, ...] = attrs.field(default=(), converter=_stop_strings)


@attrs.frozen(kw_only=True)
class GenerationChoice:
    """One completion: its text and why generation stopped."""

    text: str
    finish_reason: str = "stop"

    @property
    def hit_token_limit(self) -> bool:
        return self.finish_reason == "length"

    @property
    def filtered(self) -> bool:
        return self.finish_reason == "content_filter"


def cut_at_stop(choice: GenerationChoice, stop: Sequence[str]) -> GenerationChoice:
    """``choice`` ending before the first of the ``stop`` strings it holds, with
    ``finish_reason`` ``"stop"`` (what an endpoint that honours ``stop`` returns);
    unchanged when it holds none."""
    if not stop or choice.filtered:
        return choice
    found = [i for i in (choice.text.find(s) for s in stop) if i >= 0]
    if not found:
        return choice
    return GenerationChoice(text=choice.text[: min(found)], finish_reason="stop")


@attrs.frozen(kw_only=True)
class GenerationResult:
    """The completions of one request (``n`` choices) and the tokens used."""

    choices: tuple[GenerationChoice, ...] = attrs.field(converter=tuple)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def choice(self) -> GenerationChoice:
        """The first (usually only) completion."""
        return self.choices[0]


@attrs.frozen(kw_only=True)
class PreferenceExample:
    """One preference pair for DPO: a chat prompt, a preferred and a dispreferred
    assistant response."""

    prompt: tuple[dict[str, str], ...] = attrs.field(converter=_messages)
    chosen: str
    rejected: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": list(self.prompt),
            "chosen": self.chosen,
            "rejected": self.rejected,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreferenceExample:
        return cls(
            prompt=data["prompt"], chosen=data["chosen"], rejected=data["rejected"]
        )


FineTuneMethod = Literal["supervised", "dpo"]


@attrs.frozen(kw_only=True)
class FineTuneRequest:
    """A fine-tuning job to start.

    Parameters
    ----------
    name : str
        A name unique to this job within the run (derived from run id, iteration,
        shared model group and attempt); looked up before a job is created.
    base_model : str
        The model to fine-tune.
    method : {"supervised", "dpo"}
        Supervised fine-tuning on whole chats (``examples`` are chats, lists of
        messages; the assistant messages are trained on) or DPO (``examples`` are
        :class:`PreferenceExample`).
    examples : tuple
        The training data.
    seed : int | None
        The seed of the job's randomness (data order, initialisation), derived by
        the trainer from the experiment's seed, the iteration and the group, so a
        rerun or a resumed run trains the same model; ``None``: the backend's choice.
        Backends that cannot seed jobs ignore it.
    """

    name: str
    base_model: str
    method: FineTuneMethod
    examples: tuple[Any, ...] = attrs.field(converter=tuple)
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.method not in ("supervised", "dpo"):
            raise ValueError(f"unknown fine-tuning method {self.method!r}")
        if self.method == "dpo" and not all(
            isinstance(e, PreferenceExample) for e in self.examples
        ):
            raise TypeError("DPO examples must be PreferenceExample records")

    def examples_as_dicts(self) -> list[Any]:
        """The examples as JSON-able values (chats as ``{"messages": [...]}``)."""
        if self.method == "dpo":
            return [e.to_dict() for e in self.examples]
        return [{"messages": list(_messages(chat))} for chat in self.examples]


@attrs.frozen(kw_only=True)
class FineTuneJob:
    """What a backend knows of a fine-tuning job.

    Parameters
    ----------
    id : str
        The backend's job id.
    name : str
        The name given at creation.
    status : {"queued", "running", "succeeded", "failed", "cancelled"}
        Its state.
    fine_tuned_model : str | None
        The new model's id, once it succeeded.
    error : str | None
        Why it failed.
    metrics : Mapping[str, float]
        Figures the backend reports of a job that succeeded (the transformers
        backend: ``num_examples_cut``, ``num_examples_left_out`` for length,
        ``steps``). Report only figures that are the same whether or not the job
        was interrupted and resumed. Text trainers log each as
        ``fine_tune.<group>.<name>``, unless the trainer records that name itself
        (``num_examples``, ...): its value is kept then, with a warning. Empty when
        the backend reports none.
    """

    id: str
    name: str
    status: str
    fine_tuned_model: str | None = None
    error: str | None = None
    metrics: Mapping[str, float] = attrs.field(factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES


# --------------------------------------------------------------------------------------
# Errors and retries
# --------------------------------------------------------------------------------------


class RetryableBackendError(BackendError):
    """A passing fault (rate limit, server error, timeout, lost connection, malformed
    reply): the request is retried with backoff.

    ``retry_after`` is how long the endpoint asked to be left alone, in seconds
    (a rate limit's ``Retry-After``), when it said: the next retry waits at least
    that long, up to ``text_backend.retry_max_delay``.
    """

    def __init__(self, *args: Any, retry_after: float | None = None):
        super().__init__(*args)
        self.retry_after = retry_after


class FineTuneJobNotFoundError(BackendError):
    """The backend does not know a fine-tune job any more (an endpoint that was
    restarted or moved, a job directory removed): the run starts it again."""


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How failed requests are retried: exponential backoff with jitter.

    The ``k``-th retry waits ``min(max_delay, initial_delay * 2**k)`` seconds times
    a factor drawn uniformly from [0.5, 1.5] (from a private generator: retries never
    touch the run's random state).
    """

    max_retries: int = 6
    initial_delay: float = 1.0
    max_delay: float = 60.0

    def delay(
        self, retry: int, rng: random.Random, retry_after: float | None = None
    ) -> float:
        """The wait before retry ``retry`` (from 0); at least ``retry_after`` (what
        the endpoint asked for) up to ``max_delay``."""
        # (the exponent capped: 2.0**1024 overflows, and the cap is reached long
        # before for any delay a run would use)
        backoff = min(
            self.max_delay, self.initial_delay * 2.0 ** min(retry, 512)
        ) * rng.uniform(0.5, 1.5)
        if retry_after is None or not retry_after > 0:
            return backoff
        return max(backoff, min(self.max_delay, retry_after))

    @classmethod
    def from_hyper_params(cls, hyper_params: Any) -> RetryPolicy:
        section = getattr(hyper_params, "text_backend", None)
        if section is None:
            return cls()
        return cls(
            max_retries=section.max_retries,
            initial_delay=section.retry_initial_delay,
            max_delay=section.retry_max_delay,
        )


class _LoopThread:
    """An asyncio event loop running in a daemon thread, for synchronous callers."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name=f"nip-{name}-loop", daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return
        if self.thread.is_alive():
            # Let what is still under way (episodes that a Ctrl-C cancelled, whose
            # cancellation has not reached them yet) unwind before the loop stops:
            # a pending task would be destroyed with the loop, its cleanup skipped
            done = asyncio.run_coroutine_threadsafe(_cancel_pending(), self.loop)
            try:
                done.result(timeout=5)
            except Exception:  # noqa: BLE001 - closing goes on regardless
                done.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


async def _cancel_pending() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------


def _has_abstract_methods(cls: type) -> bool:
    # ABCMeta computes __abstractmethods__ after __init_subclass__ runs
    return any(
        getattr(getattr(cls, name, None), "__isabstractmethod__", False)
        for name in dir(cls)
    )


class TextBackend(ABC):
    """Base class of text-model backends.

    Subclasses implement :meth:`agenerate` (or override :meth:`generate`) and the
    fine-tuning methods. They read their own options from their parameter section
    (``hyper_params.<section>``) and secrets from the environment only.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters (``text_backend`` and the backend's section).
    settings : ExperimentSettings
        The run's settings (device, cache and run directories).
    name : str
        The backend's registry key.
    """

    supports_seed: ClassVar[bool] = True
    """Whether requests with the same seed give the same completion."""

    prefers_batches: ClassVar[bool] = False
    """Whether the backend wants whole batches (:meth:`generate`) rather than
    requests one at a time (:meth:`generate_one`): true for in-process models,
    which batch on the device. Samplers then play episodes round by round;
    otherwise every episode moves on as soon as its own turns are done."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if (
            cls.agenerate is TextBackend.agenerate
            and cls.generate is TextBackend.generate
            and not _has_abstract_methods(cls)
        ):
            raise TypeError(
                f"{cls.__name__} must implement agenerate() or override generate()"
            )

    def __init__(self, hyper_params: Any, settings: Any, name: str):
        self.hyper_params = hyper_params
        self.settings = settings
        self.name = name
        section = getattr(hyper_params, "text_backend", None)
        self.max_concurrency = int(getattr(section, "max_concurrency", 8))
        self.request_timeout = float(getattr(section, "request_timeout", 120.0))
        self.retry_policy = RetryPolicy.from_hyper_params(hyper_params)
        self._jitter = random.Random()
        self._loop_thread: _LoopThread | None = None
        self._lock = threading.Lock()
        self.num_retries = 0
        """Requests retried so far (for the metrics)."""

    # ----------------------------------------------------------------------------------
    # Running coroutines

    def run_sync(self, coroutine: Awaitable[T]) -> T:
        """Run a coroutine on the backend's event loop and wait for its result."""
        self._event_loop()
        return self._loop_thread.run(coroutine)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop_thread is None:
                self._loop_thread = _LoopThread(self.name)
            return self._loop_thread.loop

    def _request_slots(self) -> asyncio.Semaphore:
        # One limit for every caller, created on (and used from) the backend's loop
        slots = self.__dict__.get("_slots")
        if slots is None:
            slots = self.__dict__["_slots"] = asyncio.Semaphore(self.max_concurrency)
        return slots

    async def generate_one(self, request: GenerationRequest) -> GenerationResult:
        """One request, within the backend's concurrency limit and with retries.

        Awaitable from any event loop: the request runs on the backend's own.
        """
        loop = self._event_loop()

        async def run() -> GenerationResult:
            async with self._request_slots():
                return await self.with_retries(
                    lambda: self.agenerate(request),
                    f"a chat completion with model {request.model!r}",
                )

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return await run()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop))

    async def with_retries(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Await ``call()``, retrying :class:`RetryableBackendError` with backoff.

        Raises
        ------
        BackendError
            When the retries are used up (naming ``what`` and the last fault).
        """
        policy = self.retry_policy
        for attempt in range(policy.max_retries + 1):
            try:
                return await call()
            except RetryableBackendError as error:
                if attempt == policy.max_retries:
                    raise BackendError(
                        f"{self.name} backend: {what} failed "
                        f"{times_text(attempt + 1)}; the last error: "
                        f"{str(error).rstrip('.')}. Raise text_backend.max_retries or "
                        "retry_max_delay if the endpoint is only slow or busy."
                    ) from error
                self.num_retries += 1
                await asyncio.sleep(
                    policy.delay(attempt, self._jitter, error.retry_after)
                )
        raise AssertionError("unreachable")  # pragma: no cover

    # ----------------------------------------------------------------------------------
    # Generation

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        """Generate the completions of one request (called concurrently).

        Raise :class:`RetryableBackendError` for passing faults (they are retried)
        and :class:`~nip_core.errors.BackendError` for the others.
        """
        raise TypeError(
            f"{type(self).__name__} must implement agenerate() or override generate()"
        )

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        progress: Callable[[int], None] | None = None,
    ) -> list[GenerationResult]:
        """Generate every request, at most ``max_concurrency`` at a time.

        Parameters
        ----------
        requests : Sequence[GenerationRequest]
            The batch.
        progress : Callable[[int], None], optional
            Called with 1 each time a request is done.

        Returns
        -------
        list[GenerationResult]
            One per request, in order.
        """
        if not requests:
            return []
        return self.run_sync(self._generate_all(list(requests), progress))

    async def _generate_all(
        self,
        requests: list[GenerationRequest],
        progress: Callable[[int], None] | None,
    ) -> list[GenerationResult]:
        async def one(request: GenerationRequest) -> GenerationResult:
            result = await self.generate_one(request)
            if progress is not None:
                progress(1)
            return result

        tasks = [asyncio.ensure_future(one(request)) for request in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    # ----------------------------------------------------------------------------------
    # Fine-tuning

    @abstractmethod
    def create_fine_tune_job(self, request: FineTuneRequest) -> FineTuneJob:
        """Start a fine-tuning job (uploading its data if needed)."""

    @abstractmethod
    def find_fine_tune_job(self, name: str) -> FineTuneJob | None:
        """The newest job created with this name, or ``None``."""

    @abstractmethod
    def get_fine_tune_job(self, job_id: str) -> FineTuneJob:
        """The job's current state."""

    @abstractmethod
    def cancel_fine_tune_job(self, job_id: str) -> FineTuneJob:
        """Cancel a job that has not finished; return its state."""

    def cleanup_fine_tune_job(self, job_id: str) -> None:  # noqa: B027 - optional
        """Delete what was uploaded for the job (nothing to do by default)."""

    def note_fine_tuned_model(self, model: str) -> None:  # noqa: B027 - optional
        """Told of a model a fine-tune job of this backend made, when a resumed run
        takes it back from its saved state (the backend saw the job itself
        otherwise): a backend with several endpoints asks only the one that made
        it. Nothing to do by default."""

    def check_model(self, model: str) -> None:  # noqa: B027 - optional
        """Raise :class:`~nip_core.errors.BackendError` when ``model`` is unknown.

        Called once per model before the first rollouts, so a misspelt model name
        fails at once with a clear message, not after a batch of retries.
        """

    def check_fine_tune_model(self, model: str) -> None:  # noqa: B027 - optional
        """Raise :class:`~nip_core.errors.BackendError` when ``model`` cannot be
        fine-tuned (a quantised file, a model the endpoint does not tune).

        Called once per model a trainer will fine-tune (groups that are not frozen),
        after :meth:`check_model` and before the first rollouts, so the problem shows
        before an iteration's sampling rather than after it.
        """

    # ----------------------------------------------------------------------------------
    # Lifetime

    def close(self) -> None:
        """Release connections, threads and models."""
        if self._loop_thread is not None:
            self._loop_thread.close()
            self._loop_thread = None
            self.__dict__.pop("_slots", None)

    def __enter__(self) -> TextBackend:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def build_backend(name: str, hyper_params: Any, settings: Any) -> TextBackend:
    """Build the backend registered under ``name`` (text-backend registry)."""
    from nip_core.plugins import get_plugin_manager
    from nip_core.records import resolve_ref

    spec = get_plugin_manager().registry("text_backend")[name]
    backend_class = resolve_ref(spec.backend_class)
    return backend_class(hyper_params, settings, name)


def times_text(count: int) -> str:
    """``"once"``, ``"2 times"``: how often an attempt was made."""
    return "once" if count == 1 else f"{count} times"
