"""Graph-pair datasets on disk: the plugin's format, named datasets, original files.

Format (one directory per dataset)::

    <dataset>/
      metadata.json   generator version, recipe, seed, command, split sizes
      train.npz       one compressed NumPy archive per split
      test.npz

Each split archive holds, for ``P`` pairs (``x`` is ``a`` or ``b``, the pair's first
and second graph):

============== ======================= =============================================
key            shape, dtype            meaning
============== ======================= =============================================
``edges_x``    ``(E_x, 2)`` uint8      undirected edges ``(i, j)``, ``i < j``, node
                                       indices local to their graph (int32 for
                                       graphs of more than 256 nodes)
``slices_x``   ``(P + 1,)`` int64      the edges of pair ``k`` are rows
                                       ``slices_x[k]:slices_x[k + 1]``
``sizes``      ``(P, 2)`` int16        node counts of the two graphs
``wl_scores``  ``(P,)`` int16          first WL round separating the pair; ``-1``
                                       for isomorphic pairs
``labels``     ``(P,)`` int8           1 iff the graphs are isomorphic
============== ======================= =============================================

The original library's files (``<name>/raw/<split>/data.pt``: ``edge_index_a/b``,
``slices_a/b``, ``sizes_a/b``, ``wl_scores``) are read by :func:`read_original_data_pt`
and converted by ``nip datasets generate graph_isomorphism NAME --from-original DIR``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from nip_core.errors import (
    DatasetDamagedError,
    DatasetNotFoundError,
    UsageError,
)

from nip_plugin_graph_isomorphism.generation import (
    GENERATOR_VERSION,
    MIN_NODES_FOR_HARD_PAIRS,
    GenerationConfig,
    GraphPairs,
    generate_pairs,
)

__all__ = [
    "NAMED_DATASETS",
    "NamedDataset",
    "build_dataset",
    "read_original_data_pt",
    "read_split",
    "resolve_dataset",
    "write_dataset",
]

SPLITS = ("train", "test")

SCENARIO = "graph_isomorphism"
"""Datasets live under ``<data_dir>/graph_isomorphism/<name>``."""


@attrs.frozen(kw_only=True)
class NamedDataset:
    """A dataset every installation can resolve, identical for one plugin version.

    Parameters
    ----------
    train : GenerationConfig
        The train split's recipe.
    test : GenerationConfig
        The test split's recipe.
    seed : int
        The seed (the test split uses a seed derived from it).
    shipped : bool
        Whether the files ship inside the package (``True``) or are generated on
        first use and cached in the data directory (``False``; under a minute).
    """

    train: GenerationConfig
    test: GenerationConfig
    seed: int
    shipped: bool


NAMED_DATASETS: dict[str, NamedDataset] = {
    "test": NamedDataset(
        train=GenerationConfig(num_pairs=100, graph_sizes=(7, 8)),
        test=GenerationConfig(num_pairs=100, graph_sizes=(7, 8)),
        seed=0,
        shipped=False,
    ),
    "eru10000": NamedDataset(
        train=GenerationConfig(num_pairs=10_000),
        test=GenerationConfig(num_pairs=2_000),
        seed=10_000,
        shipped=True,
    ),
}
"""The named datasets: ``test`` (generated on first use) and ``eru10000`` (shipped)."""


# --------------------------------------------------------------------------------------
# Writing and reading the plugin's format
# --------------------------------------------------------------------------------------


def _to_edges(adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pair, row, col = np.nonzero(np.triu(adjacency, k=1))
    counts = np.bincount(pair, minlength=adjacency.shape[0])
    slices = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    # uint8 holds node indices of graphs up to 256 nodes (the paper's have 7 to 11)
    dtype = np.uint8 if adjacency.shape[-1] <= 256 else np.int32
    return np.stack((row, col), axis=1).astype(dtype), slices


def _to_dense(edges: np.ndarray, slices: np.ndarray, max_nodes: int) -> np.ndarray:
    num = len(slices) - 1
    pair = np.repeat(np.arange(num), np.diff(slices))
    adjacency = np.zeros((num, max_nodes, max_nodes), dtype=np.uint8)
    rows, cols = edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)
    adjacency[pair, rows, cols] = 1
    adjacency[pair, cols, rows] = 1
    return adjacency


def write_split(path: Path, pairs: GraphPairs) -> None:
    """Write one split archive (see the module docstring for the keys)."""
    edges_a, slices_a = _to_edges(pairs.adjacency[:, 0])
    edges_b, slices_b = _to_edges(pairs.adjacency[:, 1])
    np.savez_compressed(
        path,
        edges_a=edges_a,
        slices_a=slices_a,
        edges_b=edges_b,
        slices_b=slices_b,
        sizes=pairs.sizes.astype(np.int16),
        wl_scores=pairs.wl_scores.astype(np.int16),
        labels=pairs.labels.astype(np.int8),
    )


def _write_again_hint(dataset_dir: Path) -> str:
    """``; write it again with `COMMAND --overwrite``` from the dataset's
    ``metadata.json`` (the command that wrote it), or nothing when it has none."""
    try:
        command = json.loads((dataset_dir / "metadata.json").read_text())["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if not isinstance(command, str) or not command:
        return ""
    return f"; write the dataset again with `{command} --overwrite`"


def read_split(dataset_dir: Path, split: str) -> GraphPairs:
    """Read one split of a dataset in the plugin's format.

    Raises
    ------
    DatasetNotFoundError
        When the split's archive is missing.
    DatasetDamagedError
        When it cannot be read, or its arrays do not fit together.
    """
    path = Path(dataset_dir) / f"{split}.npz"
    if not path.is_file():
        raise DatasetNotFoundError(
            f"graph isomorphism dataset {Path(dataset_dir).name!r} has no {split!r} "
            f"split: {path} does not exist{_write_again_hint(Path(dataset_dir))}"
        )
    try:
        loaded = np.load(path)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive of arrays")
        with loaded as archive:
            missing = [key for key in SPLIT_KEYS if key not in archive.files]
            if missing:
                raise ValueError(f"it has no {', '.join(missing)} array")
            sizes = archive["sizes"].astype(np.int64)
            labels = archive["labels"].astype(np.int64)
            wl_scores = archive["wl_scores"].astype(np.int64)
            arrays = {key: archive[key] for key in SPLIT_KEYS[:4]}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _damaged(dataset_dir, path, _reason(error)) from None
    pairs = len(sizes)
    problem = None
    if len(labels) != pairs or len(wl_scores) != pairs:
        problem = "its sizes, labels and wl_scores differ in length"
    for side in "ab":
        edges, slices = arrays[f"edges_{side}"], arrays[f"slices_{side}"]
        if problem is None and (
            slices.shape != (pairs + 1,)
            or edges.ndim != 2
            or edges.shape[1:] != (2,)
            or int(slices[-1]) != len(edges)
        ):
            problem = (
                f"its edges_{side} and slices_{side} do not describe {pairs} graphs"
            )
    max_nodes = int(sizes.max()) if sizes.size else 0
    if problem is None:
        try:
            adjacency = np.stack(
                (
                    _to_dense(arrays["edges_a"], arrays["slices_a"], max_nodes),
                    _to_dense(arrays["edges_b"], arrays["slices_b"], max_nodes),
                ),
                axis=1,
            )
        except (IndexError, ValueError):
            problem = "an edge names a node beyond its graph's size"
    if problem is not None:
        raise _damaged(dataset_dir, path, problem)
    return GraphPairs(
        adjacency=adjacency, sizes=sizes, wl_scores=wl_scores, labels=labels
    )


SPLIT_KEYS: tuple[str, ...] = (
    "edges_a",
    "slices_a",
    "edges_b",
    "slices_b",
    "sizes",
    "wl_scores",
    "labels",
)
"""The arrays of one split archive."""


def _reason(error: BaseException) -> str:
    if isinstance(error, zipfile.BadZipFile | EOFError):
        return "not a complete .npz archive: truncated or not written by nip"
    if isinstance(error, ValueError) and "pickle" in str(error):
        return "not a NumPy .npz archive"
    return str(error) or type(error).__name__


def _damaged(dataset_dir: Path, path: Path, reason: str) -> DatasetDamagedError:
    name = Path(dataset_dir).name
    return DatasetDamagedError(
        f"graph isomorphism dataset {name!r}: {path} cannot be read ({reason}); "
        f"generate the dataset again (nip datasets generate graph_isomorphism {name} "
        "--overwrite ...) or put back the file it was written with"
    )


def write_dataset(
    dataset_dir: Path, splits: dict[str, GraphPairs], metadata: dict[str, Any]
) -> Path:
    """Write a dataset directory atomically (a temporary directory, then renamed)."""
    dataset_dir = Path(dataset_dir)
    dataset_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(
        tempfile.mkdtemp(prefix=f".{dataset_dir.name}-", dir=dataset_dir.parent)
    )
    try:
        for split, pairs in splits.items():
            write_split(temporary / f"{split}.npz", pairs)
        metadata = {
            **metadata,
            "format": "nip-graph-isomorphism-npz/1",
            "splits": {split: len(pairs) for split, pairs in splits.items()},
        }
        (temporary / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        # mkdtemp makes the directory private; datasets are shared like other files
        temporary.chmod(0o755)
        if dataset_dir.exists():
            shutil.rmtree(dataset_dir)
        temporary.rename(dataset_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return dataset_dir


# --------------------------------------------------------------------------------------
# The original library's files
# --------------------------------------------------------------------------------------


def read_original_data_pt(path: Path) -> GraphPairs:
    """Read a ``data.pt`` written by the original library's generator.

    The file is a dict of tensors: ``edge_index_a/b`` ``(2, E)`` directed edges
    (both directions) with graph-local node indices, ``slices_a/b`` cumulative edge
    counts (starting at 0; they may stop early when the last graphs have no edges),
    ``sizes_a/b`` and ``wl_scores`` (``-1`` = isomorphic).
    """
    import torch

    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - whatever unpickling a stray file raises
        raise DatasetDamagedError(
            f"{path} cannot be read as the original library's data.pt (a file "
            f"torch.save wrote): {type(error).__name__}: {str(error)[:200]}"
        ) from None
    if not isinstance(data, dict):
        raise DatasetDamagedError(
            f"{path} is not a graph isomorphism data.pt of the original library: it "
            f"holds a {type(data).__name__}, not a dict of tensors"
        )
    missing = {
        "edge_index_a",
        "edge_index_b",
        "slices_a",
        "slices_b",
        "sizes_a",
        "wl_scores",
    } - set(data)
    if missing:
        raise DatasetNotFoundError(
            f"{path} is not a graph isomorphism data.pt of the original library: "
            f"keys {sorted(missing)} are missing"
        )
    wl_scores = data["wl_scores"].numpy().astype(np.int64)
    num = len(wl_scores)
    sizes_a = data["sizes_a"].numpy().astype(np.int64)
    sizes_b = data.get("sizes_b", data["sizes_a"]).numpy().astype(np.int64)
    max_nodes = int(max(sizes_a.max(), sizes_b.max())) if num else 0

    def dense(side: str) -> np.ndarray:
        edge_index = data[f"edge_index_{side}"].numpy().astype(np.int64)
        slices = data[f"slices_{side}"].numpy().astype(np.int64)
        # bincount-based slices end at the last graph with an edge: pad them
        if len(slices) < num + 1:
            slices = np.concatenate(
                (slices, np.full(num + 1 - len(slices), slices[-1]))
            )
        pair = np.repeat(np.arange(num), np.diff(slices[: num + 1]))
        adjacency = np.zeros((num, max_nodes, max_nodes), dtype=np.uint8)
        adjacency[pair, edge_index[0], edge_index[1]] = 1
        adjacency[pair, edge_index[1], edge_index[0]] = 1
        return adjacency

    try:
        adjacency = np.stack((dense("a"), dense("b")), axis=1)
    except (IndexError, ValueError, AttributeError) as error:
        raise DatasetDamagedError(
            f"{path}: its edges and slices do not describe {num} graph pairs of at "
            f"most {max_nodes} nodes ({error})"
        ) from None
    return GraphPairs(
        adjacency=adjacency,
        sizes=np.stack((sizes_a, sizes_b), axis=1),
        wl_scores=wl_scores,
        labels=(wl_scores == -1).astype(np.int64),
    )


# --------------------------------------------------------------------------------------
# Building and resolving
# --------------------------------------------------------------------------------------


def _parse_list(
    value: str | tuple | list | None, kind: type, flag: str = "", example: str = ""
) -> tuple | None:
    if value is None or value == "":
        return None
    items = value.replace(" ", "").split(",") if isinstance(value, str) else value
    try:
        return tuple(kind(v) for v in items if v != "")
    except (TypeError, ValueError):
        raise UsageError(
            f"{flag}: comma-separated {'whole numbers' if kind is int else 'numbers'}"
            f", e.g. {example} (got {value!r})"
        ) from None


def _check_options(
    num_pairs: int | None,
    test_pairs: int | None,
    sizes: tuple[int, ...],
    probabilities: tuple[float, ...],
    base: GenerationConfig,
) -> None:
    """One clear error per bad builder option, before any graph is drawn."""
    for flag, value in (("--num-pairs", num_pairs), ("--test-pairs", test_pairs)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if not sizes or min(sizes) < 2:
        raise UsageError(f"--graph-sizes must all be at least 2, got {list(sizes)}")
    higher = 1 - base.non_iso_prop_score_1 - base.non_iso_prop_score_2
    if higher > 0 and min(sizes) < MIN_NODES_FOR_HARD_PAIRS:
        raise UsageError(
            f"--graph-sizes: graphs of {min(sizes)} nodes cannot fill the recipe: "
            f"{higher:.0%} of its non-isomorphic pairs must be ones the WL test "
            "needs more than 2 rounds to tell apart, which takes at least "
            f"{MIN_NODES_FOR_HARD_PAIRS} nodes; use sizes of "
            f"{MIN_NODES_FOR_HARD_PAIRS} or more (e.g. 7,8,9,10,11)"
        )
    if not probabilities or not all(0 < q < 1 for q in probabilities):
        raise UsageError(
            "--edge-probabilities must lie strictly between 0 and 1, got "
            f"{list(probabilities)}"
        )


def build_dataset(
    name: str,
    data_dir: Path,
    num_pairs: int | None = None,
    test_pairs: int | None = None,
    seed: int | None = None,
    graph_sizes: str | None = None,
    edge_probabilities: str | None = None,
    workers: int | None = None,
    from_original: str | None = None,
    from_pyg: str | None = None,
    progress: bool = True,
) -> Path:
    """Generate (or convert) a dataset into ``data_dir / "graph_isomorphism" / name``.

    This is the ``nip datasets generate graph_isomorphism NAME`` builder. A named
    dataset (``test``, ``eru10000``) with no options is generated from its recorded
    recipe and seed; any option starts from the ``eru10000`` recipe.

    Parameters
    ----------
    name : str
        The dataset's name (its directory).
    data_dir : Path
        The data directory (the root every scenario's datasets live under).
    num_pairs, test_pairs : int | None
        Pairs in the train and test splits (test defaults to a fifth of train).
    seed : int | None
        The seed (default 0).
    graph_sizes, edge_probabilities : str | None
        Comma-separated cells, e.g. ``"7,8,9"`` and ``"0.2,0.4"``.
    workers : int | None
        Processes (default: two, or one on a single core).
    from_original : str | None
        Convert the original library's dataset directory (with
        ``raw/train/data.pt`` and optionally ``raw/test/data.pt``) instead of
        generating.
    from_pyg : str | None
        Convert a ``torch.save`` file of torch_geometric graph pairs instead of
        generating (see :mod:`nip_plugin_graph_isomorphism.pyg`).
    progress : bool
        Show progress bars.
    """
    target = Path(data_dir) / SCENARIO / name
    command = _named_command(name)
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    generator_options = [
        flag
        for flag, value in (
            ("--num-pairs", num_pairs),
            ("--test-pairs", test_pairs),
            ("--seed", seed),
            ("--graph-sizes", graph_sizes),
            ("--edge-probabilities", edge_probabilities),
        )
        if value is not None
    ]
    converting = [
        flag
        for flag, value in (
            ("--from-original", from_original),
            ("--from-pyg", from_pyg),
        )
        if value
    ]
    if len(converting) > 1 or (converting and generator_options):
        raise UsageError(
            f"{converting[0]} converts a dataset as it is: "
            + ", ".join(converting[1:] + generator_options)
            + " cannot go with it"
        )
    if from_original:
        return _convert_original(Path(from_original), target)
    if from_pyg:
        from nip_plugin_graph_isomorphism.pyg import write_pyg_dataset

        return write_pyg_dataset(Path(from_pyg), target)

    options_given = any(
        v is not None
        for v in (num_pairs, test_pairs, seed, graph_sizes, edge_probabilities)
    )
    if name in NAMED_DATASETS and not options_given:
        named = NAMED_DATASETS[name]
        train_config, test_config, seed = named.train, named.test, named.seed
    else:
        base = NAMED_DATASETS["eru10000"].train
        sizes = (
            _parse_list(graph_sizes, int, "--graph-sizes", "7,8,9,10,11")
            or base.graph_sizes
        )
        probabilities = (
            _parse_list(
                edge_probabilities, float, "--edge-probabilities", "0.2,0.4,0.6,0.8"
            )
            or base.edge_probabilities
        )
        _check_options(num_pairs, test_pairs, sizes, probabilities, base)
        num_pairs = base.num_pairs if num_pairs is None else num_pairs
        test_pairs = max(1, num_pairs // 5) if test_pairs is None else test_pairs
        train_config = attrs.evolve(
            base,
            num_pairs=num_pairs,
            graph_sizes=sizes,
            edge_probabilities=probabilities,
        )
        test_config = attrs.evolve(train_config, num_pairs=test_pairs)
        seed = 0 if seed is None else seed
        command += f" --num-pairs {num_pairs} --test-pairs {test_pairs} --seed {seed}"
        command += f" --graph-sizes {','.join(map(str, sizes))}"
        command += f" --edge-probabilities {','.join(map(str, probabilities))}"
    return generate_named(
        name, target, train_config, test_config, seed, command, workers, progress
    )


def generate_named(
    name: str,
    target: Path,
    train_config: GenerationConfig,
    test_config: GenerationConfig,
    seed: int,
    command: str,
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Generate both splits and write them with their metadata into ``target``."""
    from nip_core.seeding import derive_seed

    splits = {
        "train": generate_pairs(
            train_config,
            seed=derive_seed(seed, "train"),
            workers=workers,
            progress=progress,
            description=f"{name} train",
        ),
        "test": generate_pairs(
            test_config,
            seed=derive_seed(seed, "test"),
            workers=workers,
            progress=progress,
            description=f"{name} test",
        ),
    }
    metadata = {
        "name": name,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "split_seeds": {
            "train": f"derive_seed({seed}, 'train')",
            "test": f"derive_seed({seed}, 'test')",
        },
        "recipe": {
            "train": attrs.asdict(train_config),
            "test": attrs.asdict(test_config),
        },
        "command": command,
        "python": sys.version.split()[0],
    }
    return write_dataset(target, splits, metadata)


def _convert_original(source: Path, target: Path) -> Path:
    splits = {}
    for split in SPLITS:
        for candidate in (
            source / "raw" / split / "data.pt",
            source / split / "data.pt",
        ):
            if candidate.is_file():
                splits[split] = read_original_data_pt(candidate)
                break
    if "train" not in splits:
        raise DatasetNotFoundError(
            f"no original dataset at {source}: expected {source}/raw/train/data.pt"
        )
    if "test" not in splits:
        # a dataset without a test split cannot be trained on (the test loop
        # reads it): refused before anything is written
        raise DatasetNotFoundError(
            f"the original dataset at {source} has a train split but no test split: "
            f"expected {source}/raw/test/data.pt beside {source}/raw/train/data.pt"
        )
    metadata = {
        "name": target.name,
        "converted_from": str(source),
        "command": f"nip datasets generate graph_isomorphism {target.name} "
        f"--from-original {source}",
    }
    return write_dataset(target, splits, metadata)


def shipped_dir(name: str) -> Path:
    """The directory of a dataset shipped inside the package."""
    return Path(str(resources.files("nip_plugin_graph_isomorphism") / "data" / name))


def _named_command(name: str) -> str:
    """The command that writes the named dataset ``name`` from its own recipe."""
    return f"nip datasets generate graph_isomorphism {name}"


def _made_from_named_recipe(directory: Path, name: str) -> bool:
    """Whether ``directory`` holds the named dataset ``name`` made from its recipe
    (generated on first use, or by its command without options), going by the
    command its ``metadata.json`` records."""
    try:
        command = json.loads((directory / "metadata.json").read_text())["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return name in NAMED_DATASETS and command == _named_command(name)


def resolve_dataset(name: str, data_dir: Path | None) -> Path:
    """Find a dataset's directory, generating a named one on first use.

    ``data_dir`` is the scenario's directory (``<data_dir>/graph_isomorphism``).
    Looked up in order: ``data_dir / name`` (generated or converted by the user),
    the package's shipped datasets, then the named recipes that are cheap enough to
    generate (cached into ``data_dir``).

    A named dataset's copy in ``data_dir`` made from its recipe that has lost a
    split (any of them) is made again: the shipped files are used, or both splits
    are generated again. A dataset the user wrote keeps its files: without its
    train split it is an error here, and without another split, an error when that
    split is read (:func:`read_split`); both name the file and the command that
    writes the dataset again.

    Raises
    ------
    DatasetNotFoundError
        When the dataset is nowhere and is not a named one, or the user's has no
        train split.
    """
    if data_dir is not None:
        written = Path(data_dir) / name
        present = [split for split in SPLITS if (written / f"{split}.npz").is_file()]
        if len(present) == len(SPLITS):
            return written
        users = not _made_from_named_recipe(written, name) and (
            present or (written / "metadata.json").is_file()
        )
        if users and "train" in present:
            return written
        if users:
            raise DatasetNotFoundError(
                f"graph isomorphism dataset {name!r} has no 'train' split: "
                f"{written / 'train.npz'} does not exist{_write_again_hint(written)}"
            )
    shipped = shipped_dir(name)
    if (shipped / "train.npz").is_file():
        return shipped
    named = NAMED_DATASETS.get(name)
    if named is not None and data_dir is not None:
        return generate_named(
            name,
            Path(data_dir) / name,
            named.train,
            named.test,
            named.seed,
            _named_command(name),
        )
    known = ", ".join(sorted(NAMED_DATASETS))
    raise DatasetNotFoundError(
        f"graph isomorphism dataset {name!r} not found in {data_dir}. Named datasets: "
        f"{known}. Generate another with `nip datasets generate graph_isomorphism "
        f"{name} --num-pairs N --seed S`, or convert the original library's with "
        f"`--from-original DIR`."
    )
