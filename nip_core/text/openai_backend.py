"""The ``openai`` backend: any OpenAI-compatible endpoint.

Chat completions and fine-tuning jobs through the official ``openai`` client
(imported when the backend is built, never at start-up), against OpenAI or any
server speaking its API (vLLM, llama.cpp's server, OpenRouter): set
``openai_backend.base_url``. The API key is read from the environment variable
``openai_backend.api_key_env`` names (``OPENAI_API_KEY``) and never stored.

Requests run concurrently on an ``AsyncOpenAI`` client (at most
``text_backend.max_concurrency`` at a time). The client's own retries are off; nip
retries rate limits (429), server errors (5xx), timeouts, lost connections and
malformed replies with backoff (:class:`~nip_core.text.backend.RetryPolicy`), then
stops the run with an error naming the endpoint. ``finish_reason`` ``length`` is
recorded as hitting the token limit, ``content_filter`` makes the response invalid.

Fine-tuning uploads the examples as a JSONL file (``purpose="fine-tune"``) and starts
a job with ``method`` ``supervised`` or ``dpo``; the job carries its nip name in its
metadata (``nip_job``), which :meth:`OpenAiBackend.find_fine_tune_job` looks up, so a
resumed run never starts a second job. :meth:`OpenAiBackend.cleanup_fine_tune_job`
deletes the uploaded file once the job has ended.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from nip_core.errors import BackendError, BackendWarning
from nip_core.text.backend import (
    FineTuneJob,
    FineTuneJobNotFoundError,
    FineTuneRequest,
    GenerationChoice,
    GenerationRequest,
    GenerationResult,
    RetryableBackendError,
    TextBackend,
    times_text,
)

__all__ = ["JOB_METADATA_KEY", "OpenAiBackend", "PLACEHOLDER_API_KEY"]

T = TypeVar("T")

JOB_METADATA_KEY = "nip_job"
"""The metadata key under which a fine-tune job carries its nip name."""

PLACEHOLDER_API_KEY = "not-needed"
"""Sent to endpoints other than OpenAI's own when no key is set (local servers)."""

_STATUS = {
    "validating_files": "queued",
    "queued": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}


class OpenAiBackend(TextBackend):
    """Generation and fine-tuning through an OpenAI-compatible endpoint.

    Parameters
    ----------
    hyper_params : HyperParameters
        Reads ``text_backend`` and ``openai_backend``.
    settings : ExperimentSettings
        The run's settings.
    name : str
        The registry key (``"openai"``).

    Raises
    ------
    BackendError
        When OpenAI's own API is used and the key's environment variable is unset,
        or the ``openai`` package is missing.
    """

    def __init__(self, hyper_params: Any, settings: Any, name: str = "openai"):
        super().__init__(hyper_params, settings, name)
        try:
            import openai  # noqa: F401
        except ImportError as error:  # pragma: no cover - a core dependency
            raise BackendError(
                "the openai backend needs the openai package: pip install openai"
            ) from error
        section = getattr(hyper_params, "openai_backend", None)
        urls = list(getattr(section, "base_urls", None) or ())
        if not urls:
            urls = [
                getattr(section, "base_url", None)
                or os.environ.get("OPENAI_BASE_URL")
                or None
            ]
        self.base_url: str | None = urls[0]
        self.api_key_env = str(getattr(section, "api_key_env", "OPENAI_API_KEY"))
        self.section = section
        key = _checked_key(os.environ.get(self.api_key_env, ""), self.api_key_env)
        if not key:
            if self.base_url is None:
                raise BackendError(
                    f"the openai backend needs an API key for OpenAI's API: set the "
                    f"environment variable {self.api_key_env} (its name is the "
                    "parameter openai_backend.api_key_env), or point "
                    "openai_backend.base_url at another OpenAI-compatible server"
                )
            key = PLACEHOLDER_API_KEY
        self._api_key = key
        per_server = getattr(section, "max_concurrency_per_server", None)
        if per_server is None:
            per_server = -(-self.max_concurrency // len(urls))
        self.servers = [_Server(url, int(per_server)) for url in urls]
        self.token_limit_parameter = str(
            getattr(section, "token_limit_parameter", "auto")
        )
        for index, server in enumerate(self.servers):
            server.index = index
            server.token_field = _initial_token_field(
                self.token_limit_parameter, server.endpoint
            )
        # models made by fine-tune jobs: they exist at the first endpoint only
        self._fine_tuned_models: set[str] = set()

    @property
    def endpoint(self) -> str:
        """The (first) endpoint, for messages."""
        return self.servers[0].endpoint

    # ----------------------------------------------------------------------------------
    # The clients and their errors

    def _get_client(self, server: _Server | None = None) -> Any:
        # Created on the backend's event loop thread, where it is always used
        server = server or self.servers[0]
        if server.client is None:
            from openai import AsyncOpenAI

            server.client = AsyncOpenAI(
                api_key=self._api_key,
                base_url=server.url,
                max_retries=0,
                timeout=self.request_timeout,
            )
        return server.client

    def note_fine_tuned_model(self, model: str) -> None:
        self._fine_tuned_models.add(str(model))

    def is_fine_tuned(self, model: str) -> bool:
        """Whether ``model`` was made by a fine-tune job (one this backend saw
        finish, or an id in OpenAI's ``ft:`` form): it is served only by the first
        endpoint, where fine-tune jobs run."""
        return model in self._fine_tuned_models or str(model).startswith("ft:")

    async def _pick_server(self, model: str | None = None) -> _Server:
        """A server with a free slot: the least busy one that is up (one that is
        down only when every server is). A fine-tuned model is asked of the first
        endpoint, the one that made it."""
        pool = (
            self.servers[:1]
            if model is not None and self.is_fine_tuned(model)
            else self.servers
        )
        while True:
            now = time.monotonic()
            up = [s for s in pool if s.down_until <= now]
            candidates = up or [min(pool, key=lambda s: s.down_until)]
            free = [s for s in candidates if s.in_flight < s.limit]
            if free:
                server = min(free, key=lambda s: (s.in_flight / s.limit, s.index))
                server.in_flight += 1
                return server
            await asyncio.sleep(0.005)

    async def _call(
        self,
        call: Callable[[Any], Awaitable[T]],
        what: str,
        server: _Server | None = None,
    ) -> T:
        """Run ``call(client)`` once, turning the client's errors into nip's."""
        import openai

        server = server or self.servers[0]
        try:
            result = await call(self._get_client(server))
            server.failures = 0
            return result
        except openai.RateLimitError as error:
            raise RetryableBackendError(
                f"{what}: rate limited by {server.endpoint} (429)",
                retry_after=_retry_after(error),
            ) from error
        except openai.InternalServerError as error:
            detail = self._server_message(error)
            raise RetryableBackendError(
                f"{what}: server error {error.status_code} from {server.endpoint}"
                + (f": {detail}" if detail else ""),
                retry_after=_retry_after(error),
            ) from error
        except openai.APITimeoutError as error:
            server.mark_down()
            raise RetryableBackendError(
                f"{what}: no answer from {server.endpoint} within "
                f"{self.request_timeout:g} s (text_backend.request_timeout)"
            ) from error
        except openai.APIConnectionError as error:
            server.mark_down()
            raise RetryableBackendError(
                f"{what}: could not reach {server.endpoint} (openai_backend.base_url): "
                f"{str(error).rstrip('.')}"
            ) from error
        except openai.APIResponseValidationError as error:
            raise RetryableBackendError(
                f"{what}: malformed reply from {server.endpoint}"
            ) from error
        except openai.AuthenticationError as error:
            raise BackendError(
                f"{what}: {server.endpoint} refused the API key (401); set a valid key "
                f"in the environment variable {self.api_key_env} "
                "(openai_backend.api_key_env)"
            ) from error
        except openai.PermissionDeniedError as error:
            raise BackendError(
                f"{what}: {server.endpoint} denied access (403): "
                f"{self._server_message(error)}"
            ) from error
        except openai.NotFoundError as error:
            raise BackendError(
                f"{what}: not found at {server.endpoint} (404): "
                f"{self._server_message(error)}"
            ) from error
        except openai.APIStatusError as error:
            if error.status_code in (408, 409):
                raise RetryableBackendError(
                    f"{what}: {server.endpoint} answered {error.status_code}"
                ) from error
            raise BackendError(
                f"{what}: {server.endpoint} answered {error.status_code}: "
                f"{self._server_message(error)}"
            ) from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RetryableBackendError(
                f"{what}: malformed reply from {server.endpoint}"
            ) from error

    def _server_message(self, error: Any) -> str:
        """What the endpoint said of an error, with the API key masked: some
        servers and proxies quote the key they refused, and the message goes into
        the run's error, its log and the terminal."""
        text = _message(error)
        key = self._api_key
        if key and key != PLACEHOLDER_API_KEY and len(key) >= 8:
            text = text.replace(key, f"<{self.api_key_env}>")
        return text

    def close(self) -> None:
        for server in self.servers:
            if server.client is not None and self._loop_thread is not None:
                client, server.client = server.client, None
                try:
                    self.run_sync(client.close())
                except Exception:  # noqa: BLE001 - closing must not hide the real error
                    pass
        super().close()

    # ----------------------------------------------------------------------------------
    # Generation

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.seed is not None:
            options["seed"] = request.seed
        if request.repetition_penalty is not None:
            # not an OpenAI API parameter: vLLM and llama.cpp servers read it
            options["repetition_penalty"] = request.repetition_penalty
        if request.n != 1:
            options["n"] = request.n
        what = f"a chat completion with model {request.model!r}"
        messages = [dict(m) for m in request.messages]
        server = await self._pick_server(request.model)

        async def complete(client: Any) -> dict[str, Any]:
            import openai

            # The client's own request path (its transport, auth, errors) with the
            # body as plain JSON and the reply read as plain JSON: its typed
            # transform of every request and parsing of every reply cost more CPU
            # than the rest of a request, and rollouts at high concurrency are bound
            # by the client's CPU time
            def body() -> dict[str, Any]:
                dropped = server.dropped.get(request.model, ())
                body = {"model": request.model, "messages": messages}
                body.update((k, v) for k, v in options.items() if k not in dropped)
                if request.max_tokens is not None:
                    body[server.token_field] = request.max_tokens
                if request.stop and server.sends_stop:
                    body["stop"] = list(request.stop)
                return body

            def post(sent: dict[str, Any]) -> Any:
                return client.post(
                    "/chat/completions", body=sent, cast_to=_raw_response_class()
                )

            # An endpoint that refuses a field as unsupported (OpenAI's reasoning
            # models refuse max_tokens and stop, and any temperature or top_p but
            # 1) is asked again without it, and not sent it again: the other
            # token-limit field; no stop sequences (the sampler cuts the responses
            # at them); the model's own sampling settings, said once in a warning
            for _ in range(3 + len(_DROPPABLE_FIELDS)):
                sent = body()
                try:
                    reply = await post(sent)
                    break
                except openai.BadRequestError as error:
                    now = body()
                    if any(
                        name not in now and _refuses_parameter(error, name)
                        for name in sent
                    ):
                        # a concurrent request was refused the same field and has
                        # given it up already: ask again as the server now asks
                        continue
                    field = server.token_field
                    other = self._other_token_field(field, error, request)
                    if other is not None:
                        server.token_field = other
                    elif (
                        request.stop
                        and server.sends_stop
                        and _refuses_parameter(error, "stop")
                    ):
                        server.sends_stop = False
                    elif not self._drop_refused_field(server, request, options, error):
                        raise
            else:  # pragma: no cover - each field is given up at most once
                reply = await post(body())
            data = reply.json()
            if not isinstance(data, dict):
                raise json.JSONDecodeError("not a JSON object", "", 0)
            return data

        try:
            response = await self._call(complete, what, server)
        finally:
            server.in_flight -= 1
        choices = response.get("choices")
        if isinstance(choices, list) and 0 < len(choices) < request.n:
            # a whole reply with too few choices: the server ignores n (llama.cpp's
            # does), and asking again gets the same
            raise BackendError(
                f"{what}: {server.endpoint} answered {len(choices)} choice(s) for "
                f"n={request.n}; it does not support several completions per "
                "request (n)"
            )
        if not isinstance(choices, list) or len(choices) < request.n:
            raise RetryableBackendError(
                f"{what}: malformed reply from {server.endpoint} (expected "
                f"{request.n} choice(s), got "
                f"{len(choices) if isinstance(choices, list) else 0})"
            )
        out = []
        try:
            for choice in sorted(choices, key=lambda c: c.get("index") or 0):
                message = choice.get("message") or {}
                text = message.get("content") or ""
                reason = choice.get("finish_reason") or "stop"
                out.append(GenerationChoice(text=str(text), finish_reason=str(reason)))
        except (AttributeError, TypeError) as error:
            raise RetryableBackendError(
                f"{what}: malformed reply from {server.endpoint}"
            ) from error
        usage = response.get("usage") or {}
        return GenerationResult(
            choices=out,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def _drop_refused_field(
        self,
        server: _Server,
        request: GenerationRequest,
        options: Mapping[str, Any],
        error: Any,
    ) -> bool:
        """When ``error`` (a 400) refuses one of the request's sampling fields
        (``_DROPPABLE_FIELDS``) as unsupported, that field is not sent again with
        ``request.model`` to ``server``, with a warning; whether it was."""
        dropped = server.dropped.setdefault(request.model, set())
        for name in _DROPPABLE_FIELDS:
            if name in options and name not in dropped:
                if _refuses_parameter(error, name):
                    dropped.add(name)
                    warnings.warn(
                        f"model {request.model!r} at {server.endpoint} does not "
                        f"support {name}={options[name]!r} "
                        f"({_message(error).strip()}); its requests go without "
                        f"{name} from now on, so it samples with its own default",
                        BackendWarning,
                        stacklevel=2,
                    )
                    return True
        return False

    def _other_token_field(
        self, field: str, error: Any, request: GenerationRequest
    ) -> str | None:
        """The token-limit field to send instead of ``field``, when ``error`` (a
        400) says the endpoint does not support ``field`` and
        ``openai_backend.token_limit_parameter`` is ``auto``; else ``None``."""
        if self.token_limit_parameter != "auto" or request.max_tokens is None:
            return None
        return _TOKEN_FIELDS[field] if _refuses_parameter(error, field) else None

    def check_model(self, model: str) -> None:
        async def models() -> list[str]:
            page = await self._call(
                lambda client: client.models.list(), "listing the models"
            )
            return [m.id async for m in page]

        try:
            known = self.run_sync(
                self.with_retries(models, f"listing the models of {self.endpoint}")
            )
        except BackendError as error:
            if "(404)" in str(error):
                return  # the server does not list models: nothing to check against
            raise
        if model not in known:
            shown = ", ".join(sorted(known)[:20]) or "none"
            raise BackendError(
                f"unknown model {model!r} at {self.endpoint}; it serves: {shown}. "
                "Check the agents' model_name (agents.<name>.model_name)."
            )

    # ----------------------------------------------------------------------------------
    # Fine-tuning

    def _job(self, job: Any) -> FineTuneJob:
        metadata = getattr(job, "metadata", None) or {}
        error = getattr(job, "error", None)
        message = getattr(error, "message", None) if error is not None else None
        trained_tokens = getattr(job, "trained_tokens", None)
        fine_tuned_model = getattr(job, "fine_tuned_model", None)
        if fine_tuned_model:
            self._fine_tuned_models.add(str(fine_tuned_model))
        return FineTuneJob(
            id=job.id,
            name=str(metadata.get(JOB_METADATA_KEY, "")),
            status=_STATUS.get(job.status, job.status),
            fine_tuned_model=fine_tuned_model,
            error=message,
            # billable tokens the endpoint trained on, once the job succeeded
            metrics={"trained_tokens": float(trained_tokens)}
            if isinstance(trained_tokens, int | float)
            and not isinstance(trained_tokens, bool)
            else {},
        )

    def _training_lines(self, request: FineTuneRequest) -> bytes:
        lines = []
        if request.method == "dpo":
            for example in request.examples:
                lines.append(
                    {
                        "input": {"messages": list(example.prompt)},
                        "preferred_output": [
                            {"role": "assistant", "content": example.chosen}
                        ],
                        "non_preferred_output": [
                            {"role": "assistant", "content": example.rejected}
                        ],
                    }
                )
        else:
            lines = request.examples_as_dicts()
        return "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")

    def _method(self, method: str) -> dict[str, Any]:
        section = self.section
        hyper: dict[str, Any] = {}
        for key, attribute in (
            ("n_epochs", "fine_tune_epochs"),
            ("learning_rate_multiplier", "fine_tune_learning_rate_multiplier"),
            ("batch_size", "fine_tune_batch_size"),
        ):
            value = getattr(section, attribute, None)
            if value is not None:
                hyper[key] = value
        if method == "dpo":
            beta = getattr(section, "dpo_beta", None)
            if beta is not None:
                hyper["beta"] = beta
        return {"type": method, method: {"hyperparameters": hyper}}

    def create_fine_tune_job(self, request: FineTuneRequest) -> FineTuneJob:
        if not request.examples:
            raise BackendError(f"fine-tune job {request.name!r} has no examples")
        data = self._training_lines(request)
        suffix = re.sub(r"[^A-Za-z0-9-]", "-", request.name)[-40:].strip("-")

        async def create() -> FineTuneJob:
            upload = await self.with_retries(
                lambda: self._call(
                    lambda client: client.files.create(
                        file=(f"{request.name}.jsonl", data, "application/jsonl"),
                        purpose="fine-tune",
                    ),
                    f"uploading the data of fine-tune job {request.name!r}",
                ),
                f"uploading the data of fine-tune job {request.name!r}",
            )
            policy = self.retry_policy
            for attempt in range(policy.max_retries + 1):
                try:
                    job = await self._call(
                        lambda client: client.fine_tuning.jobs.create(
                            model=request.base_model,
                            training_file=upload.id,
                            suffix=suffix,
                            metadata={JOB_METADATA_KEY: request.name},
                            method=self._method(request.method),
                            **({} if request.seed is None else {"seed": request.seed}),
                        ),
                        f"creating fine-tune job {request.name!r}",
                    )
                    return self._job(job)
                except RetryableBackendError as error:
                    # The job may exist although its answer was lost (a timeout):
                    # wait, then look it up before creating another
                    await asyncio.sleep(
                        policy.delay(attempt, self._jitter, error.retry_after)
                    )
                    found = await self._find(request.name)
                    if found is not None:
                        return found
                    if attempt == policy.max_retries:
                        # no job holds the file (the lookup above found none):
                        # delete it, or every failed attempt leaves one behind
                        await self._delete_file_quietly(upload.id)
                        raise BackendError(
                            f"{self.name} backend: creating fine-tune job "
                            f"{request.name!r} failed {times_text(attempt + 1)}; the "
                            f"last error: {str(error).rstrip('.')}. Raise "
                            "text_backend.max_retries or retry_max_delay if the "
                            "endpoint is only slow or busy."
                        ) from error
                    self.num_retries += 1
                except BackendError:
                    await self._delete_file_quietly(upload.id)
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

        return self.run_sync(create())

    async def _find(self, name: str) -> FineTuneJob | None:
        async def listing() -> list[Any]:
            page = await self._call(
                lambda client: client.fine_tuning.jobs.list(
                    metadata={JOB_METADATA_KEY: name}, limit=100
                ),
                f"looking up fine-tune job {name!r}",
            )
            return [job async for job in page]

        jobs = await self.with_retries(listing, f"looking up fine-tune job {name!r}")
        matching = [
            job
            for job in jobs
            if (getattr(job, "metadata", None) or {}).get(JOB_METADATA_KEY) == name
        ]
        if not matching:
            return None
        newest = max(matching, key=lambda job: getattr(job, "created_at", 0) or 0)
        return self._job(newest)

    def find_fine_tune_job(self, name: str) -> FineTuneJob | None:
        return self.run_sync(self._find(name))

    def get_fine_tune_job(self, job_id: str) -> FineTuneJob:
        what = f"reading fine-tune job {job_id}"
        try:
            job = self.run_sync(
                self.with_retries(
                    lambda: self._call(
                        lambda client: client.fine_tuning.jobs.retrieve(job_id), what
                    ),
                    what,
                )
            )
        except BackendError as error:
            if "(404)" in str(error):
                raise FineTuneJobNotFoundError(str(error)) from error
            raise
        return self._job(job)

    def cancel_fine_tune_job(self, job_id: str) -> FineTuneJob:
        what = f"cancelling fine-tune job {job_id}"
        job = self.run_sync(
            self.with_retries(
                lambda: self._call(
                    lambda client: client.fine_tuning.jobs.cancel(job_id), what
                ),
                what,
            )
        )
        return self._job(job)

    async def _delete_file(self, file_id: str) -> None:
        try:
            await self.with_retries(
                lambda: self._call(
                    lambda client: client.files.delete(file_id),
                    f"deleting file {file_id}",
                ),
                f"deleting file {file_id}",
            )
        except BackendError as error:
            if "(404)" not in str(error):
                raise

    async def _delete_file_quietly(self, file_id: str) -> None:
        """Delete an upload no job uses, on the way out of an error: a failure to
        delete it must not replace the error being raised."""
        try:
            await self._delete_file(file_id)
        except BackendError:
            pass

    def cleanup_fine_tune_job(self, job_id: str) -> None:
        what = f"reading fine-tune job {job_id}"

        async def cleanup() -> None:
            job = await self.with_retries(
                lambda: self._call(
                    lambda client: client.fine_tuning.jobs.retrieve(job_id), what
                ),
                what,
            )
            file_id = getattr(job, "training_file", None)
            if file_id:
                await self._delete_file(file_id)

        self.run_sync(cleanup())


def _checked_key(value: str, variable: str) -> str:
    """The API key from ``variable``, without the surrounding whitespace a key read
    from a file often carries (a final newline, a Windows line end).

    Raises
    ------
    BackendError
        When what is left cannot be sent in an HTTP header (whitespace, control or
        non-ASCII characters inside it): the client would fail before anything is
        sent, as a "connection error" that is retried in vain, with the key in the
        underlying exception. The message names the variable, never the key.
    """
    key = value.strip()
    bad = next(
        (
            position
            for position, char in enumerate(key)
            if not (char.isascii() and char.isprintable()) or char.isspace()
        ),
        None,
    )
    if bad is not None:
        raise BackendError(
            f"the API key in the environment variable {variable} "
            "(openai_backend.api_key_env) cannot be sent: it has a space, a control "
            f"or a non-ASCII character (character {bad + 1} of {len(key)}); set the "
            "variable to the key alone"
        )
    return key


def _raw_response_class() -> type:
    """The HTTP response class of the installed openai client (``cast_to`` it to
    get the reply unparsed)."""
    from openai import _base_client

    module = getattr(_base_client, "httpx2", None) or _base_client.httpx
    return module.Response


_TOKEN_FIELDS = {
    "max_tokens": "max_completion_tokens",
    "max_completion_tokens": "max_tokens",
}
"""Each token-limit field of a chat request, and the other one."""


_DROPPABLE_FIELDS = ("temperature", "top_p", "seed", "repetition_penalty")
"""Sampling fields of a chat request that a model may refuse and that can go
unsent: the completion is still one, sampled with the model's own settings
(OpenAI's reasoning models take temperature and top_p at 1 only; its API knows no
repetition_penalty). ``n`` is not one of them: a request asks for its choices."""


def _refuses_parameter(error: Any, name: str) -> bool:
    """Whether ``error`` (a 400) refuses the request field ``name`` as unsupported:
    about that field (OpenAI names it in ``param``), and saying it is unsupported.
    A value out of range (400 ``invalid_value``, the same ``param``) is the
    request's fault, not the field's."""
    text = _message(error).lower()
    about_field = getattr(error, "param", None) == name or bool(
        re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text)
    )
    unsupported = getattr(error, "code", None) == "unsupported_parameter" or any(
        word in text
        for word in ("unsupported", "not supported", "unrecognized", "unknown")
    )
    return about_field and unsupported


def _initial_token_field(setting: str, endpoint: str) -> str:
    """The field a request's token limit goes in first (see
    ``openai_backend.token_limit_parameter``)."""
    if setting != "auto":
        return setting
    import urllib.parse

    host = (urllib.parse.urlsplit(endpoint).hostname or "").lower()
    if host == "api.openai.com":
        return "max_completion_tokens"
    return "max_tokens"


class _Server:
    """One endpoint of the backend: its client, slots and health."""

    COOLDOWN_MAX: float = 30.0

    def __init__(self, url: str | None, limit: int):
        self.url = url
        self.limit = max(1, limit)
        self.client: Any = None
        self.in_flight = 0
        self.failures = 0
        self.down_until = 0.0
        self.index = 0
        self.token_field = "max_tokens"
        """Where a request's token limit goes (it can change once, on a 400)."""
        self.sends_stop = True
        """Whether requests carry their stop sequences (not once refused)."""
        self.dropped: dict[str, set[str]] = {}
        """Per model, the sampling fields it refused (``_DROPPABLE_FIELDS``)."""

    @property
    def endpoint(self) -> str:
        return self.url or "https://api.openai.com/v1"

    def mark_down(self) -> None:
        """It did not answer: send nothing to it for a while (doubling)."""
        self.failures += 1
        cooldown = min(self.COOLDOWN_MAX, 0.5 * 2 ** (self.failures - 1))
        self.down_until = time.monotonic() + cooldown


def _retry_after(error: Any) -> float | None:
    """How long a 429 or 5xx reply asked the client to wait, in seconds, from its
    ``Retry-After-Ms`` or ``Retry-After`` header (seconds or an HTTP date), as
    OpenAI's own client reads them; ``None`` when it did not say. (The client's
    own retries, which honour them, are off: nip retries.)"""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    value = headers.get("retry-after")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is not None:
            return max(0.0, when.timestamp() - time.time())
    return None


def _message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(error, "message", error))
