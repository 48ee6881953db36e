"""Datasets: the shipped humaneval_buggy (checked in the sandbox on a sample), its
rebuild, the LLM method with a scripted server, the APPS loaders on local files in
the hub's schema, and one clear error for each bad input."""

from __future__ import annotations

import json
import random
import sys
import types

import pytest
from nip_core.errors import DatasetNotFoundError, NipConfigError
from nip_core.testing.openai_server import OpenAiTestServer

from nip_plugin_code_validation.data import TEST_PROBLEMS, read_rows, shipped_path
from nip_plugin_code_validation.humaneval import (
    build_humaneval_buggy,
    hash_parity,
    humaneval_problems,
)
from nip_plugin_code_validation.sandbox import SandboxLimits, run_tests

LIMITS = SandboxLimits(wall_time=10.0, cpu_time=5, memory_mb=512)


def _dataset(name, split="train", tmp_path=None, **code_validation):
    from nip_core.parameters import HyperParameters
    from nip_core.settings import ExperimentSettings

    from nip_plugin_code_validation.data import CodeValidationDataset

    hyper_params = HyperParameters(
        scenario="code_validation",
        trainer="synthetic_text_sft",
        dataset=name,
        agents={"_default": {"model_name": "m"}},
        code_validation=code_validation or None,
    )
    settings = ExperimentSettings(data_dir=str(tmp_path) if tmp_path else None)
    return CodeValidationDataset(hyper_params, settings, split=split)


def test_shipped_humaneval_buggy_is_balanced_and_split_by_problem() -> None:
    train = read_rows(shipped_path("humaneval_buggy", "train"))
    test = read_rows(shipped_path("humaneval_buggy", "test"))
    for rows in (train, test):
        assert sum(r["y"] for r in rows) * 2 == len(rows)
        for row in rows:
            assert row["prover_stance"] == hash_parity(row["solution"])
    assert {r["task_id"] for r in train}.isdisjoint({r["task_id"] for r in test})
    assert len(train) + len(test) >= 250
    assert 0.15 < len(test) / (len(train) + len(test)) < 0.25


def test_a_sample_of_humaneval_buggy_checks_out_in_the_sandbox() -> None:
    problems = humaneval_problems()
    rows = read_rows(shipped_path("humaneval_buggy", "train"))
    rows += read_rows(shipped_path("humaneval_buggy", "test"))
    sample = random.Random(0).sample(rows, 12)
    for row in sample:
        problem = problems[row["task_id"]]
        result = run_tests(
            row["solution"], problem["test"], problem["entry_point"], limits=LIMITS
        )
        if row["y"] == 1:
            assert result.ok, (row["task_id"], result.describe())
            assert row["solution"] == problem["prompt"] + problem["canonical_solution"]
        else:
            assert result.status in ("error", "memory"), row["task_id"]
            assert row["mutation"]


def test_rebuilding_reproduces_the_shipped_rows() -> None:
    shipped = read_rows(shipped_path("humaneval_buggy", "train"))
    shipped += read_rows(shipped_path("humaneval_buggy", "test"))
    by_task = {}
    for row in shipped:
        by_task.setdefault(row["task_id"], []).append(row)
    ids = ["HumanEval/0", "HumanEval/2", "HumanEval/4"]
    rebuilt = build_humaneval_buggy(task_ids=ids, workers=2, limits=LIMITS)
    rows = rebuilt["train"] + rebuilt["test"]
    for task_id in ids:
        mine = sorted(
            (r for r in rows if r["task_id"] == task_id), key=lambda r: -r["y"]
        )
        theirs = sorted(by_task[task_id], key=lambda r: -r["y"])
        assert [r["solution"] for r in mine] == [r["solution"] for r in theirs]


def test_test_dataset_checks_out() -> None:
    for problem in TEST_PROBLEMS:
        assert run_tests(
            problem["correct"], problem["test"], problem["entry_point"], limits=LIMITS
        ).ok
        assert not run_tests(
            problem["buggy"], problem["test"], problem["entry_point"], limits=LIMITS
        ).ok


def test_named_datasets_load(code_validation_plugin, tmp_path) -> None:
    train = _dataset("test", "train", tmp_path)
    assert len(train) == 6 and {row["y"] for row in train.rows} == {0, 1}
    assert len(_dataset("test", "test", tmp_path)) == 4
    humaneval = _dataset("humaneval_buggy", "test", tmp_path)
    assert len(humaneval) > 40
    assert set(humaneval[0]) >= {"question", "solution", "y", "prover_stance", "id"}


def test_unknown_dataset_is_one_clear_error(code_validation_plugin, tmp_path) -> None:
    with pytest.raises(NipConfigError) as info:
        _dataset("humaneval_bugy", "train", tmp_path)
    message = str(info.value)
    assert "did you mean 'humaneval_buggy'" in message
    assert message.count("\n  - ") == 1
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        _dataset(str(missing), "train", tmp_path)
    assert str(missing / "train.jsonl") in str(info.value)
    with pytest.raises(DatasetNotFoundError, match="train and a test split only"):
        _dataset("test", "validation", tmp_path)


def test_dataset_from_a_directory_and_bad_rows(
    code_validation_plugin, tmp_path
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text(
        '{"question": "q", "solution": "print(1)", "y": 1}\n'
    )
    (row,) = _dataset(str(folder), "train", tmp_path).rows
    assert row["prover_stance"] == hash_parity("print(1)")
    (folder / "train.jsonl").write_text('{"question": "q", "y": 1}\n')
    with pytest.raises(DatasetNotFoundError, match="line 1.*missing: solution"):
        _dataset(str(folder), "train", tmp_path)
    (folder / "train.jsonl").write_text("not json\n")
    with pytest.raises(DatasetNotFoundError, match="line 1: not JSON"):
        _dataset(str(folder), "train", tmp_path)
    # valid JSON that is not an object: a clear error, not a TypeError
    for line, kind in (("5", "int"), ("null", "NoneType"), ('["q", "s", 1]', "list")):
        (folder / "train.jsonl").write_text(
            '{"question": "q", "solution": "print(1)", "y": 1}\n' + line + "\n"
        )
        with pytest.raises(
            DatasetNotFoundError,
            match=f"line 2: a row must be a JSON object.*got {kind}",
        ):
            _dataset(str(folder), "train", tmp_path)
    # fields of the wrong type, labels that only equal 0 or 1
    good = '{"question": "q", "solution": "print(1)", "y": 1}\n'
    for line, message in (
        ('{"question": null, "solution": "s", "y": 1}', "question must be a string"),
        ('{"question": "q", "solution": 3, "y": 1}', "solution must be a string"),
        ('{"question": "q", "solution": "s", "y": true}', "y must be 0 or 1, got true"),
        ('{"question": "q", "solution": "s", "y": 1.0}', "y must be 0 or 1, got 1.0"),
    ):
        (folder / "train.jsonl").write_text(good + line + "\n")
        with pytest.raises(DatasetNotFoundError, match=f"line 2: {message}"):
            _dataset(str(folder), "train", tmp_path)
    # bytes that are not UTF-8: the file and line, not a UnicodeDecodeError
    (folder / "train.jsonl").write_bytes(
        good.encode() + b'{"question": "\xff\xfe", "solution": "s", "y": 1}\n'
    )
    with pytest.raises(DatasetNotFoundError, match="line 2: not UTF-8 text"):
        _dataset(str(folder), "train", tmp_path)
    # a byte-order mark (editors on Windows write one) is not part of the JSON
    (folder / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + good.encode())
    (row,) = _dataset(str(folder), "train", tmp_path).rows
    assert row["question"] == "q"


BUGGY_APPS_RECORDS = [
    {
        "apps_problem_id": 7,
        "question": "Print the sum of two integers read from input.",
        "difficulty": "interview",
        "flags": "",
        "solutions": [{"solution": "print(sum(map(int, input().split())))"}],
        "buggy_solutions": [
            {"solution": "print(sum(map(int, input().split())) + 1)"},
            {"solution": "print(max(map(int, input().split())))"},
        ],
    },
    {
        "apps_problem_id": 8,
        "question": "Flagged problem.",
        "difficulty": "interview",
        "flags": "violence",
        "solutions": [{"solution": "print(1)"}],
        "buggy_solutions": [{"solution": "print(2)"}],
    },
    {
        "apps_problem_id": 9,
        "question": "Too easy.",
        "difficulty": "introductory",
        "flags": "",
        "solutions": [{"solution": "print(3)"}],
        "buggy_solutions": [{"solution": "print(4)"}],
    },
]

APPS_RECORDS = [
    {
        "problem_id": 1,
        "question": "Echo the input.",
        "difficulty": "interview",
        "solutions": json.dumps(
            ["print(input())", "import sys\nprint(sys.stdin.read())"]
        ),
    },
    {
        "problem_id": 2,
        "question": "No solutions.",
        "difficulty": "interview",
        "solutions": "",
    },
]


def _write_raw(tmp_path, name, records, split="train"):
    raw = tmp_path / "code_validation" / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_buggy_apps_loader_on_local_files(code_validation_plugin, tmp_path) -> None:
    _write_raw(tmp_path, "buggy_apps", BUGGY_APPS_RECORDS)
    rows = _dataset("buggy_apps", "train", tmp_path).rows
    assert [r["y"] for r in rows] == [1, 0, 0]
    assert {r["task_id"] for r in rows} == {"buggy_apps/7"}
    assert rows[2]["solution"].startswith("print(max")
    every = _dataset("buggy_apps", "train", tmp_path, apps_exclude_flagged=False).rows
    assert len(every) == 5
    easy = _dataset("buggy_apps", "train", tmp_path, apps_difficulty="introductory")
    assert [r["task_id"] for r in easy.rows] == ["buggy_apps/9"] * 2
    # processed rows are cached: the raw file is no longer needed
    (tmp_path / "code_validation" / "buggy_apps" / "raw" / "train.jsonl").unlink()
    assert _dataset("buggy_apps", "train", tmp_path).rows == rows


def test_buggy_apps_rows_alternate_correct_and_buggy_problem_by_problem(
    code_validation_plugin, tmp_path
) -> None:
    # The original put every correct solution first: keeping the first rows
    # (max_train_size) kept correct solutions only
    from nip_plugin_code_validation.apps import process_buggy_apps

    rows = process_buggy_apps(BUGGY_APPS_RECORDS, "interview", exclude_flagged=False)
    assert [(r["task_id"], r["y"]) for r in rows] == [
        ("buggy_apps/7", 1),
        ("buggy_apps/7", 0),
        ("buggy_apps/7", 0),
        ("buggy_apps/8", 1),
        ("buggy_apps/8", 0),
    ]
    assert [r["solution"] for r in rows[:3]] == [
        "print(sum(map(int, input().split())))",
        "print(sum(map(int, input().split())) + 1)",
        "print(max(map(int, input().split())))",
    ]
    from nip_core.parameters import HyperParameters
    from nip_core.settings import ExperimentSettings

    from nip_plugin_code_validation.data import CodeValidationDataset

    _write_raw(tmp_path, "buggy_apps", BUGGY_APPS_RECORDS)
    hyper_params = HyperParameters(
        scenario="code_validation",
        trainer="synthetic_text_sft",
        dataset="buggy_apps",
        agents={"_default": {"model_name": "m"}},
        code_validation={"apps_exclude_flagged": False},
        dataset_options={"max_train_size": 2},
    )
    settings = ExperimentSettings(data_dir=str(tmp_path))
    capped = CodeValidationDataset(hyper_params, settings, split="train")
    assert [r["y"] for r in capped.rows] == [1, 0]


def test_apps_loader_on_a_bad_local_file(code_validation_plugin, tmp_path) -> None:
    raw = tmp_path / "code_validation" / "buggy_apps" / "raw" / "train.jsonl"
    _write_raw(tmp_path, "buggy_apps", BUGGY_APPS_RECORDS)
    raw.write_text(raw.read_text() + "7\n")
    with pytest.raises(
        DatasetNotFoundError, match=r"train.jsonl, line 4: .*JSON object"
    ):
        _dataset("buggy_apps", "train", tmp_path)
    raw.write_text('{"difficulty": "interview"}\n')
    with pytest.raises(DatasetNotFoundError, match="line 1.*missing: question"):
        _dataset("buggy_apps", "train", tmp_path)


def test_apps_loader_on_local_files(code_validation_plugin, tmp_path) -> None:
    _write_raw(tmp_path, "apps", APPS_RECORDS, split="test")
    rows = _dataset("apps", "test", tmp_path).rows
    assert [(r["solution"], r["y"]) for r in rows] == [("print(input())", 1)]
    second = _dataset("apps", "test", tmp_path, apps_solution_number=1).rows
    assert second[0]["solution"] == "import sys\nprint(sys.stdin.read())"


def test_missing_online_dataset_without_network(
    code_validation_plugin, tmp_path, monkeypatch
) -> None:
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'lrhammond/buggy-apps' on the Hub")

    fake = types.ModuleType("datasets")
    fake.load_dataset = offline
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(DatasetNotFoundError) as info:
        _dataset("buggy_apps", "train", tmp_path)
    message = str(info.value)
    assert "ConnectionError" in message and "lrhammond/buggy-apps" in message
    assert "humaneval_buggy" in message and "raw" in message
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DatasetNotFoundError, match="`datasets` package"):
        _dataset("apps", "train", tmp_path)


def test_hub_retry_warnings_are_printed_once(
    code_validation_plugin, tmp_path, monkeypatch
) -> None:
    # huggingface_hub and datasets put a handler of their own on their loggers
    # when imported, and pass records on too: under the nip command each retry
    # warning was printed twice, once bare and once in nip's format
    import logging

    from nip_core import logs

    hub = logging.getLogger("huggingface_hub")
    saved = (list(hub.handlers), hub.propagate, hub.level, logs._library_level)
    emitted: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            emitted.append(record.getMessage())

    def offline(*args, **kwargs):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s")
        raise ConnectionError("Couldn't reach 'lrhammond/buggy-apps' on the Hub")

    fake = types.ModuleType("datasets")
    fake.load_dataset = offline
    monkeypatch.setitem(sys.modules, "datasets", fake)
    keep = Keep()
    try:
        monkeypatch.setattr(logs, "_library_level", logging.WARNING)
        own = Keep()  # what the hub client's import installs
        hub.addHandler(own)
        logging.getLogger().addHandler(keep)
        with pytest.raises(DatasetNotFoundError):
            _dataset("buggy_apps", "train", tmp_path)
        assert own not in hub.handlers and hub.propagate
        assert emitted == ["Retrying in 1s"]
    finally:
        logging.getLogger().removeHandler(keep)
        hub.handlers[:] = saved[0]
        hub.propagate, hub.level = saved[1], saved[2]


def _llm_responder(model, messages, request, rng):
    prompt = messages[-1]["content"]
    code = prompt.split("```python\n")[-1].split("```")[0]
    if "has_close_elements" in code:
        buggy = code.replace("return True", "return False")
        return "Here it is:\n```python\n" + buggy + "```"
    if "below_zero" in code:
        # a "bug" whose error output is whatever the code chose to print (what a
        # hostile reply would fill with something it read)
        return "```python\n" + code + "\nraise RuntimeError('LEAKED-LINE')\n```"
    if "separate_paren_groups" in code:
        return "Sorry, I would rather not."
    return f"```python\n{code}```"  # unchanged: rejected


def test_llm_method_keeps_only_confirmed_bugs(tmp_path) -> None:
    from nip_core.cli.datasets_cmd import builder_parser  # noqa: F401 - CLI wiring

    from nip_plugin_code_validation.generation import build_dataset

    with OpenAiTestServer(models=["bug-writer"], responder=_llm_responder) as server:
        path = build_dataset(
            "llm_bugs",
            tmp_path,
            method="llm",
            model="bug-writer",
            base_url=server.base_url,
            num_problems=4,
            attempts=2,
        )
        # two attempts for the two problems without a confirmed bug
        assert server.requests["chat"] == 4 + 2
    rows = read_rows(path / "train.jsonl") + read_rows(path / "test.jsonl")
    buggy = sorted(r["task_id"] for r in rows if r["y"] == 0)
    assert buggy == ["HumanEval/0", "HumanEval/3"]
    assert len(rows) == 4
    # the rows say how the bug failed, not what the untrusted code printed
    mutations = {r["task_id"]: r["mutation"] for r in rows if r["y"] == 0}
    assert mutations["HumanEval/3"] == "LLM bug (bug-writer): error (exit 1)"
    assert all("LEAKED" not in str(r.get("mutation")) for r in rows)
    metadata = json.loads((path / "metadata.json").read_text())
    reasons = {s["task_id"]: s["reason"] for s in metadata["skipped"]}
    assert reasons["HumanEval/1"] == "the reply had no code block"
    assert reasons["HumanEval/2"] == "the reply repeated the solution"


def test_bad_builder_options_are_one_clear_error(tmp_path) -> None:
    from nip_plugin_code_validation.generation import build_dataset

    with pytest.raises(NipConfigError) as info:
        build_dataset("x", tmp_path, method="magic", test_fraction=2.0)
    message = str(info.value)
    assert "method" in message and "mutation" in message and "test_fraction" in message


def test_builder_problems_name_the_flags(tmp_path, capsys) -> None:
    from nip_core.cli.main import main

    data = ["--data-dir", str(tmp_path)]
    generate = ["datasets", "generate", "code_validation"]
    assert (
        main(
            [*generate, "a", "--method", "llm", "--model", "m"]
            + ["--backend", "nosuch", *data]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "  - --backend: unknown text backend (got 'nosuch')" in err
    assert (
        main(
            [*generate, "b", "--method", "llm", "--model", "m"]
            + ["--base-url", "notaurl", *data]
        )
        == 2
    )
    assert "  - --base-url: must be an http:// or https:// URL" in (
        capsys.readouterr().err
    )
    # options of the llm method alone are refused with mutation, not ignored
    assert main([*generate, "c", "--model", "m", "--attempts", "5", *data]) == 2
    err = capsys.readouterr().err
    assert "  - --model: is an option of --method llm only" in err
    assert "  - --attempts: is an option of --method llm only" in err
    assert not (tmp_path / "code_validation").exists()


def test_llm_method_api_error_is_one_clear_error(tmp_path) -> None:
    from nip_core.errors import BackendError

    from nip_plugin_code_validation.generation import build_dataset

    with OpenAiTestServer(models=["bug-writer"], responder=_llm_responder) as server:
        with pytest.raises(BackendError) as info:
            build_dataset(
                "x",
                tmp_path,
                method="llm",
                model="no-such-model",
                base_url=server.base_url,
                num_problems=2,
            )
    assert "no-such-model" in str(info.value)
    assert not (tmp_path / "code_validation" / "x").exists()


def test_the_sandbox_limits_are_options_of_the_build(tmp_path, monkeypatch) -> None:
    """``--sandbox-wall-time`` and ``--sandbox-memory-mb`` reach every sandboxed
    test run of the build, and ``metadata.json`` records them."""
    from nip_core.cli.main import main

    from nip_plugin_code_validation import humaneval
    from nip_plugin_code_validation.sandbox import SandboxLimits

    seen = []
    real = humaneval.run_tests

    def recording(*args, limits, **kwargs):
        seen.append(limits)
        return real(*args, limits=limits, **kwargs)

    monkeypatch.setattr(humaneval, "run_tests", recording)
    command = ["datasets", "generate", "code_validation", "limited"]
    command += ["--num-problems", "3", "--data-dir", str(tmp_path)]
    command += ["--sandbox-wall-time", "2.5", "--sandbox-memory-mb", "256"]
    assert main(command) == 0
    expected = SandboxLimits(wall_time=2.5, cpu_time=3, memory_mb=256)
    assert seen and set(seen) == {expected}
    metadata = json.loads(
        (tmp_path / "code_validation" / "limited" / "metadata.json").read_text()
    )
    assert metadata["sandbox_limits"] == {
        "wall_time": 2.5,
        "cpu_time": 3,
        "memory_mb": 256,
    }


def test_the_default_sandbox_limits_and_bad_ones(tmp_path) -> None:
    from nip_plugin_code_validation.generation import build_dataset, sandbox_limits
    from nip_plugin_code_validation.humaneval import DEFAULT_LIMITS

    assert sandbox_limits(10.0, 1024) == DEFAULT_LIMITS
    # the CPU time never exceeds the wall time (rounded up), nor the default
    assert sandbox_limits(0.5, 64).cpu_time == 1
    assert sandbox_limits(60, 4096).cpu_time == DEFAULT_LIMITS.cpu_time
    with pytest.raises(NipConfigError) as info:
        build_dataset("x", tmp_path, sandbox_wall_time=0, sandbox_memory_mb=32)
    paths = [problem.path for problem in info.value.problems]
    assert paths == ["sandbox_wall_time", "sandbox_memory_mb"]
    assert not (tmp_path / "code_validation").exists()
