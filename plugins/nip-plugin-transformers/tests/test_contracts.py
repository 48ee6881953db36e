"""The core's contract suites, run on the transformers backend: the backend suite,
and the staged text trainer suite (kills at every stage and inside stages, resumed
runs equal to uninterrupted ones, no duplicate fine-tune job) with a tiny model."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import make_backend

from nip_core.testing.contracts.text import BackendContract, TextTrainerContract
from nip_core.testing.contracts.trainer import comparable_metrics


class TestTransformersBackendContract(BackendContract):
    """Generation and the fine-tuning lifecycle with a tiny model, fully fine-tuned
    (it is under ``lora_min_parameters``)."""

    @pytest.fixture(autouse=True)
    def _paths(self, tmp_path: Path, tiny_model: Path) -> None:
        self.root = tmp_path
        self.model = str(tiny_model)

    def make_backend(self) -> Any:
        return make_backend(self.root, checkpoint_steps=1)


class TestTransformersBackendLoraContract(TestTransformersBackendContract):
    """The same with LoRA adapters."""

    def make_backend(self) -> Any:
        return make_backend(self.root, lora="on")


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


class TestTransformersTextTrainerContract(TextTrainerContract):
    trainer_name = "synthetic_text_sft"

    @pytest.fixture(autouse=True)
    def _model(self, tiny_model: Path, register_plugin: Any) -> None:
        import nip_plugin_transformers.plugin

        register_plugin(nip_plugin_transformers.plugin, name="transformers")
        self.model = str(tiny_model)

    def make_server(self, **options: Any) -> Any:
        return JobCounter(**options)

    def make_hyper_params(
        self, num_iterations: int, server: Any, **overrides: Any
    ) -> Any:
        from nip_core.parameters import HyperParameters

        return HyperParameters(
            **text_run_hyper_params(num_iterations, self.model, **overrides)
        )

    def test_api_faults_do_not_change_the_result(
        self, trainer_plugins: Any, tmp_path: Path
    ) -> None:
        """The local analogue of API faults: every job's first worker is killed
        (SIGKILL) mid-training; the jobs continue and the run ends as a calm one."""
        from nip_core.runs.run_dir import RunDirectory

        with self.make_server() as counter:
            calm = self._run(tmp_path, "calm", counter)
        killed: list[int] = []
        stop = threading.Event()
        jobs_root = tmp_path / "runs" / "faulty" / "transformers_jobs"

        def killer() -> None:
            while not stop.is_set():
                for path in jobs_root.glob("*/job.json"):
                    try:
                        record = json.loads(path.read_text())
                    except (OSError, json.JSONDecodeError):
                        continue
                    worker = record.get("worker")
                    if (
                        worker
                        and record["attempts"] == 1
                        and worker["pid"] not in killed
                    ):
                        killed.append(worker["pid"])
                        try:
                            os.kill(worker["pid"], signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                stop.wait(0.005)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            with self.make_server() as counter:
                faulty = self._run(tmp_path, "faulty", counter)
        finally:
            stop.set()
            thread.join()
        assert killed, "no worker was killed"
        restarted = [
            json.loads(path.read_text())["attempts"]
            for path in jobs_root.glob("*/job.json")
        ]
        assert max(restarted) == 2
        assert comparable_metrics(
            RunDirectory(faulty.run_dir).read_metrics()
        ) == comparable_metrics(RunDirectory(calm.run_dir).read_metrics())
