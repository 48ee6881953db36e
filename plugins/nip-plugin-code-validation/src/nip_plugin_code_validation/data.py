"""The code validation datasets.

A datapoint is a programming ``question`` and a candidate ``solution``; ``y = 1``
iff the solution is correct; ``prover_stance`` is the parity of the solution's
SHA-256 (the verdict a single prover argues for with
``protocol_common.randomize_prover_stance``, as in the original library).

============================  ======================================================
name                          where the rows come from
============================  ======================================================
``humaneval_buggy``           shipped with the plugin (offline; see
                              :mod:`~nip_plugin_code_validation.humaneval`); a
                              version rebuilt with ``nip datasets generate
                              code_validation humaneval_buggy`` in the data
                              directory takes precedence
``buggy_apps``                the original's dataset on the Hugging Face hub
                              (``lrhammond/buggy-apps``; online, first use only)
``apps``                      APPS (``codeparrot/apps``), correct solutions only
``test``                      a tiny fixed set for tests
any other name                ``<data_dir>/code_validation/<name>/{train,test}.jsonl``
                              (written by ``nip datasets generate``), or a path to a
                              directory holding such files
============================  ======================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from nip_core.text.data import TextDataset

from nip_plugin_code_validation.humaneval import hash_parity

__all__ = [
    "NAMED_DATASETS",
    "TEST_PROBLEMS",
    "CodeValidationDataset",
    "read_rows",
    "test_rows",
    "write_rows",
]

NAMED_DATASETS: tuple[str, ...] = ("humaneval_buggy", "buggy_apps", "apps", "test")

REQUIRED_FIELDS: tuple[str, ...] = ("question", "solution", "y")

TEST_PROBLEMS: tuple[dict[str, Any], ...] = (
    {
        "task_id": "test/0",
        "question": "Write `add(a, b)` returning the sum of two integers.",
        "correct": "def add(a, b):\n    return a + b\n",
        "buggy": "def add(a, b):\n    return a - b\n",
        "test": "def check(f):\n    assert f(2, 3) == 5\n    assert f(-1, 1) == 0\n",
        "entry_point": "add",
    },
    {
        "task_id": "test/1",
        "question": "Write `is_even(n)` returning whether the integer n is even.",
        "correct": "def is_even(n):\n    return n % 2 == 0\n",
        "buggy": "def is_even(n):\n    return n % 2 == 1\n",
        "test": "def check(f):\n    assert f(4)\n    assert not f(7)\n",
        "entry_point": "is_even",
    },
    {
        "task_id": "test/2",
        "question": "Write `largest(xs)` returning the largest element of a "
        "non-empty list of numbers.",
        "correct": "def largest(xs):\n    best = xs[0]\n    for x in xs:\n"
        "        if x > best:\n            best = x\n    return best\n",
        "buggy": "def largest(xs):\n    best = xs[0]\n    for x in xs[1:-1]:\n"
        "        if x > best:\n            best = x\n    return best\n",
        "test": "def check(f):\n    assert f([1, 5, 2]) == 5\n"
        "    assert f([1, 2, 9]) == 9\n",
        "entry_point": "largest",
    },
    {
        "task_id": "test/3",
        "question": "Write `count_vowels(s)` returning how many of the characters "
        "of s are vowels (a, e, i, o, u; lower or upper case).",
        "correct": "def count_vowels(s):\n"
        "    return sum(c in 'aeiouAEIOU' for c in s)\n",
        "buggy": "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s)\n",
        "test": "def check(f):\n    assert f('Apple') == 2\n    assert f('xyz') == 0\n",
        "entry_point": "count_vowels",
    },
    {
        "task_id": "test/4",
        "question": "Write `factorial(n)` returning n! for a non-negative integer n.",
        "correct": "def factorial(n):\n    out = 1\n    for i in range(2, n + 1):\n"
        "        out *= i\n    return out\n",
        "buggy": "def factorial(n):\n    out = 1\n    for i in range(2, n):\n"
        "        out *= i\n    return out\n",
        "test": "def check(f):\n    assert f(0) == 1\n    assert f(5) == 120\n",
        "entry_point": "factorial",
    },
)
"""The ``test`` dataset's problems: a correct and a buggy solution each, with tests
(the first three are the train split, the last two the test split)."""


def test_rows(split: str) -> list[dict[str, Any]]:
    """The rows of the ``test`` dataset."""
    problems = TEST_PROBLEMS[:3] if split == "train" else TEST_PROBLEMS[3:]
    rows = []
    for problem in problems:
        for y, key in ((1, "correct"), (0, "buggy")):
            rows.append(
                {
                    "question": problem["question"],
                    "solution": problem[key],
                    "y": y,
                    "prover_stance": hash_parity(problem[key]),
                    "source": "test",
                    "task_id": problem["task_id"],
                    "mutation": None if y else "hand-written bug",
                }
            )
    return rows


def read_json_objects(
    path: Path, required: Sequence[str] = ()
) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of a JSON-lines file whose every non-blank line is
    a JSON object with the ``required`` fields; one clear error naming the file
    and line otherwise (not JSON, not an object, a field missing)."""
    from nip_core.errors import DatasetNotFoundError

    objects = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DatasetNotFoundError(
                    f"{path}, line {number}: not UTF-8 text (byte "
                    f"{raw[error.start]:#04x} at column {error.start + 1}); JSON "
                    "lines files are UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetNotFoundError(
                    f"{path}, line {number}: not JSON ({error.msg})"
                ) from None
            if not isinstance(row, dict):
                raise DatasetNotFoundError(
                    f"{path}, line {number}: a row must be a JSON object with the "
                    f"fields {', '.join(required) or '...'}, got "
                    f"{type(row).__name__} {_shorten(row)}"
                )
            missing = [k for k in required if k not in row]
            if missing:
                raise DatasetNotFoundError(
                    f"{path}, line {number}: a row needs the fields "
                    f"{', '.join(required)} (missing: {', '.join(missing)})"
                )
            objects.append((number, row))
    return objects


def _shorten(value: Any, limit: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file, checked (one clear error per bad line)."""
    from nip_core.errors import DatasetNotFoundError

    rows = []
    for number, row in read_json_objects(path, REQUIRED_FIELDS):
        # (true and 1.0 equal 1 in Python, but are not labels)
        if type(row["y"]) is not int or row["y"] not in (0, 1):
            raise DatasetNotFoundError(
                f"{path}, line {number}: y must be 0 or 1, got {_shorten(row['y'])}"
            )
        for key in ("question", "solution"):
            if not isinstance(row[key], str):
                raise DatasetNotFoundError(
                    f"{path}, line {number}: {key} must be a string, got "
                    f"{type(row[key]).__name__} {_shorten(row[key])}"
                )
        row.setdefault("prover_stance", hash_parity(str(row["solution"])))
        rows.append(row)
    return rows


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write rows as JSON lines, atomically."""
    from nip_core.runs.io import atomic_write_text

    return atomic_write_text(
        path, "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows)
    )


def shipped_path(name: str, split: str) -> Path:
    """Where a dataset shipped with the package keeps a split."""
    return Path(str(resources.files(__package__) / "data" / name / f"{split}.jsonl"))


class CodeValidationDataset(TextDataset):
    """The code validation datasets (see the module docstring)."""

    instance_keys = ("question", "solution", "prover_stance")

    def how_to_get(self) -> str:
        if self.name in ("buggy_apps", "apps"):
            from nip_plugin_code_validation.apps import how_to_get_apps

            return how_to_get_apps(self)
        return super().how_to_get() + (
            "; the named datasets are " + ", ".join(NAMED_DATASETS)
        )

    def load_rows(self) -> Sequence[Mapping[str, Any]]:
        if self.split == "validation":
            raise self.dataset_not_found(
                "code validation datasets have a train and a test split only"
            )
        name = self.name
        if name == "test":
            return test_rows(self.split)
        if name in ("buggy_apps", "apps"):
            from nip_plugin_code_validation.apps import load_apps_rows

            return load_apps_rows(self)
        generated = self.raw_dir / f"{self.split}.jsonl"
        if self.is_own_data or generated.is_file():
            if not generated.is_file():
                raise self.dataset_not_found(f"{generated} does not exist")
            return read_rows(generated)
        if name == "humaneval_buggy":
            return read_rows(shipped_path(name, self.split))
        raise self.dataset_not_found(
            f"there is no {generated}, and {name!r} is not a named dataset"
        )

    @property
    def raw_dir(self) -> Path:
        """``<data_dir>/code_validation/<name>`` (what ``nip datasets generate``
        writes), or the directory a path names."""
        if self.is_own_data:
            return Path(self.name).expanduser().resolve()
        return self.dataset_dir
