"""``buggy_apps`` and ``apps``: the original library's online datasets.

``buggy_apps`` (``lrhammond/buggy-apps`` on the Hugging Face hub) holds APPS
problems with their correct solutions and buggy versions of them (GPT-4o was asked
for subtle bugs). Rows: every correct solution (``y = 1``) and every buggy one
(``y = 0``) of the problems of ``code_validation.apps_difficulty``, without the
ones the moderation API flagged when ``code_validation.apps_exclude_flagged``;
problem by problem, its correct and buggy solutions alternating, so that the
first rows (``dataset_options.max_train_size``) hold both labels.
(The original counted a problem's buggy solutions by its number of *correct*
ones; here each list is read whole.)

``apps`` (``codeparrot/apps``) has correct solutions only: one row per problem of
the difficulty, its solution number ``code_validation.apps_solution_number``
(problems with fewer solutions are left out). Solutions are read as the JSON gives
them (the original also un-escaped them, which mangled non-ASCII text and escape
sequences inside string literals).

The raw records come from ``<data_dir>/code_validation/<name>/raw/<split>.jsonl``
when that file exists (records in the hub's schema: a way to work offline), else
from the hub through the ``datasets`` package (``pip install
nip-plugin-code-validation[apps]``). Processed rows are cached under
``processed/``, so the hub is needed once per difficulty and filter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from itertools import zip_longest
from pathlib import Path
from typing import Any

from nip_plugin_code_validation.data import read_json_objects, read_rows, write_rows
from nip_plugin_code_validation.humaneval import hash_parity

__all__ = [
    "HUB_REPOSITORIES",
    "how_to_get_apps",
    "load_apps_rows",
    "process_apps",
    "process_buggy_apps",
]

HUB_REPOSITORIES: dict[str, str] = {
    "buggy_apps": "lrhammond/buggy-apps",
    "apps": "codeparrot/apps",
}


def _solution_text(item: Any) -> str | None:
    if isinstance(item, Mapping):
        item = item.get("solution")
    return item if isinstance(item, str) and item.strip() else None


def process_buggy_apps(
    records: Iterable[Mapping[str, Any]], difficulty: str, exclude_flagged: bool
) -> list[dict[str, Any]]:
    """Rows of ``buggy_apps`` from hub records (see the module docstring), problem
    by problem, each problem's correct and buggy solutions alternating.

    (The original put every correct solution before every buggy one, so that
    ``dataset_options.max_train_size`` / ``max_test_size``, which keep the first
    rows, kept correct solutions only: a verifier that always accepts was right on
    all of them.)
    """
    rows = []
    for index, record in enumerate(records):
        if record.get("difficulty") != difficulty:
            continue
        if exclude_flagged and record.get("flags"):
            continue
        task_id = f"buggy_apps/{record.get('apps_problem_id', index)}"
        by_label = []
        for y, key in ((1, "solutions"), (0, "buggy_solutions")):
            texts = (_solution_text(item) for item in record.get(key) or ())
            by_label.append(
                [
                    {
                        "question": record["question"],
                        "solution": solution,
                        "y": y,
                        "prover_stance": hash_parity(solution),
                        "source": "buggy_apps",
                        "task_id": task_id,
                        "mutation": None if y else "LLM-written bug",
                    }
                    for solution in texts
                    if solution is not None
                ]
            )
        for pair in zip_longest(*by_label):
            rows.extend(row for row in pair if row is not None)
    return rows


def process_apps(
    records: Iterable[Mapping[str, Any]], difficulty: str, solution_number: int
) -> list[dict[str, Any]]:
    """Rows of ``apps`` from hub records (see the module docstring)."""
    rows = []
    for index, record in enumerate(records):
        if record.get("difficulty") != difficulty:
            continue
        solutions = record.get("solutions") or "[]"
        if isinstance(solutions, str):
            try:
                solutions = json.loads(solutions)
            except json.JSONDecodeError:
                continue
        if len(solutions) <= solution_number:
            continue
        solution = _solution_text(solutions[solution_number])
        if solution is None:
            continue
        rows.append(
            {
                "question": record["question"],
                "solution": solution,
                "y": 1,
                "prover_stance": hash_parity(solution),
                "source": "apps",
                "task_id": f"apps/{record.get('problem_id', index)}",
                "mutation": None,
            }
        )
    return rows


def how_to_get_apps(dataset: Any) -> str:
    raw = Path(dataset.dataset_dir) / "raw"
    return (
        f"{dataset.name} is downloaded from the Hugging Face hub "
        f"({HUB_REPOSITORIES[dataset.name]}) with the `datasets` package the first "
        "time it is used (pip install 'nip-plugin-code-validation[apps]'); connect "
        f"to the internet once, or put {dataset.split}.jsonl records in the hub's "
        f"schema in {raw}. The offline dataset is humaneval_buggy."
    )


def _hub_records(name: str, split: str) -> list[dict[str, Any]]:
    import datasets
    from nip_core.logs import adopt_library_loggers

    # their own handlers, installed on import, would print each retry twice
    adopt_library_loggers("datasets", "huggingface_hub")
    if name == "apps":
        # codeparrot/apps is a script dataset; its JSON files load without it
        data = datasets.load_dataset(
            "json",
            data_files=f"hf://datasets/{HUB_REPOSITORIES[name]}/{split}.jsonl",
            split="train",
        )
    else:
        data = datasets.load_dataset(HUB_REPOSITORIES[name], split=split)
    return [dict(record) for record in data]


def _raw_records(dataset: Any) -> list[dict[str, Any]]:
    local = Path(dataset.dataset_dir) / "raw" / f"{dataset.split}.jsonl"
    if local.is_file():
        return [row for _, row in read_json_objects(local, ("question",))]
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise dataset.dataset_not_found(
            "the `datasets` package is not installed"
        ) from None
    try:
        return _hub_records(dataset.name, dataset.split)
    except Exception as error:  # noqa: BLE001 - network, hub and parsing errors
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise dataset.dataset_not_found(
            f"downloading it failed ({type(error).__name__}: {detail})"
        ) from None


def load_apps_rows(dataset: Any) -> list[dict[str, Any]]:
    """The rows of ``buggy_apps`` or ``apps`` for a dataset's split (cached)."""
    options = dataset.hyper_params.code_validation
    if dataset.name == "buggy_apps":
        flagged = "without_flagged" if options.apps_exclude_flagged else "all"
        # (rows cached in the original's order, every correct solution first, are
        # under the key without "-by_problem" and are not read)
        key = f"{options.apps_difficulty}-{flagged}-by_problem"
    else:
        key = f"{options.apps_difficulty}-solution{options.apps_solution_number}"
    cache = Path(dataset.dataset_dir) / "processed" / key / f"{dataset.split}.jsonl"
    if cache.is_file() and not getattr(dataset.settings, "ignore_cache", False):
        return read_rows(cache)
    records = _raw_records(dataset)
    if dataset.name == "buggy_apps":
        rows = process_buggy_apps(
            records, options.apps_difficulty, options.apps_exclude_flagged
        )
    else:
        rows = process_apps(
            records, options.apps_difficulty, options.apps_solution_number
        )
    if not rows:
        raise dataset.dataset_not_found(
            f"no {options.apps_difficulty} problems in its {dataset.split} split "
            "(after the filters)"
        )
    write_rows(cache, rows)
    return rows
