"""Bad input gets one clear message saying what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tf_helpers import chat

from nip_core.errors import BackendError, NipConfigError
from nip_core.text.backend import FineTuneRequest, GenerationRequest


def _generate(backend: Any, model: str) -> Any:
    return backend.generate(
        [
            GenerationRequest(
                model=model, messages=[{"role": "user", "content": "Hi."}], max_tokens=2
            )
        ]
    )


def test_a_model_path_that_does_not_exist(backend_factory: Any, tmp_path: Path) -> None:
    backend = backend_factory()
    missing = tmp_path / "no" / "such-model"
    for call in (backend.check_model, lambda m: _generate(backend, m)):
        with pytest.raises(BackendError) as error:
            call(str(missing))
        message = str(error.value)
        assert "no such file or directory" in message
        assert str(missing) in message
        assert "SmolLM2-135M-Instruct" in message  # what to name instead


def test_a_directory_without_a_model(backend_factory: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "weights.gguf").write_bytes(b"")
    with pytest.raises(BackendError, match="holds no model.*weights.gguf"):
        backend_factory().check_model(str(tmp_path / "empty"))


def test_a_directory_with_only_a_config(backend_factory: Any, tmp_path: Path) -> None:
    # it said to install sentencepiece or tiktoken: the files are what is missing
    model = tmp_path / "half"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(BackendError) as error:
        backend_factory().check_model(str(model))
    message = str(error.value)
    assert "has a config.json but no weights (*.safetensors or *.bin)" in message
    assert "and no tokenizer" in message
    assert "sentencepiece" not in message
    # weights but no tokenizer: only the tokenizer is named
    (model / "model.safetensors").write_bytes(b"")
    with pytest.raises(BackendError, match="config.json but no tokenizer"):
        backend_factory().check_model(str(model))


@pytest.mark.parametrize(
    ("model", "hinted"),
    [
        ("SmolLM2-135M-Instruc", True),
        ("smollm2-135m-instruct", True),
        ("gpt-4o-mini", False),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", False),
    ],
)
def test_a_misspelt_default_model_is_named(
    backend_factory: Any, model: str, hinted: bool
) -> None:
    """The default model's name misspelt (or lower-cased) read as a hub id that is
    not in the cache, with nothing to say which name was meant."""
    with pytest.raises(BackendError) as error:
        backend_factory().check_model(model)
    message = str(error.value)
    hint = (
        f"model {model!r} is not a local path nor in the local Hugging Face cache "
        "(did you mean the default model 'SmolLM2-135M-Instruct'?), and nothing"
    )
    assert (hint in message) is hinted
    assert message.startswith(f"model {model!r} is not a local path")


def test_a_model_that_is_not_a_causal_lm(
    backend_factory: Any, tiny_model: Path, tmp_path: Path
) -> None:
    """An encoder-decoder passed check_model and failed at the first generation
    with transformers' list of every causal LM configuration class."""
    import shutil

    from transformers import T5Config, T5ForConditionalGeneration

    model = tmp_path / "t5"
    config = T5Config(
        vocab_size=64, d_model=8, d_kv=4, d_ff=8, num_layers=1, num_heads=2
    )
    T5ForConditionalGeneration(config).save_pretrained(model)
    for path in tiny_model.iterdir():
        if path.name.startswith(("tokenizer", "chat_template", "special")):
            shutil.copy(path, model / path.name)
    with pytest.raises(BackendError) as error:
        backend_factory().check_model(str(model))
    assert str(error.value) == (
        f"model {str(model)!r} is a 't5' model, which transformers cannot load as a "
        "causal language model (AutoModelForCausalLM): the transformers backend "
        "generates with decoder-only chat models (Llama, Qwen2, SmolLM2, Mistral, "
        "...)"
    )
    # the tiny Llama passes
    backend_factory().check_model(str(tiny_model))


def test_a_hub_id_that_is_not_in_the_cache(
    backend_factory: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BackendError) as error:
        backend_factory().check_model("someone/not-a-cached-model")
    message = str(error.value)
    assert "not a local path nor in the local Hugging Face cache" in message
    # how to get it, said once
    assert message.count("allow_downloads") == 1
    assert "`hf download someone/not-a-cached-model`" in message


def test_a_model_without_a_chat_template(
    backend_factory: Any, no_template_model: Path
) -> None:
    backend = backend_factory()
    for call in (backend.check_model, lambda m: _generate(backend, m)):
        with pytest.raises(BackendError) as error:
            call(str(no_template_model))
        message = str(error.value)
        assert "has no chat template" in message
        assert "transformers_backend.chat_template" in message


def test_a_chat_template_given_in_the_parameters(
    backend_factory: Any, no_template_model: Path, tmp_path: Path
) -> None:
    from nip_plugin_transformers.testing import CHATML_TEMPLATE

    template_file = tmp_path / "chatml.jinja"
    template_file.write_text(CHATML_TEMPLATE)
    prompts = []
    for template in (CHATML_TEMPLATE, str(template_file)):
        backend = backend_factory(chat_template=template)
        backend.check_model(str(no_template_model))
        [result] = _generate(backend, str(no_template_model))
        # (a random tiny model may sample its end token first: up to 2 tokens)
        assert 0 <= result.completion_tokens <= 2
        prompts.append(result.prompt_tokens)
    # the text and the file are the same template: the same prompt
    assert prompts[0] == prompts[1] > 0


def test_a_gguf_file_given_for_fine_tuning(
    backend_factory: Any, tmp_path: Path
) -> None:
    """Refused before any work (``check_fine_tune_model`` runs before the first
    rollouts), with the two ways out."""
    gguf = tmp_path / "model.Q4_0.gguf"
    gguf.write_bytes(b"GGUF")
    backend = backend_factory()
    request = FineTuneRequest(
        name="gguf",
        base_model=str(gguf),
        method="supervised",
        examples=[chat("a", "b")],
    )
    for call in (
        lambda: backend.check_fine_tune_model(str(gguf)),
        lambda: backend.create_fine_tune_job(request),
    ):
        with pytest.raises(BackendError) as error:
            call()
        message = str(error.value)
        assert "is a GGUF file, which cannot be fine-tuned" in message
        assert "transformers_backend.convert_gguf: true" in message
        assert "python -m nip_plugin_transformers convert" in message
    assert not backend.jobs.root.exists() or not any(backend.jobs.root.iterdir())


def test_supervised_examples_need_an_assistant_message(
    backend_factory: Any, tiny_model: Path
) -> None:
    request = FineTuneRequest(
        name="no-assistant",
        base_model=str(tiny_model),
        method="supervised",
        examples=[[{"role": "user", "content": "Hi."}]],
    )
    with pytest.raises(BackendError, match="example 0 has no assistant message"):
        backend_factory().create_fine_tune_job(request)


def test_a_device_the_machine_lacks_is_refused_when_the_backend_is_built(
    tmp_path: Path,
) -> None:
    """Outside a run (which checks its device first), a backend for a device the
    machine lacks failed at the first model load with torch's own words."""
    import torch
    from tf_helpers import make_backend

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a CUDA GPU with index 7")
    with pytest.raises(NipConfigError) as error:
        make_backend(tmp_path, device="cuda:7")
    [problem] = error.value.problems
    assert problem.path == "run.device"
    assert problem.value == "cuda:7"
    assert "cpu" in problem.choices


def test_parameters_are_validated() -> None:
    from nip_plugin_transformers.parameters import TransformersBackendParameters

    with pytest.raises(NipConfigError) as error:
        TransformersBackendParameters(lora="maybe", lora_rank=0, lora_dropout=1.5)
    message = str(error.value)
    for name in ("lora", "lora_rank", "lora_dropout"):
        assert name in message


def test_the_section_in_hyper_parameters(register_plugin: Any) -> None:
    import nip_plugin_transformers.plugin
    from nip_core.parameters import HyperParameters
    from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN

    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    register_plugin(nip_plugin_transformers.plugin, name="transformers")
    base = {
        "scenario": "synthetic_text",
        "trainer": "synthetic_text_sft",
        "interaction_protocol": "nip",
        "text_backend": {"name": "transformers"},
    }
    params = HyperParameters(**base, transformers_backend={"lora": "on"})
    assert params.transformers_backend.lora == "on"
    assert HyperParameters.from_dict(params.to_dict()) == params
    with pytest.raises(NipConfigError, match=r"transformers_backend\.lora_rank"):
        HyperParameters(**base, transformers_backend={"lora_rank": 0})


def test_a_run_with_a_missing_model_stops_before_sampling(
    register_plugin: Any, tmp_path: Path
) -> None:
    import nip_plugin_transformers.plugin
    from nip_core.experiment import run_experiment
    from nip_core.parameters import HyperParameters
    from nip_core.settings import ExperimentSettings
    from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN

    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    register_plugin(nip_plugin_transformers.plugin, name="transformers")
    missing = str(tmp_path / "missing-model")
    params = HyperParameters(
        scenario="synthetic_text",
        trainer="synthetic_text_sft",
        interaction_protocol="nip",
        text_backend={"name": "transformers"},
        agents={"_default": {"model_name": missing}},
    )
    settings = ExperimentSettings(
        runs_dir=str(tmp_path / "runs"),
        cache_dir=str(tmp_path / "cache"),
        show_progress=False,
    )
    with pytest.raises(BackendError, match="no such file or directory"):
        run_experiment(params, settings, run_id="missing")
    assert not list((tmp_path / "runs" / "missing" / "rollouts").glob("*.jsonl"))


def test_a_chat_template_path_that_does_not_exist(tmp_path: Path) -> None:
    """A path typo was used as the template text itself: every prompt became the
    path. It is a config error at transformers_backend.chat_template."""
    from nip_core.errors import NipConfigError
    from nip_plugin_transformers.models import _read_template
    from nip_plugin_transformers.parameters import TransformersBackendParameters

    missing = str(tmp_path / "chatml.jinj")
    with pytest.raises(NipConfigError) as error:
        TransformersBackendParameters(chat_template=missing)
    [problem] = error.value.problems
    assert problem.path == "chat_template"
    assert problem.value == missing
    assert problem.message.startswith("no such file (a value without Jinja braces")
    # the backend's own reading refuses it too
    with pytest.raises(BackendError, match="no such file"):
        _read_template(missing)
    # an existing file and a template itself are fine
    present = tmp_path / "chatml.jinja"
    present.write_text("{{ messages }}")
    assert _read_template(str(present)) == "{{ messages }}"
    assert _read_template("{% for m in messages %}{% endfor %}").startswith("{%")
    TransformersBackendParameters(chat_template=str(present))


def test_lr_scheduler_is_checked_when_the_config_is(tmp_path: Path) -> None:
    from transformers.trainer_utils import SchedulerType

    from nip_core.errors import NipConfigError
    from nip_plugin_transformers.parameters import (
        LrScheduler,
        TransformersBackendParameters,
    )

    with pytest.raises(NipConfigError) as error:
        TransformersBackendParameters(lr_scheduler="cosine_annealing")
    [problem] = error.value.problems
    assert problem.path == "lr_scheduler"
    assert "constant_with_warmup" in problem.choices
    # every choice is one of transformers' own schedules
    import typing

    assert set(typing.get_args(LrScheduler)) <= {s.value for s in SchedulerType}


def test_attn_implementation_is_checked_when_the_config_is() -> None:
    """A misspelt attention implementation was found only when the first model
    loaded, after the run had started, in a message naming the model but not the
    setting."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from nip_plugin_transformers.parameters import (
        ATTN_IMPLEMENTATIONS,
        TransformersBackendParameters,
    )

    with pytest.raises(NipConfigError) as error:
        TransformersBackendParameters(attn_implementation="flash_attn_2")
    [problem] = error.value.problems
    assert problem.path == "attn_implementation"
    assert problem.value == "flash_attn_2"
    assert problem.choices == (
        "eager",
        "sdpa",
        "flash_attention_2",
        "flash_attention_3",
        "flash_attention_4",
        "flex_attention",
        "paged|eager",
    )
    # every choice is one transformers takes; kernel repository ids pass too
    assert set(ATTN_IMPLEMENTATIONS) <= {"eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()}
    for value in (None, "sdpa", "kernels-community/flash-attn3"):
        TransformersBackendParameters(attn_implementation=value)


def test_lora_target_modules_the_model_lacks_are_refused_before_any_rollout(
    backend_factory: Any, tiny_model: Path
) -> None:
    backend = backend_factory(lora="on", lora_target_modules=["q_proj", "qkv_proj"])
    with pytest.raises(BackendError) as error:
        backend.check_fine_tune_model(str(tiny_model))
    message = str(error.value)
    assert message.startswith(
        "transformers_backend.lora_target_modules: qkv_proj is not a module of model"
    )
    assert "q_proj" in message.split("linear layers are ", 1)[1]
    # names it has, or every linear layer, pass
    backend_factory(lora="on", lora_target_modules=["q_proj"]).check_fine_tune_model(
        str(tiny_model)
    )
    backend_factory(lora="on").check_fine_tune_model(str(tiny_model))
    # without LoRA the setting is not used
    backend_factory(lora="off", lora_target_modules=["nope"]).check_fine_tune_model(
        str(tiny_model)
    )


def test_an_adapter_whose_base_moved_names_the_adapter(
    backend_factory: Any, tmp_path: Path
) -> None:
    import json

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    gone = tmp_path / "gone"
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(gone), "peft_type": "LORA"})
    )
    with pytest.raises(BackendError) as error:
        backend_factory().check_model(str(adapter))
    message = str(error.value)
    assert message.startswith(
        f"model {str(adapter)!r} is a LoRA adapter of {str(gone)!r}, which cannot be "
        "used: "
    )
    assert str(adapter / "adapter_config.json") in message
