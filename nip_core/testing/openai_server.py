"""A local OpenAI-compatible HTTP server for tests: chat, files, fine-tuning jobs.

:class:`OpenAiTestServer` speaks enough of OpenAI's API over real HTTP on
``127.0.0.1`` for the real ``openai`` client to drive it, so the ``openai`` backend
and everything above it are tested without a network:

- ``POST /v1/chat/completions``: replies from a *responder* (a function of the
  served model, the chat, the request and a generator seeded by the request's seed,
  the chat and the model's fingerprint, so the same request always gets the same
  reply, and identically fine-tuned models answer alike); ``n``
  choices; ``max_tokens`` (or ``max_completion_tokens``) counts words and cuts
  with ``finish_reason: length``; ``stop`` cuts before the first stop string;
  an unknown model is a 404 ``model_not_found``;
  a parameter named in ``unsupported_parameters`` is refused with OpenAI's 400
  ``unsupported_parameter`` (as its reasoning models refuse ``max_tokens``); a
  model named in ``default_sampling_models`` refuses ``temperature`` and ``top_p``
  other than 1 with OpenAI's 400 ``unsupported_value`` (as its reasoning models do).
- ``GET /v1/models`` and ``/v1/models/{id}``.
- ``POST /v1/files`` (multipart), ``GET``/``DELETE /v1/files/{id}``,
  ``GET /v1/files``.
- ``POST /v1/fine_tuning/jobs`` (``supervised`` and ``dpo`` methods, ``suffix``,
  ``metadata``), ``GET /v1/fine_tuning/jobs`` (``limit``, ``metadata[key]=value``
  filters), ``GET /v1/fine_tuning/jobs/{id}``, ``POST .../cancel``. A job moves
  ``validating_files`` → ``running`` → ``succeeded`` as it is polled
  (``job_steps`` reads per step); then its model is served. What the model learnt is
  up to a *fine-tune effect* function, which sets the new model's attributes from
  its parent's and the training examples (a scripted model that gets better).

Faults are injected at ``fault_rate`` into every API call (seeded): ``429``,
``500``, ``timeout`` (the reply comes after ``timeout_delay`` seconds),
``malformed`` (a body that is not JSON), and, for chats, ``content_filter``. A fixed
``latency`` delays every reply (benchmarks).

Use it as a context manager, or through the ``openai_test_server`` pytest fixture of
nip-core's pytest plugin::

    with OpenAiTestServer(models=["scripted"]) as server:
        hyper_params.openai_backend.base_url = server.base_url
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

import attrs

__all__ = [
    "FAULT_KINDS",
    "FineTuneEffect",
    "OpenAiTestServer",
    "Responder",
    "ServedModel",
    "echo_responder",
]

FAULT_KINDS: tuple[str, ...] = ("429", "500", "timeout", "malformed", "content_filter")
"""The faults the server can inject."""

TRANSPORT_FAULTS: tuple[str, ...] = ("429", "500", "timeout", "malformed")
"""The faults that a client retries without changing the request."""


@attrs.define(kw_only=True)
class ServedModel:
    """A model the server answers for.

    Parameters
    ----------
    id : str
        The model id.
    parent : str | None
        The model it was fine-tuned from.
    attributes : dict
        Whatever the responder reads (a scripted model's skill ...).
    training : list
        The examples of every fine-tune in its lineage, oldest first.
    fingerprint : str
        What the model's replies are drawn from: its id for a base model; for a
        fine-tuned one, a digest of its parent's fingerprint, the method and the
        examples. Two identical fine-tunes (in two runs) answer identically, though
        their ids differ.
    """

    id: str
    parent: str | None = None
    attributes: dict[str, Any] = attrs.field(factory=dict)
    training: list[Any] = attrs.field(factory=list)
    created: int = attrs.field(factory=lambda: int(time.time()))
    fingerprint: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = self.id


Responder = Callable[
    [ServedModel, list[dict[str, str]], Mapping[str, Any], random.Random],
    "str | tuple[str, str]",
]
"""``responder(model, messages, request, rng) -> text`` or ``(text, finish_reason)``."""

FineTuneEffect = Callable[[ServedModel, str, list[Any]], Mapping[str, Any]]
"""``effect(parent, method, examples) -> attributes of the new model``."""


def echo_responder(
    model: ServedModel,
    messages: list[dict[str, str]],
    request: Mapping[str, Any],
    rng: random.Random,
) -> str:
    """A reply naming the model and a few seeded words (the default responder)."""
    words = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
    return f"[{model.id}] " + " ".join(rng.choice(words) for _ in range(6))


def _digest(*parts: Any) -> int:
    text = json.dumps(parts, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class _Stop(Exception):
    pass


class OpenAiTestServer:
    """An OpenAI-compatible server on localhost (see the module docstring).

    Parameters
    ----------
    models : Iterable[str]
        The base models served.
    responder : Responder
        Writes the replies.
    fine_tune_effect : FineTuneEffect, optional
        Sets a fine-tuned model's attributes (default: the parent's).
    fault_rate : float
        The probability that an API call gets a fault.
    fault_kinds : Sequence[str]
        Which faults (:data:`FAULT_KINDS`).
    fault_seed : int
        Seeds the fault draws.
    timeout_delay : float
        How long a ``timeout`` fault holds the reply back, in seconds.
    latency : float
        Seconds every reply is held back.
    job_steps : int
        Polls of a job per status step.
    fail_jobs : int
        The next this many jobs fail (to test failures).
    api_key : str | None
        When set, requests must carry ``Authorization: Bearer <api_key>``.
    retry_after : float | None
        When set, injected ``429`` and ``500`` faults carry a ``Retry-After``
        header asking the client to wait this many seconds.
    unsupported_parameters : Iterable[str]
        Chat request fields refused with a 400 ``unsupported_parameter`` naming the
        field, as OpenAI's reasoning models refuse ``max_tokens``.
    default_sampling_models : Iterable[str]
        Models that take ``temperature`` and ``top_p`` at 1 only and refuse any
        other value with a 400 ``unsupported_value``, as OpenAI's reasoning models
        do.
    """

    def __init__(
        self,
        models: Iterable[str] = ("test-model",),
        responder: Responder = echo_responder,
        fine_tune_effect: FineTuneEffect | None = None,
        *,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] = TRANSPORT_FAULTS,
        fault_seed: int = 0,
        timeout_delay: float = 1.0,
        latency: float = 0.0,
        job_steps: int = 1,
        fail_jobs: int = 0,
        api_key: str | None = None,
        retry_after: float | None = None,
        unsupported_parameters: Iterable[str] = (),
        default_sampling_models: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        unknown = [k for k in fault_kinds if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; kinds: {FAULT_KINDS}")
        self.responder = responder
        self.fine_tune_effect = fine_tune_effect
        self.fault_rate = float(fault_rate)
        self.fault_kinds = tuple(fault_kinds)
        self.timeout_delay = float(timeout_delay)
        self.latency = float(latency)
        self.job_steps = max(1, int(job_steps))
        self.fail_jobs = int(fail_jobs)
        self.api_key = api_key
        self.retry_after = retry_after
        self.unsupported_parameters = frozenset(unsupported_parameters)
        self.default_sampling_models = frozenset(default_sampling_models)
        self.models: dict[str, ServedModel] = {m: ServedModel(id=m) for m in models}
        self.files: dict[str, dict[str, Any]] = {}
        self.file_contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self._job_polls: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        """Calls per endpoint (``"chat"``, ``"files.create"``, ``"jobs.create"``)."""
        self.faults: Counter[str] = Counter()
        """Faults injected, by kind."""
        self.faults_by_endpoint: Counter[str] = Counter()
        """Faults injected, by endpoint."""
        self.deleted_files: list[str] = []
        self.chat_log: list[dict[str, Any]] = []
        """Every chat request body answered (not faulted), in arrival order."""
        self._fault_rng = random.Random(fault_seed)
        self._lock = threading.RLock()
        self._in_flight = 0
        self.max_in_flight = 0
        """The most requests handled at once (concurrency the clients achieved)."""
        self._connections: set[Any] = set()
        self.killed = False
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------
    # Lifetime

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: give it to ``openai_backend.base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAiTestServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="nip-openai-test-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def kill(self) -> None:
        """Stop answering at once, as a crashed server would: close the listening
        socket and every open connection (requests in flight get no reply)."""

        self.killed = True
        self.stop()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> OpenAiTestServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------
    # What tests read

    @property
    def jobs_created(self) -> int:
        """How many fine-tune jobs exist (created, whatever their state); the jobs
        themselves are :attr:`jobs` (job id to job)."""
        return len(self.jobs)

    def job_training_examples(self, job_id: str) -> list[Any]:
        """The examples a job was created with (parsed JSON lines)."""
        job = self.jobs[job_id]
        return _jsonl(self.file_contents.get(job["training_file"], b""))

    def add_model(self, model_id: str, **attributes: Any) -> ServedModel:
        """Serve one more base model."""
        with self._lock:
            model = ServedModel(id=model_id, attributes=dict(attributes))
            self.models[model_id] = model
            return model

    # ----------------------------------------------------------------------------------
    # Handling

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body are two writes: without this, Nagle's algorithm
                # holds the body until the client's delayed ACK (40 ms a reply)
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read the counters instead

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

            def do_DELETE(self) -> None:
                server._handle(self, "DELETE")

        return Handler

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = raw if raw is not None else json.dumps(body).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _error(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        message: str,
        code: str,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._send(
            handler,
            status,
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": param,
                    "code": code,
                }
            },
            headers=headers,
        )

    def _route(self, method: str, path: str) -> tuple[str, list[str]] | None:
        routes = [
            ("POST", r"/v1/chat/completions", "chat"),
            ("GET", r"/v1/models", "models.list"),
            ("GET", r"/v1/models/(.+)", "models.get"),
            ("POST", r"/v1/files", "files.create"),
            ("GET", r"/v1/files", "files.list"),
            ("GET", r"/v1/files/([^/]+)", "files.get"),
            ("DELETE", r"/v1/files/([^/]+)", "files.delete"),
            ("POST", r"/v1/fine_tuning/jobs", "jobs.create"),
            ("GET", r"/v1/fine_tuning/jobs", "jobs.list"),
            ("GET", r"/v1/fine_tuning/jobs/([^/]+)", "jobs.get"),
            ("POST", r"/v1/fine_tuning/jobs/([^/]+)/cancel", "jobs.cancel"),
        ]
        for route_method, pattern, name in routes:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                return name, list(match.groups())
        return None

    def _draw_fault(self, endpoint: str) -> str | None:
        if self.fault_rate <= 0:
            return None
        with self._lock:
            if self._fault_rng.random() >= self.fault_rate:
                return None
            kinds = [
                k
                for k in self.fault_kinds
                if k != "content_filter" or endpoint == "chat"
            ]
            if not kinds:
                return None
            kind = self._fault_rng.choice(kinds)
            self.faults[kind] += 1
            self.faults_by_endpoint[endpoint] += 1
            return kind

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        route = self._route(method, parsed.path)
        if route is None:
            self._error(handler, 404, f"no route {method} {parsed.path}", "not_found")
            return
        endpoint, groups = route
        if self.api_key is not None:
            auth = handler.headers.get("Authorization", "")
            if auth != f"Bearer {self.api_key}":
                self._error(
                    handler, 401, "Incorrect API key provided", "invalid_api_key"
                )
                return
        with self._lock:
            self.requests[endpoint] += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            if self.killed:
                return  # a dead server answers nothing
            fault = self._draw_fault(endpoint)
            wait = (
                {"Retry-After": f"{self.retry_after:g}"}
                if self.retry_after is not None
                else None
            )
            if fault == "429":
                self._error(
                    handler,
                    429,
                    "Rate limit reached (injected)",
                    "rate_limit",
                    headers=wait,
                )
                return
            if fault == "500":
                self._error(
                    handler,
                    500,
                    "Internal error (injected)",
                    "server_error",
                    headers=wait,
                )
                return
            if fault == "malformed":
                self._send(handler, 200, None, raw=b'{"this is": not json')
                return
            if fault == "timeout":
                time.sleep(self.timeout_delay)
            query = dict(parse_qsl(parsed.query))
            try:
                status, reply = getattr(self, "_" + endpoint.replace(".", "_"))(
                    body, groups, query, handler, fault
                )
            except _HttpError as error:
                self._error(
                    handler, error.status, error.message, error.code, error.param
                )
                return
            self._send(handler, status, reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout fault)
        finally:
            with self._lock:
                self._in_flight -= 1

    # ----------------------------------------------------------------------------------
    # Endpoints

    def _model(self, model_id: str) -> ServedModel:
        with self._lock:
            model = self.models.get(model_id)
        if model is None:
            raise _HttpError(
                404, f"The model `{model_id}` does not exist", "model_not_found"
            )
        return model

    def _chat(self, body: bytes, groups: list[str], query: dict, handler: Any, fault):
        request = _json(body)
        model = self._model(str(request.get("model")))
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _HttpError(400, "messages must be a non-empty list", "invalid_value")
        for name in sorted(self.unsupported_parameters & set(request)):
            other = {
                "max_tokens": "max_completion_tokens",
                "max_completion_tokens": "max_tokens",
            }.get(name)
            raise _HttpError(
                400,
                f"Unsupported parameter: '{name}' is not supported with this model."
                + (f" Use '{other}' instead." if other else ""),
                "unsupported_parameter",
                param=name,
            )
        for name, top in (("temperature", 2), ("top_p", 1)):
            value = request.get(name)
            if isinstance(value, (int, float)) and not 0 <= value <= top:
                raise _HttpError(
                    400,
                    f"Invalid '{name}': expected a value between 0 and {top}, but "
                    f"got {value!r} instead.",
                    "invalid_value",
                    param=name,
                )
        if model.id in self.default_sampling_models:
            for name in ("temperature", "top_p"):
                if request.get(name, 1) != 1:
                    raise _HttpError(
                        400,
                        f"Unsupported value: '{name}' does not support "
                        f"{request[name]!r} with this model. Only the default (1) "
                        "value is supported.",
                        "unsupported_value",
                        param=name,
                    )
        n = int(request.get("n") or 1)
        max_tokens = request.get("max_tokens") or request.get("max_completion_tokens")
        choices = []
        completion_tokens = 0
        for index in range(n):
            rng = random.Random(
                _digest(model.fingerprint, messages, request.get("seed"), index)
            )
            try:
                reply = self.responder(model, messages, request, rng)
            except Exception as error:
                # the responder's own bug: say so in the reply, not by dropping
                # the connection (which the client reads as an unreachable server)
                traceback.print_exc()
                name = getattr(self.responder, "__qualname__", repr(self.responder))
                raise _HttpError(
                    500,
                    f"the test server's responder {name} raised "
                    f"{type(error).__name__}: {error} (its traceback is in the "
                    "server's output)",
                    "responder_error",
                ) from error
            text, reason = reply if isinstance(reply, tuple) else (reply, "stop")
            stop = _strings(request.get("stop"))
            for cut in sorted(i for i in (text.find(s) for s in stop) if i >= 0)[:1]:
                text, reason = text[:cut], "stop"
            if fault == "content_filter":
                text, reason = "", "content_filter"
            words = text.split()
            if max_tokens is not None and len(words) > int(max_tokens):
                text, reason = " ".join(words[: int(max_tokens)]), "length"
            completion_tokens += len(text.split())
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": reason,
                    "logprobs": None,
                }
            )
        with self._lock:
            self.chat_log.append(request)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.id,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _model_object(self, model: ServedModel) -> dict[str, Any]:
        return {
            "id": model.id,
            "object": "model",
            "created": model.created,
            "owned_by": "nip-test",
        }

    def _models_list(self, body, groups, query, handler, fault):
        with self._lock:
            data = [self._model_object(m) for m in self.models.values()]
        return 200, {"object": "list", "data": data}

    def _models_get(self, body, groups, query, handler, fault):
        return 200, self._model_object(self._model(groups[0]))

    def _files_create(self, body, groups, query, handler, fault):
        fields = _multipart(body, handler.headers.get("Content-Type", ""))
        if "file" not in fields:
            raise _HttpError(400, "no file in the upload", "invalid_value")
        filename, content = fields["file"]
        purpose = fields.get("purpose", (None, b""))[1].decode()
        file_id = f"file-{uuid.uuid4().hex[:16]}"
        record = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename or "upload.jsonl",
            "purpose": purpose,
            "status": "processed",
        }
        with self._lock:
            self.files[file_id] = record
            self.file_contents[file_id] = content
        return 200, record

    def _file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            record = self.files.get(file_id)
        if record is None:
            raise _HttpError(404, f"No such File object: {file_id}", "not_found")
        return record

    def _files_list(self, body, groups, query, handler, fault):
        with self._lock:
            return 200, {"object": "list", "data": list(self.files.values())}

    def _files_get(self, body, groups, query, handler, fault):
        return 200, self._file(groups[0])

    def _files_delete(self, body, groups, query, handler, fault):
        self._file(groups[0])
        with self._lock:
            self.files.pop(groups[0], None)
            self.deleted_files.append(groups[0])
        return 200, {"id": groups[0], "object": "file", "deleted": True}

    def _jobs_create(self, body, groups, query, handler, fault):
        request = _json(body)
        model = self._model(str(request.get("model")))
        file_id = str(request.get("training_file"))
        self._file(file_id)
        method = request.get("method") or {"type": "supervised"}
        kind = method.get("type", "supervised")
        if kind not in ("supervised", "dpo"):
            raise _HttpError(400, f"unsupported method {kind!r}", "invalid_value")
        examples = _jsonl(self.file_contents[file_id])
        problem = _check_examples(kind, examples)
        if problem:
            raise _HttpError(400, f"invalid training file: {problem}", "invalid_file")
        job_id = f"ftjob-{uuid.uuid4().hex[:16]}"
        job = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(time.time() * 1000) + len(self.jobs),
            "model": model.id,
            "fine_tuned_model": None,
            "status": "validating_files",
            "training_file": file_id,
            "validation_file": None,
            "metadata": request.get("metadata") or None,
            "method": method,
            "suffix": request.get("suffix"),
            "error": None,
            "finished_at": None,
            "hyperparameters": (method.get(kind) or {}).get("hyperparameters") or {},
            "organization_id": "org-nip-test",
            "result_files": [],
            "seed": int(request.get("seed") or 0),
            "trained_tokens": None,
        }
        with self._lock:
            self.jobs[job_id] = job
        return 200, dict(job)

    def _advance(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise _HttpError(404, f"No such job: {job_id}", "not_found")
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return dict(job)
            self._job_polls[job_id] += 1
            if self._job_polls[job_id] < self.job_steps:
                return dict(job)
            self._job_polls[job_id] = 0
            if job["status"] == "validating_files":
                job["status"] = "running"
            elif job["status"] == "running":
                self._finish(job)
            return dict(job)

    def _finish(self, job: dict[str, Any]) -> None:
        job["finished_at"] = int(time.time())
        if self.fail_jobs > 0:
            self.fail_jobs -= 1
            job["status"] = "failed"
            job["error"] = {
                "code": "injected_failure",
                "message": "The job failed (injected by the test server)",
                "param": None,
            }
            return
        parent = self.models[job["model"]]
        kind = job["method"].get("type", "supervised")
        examples = _jsonl(self.file_contents[job["training_file"]])
        attributes = dict(parent.attributes)
        if self.fine_tune_effect is not None:
            attributes.update(self.fine_tune_effect(parent, kind, examples))
        suffix = job.get("suffix") or "ft"
        model_id = f"ft:{parent.id}:nip-test:{suffix}:{job['id'][-8:]}"
        self.models[model_id] = ServedModel(
            id=model_id,
            parent=parent.id,
            attributes=attributes,
            training=[*parent.training, (kind, examples)],
            fingerprint=f"{_digest(parent.fingerprint, kind, examples):016x}",
        )
        job["fine_tuned_model"] = model_id
        job["status"] = "succeeded"
        job["trained_tokens"] = sum(len(json.dumps(e).split()) for e in examples)

    def _jobs_get(self, body, groups, query, handler, fault):
        return 200, self._advance(groups[0])

    def _jobs_list(self, body, groups, query, handler, fault):
        filters = {
            match.group(1): value
            for key, value in query.items()
            if (match := re.fullmatch(r"metadata\[(.+)\]", key))
        }
        limit = int(query.get("limit", 20))
        with self._lock:
            jobs = sorted(
                self.jobs.values(), key=lambda j: j["created_at"], reverse=True
            )
            data = [
                dict(job)
                for job in jobs
                if all(
                    (job.get("metadata") or {}).get(k) == v for k, v in filters.items()
                )
            ][:limit]
        return 200, {"object": "list", "data": data, "has_more": False}

    def _jobs_cancel(self, body, groups, query, handler, fault):
        with self._lock:
            job = self.jobs.get(groups[0])
            if job is None:
                raise _HttpError(404, f"No such job: {groups[0]}", "not_found")
            if job["status"] not in ("succeeded", "failed", "cancelled"):
                job["status"] = "cancelled"
                job["finished_at"] = int(time.time())
            return 200, dict(job)


def _strings(value: Any) -> list[str]:
    """A request's ``stop``: a string or a list of them (or none)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _HttpError(400, "stop must be a string or a list of strings", "invalid")
    return value


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except json.JSONDecodeError as error:
        raise _HttpError(
            400, f"the body is not JSON: {error}", "invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise _HttpError(400, "the body must be a JSON object", "invalid_json")
    return data


def _jsonl(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]


def _check_examples(kind: str, examples: list[Any]) -> str | None:
    if not examples:
        return "no examples"
    for i, example in enumerate(examples):
        if kind == "supervised":
            messages = example.get("messages") if isinstance(example, dict) else None
            if not messages or messages[-1].get("role") != "assistant":
                return f"line {i + 1}: a chat must end with an assistant message"
        else:
            if not isinstance(example, dict) or not {
                "input",
                "preferred_output",
                "non_preferred_output",
            } <= set(example):
                return (
                    f"line {i + 1}: a preference example needs input, "
                    "preferred_output and non_preferred_output"
                )
    return None


def _multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise _HttpError(400, "expected multipart/form-data", "invalid_value")
    boundary = b"--" + match.group(1).encode()
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(boundary):
        part = part.strip(b"\r\n")
        if not part or part == b"--":
            continue
        head, _, content = part.partition(b"\r\n\r\n")
        headers = head.decode("utf-8", "replace")
        name = re.search(r'name="([^"]*)"', headers)
        filename = re.search(r'filename="([^"]*)"', headers)
        if name:
            if content.endswith(b"\r\n"):
                content = content[:-2]
            fields[name.group(1)] = (
                filename.group(1) if filename else None,
                content,
            )
    return fields


# --------------------------------------------------------------------------------------
# Command line: serve a scripted model for manual runs and benchmarks


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m nip_core.testing.openai_server``: serve until interrupted.

    Prints the base URL on its first line, so a parent process can read it.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(
        prog="python -m nip_core.testing.openai_server",
        description="Serve an OpenAI-compatible test server on localhost.",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per reply")
    parser.add_argument(
        "--responder",
        default="scripted",
        metavar="{echo,scripted,MODULE:FUNCTION}",
        help=(
            "echo: seeded words; scripted: the synthetic text scenario's model "
            "(default); MODULE:FUNCTION: your own responder(model, messages, "
            "request, rng) -> text, importable from here (e.g. the one your "
            "scenario's tests use)"
        ),
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help=(
            "a model the server knows (repeat for several); give your agents' "
            "model_name. Default: 'scripted' for the scripted responder, else "
            "'test-model'"
        ),
    )
    parser.add_argument(
        "--fine-tune-effect",
        metavar="MODULE:FUNCTION",
        help=(
            "effect(parent, method, examples) -> the attributes of a fine-tuned "
            "model (how fine-tuning changes your responder's model); default: the "
            "scripted responder's own, else none"
        ),
    )
    parser.add_argument("--fault-rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    options: dict[str, Any] = {
        "port": args.port,
        "latency": args.latency,
        "fault_rate": args.fault_rate,
    }
    if args.responder not in ("echo", "scripted"):
        options["responder"] = _import_responder(parser, args.responder)
    elif args.responder == "scripted":
        from nip_core.testing.synthetic_text.model import (
            scripted_fine_tune_effect,
            scripted_responder,
        )

        options.update(
            models=["scripted"],
            responder=scripted_responder,
            fine_tune_effect=scripted_fine_tune_effect,
        )
    if args.fine_tune_effect:
        options["fine_tune_effect"] = _import_responder(
            parser, args.fine_tune_effect, "--fine-tune-effect"
        )
    if args.models:
        options["models"] = args.models
    server = OpenAiTestServer(**options).start()
    print(server.base_url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _import_responder(parser: Any, spec: str, option: str = "--responder") -> Responder:
    """The function ``MODULE:FUNCTION`` names; a usage error (naming ``option``) if
    it is not one."""
    import importlib

    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        choices = "neither echo, scripted nor" if option == "--responder" else "not"
        parser.error(f"{option}: {spec!r} is {choices} MODULE:FUNCTION")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        parser.error(f"{option}: cannot import {module_name!r}: {error}")
    function = getattr(module, function_name, None)
    if not callable(function):
        parser.error(f"{option}: {module_name!r} has no function {function_name!r}")
    return function


if __name__ == "__main__":
    main()
