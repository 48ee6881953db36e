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
from tf_helpers import JobCounter, make_backend, text_run_hyper_params

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
