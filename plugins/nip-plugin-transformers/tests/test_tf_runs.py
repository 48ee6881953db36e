"""Whole text runs on the transformers backend: a run whose process is killed during
a fine-tune resumes without losing the job, and a run with the default model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tf_helpers import text_run_hyper_params

from nip_core.testing.contracts.trainer import comparable_metrics

RUN_SCRIPT = """
import json, sys
import nip_plugin_transformers.plugin
from nip_core.experiment import run_experiment
from nip_core.parameters import HyperParameters
from nip_core.settings import ExperimentSettings
from nip_core.testing.fixtures import isolated_plugin_manager
from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN

params, settings, run_id = json.loads(sys.argv[1])
with isolated_plugin_manager() as manager:
    manager.register(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    manager.register(nip_plugin_transformers.plugin, name="transformers")
    run_experiment(
        HyperParameters(**params), ExperimentSettings(**settings), run_id=run_id
    )
"""


@pytest.fixture
def text_run_plugins(register_plugin: Any) -> None:
    import nip_plugin_transformers.plugin
    from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN

    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    register_plugin(nip_plugin_transformers.plugin, name="transformers")


def _settings(root: Path) -> dict[str, Any]:
    return {
        "runs_dir": str(root / "runs"),
        "cache_dir": str(root / "cache"),
        "show_progress": False,
    }


def _wait_for_training(jobs_root: Path, process: subprocess.Popen[Any]) -> None:
    """Until a job's worker has saved a checkpoint (the run is mid fine-tune)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before its fine-tune"
        for path in jobs_root.glob("*/checkpoints/checkpoint-*/trainer_state.json"):
            if path.stat().st_size:
                return
        time.sleep(0.02)
    raise AssertionError("no fine-tune started")


@pytest.mark.slow
def test_a_run_killed_during_a_fine_tune_resumes(
    text_run_plugins: Any, tiny_model: Path, tmp_path: Path
) -> None:
    """The run's process, its warm worker process and the training worker are
    killed together (SIGKILL to the process group, as a scheduler does) while a
    job trains: the resumed run starts the job's worker again, which continues from
    its checkpoint, and the run ends as an uninterrupted one. (A run that dies
    alone leaves its worker training; the contract suite's kills cover a resumed
    run taking such a worker's model.)"""
    from nip_core.experiment import resume_run, run_experiment
    from nip_core.parameters import HyperParameters
    from nip_core.runs.run_dir import RunDirectory
    from nip_core.settings import ExperimentSettings

    params = text_run_hyper_params(
        1,
        str(tiny_model),
        transformers_backend={"batch_size": 1, "num_epochs": 8},
    )
    whole = run_experiment(
        HyperParameters(**params),
        ExperimentSettings(**_settings(tmp_path)),
        run_id="whole",
    )
    with open(tmp_path / "killed-run.log", "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUN_SCRIPT,
                json.dumps([params, _settings(tmp_path), "killed"]),
            ],
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    jobs_root = tmp_path / "runs" / "killed" / "transformers_jobs"
    try:
        _wait_for_training(jobs_root, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    [record_path] = jobs_root.glob("*/job.json")
    resumed = resume_run("killed", runs_dir=tmp_path / "runs")
    record = json.loads(record_path.read_text())
    assert record["status"] == "succeeded"
    assert record["attempts"] == 2
    assert "continuing from checkpoint-" in record["events"][-2]
    assert comparable_metrics(
        RunDirectory(resumed.run_dir).read_metrics()
    ) == comparable_metrics(RunDirectory(whole.run_dir).read_metrics())


# --------------------------------------------------------------------------------------
# The default model


@pytest.fixture(scope="session")
def default_model_cache(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Path:
    """A cache directory holding the default model, converted: kept in pytest's
    cache between sessions (the conversion takes tens of seconds), else fresh."""
    from nip_plugin_transformers.models import DEFAULT_MODEL, resolve_model
    from nip_plugin_transformers.parameters import TransformersBackendParameters

    cache = getattr(request.config, "cache", None)
    root = (
        Path(cache.mkdir("nip-transformers"))
        if cache is not None
        else tmp_path_factory.mktemp("nip-cache")
    )
    resolve_model(DEFAULT_MODEL, TransformersBackendParameters(), root / "transformers")
    return root


@pytest.mark.slow
def test_the_default_model_is_converted_once(default_model_cache: Path) -> None:
    from nip_plugin_transformers.__main__ import main
    from nip_plugin_transformers.models import (
        DEFAULT_MODEL,
        default_model_gguf,
        file_digest,
        resolve_model,
    )
    from nip_plugin_transformers.parameters import TransformersBackendParameters

    resolved = resolve_model(
        DEFAULT_MODEL,
        TransformersBackendParameters(),
        default_model_cache / "transformers",
    )
    config = json.loads((resolved.path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    assert (resolved.path / "model.safetensors").is_file()
    info = json.loads((resolved.path / "nip_model.json").read_text())
    # keyed by the file's content: another install of the same file reuses it
    assert info["sha256_prefix"] == file_digest(default_model_gguf())
    # the command prints where it is, converting nothing again
    before = (resolved.path / "model.safetensors").stat().st_mtime_ns
    assert main(["prepare", "--cache-dir", str(default_model_cache)]) == 0
    assert (resolved.path / "model.safetensors").stat().st_mtime_ns == before


def test_the_convert_command_refuses_bad_arguments(tmp_path: Path, capsys: Any) -> None:
    from nip_plugin_transformers.__main__ import main

    (tmp_path / "weights.bin").write_bytes(b"")
    assert main(["convert", str(tmp_path / "weights.bin"), str(tmp_path / "out")]) == 1
    assert "is not a .gguf file" in capsys.readouterr().err
    missing = tmp_path / "missing.gguf"
    assert main(["convert", str(missing), str(tmp_path / "out")]) == 1
    assert f"{missing}: no such file" in capsys.readouterr().err
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    assert main(["convert", str(tmp_path / "model.gguf"), str(tmp_path)]) == 1
    assert "name a new directory" in capsys.readouterr().err


@pytest.mark.slow
def test_a_text_run_with_the_default_model(
    text_run_plugins: Any, default_model_cache: Path, tmp_path: Path
) -> None:
    """The default configuration but ``text_backend.name: transformers``: the
    default model plays the prover, is LoRA fine-tuned (it is above
    ``lora_min_parameters``), and the fine-tuned model is tested."""
    from nip_core.experiment import run_experiment
    from nip_core.parameters import HyperParameters
    from nip_core.settings import ExperimentSettings
    from nip_plugin_transformers.models import DEFAULT_MODEL

    params = text_run_hyper_params(
        1,
        DEFAULT_MODEL,
        agents={"_default": {"max_tokens_per_message": 16}},
        text_rl={"rollouts_per_iteration": 2, "num_test_rollouts": 2},
        transformers_backend={"checkpoint_steps": None, "learning_rate": None},
    )
    params["text_rl"]["test_scheme"] = "last"
    settings = ExperimentSettings(
        runs_dir=str(tmp_path / "runs"),
        cache_dir=str(default_model_cache),
        show_progress=False,
    )
    result = run_experiment(HyperParameters(**params), settings, run_id="default")
    prover = result.trainer.shared_model_groups["prover"]
    # the random verifier's verdicts depend on the seed only: it accepts one of
    # the two episodes, which the prover learns from
    assert prover.state.num_fine_tunes == 1
    model = Path(prover.model_name)
    assert model.is_relative_to(tmp_path / "runs" / "default")
    adapter = json.loads((model / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == DEFAULT_MODEL
    test_records = [r for r in result.metrics if "test_mean_accuracy" in r]
    assert len(test_records) == 1
