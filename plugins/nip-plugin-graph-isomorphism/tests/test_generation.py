"""The generator: exact labels, quotas, determinism and the sampling distribution."""

from __future__ import annotations

import collections
import itertools
import math
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from nip_plugin_graph_isomorphism import generation
from nip_plugin_graph_isomorphism.degree_sequences import (
    count_graphs_with_degrees,
    degree_multiset_table,
    sample_graph_with_degrees,
)
from nip_plugin_graph_isomorphism.generation import (
    GenerationConfig,
    generate_pairs,
    non_isomorphic_quotas,
)
from nip_plugin_graph_isomorphism.wl import graph_hashes

SMALL = GenerationConfig(
    num_pairs=80, graph_sizes=(7, 8), edge_probabilities=(0.4, 0.8)
)


@pytest.fixture(scope="module")
def small_dataset():
    return generate_pairs(SMALL, seed=3, workers=1)


def _nx(adjacency: np.ndarray, size: int) -> nx.Graph:
    return nx.from_numpy_array(adjacency[:size, :size])


def test_labels_agree_with_networkx(small_dataset) -> None:
    data = small_dataset
    assert len(data) == 80
    for k in range(len(data)):
        a = _nx(data.adjacency[k, 0], int(data.sizes[k, 0]))
        b = _nx(data.adjacency[k, 1], int(data.sizes[k, 1]))
        assert nx.is_isomorphic(a, b) == bool(data.labels[k]), k
        assert (data.wl_scores[k] == -1) == bool(data.labels[k])


def test_class_mix_follows_the_quotas(small_dataset) -> None:
    data = small_dataset
    quotas = non_isomorphic_quotas(SMALL)
    assert sum(quotas.values()) == 40
    counts = collections.Counter()
    for k in range(len(data)):
        if data.labels[k]:
            continue
        n = int(data.sizes[k, 0])
        score = int(data.wl_scores[k])
        counts[(n, "1" if score == 1 else "2" if score == 2 else "gt_2")] += 1
    expected = collections.Counter()
    for (n, _, c), q in quotas.items():
        expected[(n, c)] += q
    assert counts == +expected
    assert int(data.labels.sum()) == 40
    # padding rows and columns of the 7-node graphs are empty
    seven = data.sizes[:, 0] == 7
    assert seven.any()
    assert not data.adjacency[seven][:, :, 7:, :].any()


def test_quotas_of_eru10000_match_the_original_floors() -> None:
    quotas = non_isomorphic_quotas(GenerationConfig(num_pairs=10_000))
    assert len(quotas) == 60
    for (_, _, c), q in quotas.items():
        assert q == {"1": 25, "2": 50, "gt_2": 175}[c]


def test_same_seed_same_pairs_whatever_the_workers(small_dataset) -> None:
    again = generate_pairs(SMALL, seed=3, workers=2)
    assert np.array_equal(again.adjacency, small_dataset.adjacency)
    assert np.array_equal(again.wl_scores, small_dataset.wl_scores)
    other = generate_pairs(SMALL, seed=4, workers=1)
    assert not np.array_equal(other.adjacency, small_dataset.adjacency)


_PARENT_PID = os.getpid()
_REAL_RUN_UNIT = generation._run_unit


def _unit_killing_its_worker(stream, index):
    """``_run_unit``, except that a worker process running unit 1 of any stream dies
    on the spot, as a worker killed by the system would."""
    if os.getpid() != _PARENT_PID and index == 1:
        os._exit(1)
    return _REAL_RUN_UNIT(stream, index)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(),
    reason="the forked workers inherit the patched unit function",
)
def test_a_dead_worker_does_not_hang_generation_nor_change_its_result(
    small_dataset, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(generation, "_run_unit", _unit_killing_its_worker)
    with caplog.at_level("WARNING", logger=generation.__name__):
        again = generate_pairs(SMALL, seed=3, workers=2)
    (warning,) = caplog.messages
    assert re.fullmatch(
        r"a graph generation worker process died \(pid \d+, exited with code 1\); "
        r"generating the rest in this process \(the other workers are stopped\)",
        warning,
    )
    assert np.array_equal(again.adjacency, small_dataset.adjacency)
    assert np.array_equal(again.wl_scores, small_dataset.wl_scores)


def test_generating_in_this_process_keeps_its_thread_count() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        generate_pairs(GenerationConfig(num_pairs=10, graph_sizes=(7,)), 0, workers=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_isomorphic_pairs_are_permuted_copies(small_dataset) -> None:
    data = small_dataset
    iso = np.flatnonzero(data.labels == 1)
    # independent permutations: most copies differ as labelled graphs
    differing = sum(
        not np.array_equal(data.adjacency[k, 0], data.adjacency[k, 1]) for k in iso
    )
    assert differing > len(iso) // 2


def test_counts_match_brute_force() -> None:
    for n in range(1, 7):
        counts: collections.Counter = collections.Counter()
        pairs = list(itertools.combinations(range(n), 2))
        for bits in range(2 ** len(pairs)):
            degrees = [0] * n
            for e, (i, j) in enumerate(pairs):
                if bits >> e & 1:
                    degrees[i] += 1
                    degrees[j] += 1
            counts[tuple(degrees)] += 1
        for degrees, count in counts.items():
            assert count_graphs_with_degrees(degrees) == count
        _, _, log_counts = degree_multiset_table(n)
        assert math.isclose(np.exp(log_counts).sum(), 2 ** len(pairs), rel_tol=1e-9)


def test_direct_sampler_is_uniform() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    degrees = [2, 2, 2, 1, 1]
    rng = random.Random(0)
    draws = collections.Counter(
        sample_graph_with_degrees(degrees, rng).tobytes() for _ in range(3000)
    )
    assert len(draws) == count_graphs_with_degrees(degrees)
    assert all(
        (np.frombuffer(k, np.uint8).reshape(5, 5).sum(1) == degrees).all()
        for k in draws
    )
    assert scipy_stats.chisquare(list(draws.values())).pvalue > 0.001


def _accepted(method: str, score_class: str, n: int, p: float, target: int, seed: int):
    stream = generation._Stream(
        n=n,
        p=p,
        score_class=score_class,
        quota=target,
        method=method,
        seed=seed,
        max_iterations=5,
    )
    pairs = []
    index = 0
    while sum(len(x) for x in pairs) < target:
        pairs.append(generation._run_unit(stream, index).adjacency)
        index += 1
    return np.concatenate(pairs)[:target]


def _categories(pairs: np.ndarray) -> list[tuple]:
    """Isomorphism class of each graph of each ordered pair (WL hashes suffice here)."""
    flat = torch.from_numpy(pairs.reshape(-1, *pairs.shape[-2:]))
    hashes = graph_hashes(flat, num_rounds=4)[:, -1].reshape(-1, 2)
    return [tuple(h) for h in hashes.tolist()]


def test_degree_matched_proposals_match_rejection_sampling() -> None:
    """Accepted pairs of one cell have one law under both proposal schemes.

    Categories are the (isomorphism-class-like) WL hashes of both graphs of a pair,
    which capture the degree multiset the smarter scheme draws as well as the graph
    it then picks; a two-sample chi-square test must not tell the schemes apart.
    """
    scipy_stats = pytest.importorskip("scipy.stats")
    n, p, target = 6, 0.4, 3000
    exact = _categories(_accepted("rejection", "2", n, p, target, seed=11))
    smart = _categories(_accepted("degree_matched", "2", n, p, target, seed=12))
    both = collections.Counter(exact) + collections.Counter(smart)
    common = [c for c, k in both.items() if k >= 20]
    table = np.array(
        [
            [collections.Counter(sample)[c] for c in common]
            + [sum(1 for x in sample if x not in set(common))]
            for sample in (exact, smart)
        ]
    )
    assert table.shape[1] > 10
    assert scipy_stats.chi2_contingency(table).pvalue > 0.001
    # the same test does detect a different law: plain ER pairs with equal sizes
    generator = torch.Generator().manual_seed(5)
    edges = generation._er_edges(2 * target, n, p, generator)
    adjacency = generation._edges_to_adjacency(edges, n).numpy()
    plain = _categories(np.stack((adjacency[:target], adjacency[target:]), axis=1))
    table_plain = np.array(
        [
            [collections.Counter(sample)[c] for c in common]
            + [sum(1 for x in sample if x not in set(common))]
            for sample in (exact, plain)
        ]
    )
    assert scipy_stats.chi2_contingency(table_plain).pvalue < 1e-6


def test_an_impossible_class_is_reported() -> None:
    from nip_core.errors import NipError

    config = GenerationConfig(num_pairs=4, graph_sizes=(3,), edge_probabilities=(0.5,))
    with pytest.raises(NipError, match="impossible or too rare") as error:
        generation.generate_pairs(config, seed=0, workers=1, max_units=4)
    assert isinstance(error.value, RuntimeError)
    assert "change this cell's edge probability (--edge-probabilities)" in str(
        error.value
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_a_rare_class_is_judged_on_its_units_whatever_the_workers(workers) -> None:
    """Score class gt_2 at 7 nodes and p = 0.15 (seed 0) has its first pair in
    unit 4: five units find it, four do not, with one worker or two (units
    submitted ahead used to count, and two workers submit further ahead)."""
    config = GenerationConfig(
        num_pairs=10, graph_sizes=(7,), edge_probabilities=(0.15,)
    )
    data = generate_pairs(config, seed=0, workers=workers, max_units=5)
    assert len(data) == 10
    with pytest.raises(generation.ImpossibleCellError, match="after 4 work units"):
        generate_pairs(config, seed=0, workers=workers, max_units=4)
    with pytest.raises(ValueError, match="^max_units must be at least 1, got 0$"):
        generate_pairs(config, seed=0, workers=workers, max_units=0)


def test_a_hopeless_cell_ends_the_command_with_one_message(
    tmp_path, register_plugin, capsys, monkeypatch
) -> None:
    """A cell too sparse for its score quota (7 nodes at p = 0.05) is found only by
    trying: the command then ends with one message naming the cell and what to
    change, not a traceback."""
    from types import SimpleNamespace

    from nip_core.cli.main import main

    import nip_plugin_graph_isomorphism.plugin as gi_plugin

    register_plugin(gi_plugin, name="graph_isomorphism")
    stream = SimpleNamespace(n=7, p=0.05, score_class="gt_2")

    def hopeless(*args, **kwargs):
        raise generation.ImpossibleCellError(stream, 300)

    from nip_plugin_graph_isomorphism import storage

    # where the builder calls it (storage imported it by name)
    monkeypatch.setattr(storage, "generate_pairs", hopeless)
    data = str(tmp_path / "data")
    status = main(
        ["datasets", "generate", "graph_isomorphism", "sparse", "--data-dir", data]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(
        "nip: error: no non-isomorphic pair of WL score class gt_2 for graphs of 7 "
        "nodes at edge probability 0.05 after 300 work units"
    )
    assert "raise the edge probability (--edge-probabilities)" in err
    assert "Traceback" not in err


def test_direct_samples_for_rare_multisets_keep_the_law(monkeypatch) -> None:
    """With a stream far too short, almost every pair comes from the exact sampler."""
    scipy_stats = pytest.importorskip("scipy.stats")
    monkeypatch.setattr(generation, "STREAM_CHUNK", 16)
    monkeypatch.setattr(
        generation,
        "_multiset_probabilities",
        lambda n, p: np.ones_like(generation.degree_multiset_table(n)[1], float),
    )
    n, p, target = 6, 0.4, 1500
    stream = generation._Stream(
        n=n,
        p=p,
        score_class="2",
        quota=1,
        method="degree_matched",
        seed=0,
        max_iterations=5,
    )
    # proposals = stream graphs (16) + 2 per pair served by the exact sampler
    served_directly = (generation._run_unit(stream, 0).proposals - 16) / 2
    assert served_directly > 0.9 * stream.unit_size(0)
    exact = _categories(_accepted("rejection", "2", n, p, target, seed=21))
    direct = _categories(_accepted("degree_matched", "2", n, p, target, seed=22))
    both = collections.Counter(exact) + collections.Counter(direct)
    common = [c for c, k in both.items() if k >= 20]
    table = np.array(
        [
            [collections.Counter(sample)[c] for c in common]
            + [sum(1 for x in sample if x not in set(common))]
            for sample in (exact, direct)
        ]
    )
    assert scipy_stats.chi2_contingency(table).pvalue > 0.001


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="POSIX signals"
)
def test_a_worker_dying_between_two_results_does_not_stop_generation(caplog) -> None:
    # The worker dies while the main process is not waiting for a result (and is
    # about to submit more units): it is noticed at the next wait all the same
    stream = generation._Stream(
        n=7,
        p=0.5,
        score_class="1",
        quota=2000,
        method=generation._method_for(7, "1"),
        seed=1,
        max_iterations=5,
    )
    killed: list[int] = []

    def kill_a_worker_once(take: int) -> None:
        if not killed:
            worker = multiprocessing.active_children()[0]
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)
            time.sleep(1.0)  # dead before the next submission

    serial = generation._run_streams([stream], 1, lambda take: None)
    with caplog.at_level("WARNING", logger=generation.__name__):
        parallel = generation._run_streams([stream], 2, kill_a_worker_once)
    assert killed
    assert caplog.messages == [
        f"a graph generation worker process died (pid {killed[0]}, killed by signal "
        "SIGKILL); generating the rest in this process (the other workers are "
        "stopped)"
    ]
    assert multiprocessing.active_children() == []
    assert np.array_equal(parallel[0][0], serial[0][0])
    assert np.array_equal(parallel[0][1], serial[0][1])


def _unit_failing_in_a_worker(stream, index):
    if os.getpid() != _PARENT_PID:
        raise ValueError(f"no unit {index} here")
    return _REAL_RUN_UNIT(stream, index)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(),
    reason="the forked workers inherit the patched unit function",
)
def test_an_error_in_a_worker_is_raised_in_the_main_process(monkeypatch) -> None:
    monkeypatch.setattr(generation, "_run_unit", _unit_failing_in_a_worker)
    with pytest.raises(ValueError) as caught:
        generate_pairs(SMALL, seed=3, workers=2)
    assert str(caught.value) == "no unit 0 here"
    (note,) = caught.value.__notes__
    assert note.startswith("raised in a graph generation worker process, at:\n")
    assert "_unit_failing_in_a_worker" in note
    assert multiprocessing.active_children() == []


# A worker killed by the system (SIGKILL, as the out-of-memory killer sends) at any
# moment, and the command stopped by SIGTERM or Ctrl-C, in the `nip` command itself:
# generation_driver.py makes the first worker to reach a moment stop there, so the
# test can kill it (or the command) at that moment.

DRIVER = Path(__file__).with_name("generation_driver.py")
# each split needs units 0 and 1 of its score-class gt_2 stream (which the
# driver's moments name) and takes a fraction of a second
GENERATE = [
    "datasets",
    "generate",
    "graph_isomorphism",
    "gi",
    "--num-pairs",
    "40",
    "--test-pairs",
    "20",
    "--graph-sizes",
    "7",
    "--edge-probabilities",
    "0.3",
    "--seed",
    "1",
]
needs_posix = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods()
    or not Path("/proc/self/stat").exists(),
    reason="POSIX signals and /proc",
)


@pytest.fixture(scope="module")
def serially_generated(tmp_path_factory) -> Path:
    from nip_plugin_graph_isomorphism import storage

    return storage.build_dataset(
        "gi",
        tmp_path_factory.mktemp("serial"),
        num_pairs=40,
        test_pairs=20,
        seed=1,
        graph_sizes="7",
        edge_probabilities="0.3",
        workers=1,
        progress=False,
    )


def _start_paused(moment: str, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """Start the command with two workers; return it and the pid of the worker
    that stopped at ``moment``."""
    marker = tmp_path / "paused"
    process = subprocess.Popen(
        [sys.executable, str(DRIVER), *GENERATE, "--workers", "2"]
        + ["--data-dir", str(tmp_path / "data")],
        env={**os.environ, "NIP_TEST_PAUSE": moment, "NIP_TEST_PAUSED": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text():
            return process, int(marker.read_text())
        if process.poll() is not None:
            break
        time.sleep(0.05)
    _end(process)
    _, err = process.communicate()
    raise AssertionError(f"no worker stopped at {moment}; the command said:\n{err}")


def _end(process: subprocess.Popen) -> None:
    """Kill whatever is left of the command's process group (a test that failed)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _arrays(dataset: Path) -> dict[str, dict[str, np.ndarray]]:
    arrays = {}
    for split in ("train", "test"):
        with np.load(dataset / f"{split}.npz") as archive:
            arrays[split] = dict(archive)
    return arrays


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


@needs_posix
@pytest.mark.parametrize("moment", ["first_unit", "mid_stream", "sending"])
def test_a_worker_killed_at_any_moment_leaves_the_same_dataset(
    moment, tmp_path, serially_generated
) -> None:
    """Killed before its first unit, before a stream's second unit, or halfway
    through sending a result (the main process has read the start of it), the
    worker is noticed at once; the rest is generated in the main process."""
    process, paused = _start_paused(moment, tmp_path)
    try:
        os.kill(paused, signal.SIGKILL)
        _, err = process.communicate(timeout=60)
    finally:
        _end(process)
    assert process.returncode == 0, err
    # on a line of its own, in nip's log format: not glued to the progress bar's
    warnings = re.findall(
        r"^.*a graph generation worker process died \(.*\n", err, re.M
    )
    assert warnings == [
        re.match(r"\[\d\d:\d\d:\d\d\]", warnings[0]).group(0)
        + "[nip_plugin_graph_isomorphism.generation][WARNING] "
        f"a graph generation worker process died (pid {paused}, killed by signal "
        "SIGKILL); generating the rest in this process (the other workers are "
        "stopped)\n"
    ]
    written = _arrays(tmp_path / "data" / "graph_isomorphism" / "gi")
    expected = _arrays(serially_generated)
    assert {split: sorted(a) for split, a in written.items()} == {
        split: sorted(a) for split, a in expected.items()
    }
    for split, split_arrays in expected.items():
        for key, array in split_arrays.items():
            assert np.array_equal(written[split][key], array), (split, key)
    assert len(written["train"]["labels"]) == 40


@needs_posix
@pytest.mark.parametrize(
    ("stop", "status", "message"),
    [
        ("SIGTERM", 143, "nip: terminated (SIGTERM)"),
        ("Ctrl-C", 130, "nip: interrupted"),
    ],
)
def test_stopping_the_command_ends_every_worker(
    stop, status, message, tmp_path
) -> None:
    """SIGTERM to the command, or Ctrl-C (SIGINT to its whole process group, as a
    terminal sends it), while one worker runs a unit and the command waits for it:
    the command ends at once and no worker is left behind."""
    process, paused = _start_paused("first_unit", tmp_path)
    try:
        from nip_core.runs.interrupts import descendant_pids

        workers = descendant_pids(process.pid)
        assert len(workers) == 2 and paused in workers
        if stop == "SIGTERM":
            os.kill(process.pid, signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        _end(process)
    assert process.returncode == status, err
    assert err.rstrip().endswith(message)
    assert "worker process died" not in err
    assert [pid for pid in workers if _running(pid)] == []
    assert not (tmp_path / "data" / "graph_isomorphism" / "gi").exists()
