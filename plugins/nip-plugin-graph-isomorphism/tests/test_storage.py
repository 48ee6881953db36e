"""The on-disk format, the original library's files, named datasets, the builder."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from nip_core.errors import DatasetNotFoundError

from nip_plugin_graph_isomorphism import storage
from nip_plugin_graph_isomorphism.generation import GraphPairs


def sample_pairs() -> GraphPairs:
    adjacency = np.zeros((3, 2, 4, 4), dtype=np.uint8)
    adjacency[0, 0, 0, 1] = adjacency[0, 0, 1, 0] = 1  # pair 0: one edge vs none
    adjacency[1, :, 0, 2] = adjacency[1, :, 2, 0] = 1  # pair 1: isomorphic
    adjacency[1, :, 1, 2] = adjacency[1, :, 2, 1] = 1
    # pair 2: 3-node graphs without edges (the original's slices stop early here)
    sizes = np.array([[4, 4], [3, 3], [3, 3]])
    return GraphPairs(
        adjacency=adjacency,
        sizes=sizes,
        wl_scores=np.array([1, -1, -1]),
        labels=np.array([0, 1, 1]),
    )


def test_plugin_format_round_trip(tmp_path) -> None:
    pairs = sample_pairs()
    path = storage.write_dataset(tmp_path / "mine", {"train": pairs}, {"seed": 3})
    back = storage.read_split(path, "train")
    assert np.array_equal(back.adjacency, pairs.adjacency)
    assert np.array_equal(back.sizes, pairs.sizes)
    assert back.wl_scores.tolist() == [1, -1, -1]
    assert back.labels.tolist() == [0, 1, 1]
    metadata = json.loads((path / "metadata.json").read_text())
    assert metadata["seed"] == 3 and metadata["splits"] == {"train": 3}
    with np.load(path / "train.npz") as archive:
        assert archive["edges_a"].tolist() == [[0, 1], [0, 2], [1, 2]]
        assert archive["slices_a"].tolist() == [0, 1, 3, 3]
    with pytest.raises(DatasetNotFoundError, match="no 'test' split"):
        storage.read_split(path, "test")


def write_original(path, pairs: GraphPairs, truncate_slices: bool) -> None:
    """Write a data.pt the way the original generator did (both edge directions)."""
    edges, slices_by_side = {}, {}
    for side, name in ((0, "a"), (1, "b")):
        pair, row, col = np.nonzero(pairs.adjacency[:, side])
        edges[name] = torch.as_tensor(np.stack((row, col)))
        counts = np.bincount(pair, minlength=len(pairs))
        slices = np.concatenate(([0], np.cumsum(counts)))
        if truncate_slices:
            last = np.flatnonzero(counts)[-1]
            slices = slices[: last + 2]
        slices_by_side[name] = torch.as_tensor(slices)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "edge_index_a": edges["a"],
            "edge_index_b": edges["b"],
            "slices_a": slices_by_side["a"],
            "slices_b": slices_by_side["b"],
            "wl_scores": torch.as_tensor(pairs.wl_scores, dtype=torch.int32),
            "sizes_a": torch.as_tensor(pairs.sizes[:, 0], dtype=torch.int32),
            "sizes_b": torch.as_tensor(pairs.sizes[:, 1], dtype=torch.int32),
        },
        path,
    )


@pytest.mark.parametrize("truncate_slices", [False, True])
def test_original_data_pt_is_read(tmp_path, truncate_slices) -> None:
    pairs = sample_pairs()
    write_original(tmp_path / "raw" / "train" / "data.pt", pairs, truncate_slices)
    back = storage.read_original_data_pt(tmp_path / "raw" / "train" / "data.pt")
    assert np.array_equal(back.adjacency, pairs.adjacency)
    assert back.labels.tolist() == [0, 1, 1]
    assert back.sizes.tolist() == pairs.sizes.tolist()


def test_builder_converts_an_original_dataset(tmp_path) -> None:
    pairs = sample_pairs()
    write_original(tmp_path / "old" / "raw" / "train" / "data.pt", pairs, False)
    write_original(tmp_path / "old" / "raw" / "test" / "data.pt", pairs, True)
    path = storage.build_dataset(
        "converted", tmp_path / "data", from_original=str(tmp_path / "old")
    )
    for split in ("train", "test"):
        assert np.array_equal(
            storage.read_split(path, split).adjacency, pairs.adjacency
        )
    with pytest.raises(DatasetNotFoundError, match="no original dataset"):
        storage.build_dataset("x", tmp_path / "data", from_original=str(tmp_path))
    # a train split alone cannot be trained on: refused, nothing written
    write_original(tmp_path / "lone" / "raw" / "train" / "data.pt", pairs, False)
    with pytest.raises(DatasetNotFoundError, match="has a train split but no test"):
        storage.build_dataset("y", tmp_path / "data", from_original=tmp_path / "lone")
    assert not (tmp_path / "data" / "y").exists()


def test_an_original_data_pt_without_sizes_is_named(tmp_path) -> None:
    path = tmp_path / "raw" / "train" / "data.pt"
    write_original(path, sample_pairs(), False)
    data = torch.load(path)
    del data["sizes_a"]
    torch.save(data, path)
    with pytest.raises(DatasetNotFoundError, match=r"keys \['sizes_a'\] are missing"):
        storage.read_original_data_pt(path)


def test_a_written_dataset_missing_a_split_says_how_to_write_it_again(tmp_path):
    path = storage.build_dataset(
        "mine", tmp_path, num_pairs=6, test_pairs=4, seed=1, workers=1, progress=False
    )
    command = json.loads((path / "metadata.json").read_text())["command"]
    (path / "test.npz").unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        storage.read_split(path, "test")
    assert str(caught.value).endswith(
        f"does not exist; write the dataset again with `{command} --overwrite`"
    )
    (path / "train.npz").unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        storage.resolve_dataset("mine", path.parent)
    message = str(caught.value)
    assert "'mine' has no 'train' split" in message and "not found" not in message
    assert message.endswith(f"`{command} --overwrite`")


@pytest.fixture(scope="module")
def named_test_set(tmp_path_factory):
    """The named dataset ``test`` as generated on first use, to copy from."""
    return storage.resolve_dataset("test", tmp_path_factory.mktemp("named"))


def _split_arrays(path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return dict(archive)


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_named_set_that_lost_either_split_is_generated_again(
    tmp_path, named_test_set, split
) -> None:
    import shutil

    copy = shutil.copytree(named_test_set, tmp_path / "test")
    expected = {s: _split_arrays(copy / f"{s}.npz") for s in storage.SPLITS}
    (copy / f"{split}.npz").unlink()
    assert storage.resolve_dataset("test", tmp_path) == copy
    for s, arrays in expected.items():
        again = _split_arrays(copy / f"{s}.npz")
        assert sorted(again) == sorted(arrays)
        for key, array in arrays.items():
            assert np.array_equal(again[key], array), (s, key)
    assert len(storage.read_split(copy, split)) == 100


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_shipped_set_whose_copy_lost_either_split_is_read_from_the_package(
    tmp_path, split
) -> None:
    command = "nip datasets generate graph_isomorphism eru10000"
    pairs = {s: sample_pairs() for s in storage.SPLITS}
    copy = storage.write_dataset(tmp_path / "eru10000", pairs, {"command": command})
    (copy / f"{split}.npz").unlink()
    assert storage.resolve_dataset("eru10000", tmp_path) == storage.shipped_dir(
        "eru10000"
    )


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_set_written_under_a_named_sets_name_is_not_replaced(tmp_path, split) -> None:
    """``test`` written with options of one's own is the user's data: a missing
    split is an error naming the file and the command, never the named recipe
    generated over what is left."""
    path = storage.build_dataset(
        "test", tmp_path, num_pairs=6, test_pairs=4, seed=1, workers=1, progress=False
    )
    command = json.loads((path / "metadata.json").read_text())["command"]
    assert command.startswith("nip datasets generate graph_isomorphism test --num")
    (path / f"{split}.npz").unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        storage.read_split(storage.resolve_dataset("test", path.parent), split)
    assert str(caught.value) == (
        f"graph isomorphism dataset 'test' has no {split!r} split: "
        f"{path / f'{split}.npz'} does not exist; write the dataset again with "
        f"`{command} --overwrite`"
    )
    (other,) = {"train", "test"} - {split}
    assert len(storage.read_split(path, other)) == {"train": 6, "test": 4}[other]
    assert not (path / f"{split}.npz").exists()


def test_builder_generates_both_splits_with_metadata(tmp_path) -> None:
    path = storage.build_dataset(
        "mini",
        tmp_path,
        num_pairs=20,
        test_pairs=10,
        seed=5,
        graph_sizes="7",
        edge_probabilities="0.4,0.6",
        workers=1,
        progress=False,
    )
    assert len(storage.read_split(path, "train")) == 20
    assert len(storage.read_split(path, "test")) == 10
    metadata = json.loads((path / "metadata.json").read_text())
    assert metadata["seed"] == 5
    assert metadata["recipe"]["train"]["graph_sizes"] == [7]
    assert "--num-pairs 20" in metadata["command"]
    # the same command gives the same files
    again = storage.build_dataset(
        "mini2",
        tmp_path,
        num_pairs=20,
        test_pairs=10,
        seed=5,
        graph_sizes="7",
        edge_probabilities="0.4,0.6",
        workers=1,
        progress=False,
    )
    assert np.array_equal(
        storage.read_split(again, "train").adjacency,
        storage.read_split(path, "train").adjacency,
    )


def test_named_datasets_resolve(tmp_path) -> None:
    shipped = storage.resolve_dataset("eru10000", tmp_path)
    train = storage.read_split(shipped, "train")
    test = storage.read_split(shipped, "test")
    assert len(train) == 10_000 and len(test) == 2_000
    assert train.labels.sum() == 5_000
    assert sorted(set(train.sizes[:, 0].tolist())) == [7, 8, 9, 10, 11]
    metadata = json.loads((shipped / "metadata.json").read_text())
    assert metadata["command"] == "nip datasets generate graph_isomorphism eru10000"
    generated = storage.resolve_dataset("test", tmp_path)
    assert generated == tmp_path / "test"
    small = storage.read_split(generated, "train")
    assert len(small) == 100 and small.sizes.max() <= 8
    with pytest.raises(DatasetNotFoundError, match="Named datasets"):
        storage.resolve_dataset("nope", tmp_path)


def test_dataset_class_reads_an_original_directory_given_as_a_path(
    tmp_path, register_plugin
) -> None:
    from helpers import settings, tiny_hyper_params

    import nip_plugin_graph_isomorphism.plugin as gi_plugin
    from nip_plugin_graph_isomorphism.data import GraphIsomorphismDataset

    register_plugin(gi_plugin, name="graph_isomorphism")
    pairs = sample_pairs()
    write_original(tmp_path / "old" / "raw" / "train" / "data.pt", pairs, True)
    hyper_params = tiny_hyper_params("nip")
    hyper_params.dataset = str(tmp_path / "old")
    dataset = GraphIsomorphismDataset(hyper_params, settings(tmp_path), split="train")
    assert len(dataset) == 3
    assert dataset.data["y"].tolist() == [0, 1, 1]
    assert dataset.data["node_mask"].sum(-1).tolist() == [[4, 4], [3, 3], [3, 3]]
    assert dataset.data["adjacency"][1, 0].tolist() == pairs.adjacency[1, 0].tolist()


@pytest.mark.slow
def test_shipped_eru10000_test_split_is_reproduced_by_its_recorded_recipe() -> None:
    from nip_core.seeding import derive_seed

    from nip_plugin_graph_isomorphism.generation import generate_pairs

    named = storage.NAMED_DATASETS["eru10000"]
    shipped = storage.read_split(storage.shipped_dir("eru10000"), "test")
    again = generate_pairs(named.test, seed=derive_seed(named.seed, "test"))
    assert np.array_equal(again.adjacency, shipped.adjacency)
    assert np.array_equal(again.wl_scores, shipped.wl_scores)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_pairs": -5}, "--num-pairs must be at least 1, got -5"),
        ({"num_pairs": 0}, "--num-pairs must be at least 1, got 0"),
        ({"test_pairs": 0}, "--test-pairs must be at least 1, got 0"),
        ({"graph_sizes": "7,a"}, "--graph-sizes: comma-separated whole numbers"),
        ({"graph_sizes": "3,4"}, "graphs of 3 nodes cannot fill the recipe"),
        ({"edge_probabilities": "0.2,x"}, "--edge-probabilities: comma-separated"),
        ({"edge_probabilities": "1.5"}, "--edge-probabilities must lie strictly"),
        ({"workers": 0}, "--workers must be at least 1"),
    ],
)
def test_bad_builder_options_are_one_clear_error(tmp_path, options, message) -> None:
    # before any graph is drawn (3-node graphs used to search for ever); a usage
    # error: nip exits with 2
    from nip_core.errors import UsageError

    with pytest.raises(UsageError, match=re.escape(message)):
        storage.build_dataset("x", tmp_path / "data", **options)
    assert not (tmp_path / "data").exists()


def _damage(path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif how == "text":
        path.write_text("not an archive\n")
    elif how == "one array":
        with open(path, "wb") as handle:
            np.save(handle, np.arange(3))
    elif how == "missing array":
        np.savez(path, sizes=np.array([[4, 4]]), labels=np.array([1]))
    elif how == "short slices":
        with np.load(path) as archive:
            arrays = dict(archive)
        arrays["slices_a"] = arrays["slices_a"][:-1]
        np.savez(path, **arrays)
    elif how == "edge beyond size":
        with np.load(path) as archive:
            arrays = dict(archive)
        arrays["edges_b"] = arrays["edges_b"] + 50
        np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("truncated", "not a complete .npz archive: truncated or not written by nip"),
        ("text", "not a NumPy .npz archive"),
        ("one array", "a single array, not an .npz archive of arrays"),
        (
            "missing array",
            "it has no edges_a, slices_a, edges_b, slices_b, wl_scores array",
        ),
        ("short slices", "its edges_a and slices_a do not describe 3 graphs"),
        ("edge beyond size", "an edge names a node beyond its graph's size"),
    ],
)
def test_a_damaged_split_is_one_clear_error(tmp_path, how, reason) -> None:
    from nip_core.errors import DatasetDamagedError

    path = storage.write_dataset(tmp_path / "mine", {"train": sample_pairs()}, {})
    _damage(path / "train.npz", how)
    with pytest.raises(DatasetDamagedError) as info:
        storage.read_split(path, "train")
    assert str(info.value) == (
        f"graph isomorphism dataset 'mine': {path / 'train.npz'} cannot be read "
        f"({reason}); generate the dataset again (nip datasets generate "
        "graph_isomorphism mine --overwrite ...) or put back the file it was "
        "written with"
    )


def test_a_changed_split_file_is_processed_again(tmp_path, register_plugin) -> None:
    """The processed cache's key holds the split file's size and time: replaced or
    deleted, the data is built again instead of read from the cache."""
    import os

    from helpers import settings, tiny_hyper_params

    import nip_plugin_graph_isomorphism.plugin as gi_plugin
    from nip_plugin_graph_isomorphism.data import GraphIsomorphismDataset

    register_plugin(gi_plugin, name="graph_isomorphism")
    data_dir = tmp_path / "data" / "graph_isomorphism"
    pairs = sample_pairs()
    path = storage.write_dataset(data_dir / "mine", {"train": pairs}, {})
    hyper_params = tiny_hyper_params("nip")
    hyper_params.dataset = "mine"
    run_settings = settings(tmp_path)

    def load():
        return GraphIsomorphismDataset(hyper_params, run_settings, split="train")

    first = load()
    first_key = first.cache_key
    assert first.data["y"].tolist() == [0, 1, 1]
    assert load().cache_key == first_key
    # the same file written again with other labels
    flipped = GraphPairs(
        adjacency=pairs.adjacency,
        sizes=pairs.sizes,
        wl_scores=pairs.wl_scores,
        labels=np.array([1, 0, 0]),
    )
    storage.write_split(path / "train.npz", flipped)
    stat = (path / "train.npz").stat()
    os.utime(path / "train.npz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = load()
    assert second.cache_key != first_key
    assert second.data["y"].tolist() == [1, 0, 0]
    # deleted: not read from the cache
    (path / "train.npz").unlink()
    with pytest.raises(DatasetNotFoundError, match="'mine' has no 'train' split"):
        load()


@pytest.mark.parametrize("content", [b"junk\n", b"\x80\x02garbage", b""])
def test_an_original_data_pt_that_is_not_one_is_one_clear_error(
    tmp_path, content
) -> None:
    from nip_core.errors import DatasetDamagedError

    path = tmp_path / "raw" / "train" / "data.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(DatasetDamagedError) as info:
        storage.read_original_data_pt(path)
    assert str(info.value).startswith(
        f"{path} cannot be read as the original library's data.pt (a file "
        "torch.save wrote): "
    )
    torch.save([1, 2], path)
    with pytest.raises(DatasetDamagedError, match="holds a list, not a dict"):
        storage.read_original_data_pt(path)


def test_converting_with_generator_options_is_a_usage_error(tmp_path) -> None:
    from nip_core.errors import UsageError

    with pytest.raises(UsageError) as info:
        storage.build_dataset(
            "x", tmp_path / "data", from_original=str(tmp_path), num_pairs=5, seed=2
        )
    assert str(info.value) == (
        "--from-original converts a dataset as it is: --num-pairs, --seed cannot go "
        "with it"
    )
    with pytest.raises(UsageError, match="--from-pyg cannot go with it"):
        storage.build_dataset("x", tmp_path / "data", from_original="a", from_pyg="b")
    assert not (tmp_path / "data").exists()


def test_bad_option_values_exit_with_2_as_usage_errors(
    tmp_path, register_plugin, capsys
) -> None:
    from nip_core.cli.main import main

    import nip_plugin_graph_isomorphism.plugin as gi_plugin

    register_plugin(gi_plugin, name="graph_isomorphism")
    data = str(tmp_path / "data")
    args = ["datasets", "generate", "graph_isomorphism", "x", "--data-dir", data]
    assert main([*args, "--num-pairs", "0"]) == 2
    assert (
        "nip: error: --num-pairs must be at least 1, got 0" in capsys.readouterr().err
    )
    assert main([*args, "--edge-probabilities", "1.5"]) == 2


def test_a_validation_split_the_dataset_lacks_is_refused_at_validation(
    tmp_path,
) -> None:
    from types import SimpleNamespace

    from nip_plugin_graph_isomorphism.checks import config_problems

    def problems(dataset, split="validation"):
        return config_problems(
            SimpleNamespace(dataset=dataset, test_dataset_split=split)
        )

    (problem,) = problems("eru10000")
    assert problem.path == "test_dataset_split"
    assert problem.message.startswith(
        "graph isomorphism dataset 'eru10000' has no validation split"
    )
    assert problem.choices == ("test",)
    assert problems("eru10000", "test") == []
    # a path to one's own data may hold a validation split
    own = tmp_path / "mine"
    own.mkdir()
    (problem,) = problems(str(own))
    assert f"{own} has no validation.npz" in problem.message
    (own / "validation.npz").write_bytes(b"")
    assert problems(str(own)) == []
