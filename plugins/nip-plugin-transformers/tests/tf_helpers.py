"""Helpers of the transformers plugin's tests: backends, jobs, chats, log-probs,
small text runs."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def make_backend(
    root: Path,
    *,
    run_id: str | None = "run",
    device: str = "cpu",
    test_run: bool = False,
    **params: Any,
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
        test_run=test_run,
    )
    return TransformersBackend(hyper_params, settings, "transformers")


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


class JobCounter:
    """Stands in for the contract's API test server: counts the fine-tune jobs the
    backend creates while it is entered (the contract's ``jobs_created``)."""

    def __init__(self, **options: Any):
        self.options = options
        self.jobs_created = 0
        self.faults: dict[str, int] = {}
        self._original: Any = None

    def start(self) -> JobCounter:
        from nip_plugin_transformers.jobs import JobManager

        original = self._original = JobManager.create
        counter = self

        def create(manager: Any, **kwargs: Any) -> Any:
            counter.jobs_created += 1
            return original(manager, **kwargs)

        JobManager.create = create  # type: ignore[method-assign]
        return self

    def stop(self) -> None:
        from nip_plugin_transformers.jobs import JobManager

        if self._original is not None:
            JobManager.create = self._original  # type: ignore[method-assign]
            self._original = None

    def __enter__(self) -> JobCounter:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def text_run_hyper_params(
    num_iterations: int, model: str, **overrides: Any
) -> dict[str, Any]:
    """A small synthetic text run on the transformers backend: the prover is the
    model, the verifier plays at random (so the prover has episodes to learn from,
    whatever a random model writes)."""
    from nip_core.testing.synthetic.fixtures import _merge

    params: dict[str, Any] = {
        "scenario": "synthetic_text",
        "trainer": "synthetic_text_sft",
        "dataset": "tiny",
        "interaction_protocol": "nip",
        "agents": {
            "_default": {
                "model_name": model,
                "max_tokens_per_message": 8,
                "num_invalid_generation_retries": 1,
            },
            "verifier": {"is_random": True},
        },
        "text_rl": {
            "num_iterations": num_iterations,
            "rollouts_per_iteration": 4,
            "num_test_rollouts": 4,
            "min_fine_tune_examples": 1,
            "test_scheme": "all",
        },
        "text_backend": {"name": "transformers", "fine_tune_poll_interval": 0.05},
        "transformers_backend": {
            "batch_size": 2,
            "checkpoint_steps": 1,
            "learning_rate": 1e-2,
        },
        # the prover speaks first, so every episode has a prover turn to learn from
        "protocol_common": {"verifier_first": False},
        "nip_protocol": {"max_message_rounds": 2, "min_message_rounds": 1},
    }
    return _merge(params, overrides)
