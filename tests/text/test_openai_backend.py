"""The ``openai`` backend against the local test server: concurrency, retries,
faults, clear errors, and fine-tuning jobs (the contract suite covers the happy
paths)."""

from __future__ import annotations

import email.utils
import json
import random
import socket
import threading
import time
import types
import warnings

import pytest

from nip_core.errors import BackendError, BackendWarning
from nip_core.parameters.text import OpenAiBackendParameters, TextBackendParameters
from nip_core.testing.openai_server import OpenAiTestServer, _HttpError
from nip_core.text.backend import (
    FineTuneRequest,
    GenerationRequest,
    PreferenceExample,
    RetryPolicy,
)
from nip_core.text.openai_backend import OpenAiBackend, _retry_after


def backend_for(base_url, openai_backend=None, **text_backend):
    values = dict(retry_initial_delay=0.01, retry_max_delay=0.02, max_retries=3)
    values.update(text_backend)
    hyper_params = types.SimpleNamespace(
        text_backend=TextBackendParameters(**values),
        openai_backend=OpenAiBackendParameters(
            base_url=base_url, **(openai_backend or {})
        ),
    )
    return OpenAiBackend(hyper_params, None)


def request(i=0, **options):
    return GenerationRequest(
        model="test-model",
        messages=[{"role": "user", "content": f"Question {i}"}],
        seed=i,
        **options,
    )


@pytest.fixture
def server():
    with OpenAiTestServer(models=["test-model"]) as server:
        yield server


def test_generation_is_seeded_and_ordered(server):
    with backend_for(server.base_url) as backend:
        first = backend.generate([request(i) for i in range(6)])
        again = backend.generate([request(i) for i in reversed(range(6))])
    assert [r.choice.text for r in first] == [r.choice.text for r in reversed(again)]
    assert len({r.choice.text for r in first}) > 1
    assert server.requests["chat"] == 12


def test_concurrency_is_bounded(monkeypatch):
    with OpenAiTestServer(models=["test-model"], latency=0.15) as server:
        with backend_for(server.base_url, max_concurrency=3) as backend:
            start = time.perf_counter()
            backend.generate([request(i) for i in range(9)])
            elapsed = time.perf_counter() - start
    assert server.max_in_flight == 3
    assert elapsed >= 3 * 0.15  # three waves of three


def test_token_limit_and_content_filter_are_reported():
    with OpenAiTestServer(
        models=["test-model"], fault_rate=1.0, fault_kinds=("content_filter",)
    ) as server:
        with backend_for(server.base_url) as backend:
            [filtered] = backend.generate([request()])
    assert filtered.choice.filtered and filtered.choice.text == ""
    with OpenAiTestServer(models=["test-model"]) as server:
        with backend_for(server.base_url) as backend:
            [cut] = backend.generate([request(max_tokens=2)])
    assert cut.choice.hit_token_limit
    assert len(cut.choice.text.split()) == 2
    assert cut.completion_tokens == 2


def test_the_token_limit_goes_in_the_field_the_endpoint_takes():
    # a local server gets max_tokens, which every compatible server reads
    with OpenAiTestServer(models=["test-model"]) as server:
        with backend_for(server.base_url) as backend:
            backend.generate([request(max_tokens=3)])
        assert server.chat_log[-1]["max_tokens"] == 3
        assert "max_completion_tokens" not in server.chat_log[-1]
        with backend_for(
            server.base_url, {"token_limit_parameter": "max_completion_tokens"}
        ) as backend:
            [result] = backend.generate([request(max_tokens=2)])
        assert server.chat_log[-1]["max_completion_tokens"] == 2
        assert "max_tokens" not in server.chat_log[-1]
        assert result.choice.hit_token_limit
    # one that refuses it (OpenAI's reasoning models) gets the other from then on,
    # once per endpoint
    with OpenAiTestServer(
        models=["test-model"], unsupported_parameters=["max_tokens"]
    ) as server:
        with backend_for(server.base_url) as backend:
            first = backend.generate([request(max_tokens=2)])
            again = backend.generate([request(i, max_tokens=2) for i in range(3)])
        assert first[0].choice.hit_token_limit
        assert all(r.choice.hit_token_limit for r in again)
        assert server.requests["chat"] == 5  # the refused one, then 4 answered
        assert all("max_tokens" not in body for body in server.chat_log)
        # told to send max_tokens, the backend does: the endpoint's error is reported
        with backend_for(
            server.base_url, {"token_limit_parameter": "max_tokens"}
        ) as backend:
            refused = "Unsupported parameter: 'max_tokens'"
            with pytest.raises(BackendError, match=refused):
                backend.generate([request(max_tokens=2)])
    # OpenAI's own API gets max_completion_tokens from the start
    from nip_core.text.openai_backend import _initial_token_field

    assert _initial_token_field("auto", "https://api.openai.com/v1") == (
        "max_completion_tokens"
    )
    assert _initial_token_field("auto", "http://localhost:8000/v1") == "max_tokens"
    assert _initial_token_field("max_tokens", "https://api.openai.com/v1") == (
        "max_tokens"
    )


@pytest.mark.parametrize("kind", ["429", "500", "malformed", "timeout"])
def test_passing_faults_are_retried_to_the_same_result(kind):
    with OpenAiTestServer(models=["test-model"]) as calm:
        with backend_for(calm.base_url) as backend:
            expected = [
                r.choice.text for r in backend.generate([request(i) for i in range(8)])
            ]
    with OpenAiTestServer(
        models=["test-model"],
        fault_rate=0.4,
        fault_kinds=(kind,),
        timeout_delay=0.3,
        fault_seed=3,
    ) as server:
        with backend_for(
            server.base_url, request_timeout=0.1, max_retries=20
        ) as backend:
            got = [
                r.choice.text for r in backend.generate([request(i) for i in range(8)])
            ]
            retries = backend.num_retries
    assert got == expected
    assert server.faults[kind] > 0
    assert retries >= server.faults[kind]


def test_retries_run_out_with_a_clear_error():
    with OpenAiTestServer(
        models=["test-model"], fault_rate=1.0, fault_kinds=("429",)
    ) as server:
        with backend_for(server.base_url, max_retries=2) as backend:
            with pytest.raises(BackendError) as caught:
                backend.generate([request()])
    message = str(caught.value)
    assert "failed 3 times" in message
    assert "rate limited" in message and "(429)" in message
    assert "text_backend.max_retries" in message
    assert server.requests["chat"] == 3


def test_a_failing_responder_is_named_not_taken_for_an_unreachable_server(capfd):
    # a scenario author's responder with a bug: the error says so (and the
    # server's message reaches the client), not "could not reach"
    def broken(model, messages, request, rng):
        raise KeyError("boom")

    with OpenAiTestServer(models=["test-model"], responder=broken) as server:
        with backend_for(server.base_url, max_retries=1) as backend:
            with pytest.raises(BackendError) as caught:
                backend.generate([request()])
    message = str(caught.value)
    assert "server error 500" in message
    assert "responder" in message and "broken" in message
    assert "KeyError: 'boom'" in message
    assert "could not reach" not in message
    assert "KeyError" in capfd.readouterr().err  # the traceback, server side


def test_unreachable_endpoint_names_the_setting():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with backend_for(f"http://127.0.0.1:{port}/v1", max_retries=1) as backend:
        with pytest.raises(BackendError) as caught:
            backend.generate([request()])
    assert f"could not reach http://127.0.0.1:{port}/v1" in str(caught.value)
    assert "openai_backend.base_url" in str(caught.value)
    assert "failed 2 times" in str(caught.value)
    assert ".." not in str(caught.value)
    with backend_for(f"http://127.0.0.1:{port}/v1", max_retries=0) as backend:
        with pytest.raises(BackendError) as caught:
            backend.generate([request()])
    assert "failed once; the last error" in str(caught.value)


def test_unknown_model(server):
    with backend_for(server.base_url) as backend:
        with pytest.raises(BackendError, match="unknown model 'gpt-9'.*test-model"):
            backend.check_model("gpt-9")
        backend.check_model("test-model")
        with pytest.raises(BackendError, match=r"not found .*\(404\).*gpt-9"):
            backend.generate(
                [
                    GenerationRequest(
                        model="gpt-9", messages=[{"role": "user", "content": "x"}]
                    )
                ]
            )


def test_missing_key_for_openai_itself(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    hyper_params = types.SimpleNamespace(
        text_backend=TextBackendParameters(),
        openai_backend=OpenAiBackendParameters(),
    )
    with pytest.raises(BackendError) as caught:
        OpenAiBackend(hyper_params, None)
    assert "OPENAI_API_KEY" in str(caught.value)
    assert "openai_backend.api_key_env" in str(caught.value)


def test_a_refused_key_names_the_variable(monkeypatch):
    monkeypatch.setenv("MY_KEY", "wrong")
    with OpenAiTestServer(models=["test-model"], api_key="right") as server:
        hyper_params = types.SimpleNamespace(
            text_backend=TextBackendParameters(),
            openai_backend=OpenAiBackendParameters(
                base_url=server.base_url, api_key_env="MY_KEY"
            ),
        )
        with OpenAiBackend(hyper_params, None) as backend:
            with pytest.raises(BackendError) as caught:
                backend.generate([request()])
    assert "refused the API key (401)" in str(caught.value)
    assert "MY_KEY" in str(caught.value) and "wrong" not in str(caught.value)


@pytest.mark.parametrize("value", ["sk-test-key-1234\n", " sk-test-key-1234\r\n"])
def test_whitespace_around_the_key_is_dropped(monkeypatch, value):
    # a key read from a file keeps its line end; the client cannot send it
    monkeypatch.setenv("OPENAI_API_KEY", value)
    with OpenAiTestServer(models=["test-model"], api_key="sk-test-key-1234") as server:
        with backend_for(server.base_url) as backend:
            assert backend.generate([request()])[0].choice.text
        assert server.requests["chat"] == 1


@pytest.mark.parametrize(
    ("value", "position"),
    [
        ("sk-test key-1234", "character 8 of 16"),
        ("sk-t\u00e9st-key-1234", "character 5"),
    ],
)
def test_a_key_that_cannot_be_sent_is_refused_at_once(monkeypatch, value, position):
    monkeypatch.setenv("MY_KEY", value)
    hyper_params = types.SimpleNamespace(
        text_backend=TextBackendParameters(),
        openai_backend=OpenAiBackendParameters(
            base_url="http://127.0.0.1:9/v1", api_key_env="MY_KEY"
        ),
    )
    with pytest.raises(BackendError) as caught:
        OpenAiBackend(hyper_params, None)
    message = str(caught.value)
    assert "environment variable MY_KEY" in message
    assert position in message
    assert "key-1234" not in message


@pytest.mark.parametrize("status", [400, 403, 404, 500])
def test_a_server_quoting_the_key_does_not_put_it_in_the_error(
    monkeypatch, server, status
):
    monkeypatch.setenv("MY_KEY", "sk-quoted-secret-1234")

    def quote_the_key(*args):
        raise _HttpError(status, "key sk-quoted-secret-1234 is not allowed", "x")

    server._chat = quote_the_key
    hyper_params = types.SimpleNamespace(
        text_backend=TextBackendParameters(
            max_retries=0, retry_initial_delay=0.01, retry_max_delay=0.02
        ),
        openai_backend=OpenAiBackendParameters(
            base_url=server.base_url, api_key_env="MY_KEY"
        ),
    )
    with OpenAiBackend(hyper_params, None) as backend:
        with pytest.raises(BackendError) as caught:
            backend.generate([request()])
    message = str(caught.value)
    assert "key <MY_KEY> is not allowed" in message
    assert "sk-quoted-secret" not in message


def test_local_servers_need_no_key(monkeypatch, server):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with backend_for(server.base_url) as backend:
        assert backend.generate([request()])[0].choice.text


def sft_request(name="job-a"):
    return FineTuneRequest(
        name=name,
        base_model="test-model",
        method="supervised",
        examples=[
            [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
            ]
        ],
    )


def test_fine_tune_data_and_cleanup(server):
    with backend_for(server.base_url) as backend:
        job = backend.create_fine_tune_job(sft_request())
        assert server.job_training_examples(job.id) == [
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ]
            }
        ]
        training_file = server.jobs[job.id]["training_file"]
        assert server.jobs[job.id]["metadata"] == {"nip_job": "job-a"}
        while not backend.get_fine_tune_job(job.id).finished:
            pass
        backend.cleanup_fine_tune_job(job.id)
        assert server.deleted_files == [training_file]
        dpo = backend.create_fine_tune_job(
            FineTuneRequest(
                name="job-b",
                base_model="test-model",
                method="dpo",
                examples=[
                    PreferenceExample(
                        prompt=[{"role": "user", "content": "q"}],
                        chosen="good",
                        rejected="bad",
                    )
                ],
            )
        )
    assert server.jobs[dpo.id]["method"]["type"] == "dpo"
    assert server.job_training_examples(dpo.id) == [
        {
            "input": {"messages": [{"role": "user", "content": "q"}]},
            "preferred_output": [{"role": "assistant", "content": "good"}],
            "non_preferred_output": [{"role": "assistant", "content": "bad"}],
        }
    ]


def test_a_lost_creation_answer_does_not_duplicate_the_job():
    # Every call times out on the client's side, but the server still handles it
    # (after timeout_delay): the backend must find the job it created.
    with OpenAiTestServer(
        models=["test-model"],
        fault_rate=0.5,
        fault_kinds=("timeout",),
        timeout_delay=0.2,
        fault_seed=1,
    ) as server:
        with backend_for(
            server.base_url,
            request_timeout=0.1,
            retry_initial_delay=0.4,
            retry_max_delay=0.5,
            max_retries=12,
        ) as backend:
            for name in ("lost-a", "lost-b", "lost-c"):
                backend.create_fine_tune_job(sft_request(name))
        assert server.faults["timeout"] > 0
        names = [job["metadata"]["nip_job"] for job in server.jobs.values()]
    assert sorted(names) == ["lost-a", "lost-b", "lost-c"]


@pytest.mark.parametrize(("status", "attempts"), [(500, 4), (400, 1)])
def test_a_job_that_cannot_be_created_leaves_no_uploaded_file(server, status, attempts):
    # the upload succeeds, the creation never does: retried (5xx) or refused at
    # once (4xx), the run stops, and the file it uploaded must not stay behind
    def refuse(*args):
        raise _HttpError(status, "creation refused", "refused")

    server._jobs_create = refuse
    with backend_for(server.base_url) as backend:
        with pytest.raises(BackendError) as caught:
            backend.create_fine_tune_job(sft_request())
    assert "creation refused" in str(caught.value)
    if status == 500:
        # worded as every other request whose retries ran out
        assert str(caught.value) == (
            "openai backend: creating fine-tune job 'job-a' failed 4 times; the last "
            "error: creating fine-tune job 'job-a': server error 500 from "
            f"{server.base_url}: creation refused. Raise text_backend.max_retries or "
            "retry_max_delay if the endpoint is only slow or busy."
        )
    assert server.requests["jobs.create"] == attempts
    assert server.requests["files.create"] == 1
    assert server.files == {}
    assert len(server.deleted_files) == 1


def test_a_job_found_failed_on_resume_has_its_upload_deleted(server):
    # A run created its job and was killed before recording it; the job failed
    # meanwhile. The resumed run finds it by name and starts another: the failed
    # job's upload must go, the new job's must stay.
    from nip_core.text.groups import SharedModelGroup, fine_tune_job_name

    params = types.SimpleNamespace(
        freeze_agent=False, fine_tune_from_scratch=False, model_name="test-model"
    )
    agent = types.SimpleNamespace(agent_params=params, group=None)
    server.fail_jobs = 1
    with backend_for(server.base_url) as backend:
        name = fine_tune_job_name("run-a", 0, "verifier", 0)
        failed = backend.create_fine_tune_job(sft_request(name))
        while not backend.get_fine_tune_job(failed.id).finished:
            pass
        failed_file = server.jobs[failed.id]["training_file"]
        group = SharedModelGroup("verifier", {"verifier": agent}, backend)
        chats = sft_request().examples
        job = group.create_supervised_fine_tune_job(chats, run_id="run-a", iteration=0)
    assert job.id != failed.id
    assert server.deleted_files == [failed_file]
    assert list(server.files) == [server.jobs[job.id]["training_file"]]


def test_failed_jobs_report_their_error(server):
    server.fail_jobs = 1
    with backend_for(server.base_url) as backend:
        job = backend.create_fine_tune_job(sft_request())
        for _ in range(10):
            job = backend.get_fine_tune_job(job.id)
        assert job.status == "failed"
        assert "injected" in job.error


def test_retry_delays_grow_and_are_capped():
    import random

    policy = RetryPolicy(max_retries=5, initial_delay=1.0, max_delay=4.0)
    rng = random.Random(0)
    delays = [policy.delay(k, rng) for k in range(5)]
    assert 0.5 <= delays[0] <= 1.5
    assert 1.0 <= delays[1] <= 3.0
    assert all(d <= 6.0 for d in delays)  # 4 s cap, times at most 1.5
    assert delays[4] >= 2.0


def test_a_retry_after_many_waits_the_cap():
    # 2**1024 is no float: the backoff once overflowed after 1024 retries
    policy = RetryPolicy(max_retries=5000, initial_delay=1.0, max_delay=60.0)
    rng = random.Random(0)
    for retry in (1023, 1024, 4999):
        assert 30.0 <= policy.delay(retry, rng) <= 90.0


def test_a_retry_waits_at_least_what_the_endpoint_asks_up_to_the_cap():
    policy = RetryPolicy(max_retries=3, initial_delay=1.0, max_delay=60.0)
    rng = random.Random(0)
    assert policy.delay(0, rng, retry_after=5.0) == 5.0
    assert policy.delay(0, rng, retry_after=600.0) == 60.0
    assert 0.5 <= policy.delay(0, rng, retry_after=0.0) <= 1.5
    assert 4.0 <= policy.delay(3, rng, retry_after=1.0) <= 12.0


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "20"}, 20.0),
        ({"retry-after-ms": "250", "retry-after": "20"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers_are_read(headers, seconds):
    import httpx

    error = types.SimpleNamespace(response=types.SimpleNamespace(headers=headers))
    assert _retry_after(error) == seconds
    in_a_minute = httpx.Headers(
        {"retry-after": email.utils.formatdate(time.time() + 60, usegmt=True)}
    )
    dated = _retry_after(
        types.SimpleNamespace(response=types.SimpleNamespace(headers=in_a_minute))
    )
    assert 55 <= dated <= 61


@pytest.mark.parametrize("kind", ["429", "500"])
def test_a_rate_limit_retry_after_is_honoured(kind):
    # The client's own retries (which honour Retry-After) are off; nip's retried
    # after its own short backoff and spent every retry within the endpoint's
    # requested pause.
    with OpenAiTestServer(
        models=["test-model"], fault_rate=1.0, fault_kinds=(kind,), retry_after=0.3
    ) as server:
        with backend_for(server.base_url, max_retries=2, retry_max_delay=5) as backend:
            start = time.monotonic()
            with pytest.raises(BackendError):
                backend.generate([request()])
            elapsed = time.monotonic() - start
    assert server.requests["chat"] == 3
    assert elapsed >= 0.6


def test_a_server_that_ignores_n_is_reported_at_once(server):
    # llama.cpp's server answers one choice whatever n is: that was retried as a
    # malformed reply until the retries ran out
    answer = server._chat

    def one_choice(body, *args):
        status, reply = answer(body, *args)
        reply["choices"] = reply["choices"][:1]
        return status, reply

    server._chat = one_choice
    with backend_for(server.base_url) as backend:
        with pytest.raises(BackendError) as caught:
            backend.generate([request(n=3)])
        assert backend.generate([request()])[0].choice.text
    assert server.requests["chat"] == 2
    assert str(caught.value) == (
        f"a chat completion with model 'test-model': {server.base_url} answered 1 "
        "choice(s) for n=3; it does not support several completions per request (n)"
    )


def test_requests_are_json_serialisable(server):
    with backend_for(server.base_url) as backend:
        backend.generate([request(temperature=0.7, top_p=0.9, max_tokens=5)])
    body = server.chat_log[-1]
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9
    assert body["max_tokens"] == 5 and body["seed"] == 0
    # an option left unset is not sent (OpenAI's own API refuses this one)
    assert "repetition_penalty" not in body
    json.dumps(body)
    with backend_for(server.base_url) as backend:
        backend.generate([request(repetition_penalty=1.3)])
    assert server.chat_log[-1]["repetition_penalty"] == 1.3


def test_stop_sequences_are_sent_and_end_the_completion():
    def respond(model, messages, request, rng):
        return "alpha beta STOP gamma HALT delta"

    with OpenAiTestServer(models=["test-model"], responder=respond) as server:
        with backend_for(server.base_url) as backend:
            [stopped, plain] = backend.generate(
                [request(0, stop=("HALT", "STOP")), request(1)]
            )
        assert server.chat_log[0]["stop"] == ["HALT", "STOP"]
        assert "stop" not in server.chat_log[1]
    assert stopped.choice.text == "alpha beta "
    assert stopped.choice.finish_reason == "stop"
    assert plain.choice.text == "alpha beta STOP gamma HALT delta"


def test_an_endpoint_refusing_stop_is_asked_without_it_and_the_sampler_cuts():
    # OpenAI's reasoning models refuse stop: the request goes again without it,
    # and later ones are sent without it (the sampler cuts the text, see
    # tests/text/test_protocols_on_text.py)
    def respond(model, messages, request, rng):
        return "alpha STOP beta"

    with OpenAiTestServer(
        models=["test-model"],
        responder=respond,
        unsupported_parameters=["stop", "max_tokens"],
    ) as server:
        with backend_for(server.base_url) as backend:
            [first] = backend.generate([request(0, stop=("STOP",), max_tokens=9)])
            [second] = backend.generate([request(1, stop=("STOP",), max_tokens=9)])
        # refused: max_tokens, then stop; then answered; the next one at once
        assert server.requests["chat"] == 4
        assert all("stop" not in body for body in server.chat_log)
        assert all(body["max_completion_tokens"] == 9 for body in server.chat_log)
    assert first.choice.text == second.choice.text == "alpha STOP beta"
    # a 400 about something else is reported, not retried without stop
    with OpenAiTestServer(models=["test-model"], responder=respond) as server:
        with backend_for(server.base_url) as backend:
            with pytest.raises(BackendError, match="messages must be"):
                backend.generate(
                    [GenerationRequest(model="test-model", messages=[], stop=("STOP",))]
                )
        assert server.requests["chat"] == 1


def test_a_model_refusing_a_sampling_value_samples_with_its_own_and_says_so():
    def reasoner(i, **options):
        return GenerationRequest(
            model="reasoner",
            messages=[{"role": "user", "content": f"Question {i}"}],
            **options,
        )

    # OpenAI's reasoning models take temperature and top_p at 1 only: the request
    # goes again without the refused field, that model's later requests go without
    # it (one warning per model and field), and another model on the same endpoint
    # keeps its temperature
    with OpenAiTestServer(
        models=["test-model", "reasoner"], default_sampling_models=["reasoner"]
    ) as server:
        with backend_for(server.base_url) as backend:
            with pytest.warns(BackendWarning) as caught:
                backend.generate([reasoner(0, temperature=0.7, top_p=0.9)])
                backend.generate(
                    [
                        reasoner(1, temperature=0.7, top_p=0.9),
                        request(2, temperature=0.7, top_p=0.9),
                    ]
                )
        messages = [str(w.message) for w in caught if w.category is BackendWarning]
        assert len(messages) == 2
        assert "'reasoner'" in messages[0] and "temperature=0.7" in messages[0]
        assert "'reasoner'" in messages[1] and "top_p=0.9" in messages[1]
        assert "Only the default (1) value is supported" in messages[0]
        # refused twice (temperature, then top_p), then answered; then at once
        assert server.requests["chat"] == 5
        reasoner = [b for b in server.chat_log if b["model"] == "reasoner"]
        other = [b for b in server.chat_log if b["model"] == "test-model"]
        assert [("temperature" in b, "top_p" in b) for b in reasoner] == [
            (False, False),
            (False, False),
        ]
        assert [(b["temperature"], b["top_p"]) for b in other] == [(0.7, 0.9)]
    # a value out of range is the request's fault: reported, not dropped
    with OpenAiTestServer(models=["test-model"]) as server:
        with backend_for(server.base_url) as backend:
            with pytest.raises(BackendError, match="temperature"):
                backend.generate([request(0, temperature=7.0)])
        assert server.requests["chat"] == 1


@pytest.mark.parametrize(
    ("refused", "server_options", "options"),
    [
        (
            "temperature",
            {"default_sampling_models": ["test-model"]},
            {"temperature": 0.7},
        ),
        ("stop", {"unsupported_parameters": ["stop"]}, {"stop": ["END"]}),
        ("max_tokens", {"unsupported_parameters": ["max_tokens"]}, {"max_tokens": 9}),
    ],
)
def test_concurrent_requests_refused_the_same_field_all_go_again_without_it(
    refused, server_options, options
):
    # every request is in flight when the first refusal comes back: the first gives
    # the field up, and the others (refused for a field already given up) must ask
    # again too, not fail the rollout
    with OpenAiTestServer(models=["test-model"], latency=0.3, **server_options) as (
        server
    ):
        with backend_for(server.base_url, max_concurrency=4) as backend:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BackendWarning)
                results = backend.generate([request(i, **options) for i in range(4)])
        assert len(results) == 4
        assert server.max_in_flight == 4
        assert server.requests["chat"] == 8
        assert all(refused not in b for b in server.chat_log)


def test_cut_at_stop_ends_before_the_first_stop_string():
    from nip_core.text.backend import GenerationChoice, cut_at_stop

    long = GenerationChoice(text="one two three four", finish_reason="length")
    assert cut_at_stop(long, ("four", "two")) == GenerationChoice(
        text="one ", finish_reason="stop"
    )
    assert cut_at_stop(long, ("five",)) is long
    assert cut_at_stop(long, ()) is long
    filtered = GenerationChoice(text="", finish_reason="content_filter")
    assert cut_at_stop(filtered, ("x",)) is filtered
    assert request(stop="one").stop == ("one",)
    with pytest.raises(ValueError, match="empty"):
        request(stop=("",))


def test_requests_spread_over_several_servers_and_fail_over(register_plugin, tmp_path):
    """Three servers of the same scripted model; one is killed mid-run: the run
    finishes with exactly the rollouts of a run on one healthy server."""
    import threading

    from nip_core.factory import build_scenario_instance
    from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN
    from nip_core.testing.synthetic_text.fixtures import (
        SyntheticTextScenario,
        scripted_server,
    )
    from nip_core.text.sampling import sample_rollouts

    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")

    def sample(scenario, **overrides):
        hyper_params = scenario.hyper_params("debate", dataset="small", **overrides)
        instance = build_scenario_instance(hyper_params, scenario.settings())
        try:
            return sample_rollouts(
                instance.train_environment, instance.agents, list(range(24))
            )
        finally:
            instance.close()

    with scripted_server() as single:
        expected = sample(SyntheticTextScenario(tmp_path, single))

    servers = [scripted_server(latency=0.03).start() for _ in range(3)]
    try:
        scenario = SyntheticTextScenario(tmp_path, servers[0])

        def kill_when_busy():
            # kill it mid-run: once it has answered a few requests
            while servers[1].requests["chat"] < 8:
                time.sleep(0.005)
            servers[1].kill()

        timer = threading.Thread(target=kill_when_busy, daemon=True)
        timer.start()
        got = sample(
            scenario,
            openai_backend={
                "base_url": None,
                "base_urls": [s.base_url for s in servers],
            },
            text_backend={
                "max_concurrency": 6,
                "request_timeout": 3.0,
                "retry_initial_delay": 0.05,
                "max_retries": 10,
            },
        )
        timer.join(timeout=30)
    finally:
        for server in servers:
            server.stop()
    assert servers[1].killed
    assert all(server.requests["chat"] > 0 for server in servers)
    # the others carried on after the kill
    counts = [s.requests["chat"] for s in servers]
    assert counts[0] + counts[2] > 24, counts
    assert got == expected


def test_several_endpoints_are_validated():
    with pytest.raises(ValueError, match="either base_url .* or base_urls"):
        OpenAiBackendParameters(base_url="http://a/v1", base_urls=["http://b/v1"])
    with pytest.raises(ValueError, match=r"base_urls\.1.*http:// or https://"):
        OpenAiBackendParameters(base_urls=["http://a/v1", "ftp://b"])


@pytest.mark.parametrize(
    "value", ["sk-proj-LEAKEDKEY123456", "sk_abc def", "1KEY", "OPENAI API KEY"]
)
def test_a_key_given_for_its_variable_name_is_refused_without_echoing_it(value):
    # the key itself pasted where the variable's name goes would be saved with the
    # run's configuration: refused, naming the setting, the key not shown whole
    with pytest.raises(ValueError) as caught:
        OpenAiBackendParameters(api_key_env=value)
    message = str(caught.value)
    assert "api_key_env" in message and "name of the environment variable" in message
    assert value not in message


@pytest.mark.parametrize("value", ["OPENAI_API_KEY", "my_key_2", "_K"])
def test_variable_names_are_accepted(value):
    assert OpenAiBackendParameters(api_key_env=value).api_key_env == value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("OPENAI_API_KEY", "OPENAI_API_KEY"),
        ("_K", "_K"),
        ("sk-proj-LEAKEDKEY123456", "sk-p... (23 characters)"),
        ("sk-12345", "..."),
    ],
)
def test_an_api_key_env_is_shown_as_a_name_or_masked(value, shown):
    from nip_core.parameters.text import shown_api_key_env

    assert shown_api_key_env(value) == shown


def test_closing_a_backend_loop_lets_cancelled_work_unwind(caplog):
    # Ctrl-C during sampling cancels the episodes' task from another thread; the
    # backend is closed right after: the task's cleanup must run, not be destroyed
    # with the loop ("Task was destroyed but it is pending!")
    import asyncio
    import gc
    import logging

    from nip_core.text.backend import _LoopThread

    cleaned: list[str] = []
    started = threading.Event()

    async def episodes():
        try:
            started.set()
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # cleanup that needs the loop
            cleaned.append("episodes")

    loop_thread = _LoopThread("test")
    future = asyncio.run_coroutine_threadsafe(episodes(), loop_thread.loop)
    assert started.wait(30)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop_thread.close()
        gc.collect()
    assert cleaned == ["episodes"]
    assert future.cancelled()
    assert loop_thread.loop.is_closed()
    assert "Task was destroyed" not in caplog.text


def test_fine_tuned_models_are_asked_of_the_endpoint_that_made_them():
    """With several endpoints, fine-tune jobs run at the first; its models exist
    there only, so their requests go there (the others would answer 404)."""
    with (
        OpenAiTestServer(models=["test-model"]) as first,
        OpenAiTestServer(models=["test-model"]) as second,
    ):
        values = dict(retry_initial_delay=0.01, retry_max_delay=0.02, max_retries=1)
        hyper_params = types.SimpleNamespace(
            text_backend=TextBackendParameters(**values),
            openai_backend=OpenAiBackendParameters(
                base_urls=(first.base_url, second.base_url)
            ),
        )
        with OpenAiBackend(hyper_params, None) as backend:
            # base models are spread over both
            backend.generate([request(i) for i in range(16)])
            assert first.requests["chat"] > 0 and second.requests["chat"] > 0
            job = backend.create_fine_tune_job(sft_request())
            while not (job := backend.get_fine_tune_job(job.id)).finished:
                pass
            tuned = job.fine_tuned_model
            before = second.requests["chat"]
            results = backend.generate(
                [
                    GenerationRequest(
                        model=tuned,
                        messages=[{"role": "user", "content": f"Q {i}"}],
                        seed=i,
                    )
                    for i in range(16)
                ]
            )
            assert len(results) == 16
            assert second.requests["chat"] == before
            # a resumed run tells a new backend of the models its jobs made
            assert backend.is_fine_tuned(tuned)
        with OpenAiBackend(hyper_params, None) as resumed:
            assert not resumed.is_fine_tuned("my-tuned-model")
            resumed.note_fine_tuned_model("my-tuned-model")
            assert resumed.is_fine_tuned("my-tuned-model")


def test_a_token_limit_the_endpoint_finds_too_large_is_not_a_refused_field():
    """OpenAI names the field in ``param`` of every 400 about it: one refusing its
    value (too large) is no reason to send the other field from then on."""
    from nip_core.text.openai_backend import OpenAiBackend

    def error(message, code, param="max_completion_tokens"):
        body = {"error": {"message": message, "code": code, "param": param}}
        return types.SimpleNamespace(body=body, param=param, code=code)

    backend = object.__new__(OpenAiBackend)
    backend.token_limit_parameter = "auto"
    limited = request(max_tokens=100_000)
    too_large = error(
        "max_tokens is too large: 100000. This model supports at most 16384 "
        "completion tokens, whereas you provided 100000.",
        "invalid_value",
    )
    field = "max_completion_tokens"
    assert backend._other_token_field(field, too_large, limited) is None
    refused = error(
        "Unsupported parameter: 'max_completion_tokens' is not supported with this "
        "model. Use 'max_tokens' instead.",
        "unsupported_parameter",
    )
    assert backend._other_token_field(field, refused, limited) == "max_tokens"
    # a server that names no param, only the field in its message
    unknown = error("unknown field `max_completion_tokens`", None, param=None)
    assert backend._other_token_field(field, unknown, limited) == "max_tokens"
