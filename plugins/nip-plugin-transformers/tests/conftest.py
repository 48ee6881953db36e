"""Fixtures of the transformers plugin's tests: tiny local models and backends."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

# Nothing in these tests may reach the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random chat model (ChatML template), built once per test process."""
    from nip_plugin_transformers.testing import tiny_chat_model

    return tiny_chat_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def no_template_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose tokenizer has no chat template."""
    from nip_plugin_transformers.testing import tiny_chat_model

    return tiny_chat_model(
        tmp_path_factory.mktemp("models") / "no-template", chat_template=None
    )


def make_backend(
    root: Path, *, run_id: str | None = "run", device: str = "cpu", **params: Any
) -> Any:
    """A transformers backend writing under ``root`` (jobs under
    ``root/runs/<run_id>``)."""
    from nip_core.settings import ExperimentSettings
    from nip_plugin_transformers.backend import TransformersBackend
    from nip_plugin_transformers.parameters import TransformersBackendParameters

    options: dict[str, Any] = {"batch_size": 2, "checkpoint_steps": None}
    options.update(params)
    hyper_params = SimpleNamespace(
        transformers_backend=TransformersBackendParameters(**options)
    )
    settings = ExperimentSettings(
        device=device,
        run_id=run_id,
        runs_dir=str(root / "runs"),
        cache_dir=str(root / "cache"),
        show_progress=False,
    )
    return TransformersBackend(hyper_params, settings, "transformers")


@pytest.fixture
def backend_factory(tmp_path: Path) -> Iterator[Any]:
    """``backend_factory(**params)``: backends closed after the test."""
    made: list[Any] = []

    def factory(**params: Any) -> Any:
        backend = make_backend(tmp_path, **params)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.close()


def wait_for(backend: Any, job_id: str, timeout: float = 120.0) -> Any:
    """Poll a job until it finishes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = backend.get_fine_tune_job(job_id)
        if job.finished:
            return job
        time.sleep(0.05)
    raise AssertionError(f"fine-tune job {job_id} did not finish in {timeout} s")


def chat(question: str, answer: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]


def answer_log_prob(model_dir: str | Path, base: str | Path, prompt, answer) -> float:
    """log p(answer | prompt) under a model written by the backend (an adapter on
    ``base``, or a full model), the answer's tokens and its end token."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if (model_dir / "adapter_config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
        model = PeftModel.from_pretrained(model, str(model_dir))
    else:
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=torch.float32
        )
    model.eval()
    before = tokenizer.apply_chat_template(
        prompt, tokenize=False, add_generation_prompt=True
    )
    whole = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": answer}], tokenize=False
    )
    prefix = tokenizer(before, add_special_tokens=False)["input_ids"]
    ids = tokenizer(whole, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    log_probs = logits.log_softmax(-1)
    return float(
        sum(log_probs[i - 1, ids[i]] for i in range(len(prefix), len(ids) - 1))
    )
