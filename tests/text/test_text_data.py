"""TextDataset: the rows a text scenario loads are checked before a run uses them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from nip_core.errors import DatasetNotFoundError, NipError
from nip_core.text.data import TextDataset


class RowsDataset(TextDataset):
    instance_keys = ("question",)
    given: Sequence[Mapping[str, Any]] = ()

    def load_rows(self) -> Sequence[Mapping[str, Any]]:
        return self.given


def _dataset(rows, split="train", max_size=None):
    hyper_params = SimpleNamespace(
        dataset="./my_claims",
        scenario="claims",
        dataset_options=SimpleNamespace(max_train_size=max_size, max_test_size=None),
    )
    settings = SimpleNamespace(data_dir="/tmp/nowhere")
    dataset_class = type("Rows", (RowsDataset,), {"given": rows})
    return dataset_class(hyper_params, settings, split=split)


def test_rows_get_ids_and_integer_labels():
    dataset = _dataset(
        [
            {"question": "a", "y": True},
            {"question": "b", "y": np.int64(0)},
            {"question": "c", "y": 1.0},
            {"question": "d", "y": "0"},
        ]
    )
    assert [(row["id"], row["y"]) for row in dataset.rows] == [
        (0, 1),
        (1, 0),
        (2, 1),
        (3, 0),
    ]
    assert all(type(row["y"]) is int for row in dataset.rows)


@pytest.mark.parametrize("split", ["train", "test"])
def test_an_empty_split_is_a_clear_error(split):
    with pytest.raises(DatasetNotFoundError) as caught:
        _dataset([], split=split)
    message = str(caught.value)
    assert f"dataset './my_claims' of scenario 'claims' ({split} split)" in message
    assert "holds no datapoints" in message
    assert "check the path" in message


@pytest.mark.parametrize(
    ("row", "detail"),
    [
        ({"question": "a"}, "row 1 has no label 'y'"),
        ({"question": "a", "y": 2}, "row 1 has label y=2"),
        ({"question": "a", "y": "yes"}, "row 1 has label y='yes'"),
        ({"question": "a", "y": None}, "row 1 has label y=None"),
        ({"question": "a", "y": 0.5}, "row 1 has label y=0.5"),
    ],
)
def test_a_row_without_a_valid_label_is_a_clear_error(row, detail):
    with pytest.raises(NipError, match="cannot be used") as caught:
        _dataset([{"question": "ok", "y": 1}, row])
    message = str(caught.value)
    assert detail in message
    # the rows were found: the hint is where labels come from, not where to put
    # files (a shipped dataset whose load_rows forgot 'y' was told to "place its
    # files" in the data directory)
    assert "Rows.load_rows()" in message
    assert "check the path" not in message and "place its files" not in message


def test_max_size_applies_before_the_checks():
    # only the rows a run uses are checked
    dataset = _dataset([{"question": "a", "y": 1}, {"question": "b"}], max_size=1)
    assert len(dataset) == 1
