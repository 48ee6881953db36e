"""``python -m nip_core.testing.openai_server``: serving your own responder for
manual ``nip run`` of your scenario."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

RESPONDER = """\
def reply(model, messages, request, rng):
    return f"{model.id} read: {messages[-1]['content']}"
"""


def _serve(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = dict(
        os.environ,
        PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "nip_core.testing.openai_server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_serves_a_responder_named_by_module_and_function(tmp_path: Path) -> None:
    (tmp_path / "my_responder.py").write_text(RESPONDER)
    server = _serve(tmp_path, "--responder", "my_responder:reply", "--model", "mine")
    try:
        base_url = server.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), server.stderr.read()
        body = {"model": "mine", "messages": [{"role": "user", "content": "2+2=4?"}]}
        response = httpx.post(f"{base_url}/chat/completions", json=body, timeout=30)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == (
            "mine read: 2+2=4?"
        )
        # only the models given are known
        body["model"] = "scripted"
        response = httpx.post(f"{base_url}/chat/completions", json=body, timeout=30)
        assert response.status_code == 404
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nowhere_module:reply", "cannot import 'nowhere_module'"),
        ("my_responder:missing", "'my_responder' has no function 'missing'"),
        ("just_words", "'just_words' is neither echo, scripted nor MODULE:FUNCTION"),
    ],
)
def test_a_bad_responder_is_a_usage_error(
    tmp_path: Path, spec: str, message: str
) -> None:
    (tmp_path / "my_responder.py").write_text(RESPONDER)
    server = _serve(tmp_path, "--responder", spec)
    _, err = server.communicate(timeout=60)
    assert server.returncode == 2
    assert message in err
    assert "Traceback" not in err


def test_a_bad_fine_tune_effect_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "my_responder.py").write_text(RESPONDER)
    server = _serve(
        tmp_path,
        "--responder",
        "my_responder:reply",
        "--fine-tune-effect",
        "my_responder:effect",
    )
    _, err = server.communicate(timeout=60)
    assert server.returncode == 2
    assert "--fine-tune-effect: 'my_responder' has no function 'effect'" in err
    assert "Traceback" not in err
