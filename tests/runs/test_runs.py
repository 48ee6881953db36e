"""Settings, run directory, atomic writes, checkpoints and loggers."""

from __future__ import annotations

import json
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from nip_core.errors import CheckpointError, NipConfigError
from nip_core.runs import (
    JsonlLogger,
    RunDirectory,
    build_loggers,
    capture_rng_state,
    load_latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from nip_core.runs.checkpoints import list_checkpoints
from nip_core.runs.io import atomic_write_text
from nip_core.runs.rollouts import (
    episodes_from_rollout,
    read_rollout_sample,
    write_rollout_sample,
)
from nip_core.settings import ExperimentSettings

# --------------------------------------------------------------------------------------
# Settings


def test_settings_round_trip_and_defaults():
    settings = ExperimentSettings(
        run_id="abc", loggers=["jsonl", "csv"], wandb_tags="t"
    )
    data = settings.to_dict()
    assert data["loggers"] == ["jsonl", "csv"]
    assert data["wandb_tags"] == ["t"]
    assert ExperimentSettings.from_dict(data) == settings
    assert ExperimentSettings().loggers == ("jsonl",)
    assert ExperimentSettings().device == "cpu"
    json.dumps(data)


def test_settings_from_dict_lists_every_problem():
    with pytest.raises(NipConfigError) as info:
        ExperimentSettings.from_dict(
            {"devcie": "cpu", "checkpoint_period": 0, "wandb_mode": "sometimes"}
        )
    paths = sorted(p.path for p in info.value.problems)
    assert paths == ["run.checkpoint_period", "run.devcie", "run.wandb_mode"]
    unknown = next(p for p in info.value.problems if p.path == "run.devcie")
    assert "did you mean 'device'?" in unknown.message
    mode = next(p for p in info.value.problems if p.path == "run.wandb_mode")
    assert mode.choices == ("online", "offline", "disabled")


def test_settings_hold_no_secrets(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "secret-key-123")
    settings = ExperimentSettings(wandb_project="p")
    assert "secret-key-123" not in json.dumps(settings.to_dict())
    assert settings.resolved_wandb_mode() == "online" or os.environ.get("WANDB_MODE")
    # a key pasted into a setting by mistake is redacted before it is saved
    pasted = ExperimentSettings(
        wandb_entity="secret-key-123", wandb_tags=["a", "secret-key-123"]
    )
    saved = pasted.to_dict()
    assert "secret-key-123" not in json.dumps(saved)
    assert saved["wandb_entity"] == "<WANDB_API_KEY>"
    assert saved["wandb_tags"] == ["a", "<WANDB_API_KEY>"]


def test_settings_hide_any_credential_variable(monkeypatch):
    """The variable openai_backend.api_key_env names (OpenRouter's, a lab's own) is
    not on the fixed list: a variable named like a credential is hidden too."""
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-123456789")
    monkeypatch.setenv("LAB_GATEWAY_TOKEN", "tok-abcdefgh")
    monkeypatch.setenv("LAB_GATEWAY_URL", "https://gateway.example")
    # named like a credential but holding a path: settings hold paths, left alone
    monkeypatch.setenv("CACHE_TOKEN", "/tmp/shared-cache")
    saved = ExperimentSettings(
        wandb_entity="sk-or-123456789",
        wandb_tags=["tok-abcdefgh", "https://gateway.example"],
        cache_dir="/tmp/shared-cache/nip",
    ).to_dict()
    assert saved["cache_dir"] == "/tmp/shared-cache/nip"
    assert saved["wandb_entity"] == "<OPENROUTER_API_KEY>"
    # a URL is no credential: only names ending like one are hidden
    assert saved["wandb_tags"] == ["<LAB_GATEWAY_TOKEN>", "https://gateway.example"]


def test_the_variable_a_backend_takes_its_key_from_is_hidden_whatever_its_name(
    monkeypatch,
):
    """``openai_backend.api_key_env: LLM_KEY``: not named like a credential, but
    the run's key; building the section declares it."""
    import nip_core.settings as settings_module
    from nip_core.parameters.text import OpenAiBackendParameters

    monkeypatch.setattr(settings_module, "_DECLARED_SECRET_ENV_VARS", set())
    monkeypatch.setenv("LLM_KEY", "sk-OTHERSECRET1234567890")
    pasted = ExperimentSettings(wandb_tags=["a", "sk-OTHERSECRET1234567890"])
    assert pasted.to_dict()["wandb_tags"] == ["a", "sk-OTHERSECRET1234567890"]
    OpenAiBackendParameters(api_key_env="LLM_KEY")
    assert "LLM_KEY" in settings_module.secret_env_vars()
    assert pasted.to_dict()["wandb_tags"] == ["a", "<LLM_KEY>"]


def test_wandb_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert ExperimentSettings(wandb_project="p").resolved_wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    settings = ExperimentSettings(wandb_project="p")
    assert settings.resolved_wandb_mode() == "disabled"
    assert settings.active_loggers() == ("jsonl",)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert ExperimentSettings(wandb_project="p").active_loggers() == ("jsonl", "wandb")
    assert ExperimentSettings(loggers=["csv"]).active_loggers() == ("jsonl", "csv")
    assert ExperimentSettings(wandb_mode="online").resolved_wandb_mode() == "online"


# --------------------------------------------------------------------------------------
# Files


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def failing(f):
        f.write(b"partial")
        raise RuntimeError("killed")

    from nip_core.runs.io import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(path, failing)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_run_directory_layout(tmp_path):
    settings = ExperimentSettings(run_id="r1", runs_dir=str(tmp_path))
    run_dir = RunDirectory.for_settings(settings).create()
    run_dir.write_hyper_params({"seed": 3})
    run_dir.write_settings(settings)
    assert sorted(p.name for p in run_dir.path.iterdir()) == [
        "checkpoints",
        "hyper_params.json",
        "plots",
        "rollouts",
        "run_info.json",
        "settings.json",
    ]
    assert run_dir.read_hyper_params() == {"seed": 3}
    provenance = run_dir.read_run_info()["provenance"]
    assert "nip-core" in provenance["versions"]
    assert len(provenance.get("git_sha", "0" * 40)) == 40
    assert run_dir.read_settings()["run_id"] == "r1"
    with pytest.raises(CheckpointError, match="is this a run directory"):
        RunDirectory(tmp_path / "nothing").read_hyper_params()


# --------------------------------------------------------------------------------------
# Checkpoints


def test_rng_state_round_trip():
    state = capture_rng_state()
    # the legacy global NumPy generator is the one restored
    expected = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    restore_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    assert again == expected


def test_checkpoints_latest_and_numbered(tmp_path):
    save_checkpoint(tmp_path, 2, {"w": torch.tensor([1.0])})
    save_checkpoint(tmp_path, 4, {"w": torch.tensor([2.0])})
    assert [i for i, _ in list_checkpoints(tmp_path)] == [2, 4]
    latest = load_latest_checkpoint(tmp_path)
    assert latest["iteration"] == 4
    assert latest["trainer"]["w"].item() == 2.0
    assert set(latest["rng"]) >= {"python", "numpy", "torch"}
    # restoring the saved RNG state reproduces what followed the save
    (tmp_path / "latest.pt").unlink()
    assert load_latest_checkpoint(tmp_path)["iteration"] == 4
    assert load_latest_checkpoint(tmp_path / "empty") is None


def test_an_unreadable_newest_checkpoint_falls_back_to_its_copy_first(tmp_path):
    # latest.pt repeats the newest numbered checkpoint: read before any older one,
    # no iteration is lost; both unreadable, both are named
    from nip_core.errors import CheckpointWarning

    save_checkpoint(tmp_path, 2, {"w": torch.tensor([1.0])})
    save_checkpoint(tmp_path, 4, {"w": torch.tensor([2.0])})
    (tmp_path / "iter_000004.pt").write_bytes(b"torn")
    with pytest.warns(CheckpointWarning, match="iter_000004.pt skipped.*no iteration"):
        assert load_latest_checkpoint(tmp_path)["iteration"] == 4
    (tmp_path / "latest.pt").write_bytes(b"torn")
    with pytest.warns(
        CheckpointWarning,
        match="checkpoints iter_000004.pt, latest.pt skipped.*iterations 3 to 4 are",
    ):
        assert load_latest_checkpoint(tmp_path)["iteration"] == 2


def test_corrupt_checkpoint_is_a_checkpoint_error(tmp_path):
    (tmp_path / "latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not read"):
        load_latest_checkpoint(tmp_path)


# --------------------------------------------------------------------------------------
# Loggers


def _run_dir(tmp_path, run_id="run"):
    return RunDirectory(tmp_path / run_id).create()


def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path):
    """Files written atomically (checkpoints, run info) are readable as the files
    written directly (metrics.jsonl) are: 0666 less the umask, not mkstemp's 0600."""
    import os
    import stat

    from nip_core.runs.io import atomic_write_text, stale_temporary_files

    mask = os.umask(0o022)
    os.umask(mask)
    atomic = atomic_write_text(tmp_path / "atomic.json", "{}")
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert stat.S_IMODE(atomic.stat().st_mode) == 0o666 & ~mask
    # what a kill before the rename leaves, and only that, is found
    (tmp_path / ".latest.pt.k2j3h4.tmp").write_bytes(b"half")
    (tmp_path / ".hidden.tmp").write_bytes(b"not ours")
    assert [p.name for p in stale_temporary_files(tmp_path)] == [
        ".latest.pt.k2j3h4.tmp"
    ]


def test_jsonl_logger_writes_lines_and_truncates_on_resume(tmp_path):
    run_dir = _run_dir(tmp_path)
    settings = ExperimentSettings()
    log = JsonlLogger(run_dir, settings, {})
    for step in range(4):
        log.log_metrics(step, {"loss": float(step), "bad": float("nan")})
    log.finish()
    records = run_dir.read_metrics()
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert records[2]["loss"] == 2.0 and records[2]["bad"] == "nan"
    # a half-written last line (a kill mid-write) is dropped on resume too
    with open(run_dir.metrics_path, "a") as f:
        f.write('{"step": 4, "lo')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a kill's half line is no loss to warn of
        JsonlLogger(run_dir, settings, {}, resume_from_step=2).finish()
    assert [r["step"] for r in run_dir.read_metrics()] == [0, 1]


def test_a_metrics_line_that_is_not_utf8_is_a_damaged_line(tmp_path):
    from nip_core.runs.run_dir import iter_metric_records

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 0}\n{"step": 1, "note": "caf\xe9"}\n{"step": 2}\n')
    damaged = []
    records = list(iter_metric_records(path, damaged=damaged))
    assert records == [(0, {"step": 0}), (2, {"step": 2})]
    assert damaged == [2]


def test_records_lost_before_the_resume_point_are_said(tmp_path):
    """A damaged line or a missing step before the step a run resumes at is not
    dropped silently: the resumed run's metrics would lack them."""
    from nip_core.errors import CheckpointWarning
    from nip_core.runs.loggers import truncate_metrics_records

    run_dir = _run_dir(tmp_path)
    settings = ExperimentSettings()
    log = JsonlLogger(run_dir, settings, {})
    for step in range(5):
        log.log_metrics(step, {"loss": float(step)})
    log.finish()
    lines = run_dir.metrics_path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:5] + "\n"  # step 1 torn in the middle of the file
    run_dir.metrics_path.write_text("".join(lines))
    with pytest.warns(CheckpointWarning) as caught:
        JsonlLogger(run_dir, settings, {}, resume_from_step=4).finish()
    [message] = [str(w.message) for w in caught]
    assert message == (
        f"{run_dir.metrics_path}: before step 4, where the run resumes: line(s) 2 "
        "cannot be read and step(s) 1 have no record; the resumed run's metrics "
        "lack them (the file keeps what could be read)"
    )
    assert [r["step"] for r in run_dir.read_metrics()] == [0, 2, 3]
    # a missing file, resuming after step 0
    run_dir.metrics_path.unlink()
    with pytest.warns(CheckpointWarning, match="records of steps 0 to 2 are lost"):
        JsonlLogger(run_dir, settings, {}, resume_from_step=3).finish()
    # stages of text runs: kept by count
    run_dir.metrics_path.write_text('{"step": 0}\n{"ste\n{"step": 1}\n')
    with pytest.warns(CheckpointWarning, match="holds 2 readable record"):
        truncate_metrics_records(run_dir, 3)


def test_csv_and_tensorboard_loggers(tmp_path, plugin_manager):
    run_dir = _run_dir(tmp_path)
    settings = ExperimentSettings(loggers=["csv", "tensorboard"])
    group = build_loggers(run_dir, settings, {"seed": 1})
    assert group.names() == ["jsonl", "csv", "tensorboard"]
    group.log_metrics(0, {"agent": {"reward": 0.5}, "n": torch.tensor(3)})
    group.log_metrics(1, {"agent": {"reward": 0.75}, "n": torch.tensor(4)})
    group.finish()

    csv_file = run_dir.path / "csv" / "scalars" / "agent.reward.csv"
    assert csv_file.read_text().splitlines() == ["0,0.5", "1,0.75"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = list((run_dir.path / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(event_files) == 1
    accumulator = EventAccumulator(str(event_files[0].parent))
    accumulator.Reload()
    scalars = accumulator.Scalars("agent.reward")
    assert [(s.step, s.value) for s in scalars] == [(0, 0.5), (1, 0.75)]
    assert run_dir.read_metrics()[1] == {"step": 1, "agent.reward": 0.75, "n": 4}


def test_wandb_offline_logger_records_history(tmp_path, plugin_manager, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run_dir = _run_dir(tmp_path, "wb-run")
    settings = ExperimentSettings(wandb_project="nip-tests", run_id="wb-run")
    group = build_loggers(run_dir, settings, {"seed": 1})
    assert group.names() == ["jsonl", "wandb"]
    group.log_metrics(0, {"accuracy": 0.25})
    group.log_metrics(1, {"accuracy": 0.5})
    checkpoint = run_dir.checkpoints_dir / "latest.pt"
    checkpoint.write_bytes(b"x")
    group.log_artifact(
        checkpoint, "checkpoint-wb-run", "checkpoint", aliases=("iter_3",)
    )
    group.finish()

    info = run_dir.read_run_info()
    assert info["wandb_mode"] == "offline"
    offline_dirs = list((run_dir.path / "wandb").glob("offline-run-*-wb-run"))
    assert len(offline_dirs) == 1
    records = _read_wandb_records(offline_dirs[0] / "run-wb-run.wandb")
    deadline = time.monotonic() + 20
    # The W&B service may flush the transaction log just after finish() returns
    while "exit" not in _record_types(records) and time.monotonic() < deadline:
        time.sleep(0.2)
        records = _read_wandb_records(offline_dirs[0] / "run-wb-run.wandb")
    history = [
        {_item_key(item): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    assert [(h["_step"], h["accuracy"]) for h in history] == [(0, 0.25), (1, 0.5)]
    artifacts = [
        r.artifact for r in records if r.WhichOneof("record_type") == "artifact"
    ]
    assert [(a.name, a.type) for a in artifacts] == [
        ("checkpoint-wb-run", "checkpoint")
    ]
    assert sorted(artifacts[0].aliases) == ["iter_3", "latest"]
    config = next(r.run.config for r in records if r.WhichOneof("record_type") == "run")
    config_items = {_item_key(u): u.value_json for u in config.update}
    assert config_items["seed"] == "1"


def test_wandb_gets_no_credential_pasted_into_its_settings(
    tmp_path, plugin_manager, monkeypatch
):
    secret = "sk-wandbtag-0123456789"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    run_dir = _run_dir(tmp_path, "wb-tags")
    settings = ExperimentSettings(
        wandb_project="nip-tests", run_id="wb-tags", wandb_tags=["a", secret]
    )
    group = build_loggers(run_dir, settings, {"seed": 1})
    group.log_metrics(0, {"accuracy": 0.25})
    group.finish()

    [offline_dir] = (run_dir.path / "wandb").glob("offline-run-*-wb-tags")
    records = _read_wandb_records(offline_dir / "run-wb-tags.wandb")
    deadline = time.monotonic() + 20
    while "exit" not in _record_types(records) and time.monotonic() < deadline:
        time.sleep(0.2)
        records = _read_wandb_records(offline_dir / "run-wb-tags.wandb")
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert list(run.tags) == ["a", "<OPENAI_API_KEY>"]
    assert [
        str(path.relative_to(tmp_path))
        for path in tmp_path.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ] == []


def test_wandb_unreachable_online_logs_offline_instead(
    tmp_path, plugin_manager, monkeypatch
):
    import wandb

    from nip_core.errors import LoggerWarning

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_SILENT", "true")
    real_init = wandb.init
    modes = []

    def init(**kwargs):
        modes.append(kwargs["mode"])
        if kwargs["mode"] == "online":
            # what W&B raises when it cannot reach its server in time
            raise wandb.errors.CommError("context deadline exceeded")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    run_dir = _run_dir(tmp_path, "wb-away")
    settings = ExperimentSettings(wandb_project="nip-tests", run_id="wb-away")
    with pytest.warns(LoggerWarning, match="could not start run wb-away online"):
        group = build_loggers(run_dir, settings, {"seed": 1})
    group.log_metrics(0, {"accuracy": 0.25})
    group.finish()
    assert modes == ["online", "offline"]
    assert run_dir.read_run_info()["wandb_mode"] == "offline"
    assert len(list((run_dir.path / "wandb").glob("offline-run-*-wb-away"))) == 1


def test_a_logger_that_cannot_start_marks_the_run_failed(
    tmp_path, monkeypatch, synthetic_scenario
):
    from nip_core.experiment import run_experiment
    from nip_core.runs import loggers

    def broken(*args, **kwargs):
        raise RuntimeError("the event file cannot be created")

    monkeypatch.setattr(loggers, "build_loggers", broken)
    hyper_params = synthetic_scenario.hyper_params("nip")
    settings = synthetic_scenario.settings(run_id="no-loggers")
    with pytest.raises(RuntimeError, match="event file"):
        run_experiment(hyper_params, settings)
    info = RunDirectory(Path(settings.runs_dir) / "no-loggers").read_run_info()
    assert info["status"] == "failed"
    assert "the event file cannot be created" in info["error"]

    # Ctrl-C while the loggers start (W&B waiting for its server, say): killed,
    # with what the command needs for its resume hint
    from nip_core.errors import RunInterrupted

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loggers, "build_loggers", interrupted)
    settings = synthetic_scenario.settings(run_id="stopped-early")
    with pytest.raises(RunInterrupted) as caught:
        run_experiment(hyper_params, settings)
    assert caught.value.run_id == "stopped-early"
    assert caught.value.checkpoint_iteration is None
    info = RunDirectory(Path(settings.runs_dir) / "stopped-early").read_run_info()
    assert info["status"] == "killed"


def _record_types(records):
    return [r.WhichOneof("record_type") for r in records]


def _item_key(item):
    return item.key or ".".join(item.nested_key)


def _read_wandb_records(path):
    """Parse a W&B transaction log (LevelDB log blocks of protobuf ``Record``s)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    block = 32768
    pos, pending, records = 7, b"", []  # 7: the ":W&B" file header
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


# --------------------------------------------------------------------------------------
# Rollout samples


def test_rollout_samples_are_json_episodes(tmp_path):
    from tensordict import TensorDict

    done = torch.tensor([[False, True, False, False], [False, False, False, True]])
    rollout = TensorDict(
        {
            "round": torch.tensor([[0, 1, 0, 1], [0, 1, 2, 3]]),
            "next": {"done": done.unsqueeze(-1)},
        },
        batch_size=[2, 4],
    )
    episodes = episodes_from_rollout(rollout, num_episodes=2, iteration=7)
    assert [e["num_steps"] for e in episodes] == [2, 4]
    assert [s["round"] for s in episodes[1]["steps"]] == [0, 1, 2, 3]
    path = write_rollout_sample(tmp_path, 7, episodes)
    assert path.name == "iter_000007.jsonl"
    assert read_rollout_sample(path) == episodes


def test_rollout_samples_name_the_agents():
    from tensordict import TensorDict

    rollout = TensorDict(
        {
            "round": torch.tensor([[0, 1]]),
            "next": {"done": torch.tensor([[[False], [True]]])},
        },
        batch_size=[1, 2],
    )
    (episode,) = episodes_from_rollout(
        rollout, num_episodes=1, iteration=0, agent_names=["prover", "verifier"]
    )
    assert episode["agent_names"] == ["prover", "verifier"]
    assert "agent_names" not in episodes_from_rollout(rollout, 1, 0)[0]


def test_artifact_aliases_reach_only_loggers_that_take_them(tmp_path):
    from nip_core.runs.loggers import LoggerGroup, MetricLogger

    calls = []

    class OldStyleLogger(MetricLogger):
        name = "old"

        def log_metrics(self, step, metrics):
            pass

        def log_artifact(self, path, name, artifact_type):
            calls.append(("old", name))

    class AliasLogger(MetricLogger):
        name = "new"

        def log_metrics(self, step, metrics):
            pass

        def log_artifact(self, path, name, artifact_type, *, aliases=()):
            calls.append(("new", name, tuple(aliases)))

    run_dir = _run_dir(tmp_path, "aliases")
    settings = ExperimentSettings(run_id="aliases")
    group = LoggerGroup(
        [OldStyleLogger(run_dir, settings, {}), AliasLogger(run_dir, settings, {})]
    )
    group.log_artifact(tmp_path, "checkpoint-aliases", "checkpoint", aliases=["iter_2"])
    group.log_artifact(tmp_path, "rollouts-aliases", "rollouts")
    assert calls == [
        ("old", "checkpoint-aliases"),
        ("new", "checkpoint-aliases", ("iter_2",)),
        ("old", "rollouts-aliases"),
        ("new", "rollouts-aliases", ()),
    ]


def test_rollout_samples_hold_whole_episodes_only():
    from tensordict import TensorDict

    from nip_core.runs.rollouts import episodes_from_rollout

    # two environments, 6 steps; episodes carry over from the previous iteration
    rounds = torch.tensor([[2, 3, 0, 1, 0, 1], [0, 1, 2, 0, 1, 2]])
    done = torch.tensor(
        [
            [False, True, False, True, False, False],
            [False, False, True, False, False, True],
        ]
    )
    rollout = TensorDict(
        {
            "round": rounds,
            "value": torch.arange(12).reshape(2, 6),
            "next": TensorDict({"done": done[..., None]}, [2, 6]),
        },
        [2, 6],
    )
    episodes = episodes_from_rollout(rollout, 10, iteration=3)
    # env 0: steps 0-1 are the tail of an episode begun before; 2-3 whole; 4-5 cut
    # env 1: 0-2 and 3-5 whole
    assert [(e["env_index"], e["num_steps"]) for e in episodes] == [
        (0, 2),
        (1, 3),
        (1, 3),
    ]
    assert [step["round"] for step in episodes[0]["steps"]] == [0, 1]
    assert all(e["steps"][0]["round"] == 0 for e in episodes)
    assert all(e["steps"][-1]["next.done"] == [True] for e in episodes)
    assert len(episodes_from_rollout(rollout, 2, iteration=3)) == 2


class FakeClock:
    """Stands for the ``time`` module in :mod:`nip_core.runs.context`: every
    reading of the clock is ``step`` seconds after the one before."""

    def __init__(self, step: float = 10.0):
        self.now = 1000.0
        self.step = step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now


def test_run_context_logs_its_clock_with_every_record(monkeypatch):
    from nip_core.runs import context

    monkeypatch.setattr(context, "time", FakeClock())
    run = context.RunContext()  # the clock starts here
    run.log_metrics(0, {"loss": 1.0})
    run.log_metrics(0, {"test_loss": 2.0})
    run.log_metrics(1, {"loss": 0.5, "timing.elapsed_s": -1.0})
    assert [r["timing.elapsed_s"] for r in run.history] == [10.0, 20.0, 30.0]
    assert run.history[0] == {"step": 0, "loss": 1.0, "timing.elapsed_s": 10.0}
    # a resumed run's clock goes on from where it stopped
    resumed = context.RunContext(elapsed_offset=30.0)
    resumed.log_metrics(2, {"loss": 0.25})
    assert resumed.history[-1]["timing.elapsed_s"] == 40.0
    assert resumed.elapsed_s == 50.0


def test_last_elapsed_seconds_reads_the_last_record_that_has_it(tmp_path):
    from nip_core.runs.loggers import last_elapsed_seconds

    run_dir = _run_dir(tmp_path)
    assert last_elapsed_seconds(run_dir) == 0.0  # no metrics.jsonl yet
    run_dir.metrics_path.write_text(
        '{"step": 0, "loss": 1, "timing.elapsed_s": 12.5}\n'
        '{"step": 1, "loss": 1, "timing.elapsed_s": 25.0}\n'
        '{"step": 2, "loss": 1}\n'
        '{"step": 3, "timing.elapsed_s": 50'  # half written by a kill
    )
    assert last_elapsed_seconds(run_dir) == 25.0
    # records, none with the clock: a run from before it, which stays without one
    run_dir.metrics_path.write_text('{"step": 0, "loss": 1}\n')
    assert last_elapsed_seconds(run_dir) is None


def test_a_run_without_a_clock_logs_none(monkeypatch):
    from nip_core.runs import context

    monkeypatch.setattr(context, "time", FakeClock())
    run = context.RunContext(elapsed_offset=None)
    run.log_metrics(3, {"loss": 1.0})
    assert run.history == [{"step": 3, "loss": 1.0}]


def test_damaged_run_records_are_named_not_tracebacks(tmp_path):
    from nip_core.errors import CheckpointWarning

    run_dir = _run_dir(tmp_path, "damaged")
    run_dir.hyper_params_path.write_text('{"sce')
    with pytest.raises(CheckpointError, match="hyper_params.json is not valid JSON"):
        run_dir.read_hyper_params()
    # run_info.json (rewritten anyway) and settings.json: read as empty, said
    run_dir.run_info_path.write_text("xx")
    with pytest.warns(CheckpointWarning, match="run_info.json is damaged") as said:
        assert run_dir.read_run_info() == {}
        # said once, however often it is read before the next write replaces it
        assert RunDirectory(run_dir.path).read_run_info() == {}
        run_dir.write_run_info(status="killed")
    assert len(said) == 1
    assert "kept as run_info.json.damaged" in str(said[0].message)
    assert run_dir.read_run_info() == {"status": "killed"}
    # what the damaged file held is kept to be read, not lost
    assert (run_dir.path / "run_info.json.damaged").read_text() == "xx"
    run_dir.settings_path.write_text("[1, 2]")
    with pytest.warns(CheckpointWarning, match="not a JSON object"):
        assert run_dir.read_settings() == {}


def test_a_run_directory_without_its_experiment_record_is_not_taken_over(
    tmp_path, synthetic_scenario
):
    from nip_core.experiment import run_experiment

    hyper_params = synthetic_scenario.hyper_params(
        "nip", rl={"num_iterations": 2, "num_test_iterations": 1}
    )
    settings = synthetic_scenario.settings(run_id="lost", checkpoint_period=1)
    run_experiment(hyper_params, settings)
    run_path = Path(settings.runs_dir) / "lost"
    (run_path / "hyper_params.json").unlink()
    metrics = (run_path / "metrics.jsonl").read_text()
    checkpoints = sorted(p.name for p in (run_path / "checkpoints").iterdir())
    with pytest.raises(CheckpointError, match="holds a run's checkpoints and metrics"):
        run_experiment(hyper_params, settings)
    assert (run_path / "metrics.jsonl").read_text() == metrics
    assert sorted(p.name for p in (run_path / "checkpoints").iterdir()) == checkpoints
    # a folder without a run's work (user files only) is fine to write into
    other = synthetic_scenario.settings(run_id="mine")
    (Path(other.runs_dir) / "mine").mkdir()
    (Path(other.runs_dir) / "mine" / "notes.txt").write_text("keep")
    run_experiment(hyper_params, other)
    assert (Path(other.runs_dir) / "mine" / "notes.txt").read_text() == "keep"


def test_a_tilde_in_the_runs_directory_is_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = ExperimentSettings(runs_dir="~/myruns", run_id="tilde")
    run_dir = RunDirectory.for_settings(settings)
    assert run_dir.path == tmp_path / "home" / "myruns" / "tilde"
