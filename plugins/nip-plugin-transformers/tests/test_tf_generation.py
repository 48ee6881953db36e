"""Batched generation: seeds, batches, padding, sampling options, token limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nip_core.text.backend import GenerationRequest


def _request(model: Path, text: str, **options: Any) -> GenerationRequest:
    options.setdefault("max_tokens", 12)
    return GenerationRequest(
        model=str(model),
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": text},
        ],
        **options,
    )


def _texts(results: list[Any]) -> list[str]:
    return [choice.text for result in results for choice in result.choices]


def test_seeded_sampling_does_not_depend_on_the_batch(
    backend_factory: Any, tiny_model: Path
) -> None:
    backend = backend_factory(generation_batch_size=3)
    requests = [
        _request(tiny_model, "Hello " * (i + 1), seed=i, temperature=1.0)
        for i in range(7)
    ]
    together = _texts(backend.generate(requests))
    reversed_ = _texts(backend.generate(requests[::-1]))[::-1]
    alone = [_texts(backend.generate([r]))[0] for r in requests]
    assert together == reversed_ == alone
    assert len(set(together)) == len(together), "different seeds, same samples"
    other = backend_factory(generation_batch_size=16)
    assert _texts(other.generate(requests)) == together


def test_unseeded_requests_differ(backend_factory: Any, tiny_model: Path) -> None:
    backend = backend_factory()
    request = _request(tiny_model, "Tell a story.", temperature=1.0, max_tokens=24)
    samples = {_texts(backend.generate([request]))[0] for _ in range(3)}
    assert len(samples) > 1


def test_n_choices_are_distinct_and_counted(
    backend_factory: Any, tiny_model: Path
) -> None:
    backend = backend_factory()
    [result] = backend.generate([_request(tiny_model, "Hi.", n=4, seed=3)])
    assert len(result.choices) == 4
    assert len({c.text for c in result.choices}) == 4
    assert result.prompt_tokens > 0
    assert result.completion_tokens == 4 * 12  # a random model never stops early


def test_greedy_and_nucleus_limits(backend_factory: Any, tiny_model: Path) -> None:
    backend = backend_factory()
    greedy = [
        _texts(backend.generate([_request(tiny_model, "Hi.", temperature=0, seed=s)]))
        for s in (1, 2)
    ]
    assert greedy[0] == greedy[1]
    # a nucleus this small keeps only the likeliest token: greedy decoding again
    nucleus = _texts(
        backend.generate([_request(tiny_model, "Hi.", temperature=1.5, top_p=1e-9)])
    )
    assert nucleus == greedy[0]


def test_left_padding_gives_the_same_greedy_text(
    backend_factory: Any, tiny_model: Path
) -> None:
    backend = backend_factory()
    short = _request(tiny_model, "Hi.", temperature=0)
    long = _request(tiny_model, "Say something about rivers. " * 20, temperature=0)
    [alone] = _texts(backend.generate([short]))
    padded = _texts(backend.generate([short, long]))
    assert padded[0] == alone


def test_token_limits_per_request(backend_factory: Any, tiny_model: Path) -> None:
    backend = backend_factory()
    results = backend.generate(
        [
            _request(tiny_model, "Write a long essay.", max_tokens=limit, seed=limit)
            for limit in (1, 5, 9)
        ]
    )
    for limit, result in zip((1, 5, 9), results, strict=True):
        assert result.choice.finish_reason == "length"
        assert result.choice.hit_token_limit
        assert result.completion_tokens == limit


def test_generation_ends_early_before_a_stop_string(
    backend_factory: Any, tiny_model: Path
) -> None:
    backend = backend_factory()
    [full] = backend.generate(
        [_request(tiny_model, "Hi.", temperature=0, max_tokens=24)]
    )
    text = full.choice.text
    assert full.completion_tokens == 24  # a random model never stops early
    # a stop string from the middle of the greedy text
    middle = len(text) // 2
    stop = text[middle : middle + 3]
    assert stop.strip()
    cut = text.find(stop)
    stopped, unstopped = backend.generate(
        [
            _request(tiny_model, "Hi.", temperature=0, max_tokens=24, stop=(stop,)),
            _request(tiny_model, "Hi.", temperature=0, max_tokens=24),
        ]
    )
    assert stopped.choice.text == text[:cut]
    assert stopped.choice.finish_reason == "stop"
    assert stopped.completion_tokens < 24  # it stopped there, not at the limit
    assert unstopped.choice.text == text  # its batch neighbour runs on


def test_requests_for_several_models_in_one_call(
    backend_factory: Any, tiny_model: Path, tmp_path: Path
) -> None:
    from nip_plugin_transformers.testing import tiny_chat_model

    other = tiny_chat_model(tmp_path / "other", seed=1)
    backend = backend_factory(max_loaded_models=1)
    requests = [_request(model, "Hi.", seed=5) for model in (tiny_model, other) * 2]
    texts = _texts(backend.generate(requests))
    assert texts[0] == texts[2] and texts[1] == texts[3]
    assert texts[0] != texts[1]
    assert len(backend._bases) == 1  # the least recently used model was dropped


def test_progress_counts_requests(backend_factory: Any, tiny_model: Path) -> None:
    backend = backend_factory(generation_batch_size=2)
    calls: list[int] = []
    backend.generate(
        [_request(tiny_model, "Hi.", n=2, seed=i) for i in range(3)], calls.append
    )
    assert sum(calls) == 3


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_dtype_setting(backend_factory: Any, tiny_model: Path, dtype: str) -> None:
    import torch

    backend = backend_factory(dtype=dtype)
    backend.generate([_request(tiny_model, "Hi.", seed=0, max_tokens=2)])
    [loaded] = backend._bases.values()
    assert next(loaded.model.parameters()).dtype == getattr(torch, dtype)


def test_auto_dtype_is_float32_on_cpu(backend_factory: Any) -> None:
    import torch

    assert backend_factory().dtype == torch.float32


def test_default_token_limit_and_context(
    backend_factory: Any, tiny_model: Path
) -> None:
    from nip_core.errors import BackendError

    backend = backend_factory(max_new_tokens=3)
    [result] = backend.generate([_request(tiny_model, "Hi.", max_tokens=None, seed=1)])
    assert result.completion_tokens == 3
    assert result.choice.finish_reason == "length"
    too_long = _request(tiny_model, "river " * 2000, seed=1)
    with pytest.raises(BackendError, match="does not fit the 1024-token context"):
        backend.generate([too_long])


def test_old_adapters_are_unloaded(backend_factory: Any, tiny_model: Path, tmp_path):
    """Each group moves on to its newest adapter every fine-tune: the pool keeps at
    most max_loaded_adapters per base, unloading the least recently used (they
    piled up for the rest of the run)."""
    import json

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapters = []
    for i in range(4):
        model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
        peft_model = get_peft_model(
            model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")
        )
        path = tmp_path / f"adapter{i}"
        peft_model.save_pretrained(str(path))
        config = json.loads((path / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = str(tiny_model)
        (path / "adapter_config.json").write_text(json.dumps(config))
        adapters.append(str(path))
    backend = backend_factory(max_loaded_adapters=2)

    def loaded() -> list[str]:
        [base] = backend._bases.values()
        assert set(base.model.peft_config) == set(base.adapters.values())
        return [Path(key).name for key in base.adapters]

    for path in adapters[:3]:
        resolved = backend.resolve(path)
        backend._base(resolved.root).activate(resolved)
    assert loaded() == ["adapter1", "adapter2"]
    # using one makes it the most recent: the other goes next
    resolved = backend.resolve(adapters[1])
    backend._base(resolved.root).activate(resolved)
    resolved = backend.resolve(adapters[3])
    backend._base(resolved.root).activate(resolved)
    assert loaded() == ["adapter1", "adapter3"]
    # an unloaded adapter loads again when asked for
    resolved = backend.resolve(adapters[0])
    model, _ = backend._base(resolved.root).activate(resolved)
    assert loaded() == ["adapter3", "adapter0"]
    assert model.active_adapter == backend._bases[str(tiny_model)].adapters[adapters[0]]


def test_the_repetition_penalty_scales_the_logits_of_seen_tokens() -> None:
    import torch

    from nip_plugin_transformers.generation import Row, _RowSampler

    rows = [
        Row(prompt_ids=(3, 5), temperature=0.0, top_p=1.0, max_new_tokens=4, seed=0,
            repetition_penalty=2.0),
        Row(prompt_ids=(1, 2, 3), temperature=0.0, top_p=1.0, max_new_tokens=4,
            seed=0),
    ]  # fmt: skip
    # left-padded with token 0; one token (4) generated since
    input_ids = torch.tensor([[0, 3, 5, 4], [1, 2, 3, 4]])
    sampler = _RowSampler(rows, prompt_length=3, end_token_id=7, device="cpu")
    scores = torch.tensor(
        [
            [1.0, 1.0, 1.0, 4.0, 3.0, -1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 4.0, 3.0, -1.0, 1.0, 1.0],
        ]
    )
    out = sampler(input_ids, scores.clone())
    # row 0: its prompt (3, 5) and its completion (4) are penalised, not the padding
    assert out[0].tolist() == [1.0, 1.0, 1.0, 2.0, 1.5, -2.0, 1.0, 1.0]
    # row 1 has no penalty
    assert out[1].tolist() == scores[1].tolist()


def test_a_repetition_penalty_changes_greedy_text(
    backend_factory: Any, tiny_model: Path
) -> None:
    backend = backend_factory()
    prompt = "Repeat after me: la la la la la la la la"
    [plain] = _texts(backend.generate([_request(tiny_model, prompt, temperature=0)]))
    [again] = _texts(
        backend.generate(
            [_request(tiny_model, prompt, temperature=0, repetition_penalty=1.0)]
        )
    )
    [penalised] = _texts(
        backend.generate(
            [_request(tiny_model, prompt, temperature=0, repetition_penalty=5.0)]
        )
    )
    assert again == plain
    assert penalised != plain
