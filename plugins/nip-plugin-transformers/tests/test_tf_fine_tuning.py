"""Fine-tuning: SFT makes its targets likelier, DPO widens the preference margin,
with and without LoRA; fine-tuned models generate through the backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tf_helpers import answer_log_prob, chat, wait_for

from nip_core.text.backend import (
    FineTuneRequest,
    GenerationRequest,
    PreferenceExample,
)

PROMPT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is 3 plus 3?"},
]
TARGET = "It is 6."


def _sft(backend: Any, base: str, name: str, copies: int = 8) -> Any:
    job = backend.create_fine_tune_job(
        FineTuneRequest(
            name=name,
            base_model=base,
            method="supervised",
            examples=[chat(PROMPT[1]["content"], TARGET)] * copies,
            seed=1,
        )
    )
    job = wait_for(backend, job.id)
    assert job.status == "succeeded", job.error
    return job


@pytest.mark.parametrize(
    "lora",
    [
        pytest.param({"lora": "off"}, id="full"),
        pytest.param({"lora": "on"}, id="lora-adapter"),
        pytest.param({"lora": "on", "lora_merge": True}, id="lora-merged"),
    ],
)
def test_sft_makes_the_target_likelier(
    backend_factory: Any, tiny_model: Path, lora: dict[str, Any]
) -> None:
    backend = backend_factory(learning_rate=1e-2, num_epochs=2, **lora)
    job = _sft(backend, str(tiny_model), "sft")
    model_dir = Path(job.fine_tuned_model)
    adapter = (model_dir / "adapter_config.json").is_file()
    assert adapter == (lora.get("lora") == "on" and not lora.get("lora_merge"))
    before = answer_log_prob(tiny_model, tiny_model, PROMPT, TARGET)
    after = answer_log_prob(model_dir, tiny_model, PROMPT, TARGET)
    assert after > before + 5.0, (before, after)
    info = json.loads((model_dir / "nip_model.json").read_text())
    assert info["lora"] == (lora.get("lora") == "on")
    assert info["num_examples"] == 8
    # the new model generates through the backend, and is likelier to answer so
    [result] = backend.generate(
        [
            GenerationRequest(
                model=job.fine_tuned_model,
                messages=PROMPT,
                temperature=0,
                max_tokens=8,
            )
        ]
    )
    assert isinstance(result.choice.text, str)


def test_sft_learns_to_answer_and_stop(backend_factory: Any, tiny_model: Path) -> None:
    """Trained on the assistant's message and its end-of-turn token: greedy
    decoding then writes exactly the answer and stops."""
    backend = backend_factory(learning_rate=3e-2, num_epochs=12, lora="off")
    job = _sft(backend, str(tiny_model), "sft-stop", copies=4)
    [result] = backend.generate(
        [
            GenerationRequest(
                model=job.fine_tuned_model,
                messages=PROMPT,
                temperature=0,
                max_tokens=20,
            )
        ]
    )
    assert result.choice.text == TARGET
    assert result.choice.finish_reason == "stop"


@pytest.mark.parametrize("lora", ["off", "on"])
def test_dpo_widens_the_margin(
    backend_factory: Any, tiny_model: Path, lora: str
) -> None:
    backend = backend_factory(learning_rate=1e-2, num_epochs=3, lora=lora)
    pairs = [
        PreferenceExample(prompt=PROMPT, chosen="It is 6.", rejected="It is 7.")
    ] * 4
    job = backend.create_fine_tune_job(
        FineTuneRequest(
            name="dpo", base_model=str(tiny_model), method="dpo", examples=pairs
        )
    )
    job = wait_for(backend, job.id)
    assert job.status == "succeeded", job.error

    def margin(model: Path) -> float:
        return answer_log_prob(model, tiny_model, PROMPT, "It is 6.") - (
            answer_log_prob(model, tiny_model, PROMPT, "It is 7.")
        )

    assert margin(Path(job.fine_tuned_model)) > margin(tiny_model) + 0.5


def test_adapters_continue_from_an_adapter(
    backend_factory: Any, tiny_model: Path
) -> None:
    """Fine-tuning a fine-tuned adapter trains that adapter further: the new one
    adapts the same base, so both share its weights in memory."""
    backend = backend_factory(learning_rate=1e-2, lora="on")
    first = _sft(backend, str(tiny_model), "first")
    second = _sft(backend, first.fine_tuned_model, "second")
    config = json.loads(
        (Path(second.fine_tuned_model) / "adapter_config.json").read_text()
    )
    assert Path(config["base_model_name_or_path"]) == tiny_model
    before = answer_log_prob(first.fine_tuned_model, tiny_model, PROMPT, TARGET)
    after = answer_log_prob(second.fine_tuned_model, tiny_model, PROMPT, TARGET)
    assert after > before
    requests = [
        GenerationRequest(model=m, messages=PROMPT, seed=0, max_tokens=4)
        for m in (str(tiny_model), first.fine_tuned_model, second.fine_tuned_model)
    ]
    texts = [r.choice.text for r in backend.generate(requests)]
    assert len(backend._bases) == 1  # one base, two adapters on it
    # the base is still the base when adapters are loaded on it
    fresh = backend_factory()
    assert fresh.generate(requests[:1])[0].choice.text == texts[0]


def test_dpo_from_an_adapter(backend_factory: Any, tiny_model: Path) -> None:
    backend = backend_factory(learning_rate=1e-2, lora="on")
    first = _sft(backend, str(tiny_model), "first")
    pairs = [PreferenceExample(prompt=PROMPT, chosen="It is 6.", rejected="No.")] * 2
    job = backend.create_fine_tune_job(
        FineTuneRequest(
            name="dpo", base_model=first.fine_tuned_model, method="dpo", examples=pairs
        )
    )
    assert wait_for(backend, job.id).status == "succeeded"


def test_same_seed_same_model(backend_factory: Any, tiny_model: Path) -> None:
    from safetensors.torch import load_file

    backend = backend_factory(learning_rate=1e-2, lora="on")
    first = _sft(backend, str(tiny_model), "a")
    second = _sft(backend, str(tiny_model), "b")
    left, right = (
        load_file(str(Path(j.fine_tuned_model) / "adapter_model.safetensors"))
        for j in (first, second)
    )
    assert left.keys() == right.keys()
    assert all((left[k] == right[k]).all() for k in left)


def test_fit_rows_cuts_and_leaves_out_exactly() -> None:
    from nip_plugin_transformers.training import fit_rows

    rows = [
        {"input_ids": [1, 2, 3], "assistant_masks": [0, 1, 1]},  # fits
        {"input_ids": [1, 2, 3, 4, 5], "assistant_masks": [0, 1, 1, 1, 1]},  # cut
        {"input_ids": [1, 2, 3, 4, 5], "assistant_masks": [0, 0, 0, 0, 1]},  # lost
    ]
    kept, cut, dropped = fit_rows(rows, 4)
    assert kept == rows[:2] and (cut, dropped) == (2, 1)
    assert fit_rows(rows, 5) == (rows, 0, 0)
    with pytest.raises(ValueError) as error:
        fit_rows(rows[2:], 4)
    assert str(error.value) == (
        "all 1 examples have their assistant messages beyond "
        "transformers_backend.max_seq_length=4 tokens (the longest example is 5 "
        "tokens): raise it in a new run (a resumed run keeps its settings, and this "
        "job would fail again)"
    )


def test_examples_too_long_are_counted_and_all_too_long_fail_clearly(
    backend_factory: Any, tiny_model: Path
) -> None:
    """Examples whose assistant turns lie beyond max_seq_length were silently
    dropped (TRL cuts at the end); with all of them, a torch sampler error."""
    backend = backend_factory(max_seq_length=64)
    long_question = "Please think about this: " + "very " * 40 + "long question?"
    examples = [chat("Hi?", "Hello."), chat(long_question, TARGET)]
    job = wait_for(
        backend,
        backend.create_fine_tune_job(
            FineTuneRequest(
                name="cut",
                base_model=str(tiny_model),
                method="supervised",
                examples=examples,
                seed=1,
            )
        ).id,
    )
    assert job.status == "succeeded", job.error
    info = json.loads((Path(job.fine_tuned_model) / "nip_model.json").read_text())
    assert (info["num_examples"], info["num_examples_cut"]) == (2, 1)
    assert info["num_examples_left_out"] == 1
    # the job reports them, for the trainer to log beside its own count
    assert job.metrics == {
        "num_examples_cut": 1.0,
        "num_examples_left_out": 1.0,
        "steps": float(info["steps"]),
    }
    assert job.metrics["steps"] >= 1
    job = wait_for(
        backend,
        backend.create_fine_tune_job(
            FineTuneRequest(
                name="all",
                base_model=str(tiny_model),
                method="supervised",
                examples=[chat(long_question, TARGET)],
                seed=1,
            )
        ).id,
    )
    assert job.status == "failed"
    assert "transformers_backend.max_seq_length=64 tokens" in job.error
