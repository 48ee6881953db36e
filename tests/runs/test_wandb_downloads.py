"""Base runs and agents fetched from W&B, with retries, against a fake W&B API.

``wandb.Api`` is replaced by :class:`FakeWandbApi`, which serves run configs and
checkpoint artifacts from local files and raises the errors the real client raises
(``RunNotFoundError``, ``ValueError("... not found ...")``, ``CommError``,
``WandbApiFailedError`` with an HTTP status). Nothing touches the network, and no
test waits: the retry module's ``_sleep`` is recorded instead.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest
import requests
import torch
import wandb
import wandb.errors
from wandb.apis.public.runs import RunNotFoundError
from wandb.proto.wandb_api_pb2 import ApiErrorResponse
from wandb.sdk.lib.service.service_connection import WandbApiFailedError

from nip_core.errors import CheckpointError, NipError, RemoteError, RemoteNotFoundError
from nip_core.experiment import apply_base_run, prepare_experiment, run_experiment
from nip_core.runs import RunDirectory, save_checkpoint, wandb_api
from nip_core.runs.wandb_api import (
    call_with_retries,
    download_checkpoint,
    fetch_run_config,
    get_wandb_api,
)
from nip_core.testing.contracts.trainer import assert_same_weights, final_agent_weights
from nip_core.testing.synthetic.fixtures import SyntheticScenario

CHECK = (
    "check the network connection, that WANDB_API_KEY (or `wandb login`) gives "
    "access to it, and the entity, project and run id"
)


class FakeArtifact:
    def __init__(self, api: FakeWandbApi, source: Path):
        self.api = api
        self.source = source

    def download(self, root: str) -> str:
        self.api.calls.append(("download",))
        self.api.fail("download")
        for path in self.source.iterdir():
            shutil.copy(path, Path(root) / path.name)
        return root


class FakeRun:
    def __init__(self, config: dict):
        self.config = config


class FakeWandbApi:
    """What nip uses of ``wandb.Api``: ``run(path).config`` and
    ``artifact(name, type=...).download(root=...)``."""

    def __init__(self):
        self.runs: dict[str, dict] = {}
        self.artifacts: dict[str, Path] = {}
        self.failures: dict[str, list[BaseException]] = {
            "run": [],
            "artifact": [],
            "download": [],
        }
        self.calls: list[tuple] = []
        self.constructed = 0

    def __call__(self) -> FakeWandbApi:  # stands in for the wandb.Api class
        self.constructed += 1
        return self

    def fail(self, method: str) -> None:
        if self.failures[method]:
            raise self.failures[method].pop(0)

    def run(self, path: str) -> FakeRun:
        self.calls.append(("run", path))
        self.fail("run")
        if path not in self.runs:
            raise RunNotFoundError(f"Could not find run <Run {path} (not found)>")
        return FakeRun(dict(self.runs[path]))

    def artifact(self, name: str, type: str | None = None) -> FakeArtifact:
        self.calls.append(("artifact", name, type))
        self.fail("artifact")
        if name not in self.artifacts:
            prefix, _, short = name.rpartition("/")
            raise ValueError(f"artifact membership {short!r} not found in {prefix!r}")
        return FakeArtifact(self, self.artifacts[name])


@pytest.fixture
def fake_api(monkeypatch) -> FakeWandbApi:
    api = FakeWandbApi()
    monkeypatch.setattr(wandb, "Api", api)
    return api


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(wandb_api, "_sleep", recorded.append)
    return recorded


@pytest.fixture
def scenario(synthetic_scenario):
    return synthetic_scenario


pytestmark = pytest.mark.usefixtures("single_thread")


_rl = SyntheticScenario.short_rl


def _remote_run(scenario, run_id: str, hyper_params) -> Path:
    """A finished run outside ``runs_dir`` (only the fake W&B can serve it)."""
    settings = scenario.settings(runs_dir=str(scenario.root / "remote"))
    return run_experiment(hyper_params, settings, run_id=run_id).run_dir


def _publish(api: FakeWandbApi, path: str, run_dir: Path, version: str) -> None:
    """Serve a run as the W&B logger uploads it: the config without ``_meta``, and
    its ``latest.pt`` as version ``version`` of ``checkpoint-<run_id>``."""
    config = RunDirectory(run_dir).read_hyper_params()
    api.runs[path] = {k: v for k, v in config.items() if k != "_meta"}
    files = run_dir.parent / f"{run_dir.name}-artifact"
    files.mkdir()
    shutil.copy(run_dir / "checkpoints" / "latest.pt", files / "latest.pt")
    prefix, _, run_id = path.rpartition("/")
    api.artifacts[f"{prefix}/checkpoint-{run_id}:{version}"] = files


# --------------------------------------------------------------------------------------
# Base runs


def test_base_run_config_is_copied_from_wandb_keeping_preserved_fields(
    scenario, fake_api, sleeps
):
    base = scenario.hyper_params("nip", seed=11, rl=_rl(num_iterations=7))
    fake_api.runs["lab/proj/base"] = base.to_dict(include_meta=False)
    base_run = {
        "base_run_type": "rerun_tests",
        "run_id": "base",
        "source": "wandb",
        "wandb_entity": "lab",
        "wandb_project": "proj",
    }
    current = scenario.hyper_params(
        "nip",
        seed=99,
        test_dataset_split="validation",
        rl=_rl(num_iterations=3, num_test_iterations=5),
        base_run=base_run,
    )

    merged = apply_base_run(current, scenario.settings())

    expected = scenario.hyper_params(
        "nip",
        seed=11,
        test_dataset_split="validation",
        rl=_rl(num_iterations=7, num_test_iterations=5),
        base_run=base_run,
    )
    assert merged.to_dict() == expected.to_dict()
    assert fake_api.calls == [("run", "lab/proj/base")]
    assert fake_api.constructed == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("base_run", "settings", "path"),
    [
        ({}, {}, "nip/base"),
        ({}, {"wandb_project": "team", "wandb_entity": "lab"}, "lab/team/base"),
        ({"wandb_entity": "me"}, {"wandb_project": "team"}, "me/team/base"),
        ({"wandb_project": "mine"}, {"wandb_project": "team"}, "mine/base"),
    ],
)
def test_empty_entity_and_project_fall_back_to_the_run_settings(
    scenario, fake_api, base_run, settings, path
):
    fake_api.runs[path] = scenario.hyper_params("nip", seed=5).to_dict()
    hp = scenario.hyper_params(
        "nip",
        base_run={
            "base_run_type": "parameters",
            "run_id": "base",
            "source": "wandb",
            **base_run,
        },
    )
    assert apply_base_run(hp, scenario.settings(**settings)).seed == 5
    assert fake_api.calls == [("run", path)]


def test_rerun_tests_loads_the_checkpoint_of_a_wandb_run(scenario, fake_api, sleeps):
    base_dir = _remote_run(scenario, "base", scenario.hyper_params("nip", rl=_rl()))
    _publish(fake_api, "lab/proj/base", base_dir, "latest")
    hp = scenario.hyper_params(
        "nip",
        rl=_rl(num_test_iterations=2, num_iterations=7),
        base_run={
            "base_run_type": "rerun_tests",
            "run_id": "base",
            "source": "wandb",
            "wandb_entity": "lab",
            "wandb_project": "proj",
        },
    )
    result = run_experiment(hp, scenario.settings(), run_id="rerun")

    assert fake_api.calls == [
        ("run", "lab/proj/base"),
        ("artifact", "lab/proj/checkpoint-base:latest", "checkpoint"),
        ("download",),
    ]
    # Only the test loop ran, with this config's test settings and the base weights
    assert len(result.metrics) == 1 and "test_mean_accuracy" in result.metrics[0]
    assert result.trainer.hyper_params.rl.num_test_iterations == 2
    assert result.trainer.hyper_params.rl.num_iterations == 2
    assert_same_weights(
        final_agent_weights(base_dir),
        {n: a.state_dict() for n, a in result.trainer.agents.items()},
    )
    assert sleeps == []


def test_rerun_tests_marks_the_run_failed_when_the_checkpoint_cannot_be_fetched(
    scenario, fake_api, sleeps
):
    fake_api.runs["nip/base"] = scenario.hyper_params("nip", rl=_rl()).to_dict()
    fake_api.artifacts["nip/checkpoint-base:latest"] = scenario.root
    fake_api.failures["artifact"] = [ConnectionError("connection refused")] * 4
    hp = scenario.hyper_params(
        "nip",
        rl=_rl(),
        base_run={"base_run_type": "rerun_tests", "run_id": "base", "source": "wandb"},
    )
    with pytest.raises(RemoteError) as caught:
        run_experiment(hp, scenario.settings(), run_id="rerun")

    message = (
        "could not get W&B artifact 'nip/checkpoint-base:latest' after 4 attempts; "
        f"last error: ConnectionError: connection refused; {CHECK}"
    )
    assert str(caught.value) == message
    info = RunDirectory(scenario.root / "runs" / "rerun").read_run_info()
    assert info["status"] == "failed"
    assert info["error"] == f"RemoteError: {message}"
    assert sleeps == [1.0, 2.0, 4.0]


# --------------------------------------------------------------------------------------
# Agents loaded from a W&B run


def test_agent_loaded_from_a_wandb_run(scenario, fake_api, sleeps):
    source_dir = _remote_run(
        scenario,
        "source",
        scenario.hyper_params("nip", rl=_rl(), agents={"_default": {"d_hidden": 5}}),
    )
    _publish(fake_api, "nip/source", source_dir, "v1")
    hp = scenario.hyper_params(
        "nip",
        rl=_rl(),
        agents={
            "prover": {"d_hidden": 4},
            "verifier": {
                "d_hidden": 4,
                "load_checkpoint_and_parameters": True,
                "checkpoint_source": "wandb",
                "checkpoint_run_id": "source",
                "checkpoint_version": "v1",
            },
        },
    )
    prepared = prepare_experiment(hp, scenario.settings())

    verifier_params = prepared.hyper_params.agents["verifier"]
    assert verifier_params.d_hidden == 5
    assert verifier_params.checkpoint_source == "wandb"
    assert verifier_params.checkpoint_version == "v1"
    assert_same_weights(
        prepared.scenario_instance.agents["verifier"].state_dict(),
        final_agent_weights(source_dir)["verifier"],
    )
    assert prepared.scenario_instance.agents["prover"].body.mlp[0].out_features == 4
    assert fake_api.calls == [
        ("run", "nip/source"),
        ("artifact", "nip/checkpoint-source:v1", "checkpoint"),
        ("download",),
    ]
    assert fake_api.constructed == 1
    assert sleeps == []


def test_agent_from_a_wandb_run_without_that_checkpoint_version(
    scenario, fake_api, sleeps
):
    fake_api.runs["nip/source"] = scenario.hyper_params("nip").to_dict()
    hp = scenario.hyper_params(
        "nip",
        agents={
            "_default": {"d_hidden": 4},
            "verifier": {
                "load_checkpoint_and_parameters": True,
                "checkpoint_source": "wandb",
                "checkpoint_run_id": "source",
                "checkpoint_version": "v7",
            },
        },
    )
    with pytest.raises(RemoteNotFoundError) as caught:
        prepare_experiment(hp, scenario.settings())
    assert str(caught.value) == (
        "W&B artifact 'nip/checkpoint-source:v7' does not exist, or these W&B "
        "credentials cannot see it (ValueError: artifact membership "
        "'checkpoint-source:v7' not found in 'nip'); check the entity, project and "
        "run id"
    )
    assert [call[0] for call in fake_api.calls] == ["run", "artifact"]
    assert sleeps == []


# --------------------------------------------------------------------------------------
# Retries


def _checkpoint_artifact(api: FakeWandbApi, root: Path) -> dict:
    """A real checkpoint (core's save function) served as nip/checkpoint-r:latest."""
    state = {"iteration": 3, "agents": {"verifier": {"w": torch.arange(4.0)}}}
    save_checkpoint(root / "artifact", 3, state, keep_numbered=False)
    api.artifacts["nip/checkpoint-r:latest"] = root / "artifact"
    return state


def test_transient_failures_are_retried_then_succeed(fake_api, sleeps, caplog):
    fake_api.runs["nip/r"] = {"seed": 3}
    fake_api.failures["run"] = [
        wandb.errors.CommError("Could not connect to api.wandb.ai"),
        requests.exceptions.ConnectionError("Max retries exceeded"),
    ]
    with caplog.at_level(logging.WARNING, logger="nip_core.runs.wandb_api"):
        assert fetch_run_config("", "", "r") == {"seed": 3}
    assert fake_api.calls == [("run", "nip/r")] * 3
    assert sleeps == [1.0, 2.0]
    assert [r.getMessage() for r in caplog.records] == [
        "getting W&B run 'nip/r' failed (CommError: Could not connect to "
        "api.wandb.ai); retry 1 of 3 in 1.0 s",
        "getting W&B run 'nip/r' failed (ConnectionError: Max retries exceeded); "
        "retry 2 of 3 in 2.0 s",
    ]


def test_a_failed_download_is_retried(fake_api, sleeps, tmp_path):
    state = _checkpoint_artifact(fake_api, tmp_path)
    fake_api.failures["download"] = [TimeoutError("read timed out")]
    checkpoint = download_checkpoint("", "", "r")
    assert checkpoint["iteration"] == 3
    assert checkpoint["trainer"].keys() == state.keys()
    assert torch.equal(
        checkpoint["trainer"]["agents"]["verifier"]["w"], torch.arange(4.0)
    )
    assert fake_api.calls == [
        ("artifact", "nip/checkpoint-r:latest", "checkpoint"),
        ("download",),
        ("download",),
    ]
    assert sleeps == [1.0]


def test_persistent_failures_end_in_a_remote_error(fake_api, sleeps):
    fake_api.runs["lab/proj/r"] = {"seed": 3}
    fake_api.failures["run"] = [TimeoutError("read timed out")] * 4
    with pytest.raises(RemoteError) as caught:
        fetch_run_config("lab", "proj", "r")
    assert str(caught.value) == (
        "could not get W&B run 'lab/proj/r' after 4 attempts; last error: "
        f"TimeoutError: read timed out; {CHECK}"
    )
    assert not isinstance(caught.value, RemoteNotFoundError)
    assert fake_api.calls == [("run", "lab/proj/r")] * 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_a_missing_run_is_not_retried(fake_api, sleeps):
    with pytest.raises(RemoteNotFoundError) as caught:
        fetch_run_config("lab", "proj", "gone")
    assert str(caught.value) == (
        "W&B run 'lab/proj/gone' does not exist, or these W&B credentials cannot see "
        "it (RunNotFoundError: Could not find run <Run lab/proj/gone (not found)>); "
        "check the entity, project and run id"
    )
    assert fake_api.calls == [("run", "lab/proj/gone")]
    assert sleeps == []


def test_a_missing_artifact_is_not_retried(fake_api, sleeps):
    with pytest.raises(RemoteNotFoundError, match=r"^W&B artifact 'nip/checkpoint-x:"):
        download_checkpoint("", "", "x")
    assert fake_api.calls == [("artifact", "nip/checkpoint-x:latest", "checkpoint")]
    assert sleeps == []


def test_an_artifact_without_a_checkpoint_file(fake_api, sleeps, tmp_path):
    (tmp_path / "notes.txt").write_text("no weights here")
    fake_api.artifacts["nip/checkpoint-r:latest"] = tmp_path
    with pytest.raises(CheckpointError) as caught:
        download_checkpoint("", "", "r")
    assert str(caught.value) == (
        "W&B artifact 'nip/checkpoint-r:latest' holds no checkpoint file (*.pt); "
        "it has: notes.txt"
    )


def _api_failure(
    status: int | None, message: str = "request failed"
) -> WandbApiFailedError:
    response = None if status is None else ApiErrorResponse(http_status=status)
    return WandbApiFailedError(f"{message} ({status})", response=response)


@pytest.mark.parametrize(
    ("error", "calls", "kind"),
    [
        (_api_failure(None), 3, None),  # no HTTP response: transport failure
        (_api_failure(None, "lookup api.wandb.ai: host not found"), 3, None),
        (_api_failure(200, "run not found"), 1, RemoteNotFoundError),  # GraphQL
        (_api_failure(503), 3, None),
        (_api_failure(429), 3, None),
        (_api_failure(404), 1, RemoteNotFoundError),
        (_api_failure(401), 1, RemoteError),
        (wandb.errors.AuthenticationError("invalid API key"), 1, RemoteError),
        (wandb.errors.UsageError("api_key not configured (no-tty)"), 1, RemoteError),
        (wandb.errors.CommError("Project lab/proj not found"), 1, RemoteNotFoundError),
        (ValueError("Invalid path: 'abc' (missing entity)"), 1, RemoteError),
    ],
)
def test_which_failures_are_retried(error, calls, kind, sleeps):
    made = []

    def flaky():
        made.append(1)
        if len(made) < 3:
            raise error
        return "ok"

    if kind is None:
        assert call_with_retries(flaky, what="thing") == "ok"
        assert sleeps == [1.0, 2.0]
    else:
        with pytest.raises(kind) as caught:
            call_with_retries(flaky, what="thing")
        assert type(caught.value) is kind
        assert f"({type(error).__name__}: {error})" in str(caught.value)
        assert sleeps == []
    assert len(made) == calls


def test_errors_that_are_not_wandbs_are_raised_unchanged(sleeps):
    made = []

    def buggy():
        made.append(1)
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="^a bug$"):
        call_with_retries(buggy, what="thing")
    assert len(made) == 1 and sleeps == []


def test_backoff_doubles_up_to_the_cap():
    waited = []

    def down():
        raise ConnectionError("down")

    with pytest.raises(RemoteError, match="after 6 attempts"):
        call_with_retries(
            down,
            what="thing",
            attempts=6,
            base_delay=0.5,
            max_delay=3.0,
            sleep=waited.append,
        )
    assert waited == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_the_api_key_never_appears_in_messages(monkeypatch, sleeps, caplog):
    key = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("WANDB_API_KEY", key)

    def leaky():
        raise ConnectionError(f"https://api:{key}@api.wandb.ai unreachable")

    with caplog.at_level(logging.WARNING, logger="nip_core.runs.wandb_api"):
        with pytest.raises(RemoteError) as caught:
            call_with_retries(leaky, what="thing", attempts=2)
    assert key not in str(caught.value)
    assert "https://api:<WANDB_API_KEY>@api.wandb.ai unreachable" in str(caught.value)
    assert len(caplog.records) == 1
    assert key not in caplog.records[0].getMessage()


def test_a_missing_wandb_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(RemoteError) as caught:
        get_wandb_api()
    assert isinstance(caught.value, NipError)
    assert str(caught.value) == (
        "fetching runs from W&B needs the `wandb` package, which is not installed: "
        "pip install wandb"
    )


def test_connecting_to_wandb_is_retried(monkeypatch, sleeps):
    api = FakeWandbApi()
    attempts = []

    def connect():
        attempts.append(1)
        if len(attempts) == 1:
            raise wandb.errors.CommError("Connection reset by peer")
        return api

    monkeypatch.setattr(wandb, "Api", connect)
    assert get_wandb_api() is api
    assert len(attempts) == 2 and sleeps == [1.0]


def test_an_iteration_number_names_the_checkpoint_of_that_iteration(
    fake_api, sleeps, tmp_path
):
    from nip_core.runs.checkpoints import save_checkpoint
    from nip_core.runs.wandb_api import checkpoint_alias, checkpoint_artifact_name

    assert checkpoint_alias(5) == "iter_5"
    assert (
        checkpoint_artifact_name("lab", "proj", "r", "5")
        == "lab/proj/checkpoint-r:iter_5"
    )
    assert (
        checkpoint_artifact_name("lab", "proj", "r", "v5") == "lab/proj/checkpoint-r:v5"
    )
    source = tmp_path / "iter5"
    source.mkdir()
    save_checkpoint(source, 5, {"marker": 5})
    fake_api.artifacts["lab/proj/checkpoint-r:iter_5"] = source
    checkpoint = download_checkpoint("lab", "proj", "r", "5")
    assert checkpoint["iteration"] == 5
    assert fake_api.calls[0] == (
        "artifact",
        "lab/proj/checkpoint-r:iter_5",
        "checkpoint",
    )
