"""Datasets: the processed-data cache, missing data, the data cycler, embeddings."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch
from tensordict import TensorDict

from nip_core.errors import DatasetNotFoundError
from nip_core.protocols import build_protocol_handler
from nip_core.scenario.data import DataCycler, TensorDictDataset
from nip_core.scenario.pretrained import PretrainedModel
from nip_core.testing.synthetic.data import SyntheticDataset, has_adjacent_ones


def _dataset(synthetic_scenario, split="train", settings=None, **overrides):
    hp = synthetic_scenario.hyper_params(**overrides)
    settings = settings or synthetic_scenario.settings()
    handler = build_protocol_handler(hp, settings)
    return SyntheticDataset(hp, settings, handler, split=split)


def test_labels_match_the_rule_and_are_balanced(synthetic_scenario):
    dataset = _dataset(synthetic_scenario)
    data = dataset.data
    assert len(dataset) == 16
    assert torch.equal(has_adjacent_ones(data["x"]).long(), data["y"])
    assert data["y"].sum().item() == 8
    assert torch.equal(data["id"], torch.arange(16))
    test = _dataset(synthetic_scenario, split="test")
    assert len(test) == 8
    assert not torch.equal(test.data["x"][:8], data["x"][:8])


def test_cache_is_reused_and_ignore_cache_rebuilds(synthetic_scenario):
    first = _dataset(synthetic_scenario)
    assert not first.loaded_from_cache
    stored = json.loads((first.processed_dir / "cache_key.json").read_text())
    assert stored["num_bits"] == 6 and stored["split"] == "train"
    second = _dataset(synthetic_scenario)
    assert second.loaded_from_cache
    assert (second.data == first.data).all()
    rebuilt = _dataset(
        synthetic_scenario, settings=synthetic_scenario.settings(ignore_cache=True)
    )
    assert not rebuilt.loaded_from_cache
    assert (rebuilt.data == first.data).all()


def _truncate(path):
    path.write_bytes(path.read_bytes()[:8])


def _break_json(path):
    # the same size, so that only reading it can tell
    path.write_text("{".ljust(path.stat().st_size))


def test_a_cache_entry_another_process_put_in_place_first_is_kept(
    synthetic_scenario, monkeypatch
):
    """Two jobs of a sweep build the same entry at once: the one whose rename
    comes second finds the other's entry in place (the rename fails with
    'Directory not empty') and keeps it instead of failing the job."""
    import os

    from nip_core.scenario import data as data_module

    first = _dataset(synthetic_scenario)
    entry = first.processed_dir
    winner = entry.with_name(entry.name + ".winner")
    os.rename(entry, winner)
    real_replace = os.replace

    def replace_after_the_other_process(src, dst):
        if os.fspath(dst) == os.fspath(entry) and not entry.exists():
            real_replace(winner, entry)  # the other job's rename lands first
        return real_replace(src, dst)

    monkeypatch.setattr(data_module.os, "replace", replace_after_the_other_process)
    second = _dataset(synthetic_scenario)
    assert not second.loaded_from_cache
    assert torch.equal(second.data["x"], first.data["x"])
    monkeypatch.undo()
    assert not any(p.name.startswith(".tmp-") for p in entry.parent.iterdir())
    third = _dataset(synthetic_scenario)
    assert third.loaded_from_cache
    assert torch.equal(third.data["x"], first.data["x"])


def test_an_entry_another_process_removes_meanwhile_is_no_error(
    synthetic_scenario, monkeypatch
):
    """Two jobs replacing the same entry (both rebuilding it, with
    ``ignore_cache`` or after finding it damaged) remove the old one at the same
    moment: the one that comes second finds it gone, which is no error (it was
    'No such file or directory' from deep inside the removal)."""
    import os
    import shutil

    from nip_core.scenario import data as data_module

    first = _dataset(synthetic_scenario)
    entry = first.processed_dir
    real_rmtree, real_rename = shutil.rmtree, os.rename

    def the_other_process_removes_it_first(path) -> None:
        if os.fspath(path) == os.fspath(entry) and entry.exists():
            real_rmtree(entry)

    def rmtree(path, *args, **kwargs):
        the_other_process_removes_it_first(path)
        return real_rmtree(path, *args, **kwargs)

    def rename(src, dst, *args, **kwargs):
        the_other_process_removes_it_first(src)
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(data_module.shutil, "rmtree", rmtree)
    monkeypatch.setattr(data_module.os, "rename", rename)
    settings = synthetic_scenario.settings(ignore_cache=True)
    second = _dataset(synthetic_scenario, settings=settings)
    assert torch.equal(second.data["x"], first.data["x"])
    monkeypatch.undo()
    assert [p.name for p in entry.parent.iterdir() if p.name.startswith(".")] == []
    third = _dataset(synthetic_scenario)
    assert third.loaded_from_cache
    assert torch.equal(third.data["x"], first.data["x"])


def test_what_killed_builds_left_is_removed_by_the_next_build(synthetic_scenario):
    """A process killed between renaming an old entry aside and deleting it leaves
    ``.old-*`` (garbage at any age); one killed while writing an entry leaves
    ``.tmp-*`` (garbage once untouched for a day; a younger one may be a build in
    progress beside this one)."""
    import os
    import time

    from nip_core.scenario.data import STALE_BUILD_S

    first = _dataset(synthetic_scenario)
    cache_dir = first.processed_dir.parent
    aside = cache_dir / ".old-train-0123-99999-abcdef12"
    killed = cache_dir / ".tmp-killed"
    writing = cache_dir / ".tmp-writing"
    for path in (aside, killed, writing):
        (path / "data").mkdir(parents=True)
        (path / "data" / "x.memmap").write_bytes(b"0" * 16)
    # the killed build's files were last written over a day ago; the other
    # build's directory is old but a file in it was written just now
    old = time.time() - STALE_BUILD_S - 60
    for path in (killed, killed / "data", killed / "data" / "x.memmap", writing):
        os.utime(path, (old, old))
    rebuilt = _dataset(
        synthetic_scenario, settings=synthetic_scenario.settings(ignore_cache=True)
    )
    assert not rebuilt.loaded_from_cache
    left = sorted(p.name for p in cache_dir.iterdir() if p.name.startswith("."))
    assert left == [".tmp-writing"]


@pytest.mark.parametrize(
    ("damage", "target", "said"),
    [
        # a partial copy: the memory-mapped loader would fill it up with zeros
        (_truncate, "data/x.memmap", "x.memmap has 8 bytes, 384 were written"),
        (lambda path: path.unlink(), "data/y.memmap", "y.memmap is missing"),
        (_break_json, "data/meta.json", "it cannot be read (JSONDecodeError"),
        (lambda path: path.unlink(), "files.json", "files.json) is missing"),
    ],
)
def test_a_damaged_cache_entry_is_built_again(
    synthetic_scenario, caplog, damage, target, said
):
    first = _dataset(synthetic_scenario)
    damage(first.processed_dir / target)
    with caplog.at_level("WARNING", logger="nip_core.scenario.data"):
        again = _dataset(synthetic_scenario)
    assert not again.loaded_from_cache
    assert torch.equal(again.data["x"], first.data["x"])
    assert torch.equal(again.data["y"], first.data["y"])
    [record] = [r for r in caplog.records if "is damaged" in r.getMessage()]
    assert said in record.getMessage()
    assert "building it again" in record.getMessage()
    # and the entry written again is whole
    third = _dataset(synthetic_scenario)
    assert third.loaded_from_cache
    assert torch.equal(third.data["x"], first.data["x"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"nip_protocol": {"max_message_rounds": 5}},
        {"interaction_protocol": "debate"},  # other channels
        {"message_size": 2},
        {"synthetic": {"num_bits": 7}},
        {"synthetic": {"data_seed": 3}},
        {"dataset": "small"},
    ],
    ids=["rounds", "channels", "message_size", "num_bits", "data_seed", "name"],
)
def test_cache_key_covers_what_shapes_the_data(synthetic_scenario, overrides):
    base = _dataset(synthetic_scenario)
    changed = _dataset(synthetic_scenario, **overrides)
    assert changed.cache_key != base.cache_key
    assert changed.processed_dir != base.processed_dir
    assert not changed.loaded_from_cache


def test_cache_key_ignores_what_does_not(synthetic_scenario):
    base = _dataset(synthetic_scenario)
    other_seed = _dataset(synthetic_scenario, seed=99, rl={"lr": 0.1})
    assert other_seed.cache_key == base.cache_key
    assert other_seed.loaded_from_cache
    assert _dataset(synthetic_scenario, split="test").cache_key != base.cache_key


class RawDataset(TensorDictDataset):
    instance_keys: ClassVar[tuple[str, ...]] = ("x",)
    requires_raw_data = True

    def build_tensor_dict(self) -> TensorDict:
        x = torch.load(self.raw_dir / "x.pt")
        return TensorDict({"x": x, "y": (x.sum(-1) > 0).long()}, [x.shape[0]])


def test_missing_raw_data_says_how_to_get_it(synthetic_scenario):
    hp = synthetic_scenario.hyper_params()
    settings = synthetic_scenario.settings()
    with pytest.raises(DatasetNotFoundError) as raised:
        RawDataset(hp, settings, None, split="train")
    message = str(raised.value)
    assert "'tiny'" in message and "'synthetic'" in message
    # the synthetic scenario registers no dataset builder: no command to suggest
    assert "nip datasets generate" not in message
    assert "place its files in" in message
    assert (
        str(synthetic_scenario.root / "data" / "synthetic" / "tiny" / "raw") in message
    )

    raw_dir = synthetic_scenario.root / "data" / "synthetic" / "tiny" / "raw"
    raw_dir.mkdir(parents=True)
    torch.save(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), raw_dir / "x.pt")
    dataset = RawDataset(hp, settings, None, split="train")
    assert dataset.data["y"].tolist() == [1, 0]


def test_data_cycler_draws_every_datapoint_once_per_pass(synthetic_scenario):
    dataset = _dataset(synthetic_scenario)
    cycler = DataCycler(dataset, torch.Generator().manual_seed(5))
    drawn = torch.cat([cycler.next_indices(5) for _ in range(6)])  # 30 = 16 + 14
    assert sorted(drawn[:16].tolist()) == list(range(16))
    assert len(set(drawn[16:].tolist())) == 14
    again = DataCycler(dataset, torch.Generator().manual_seed(5))
    assert torch.equal(again.next_indices(30), drawn)
    batch = DataCycler(dataset, torch.Generator().manual_seed(5)).get_batch(3)
    assert torch.equal(batch["id"], drawn[:3])


class SumModel(PretrainedModel):
    calls = 0

    def generate_embeddings(self, dataset):
        SumModel.calls += 1
        return dataset.data["x"].sum(-1, keepdim=True) * 10


def test_pretrained_embeddings_are_cached_and_attached(synthetic_scenario):
    dataset = _dataset(synthetic_scenario)
    hp, settings = dataset.hyper_params, dataset.settings
    model = SumModel(hp, settings, "sum/model")
    SumModel.calls = 0
    model.add_to_dataset(dataset)
    assert SumModel.calls == 1
    assert model.cache_path(dataset).is_file()
    assert dataset.pretrained_model_names == ["sum/model"]
    item = dataset[torch.tensor([2, 4])]
    expected = dataset.data["x"][[2, 4]].sum(-1, keepdim=True) * 10
    assert torch.equal(item["pretrained_embeddings", "sum/model"], expected)
    # The whole dataset's embeddings, by key
    whole = dataset.data["x"].sum(-1, keepdim=True) * 10
    assert torch.equal(dataset["pretrained_embeddings", "sum/model"], whole)
    assert list(dataset["pretrained_embeddings"].keys()) == ["sum/model"]

    fresh = _dataset(synthetic_scenario)
    SumModel(hp, settings, "sum/model").add_to_dataset(fresh)
    assert SumModel.calls == 1  # read from the cache
    changed = _dataset(synthetic_scenario, synthetic={"num_bits": 8})
    SumModel(changed.hyper_params, settings, "sum/model").add_to_dataset(changed)
    assert SumModel.calls == 2  # other data: recomputed


def test_own_data_is_read_from_its_path(synthetic_scenario):
    own = synthetic_scenario.root / "my_bits"
    hp = synthetic_scenario.hyper_params(dataset=str(own))
    settings = synthetic_scenario.settings()
    with pytest.raises(DatasetNotFoundError, match="my_bits"):
        RawDataset(hp, settings, None, split="train")
    own.mkdir()
    torch.save(torch.tensor([[0.0, 0.0], [2.0, 1.0], [0.0, 3.0]]), own / "x.pt")
    dataset = RawDataset(hp, settings, None, split="train")
    assert dataset.raw_dir == own.resolve()
    assert dataset.data["y"].tolist() == [0, 1, 1]
    assert dataset.processed_dir.is_relative_to(synthetic_scenario.root / "data")
