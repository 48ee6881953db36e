"""Generate datasets of graph pairs: Erdős–Rényi pairs with WL-score quotas.

The recipe (the original library's, with its defaults):

1. Non-isomorphic pairs, a ``prop_non_isomorphic`` share of the dataset, spread
   evenly over the cells ``(graph size, edge probability)``. In every cell a share
   ``non_iso_prop_score_1`` of them has WL score 1 (the degree multisets differ),
   ``non_iso_prop_score_2`` score 2, and the rest a score above 2 (at most
   ``max_wl_iterations``). Both graphs of a pair are independent ``G(n, p)`` graphs;
   a pair belongs to a cell's score class with exactly the distribution rejection
   sampling gives: ``G(n, p) x G(n, p)`` conditioned on the class.
2. Isomorphic pairs from non-isomorphic ones: a share ``iso_prop_from_non_iso`` of
   the remaining pairs; each takes one graph of a uniformly drawn non-isomorphic pair
   (with replacement) and pairs it with itself.
3. Fresh isomorphic pairs: the rest, spread evenly over the cells; each is a new
   ``G(n, p)`` graph paired with itself.

Both graphs of every isomorphic pair have their nodes permuted independently and
uniformly. Labels are exact: a pair is non-isomorphic only when WL separates it, and
isomorphic pairs are built as permuted copies. The final order is a seeded shuffle.

Speed. Pairs with score 1 are plain rejection sampling (almost every proposal
qualifies). Pairs with a score of 2 or more need equal degree multisets, which two
independent ``G(11, 0.4)`` graphs have once in a thousand, and a score above 2 then
needs equal round-2 colours, once in ten thousand of those. Instead of proposing
independent pairs, the generator draws the degree multiset ``D`` of a matching pair
with its exact probability under rejection sampling, ``P(D)^2 / sum_D' P(D')^2``
(:mod:`~nip_plugin_graph_isomorphism.degree_sequences` counts the graphs of every
multiset), and then two independent ``G(n, p)`` graphs conditioned on degree multiset
``D``: the next unused graphs of that multiset from a stream of ``G(n, p)`` graphs,
or, for multisets too rare to turn up in the stream, exact uniform samples of graphs
with that degree multiset. Which source serves a pair depends only on the degree
multisets seen, never on the graphs themselves, so each pair has exactly the
conditional distribution and pairs are independent. Work is cut into units with
seeds derived from the dataset seed and the unit's index; units run on a process pool
and their results are consumed in index order, so the dataset does not depend on the
number of workers or on timing.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Literal

import attrs
import numpy as np
import torch
from nip_core.errors import NipError
from nip_core.seeding import derive_seed

from nip_plugin_graph_isomorphism.degree_sequences import (
    MAX_TABLE_NODES,
    degree_multiset_table,
    key_to_multiset,
    multiset_key,
    sample_graph_with_degrees,
)
from nip_plugin_graph_isomorphism.wl import wl_scores

logger = logging.getLogger(__name__)

__all__ = [
    "GENERATOR_VERSION",
    "GenerationConfig",
    "GraphPairs",
    "ScoreClass",
    "generate_pairs",
    "non_isomorphic_quotas",
]

GENERATOR_VERSION = "1"
"""Bumped whenever the same config and seed would give different pairs."""

ScoreClass = Literal["1", "2", "gt_2"]

SCORE_CLASSES: tuple[ScoreClass, ...] = ("1", "2", "gt_2")

Method = Literal["rejection", "degree_matched"]


MIN_NODES_FOR_HARD_PAIRS = 7
"""The fewest nodes of graphs a non-isomorphic pair with a WL score above 2 (the
WL test needs more than 2 rounds to tell them apart) is drawn from."""


class ImpossibleCellError(NipError, RuntimeError):
    """A cell (graph size, edge probability) gave no pair of a score class within
    the work allowed: such pairs are impossible there, or too rare to find."""

    def __init__(self, stream: Any, max_units: int):
        n, p, score_class = stream.n, stream.p, stream.score_class
        if score_class != "gt_2":
            advice = (
                "change this cell's edge probability (--edge-probabilities) or size "
                "(--graph-sizes)"
            )
        elif n < MIN_NODES_FOR_HARD_PAIRS:
            advice = (
                f"scores above 2 need graphs of at least {MIN_NODES_FOR_HARD_PAIRS} "
                "nodes: raise --graph-sizes"
            )
        else:
            advice = (
                "scores above 2 need graphs with enough edges that the WL test "
                "cannot tell them apart in two rounds: raise the edge probability "
                "(--edge-probabilities) or the graph size (--graph-sizes)"
            )
        super().__init__(
            f"no non-isomorphic pair of WL score class {score_class} for graphs of "
            f"{n} nodes at edge probability {p} after {max_units} work units: such "
            f"pairs are impossible or too rare in this cell; {advice}, or leave the "
            "cell out"
        )


@attrs.frozen(kw_only=True)
class GenerationConfig:
    """The recipe of a graph-pair dataset.

    Parameters
    ----------
    num_pairs : int
        Number of pairs.
    graph_sizes : tuple[int, ...]
        Node counts of the cells.
    edge_probabilities : tuple[float, ...]
        Edge probabilities of the cells.
    max_wl_iterations : int
        WL rounds run; non-isomorphic pairs need a score of at most this.
    prop_non_isomorphic : float
        Share of non-isomorphic pairs.
    non_iso_prop_score_1, non_iso_prop_score_2 : float
        Shares of non-isomorphic pairs with WL score 1 and 2; the rest score higher.
    iso_prop_from_non_iso : float
        Share of isomorphic pairs built from a graph of a non-isomorphic pair.
    """

    num_pairs: int = attrs.field(validator=attrs.validators.ge(1))
    graph_sizes: tuple[int, ...] = attrs.field(
        default=(7, 8, 9, 10, 11), converter=tuple
    )
    edge_probabilities: tuple[float, ...] = attrs.field(
        default=(0.2, 0.4, 0.6, 0.8), converter=tuple
    )
    max_wl_iterations: int = attrs.field(default=5, validator=attrs.validators.ge(3))
    prop_non_isomorphic: float = 0.5
    non_iso_prop_score_1: float = 0.1
    non_iso_prop_score_2: float = 0.2
    iso_prop_from_non_iso: float = 0.5

    def __attrs_post_init__(self) -> None:
        if not self.graph_sizes or min(self.graph_sizes) < 2:
            raise ValueError(f"graph sizes must be at least 2, got {self.graph_sizes}")
        if not self.edge_probabilities or not all(
            0 < p < 1 for p in self.edge_probabilities
        ):
            raise ValueError(
                "edge probabilities must lie strictly between 0 and 1, got "
                f"{self.edge_probabilities}"
            )
        for name in ("prop_non_isomorphic", "iso_prop_from_non_iso"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1]")
        if not (
            0 <= self.non_iso_prop_score_1
            and 0 <= self.non_iso_prop_score_2
            and self.non_iso_prop_score_1 + self.non_iso_prop_score_2 <= 1
        ):
            raise ValueError("the score-1 and score-2 shares must be >= 0, sum <= 1")

    @property
    def cells(self) -> list[tuple[int, float]]:
        """The ``(graph size, edge probability)`` cells, in order."""
        return [(n, p) for n in self.graph_sizes for p in self.edge_probabilities]


@attrs.define(kw_only=True)
class GraphPairs:
    """Pairs of graphs as dense arrays.

    Parameters
    ----------
    adjacency : np.ndarray
        ``(pair, 2, node, node)`` uint8, padded to the largest graph.
    sizes : np.ndarray
        ``(pair, 2)`` int64 node counts of the two graphs.
    wl_scores : np.ndarray
        ``(pair,)`` int64 WL score, ``-1`` for isomorphic pairs.
    labels : np.ndarray
        ``(pair,)`` int64, 1 iff the graphs are isomorphic.
    """

    adjacency: np.ndarray
    sizes: np.ndarray
    wl_scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _largest_remainder(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights``; ties go to earlier entries."""
    weight_sum = sum(weights)
    if total == 0 or weight_sum == 0:
        return [0] * len(weights)
    exact = [total * w / weight_sum for w in weights]
    counts = [math.floor(x + 1e-9) for x in exact]
    remainders = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in remainders[: total - sum(counts)]:
        counts[i] += 1
    return counts


def non_isomorphic_quotas(
    config: GenerationConfig,
) -> dict[tuple[int, float, str], int]:
    """Number of non-isomorphic pairs per (size, probability, score class).

    Equal to the original library's ``floor`` quotas whenever those divide evenly
    (for ``eru10000``: 25, 50 and 175 per cell); otherwise the totals are kept exact
    by largest-remainder rounding.
    """
    total = round(config.num_pairs * config.prop_non_isomorphic)
    shares = [
        config.non_iso_prop_score_1,
        config.non_iso_prop_score_2,
        1 - config.non_iso_prop_score_1 - config.non_iso_prop_score_2,
    ]
    quotas: dict[tuple[int, float, str], int] = {}
    cells = config.cells
    per_class = _largest_remainder(total, shares)
    for score_class, class_total in zip(SCORE_CLASSES, per_class, strict=True):
        per_cell = _largest_remainder(class_total, [1.0] * len(cells))
        for (n, p), count in zip(cells, per_cell, strict=True):
            quotas[(n, p, score_class)] = count
    return quotas


def _in_class(
    scores: torch.Tensor, score_class: str, max_iterations: int
) -> torch.Tensor:
    if score_class == "1":
        return scores == 1
    if score_class == "2":
        return scores == 2
    return (scores > 2) & (scores <= max_iterations)


# --------------------------------------------------------------------------------------
# Graph sampling helpers
# --------------------------------------------------------------------------------------


def _triu(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.triu_indices(n, n, offset=1)
    return rows, cols


def _edges_to_adjacency(edges: torch.Tensor, n: int) -> torch.Tensor:
    """``(batch, E)`` bool upper-triangle edges to ``(batch, n, n)`` uint8."""
    rows, cols = _triu(n)
    adjacency = torch.zeros(edges.shape[0], n, n, dtype=torch.uint8)
    adjacency[:, rows, cols] = edges.to(torch.uint8)
    return adjacency | adjacency.transpose(1, 2)


def _er_edges(num: int, n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(num, n * (n - 1) // 2, generator=generator) < p


def _degrees(edges: torch.Tensor, n: int) -> torch.Tensor:
    rows, cols = _triu(n)
    incidence = torch.zeros(edges.shape[1], n)
    incidence[torch.arange(edges.shape[1]), rows] = 1
    incidence[torch.arange(edges.shape[1]), cols] = 1
    return (edges.to(torch.float32) @ incidence).to(torch.int64)


def _permute_nodes(
    adjacency: np.ndarray, sizes: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Permute the real nodes of each padded graph uniformly (padding stays last)."""
    num, nodes = adjacency.shape[0], adjacency.shape[-1]
    keys = rng.random((num, nodes))
    keys[np.arange(nodes)[None, :] >= sizes[:, None]] = 2.0
    permutation = np.argsort(keys, axis=1, kind="stable")
    rows = np.take_along_axis(adjacency, permutation[:, :, None], axis=1)
    return np.take_along_axis(rows, permutation[:, None, :], axis=2)


# --------------------------------------------------------------------------------------
# Work units
# --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Stream:
    """The non-isomorphic pairs of one (size, probability, score class)."""

    n: int
    p: float
    score_class: str
    quota: int
    method: Method
    seed: int
    max_iterations: int

    def unit_size(self, index: int) -> int:
        # units grow so that easy streams waste little and hard ones run in
        # reasonably large vectorised batches
        if self.method == "rejection":
            return 256 * 2 ** min(index, 6)
        return 512 * 2 ** min(index, 6)


@attrs.frozen
class _UnitResult:
    adjacency: np.ndarray  # (k, 2, n, n) uint8
    scores: np.ndarray  # (k,)
    proposals: int


def _run_unit(stream: _Stream, index: int) -> _UnitResult:
    if stream.method == "rejection":
        return _rejection_unit(stream, index)
    return _degree_matched_unit(stream, index)


def _rejection_unit(stream: _Stream, index: int) -> _UnitResult:
    generator = torch.Generator().manual_seed(derive_seed(stream.seed, f"unit/{index}"))
    num = stream.unit_size(index)
    edges = _er_edges(2 * num, stream.n, stream.p, generator)
    adjacency = _edges_to_adjacency(edges, stream.n)
    scores = wl_scores(
        adjacency[:num], adjacency[num:], max_iterations=stream.max_iterations
    )
    keep = _in_class(scores, stream.score_class, stream.max_iterations)
    pairs = torch.stack((adjacency[:num][keep], adjacency[num:][keep]), dim=1)
    return _UnitResult(pairs.numpy(), scores[keep].numpy(), num)


def _matched_multiset_cdf(n: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Keys of degree multisets and the CDF of ``P(D)^2`` (a matching pair's D)."""
    keys, edges, log_counts = degree_multiset_table(n)
    num_slots = n * (n - 1) // 2
    log_prob = log_counts + edges * math.log(p) + (num_slots - edges) * math.log1p(-p)
    weights = np.exp(2 * (log_prob - log_prob.max()))
    cdf = np.cumsum(weights)
    return keys, cdf / cdf[-1]


def _multiset_probabilities(n: int, p: float) -> np.ndarray:
    """``P(degree multiset = D)`` under ``G(n, p)``, aligned with the table's keys."""
    _, edges, log_counts = degree_multiset_table(n)
    num_slots = n * (n - 1) // 2
    return np.exp(
        log_counts + edges * math.log(p) + (num_slots - edges) * math.log1p(-p)
    )


_CDF_CACHE: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}


def _cdf(n: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    if (n, p) not in _CDF_CACHE:
        _CDF_CACHE[(n, p)] = _matched_multiset_cdf(n, p)
    return _CDF_CACHE[(n, p)]


STREAM_CHUNK = 1 << 15
"""Graphs added to a degree-matched unit's stream at a time."""


def _degree_matched_unit(stream: _Stream, index: int) -> _UnitResult:
    n, p = stream.n, stream.p
    unit_seed = derive_seed(stream.seed, f"unit/{index}")
    generator = torch.Generator().manual_seed(unit_seed)
    num = stream.unit_size(index)

    # the degree multiset of each proposed pair, with rejection sampling's law
    table_keys, cdf = _cdf(n, p)
    uniforms = torch.rand(num, dtype=torch.float64, generator=generator).numpy()
    need_keys = table_keys[
        np.minimum(np.searchsorted(cdf, uniforms, side="right"), len(cdf) - 1)
    ]
    # rank of each need among the needs of its multiset: it takes graphs 2r, 2r + 1
    order = np.argsort(need_keys, kind="stable")
    sorted_needs = need_keys[order]
    group_start = np.searchsorted(sorted_needs, sorted_needs, side="left")
    rank = np.empty(num, dtype=np.int64)
    rank[order] = np.arange(num) - group_start

    # A stream of G(n, p) graphs, bucketed by degree multiset. Its length is a
    # function of the needed multisets only (long enough to serve all but about one
    # in a thousand needs, going by each multiset's exact probability), so which
    # graphs serve which pair never depends on the graphs themselves.
    probability = _multiset_probabilities(n, p)
    need_probability = probability[np.searchsorted(table_keys, need_keys)]
    required = (2 * rank + 2) / need_probability
    length = int(min(max(1.5 * np.quantile(required, 0.999), STREAM_CHUNK), 64 * num))
    edge_chunks, key_chunks = [], []
    for chunk_start in range(0, length, STREAM_CHUNK):
        edges = _er_edges(min(STREAM_CHUNK, length - chunk_start), n, p, generator)
        edge_chunks.append(edges)
        key_chunks.append(multiset_key(_degrees(edges, n).numpy(), n))
    all_edges = torch.cat(edge_chunks)
    keys = np.concatenate(key_chunks)
    key_order = np.argsort(keys, kind="stable")
    sorted_keys = keys[key_order]
    start = np.searchsorted(sorted_keys, need_keys, side="left")
    available = np.searchsorted(sorted_keys, need_keys, side="right") - start
    served = available >= 2 * rank + 2

    pair_edges = torch.zeros(num, 2, all_edges.shape[1], dtype=torch.bool)
    for side in (0, 1):
        position = 2 * rank + side
        present = available > position
        picked = key_order[np.minimum(start + position, len(keys) - 1)]
        pair_edges[torch.from_numpy(present), side] = all_edges[picked[present]]

    # the few needs the stream did not serve: exact uniform graphs of that multiset
    missing = np.flatnonzero(~served)
    rng = random.Random(derive_seed(unit_seed, "direct"))
    rows, cols = _triu(n)
    for need in missing:
        multiset = key_to_multiset(int(need_keys[need]), n)
        for side in (0, 1):
            if available[need] > 2 * rank[need] + side:
                continue
            labelled = multiset.copy()
            rng.shuffle(labelled)
            adjacency = sample_graph_with_degrees(labelled, rng)
            pair_edges[need, side] = torch.from_numpy(
                adjacency[rows, cols].astype(bool)
            )

    adjacency_a = _edges_to_adjacency(pair_edges[:, 0], n)
    adjacency_b = _edges_to_adjacency(pair_edges[:, 1], n)
    scores = wl_scores(adjacency_a, adjacency_b, max_iterations=stream.max_iterations)
    keep = _in_class(scores, stream.score_class, stream.max_iterations)
    pairs = torch.stack((adjacency_a[keep], adjacency_b[keep]), dim=1)
    return _UnitResult(pairs.numpy(), scores[keep].numpy(), length + 2 * len(missing))


# --------------------------------------------------------------------------------------
# Scheduling
# --------------------------------------------------------------------------------------


class _SerialPool:
    """Runs units in the calling process: with ``workers=1``, and for the rest of
    the work once a worker process has died. It has the interface of
    :class:`_WorkerPool` that :func:`_run_streams` uses.

    A unit runs when its result is first asked for, so units submitted ahead for a
    stream that reaches its quota first are never run.
    """

    class _Deferred:
        def __init__(self, stream: _Stream, index: int):
            self._unit: tuple[_Stream, int] | None = (stream, index)
            self._value: _UnitResult | None = None

        @property
        def done(self) -> bool:
            return self._value is not None

        def result(self) -> _UnitResult:
            if self._value is None:
                if self._unit is None:
                    raise RuntimeError("the result of a cancelled unit was asked for")
                self._value = _run_unit(*self._unit)
                self._unit = None
            return self._value

        def cancel(self) -> None:
            self._unit = None

    def submit(self, stream: _Stream, index: int) -> _SerialPool._Deferred:
        return self._Deferred(stream, index)

    def close(self) -> None:
        pass


class _WorkerDied(Exception):
    """A worker process of a :class:`_WorkerPool` ended; the message says how."""


_POLL_SECONDS = 1.0
"""The longest a pool waits on its workers' pipes before it looks at every worker
again (their exit is also watched directly, so this is only a safety net)."""

_EXIT_SECONDS = 10.0
"""How long a pool waits for a worker it killed, or whose pipe closed, to end."""


@attrs.define(eq=False)
class _Task:
    """A unit given to a :class:`_WorkerPool`: its result once a worker sent it."""

    pool: _WorkerPool
    stream: _Stream
    index: int
    value: _UnitResult | None = None
    cancelled: bool = False

    @property
    def done(self) -> bool:
        return self.value is not None

    def result(self) -> _UnitResult:
        """The unit's result, waiting for it.

        Raises
        ------
        _WorkerDied
            When a worker process ended, this unit's or another's.
        """
        return self.pool.wait_for(self)

    def cancel(self) -> None:
        """Not needed any more: never given to a worker (one running it goes on)."""
        self.cancelled = True


@attrs.define(eq=False)
class _Worker:
    process: Any  # a multiprocessing Process
    connection: Any  # this process's end of the worker's pipe
    task: _Task | None = None


class _WorkerPool:
    """Worker processes run units sent over a pipe of their own, one at a time.

    This process waits on every worker's pipe and on every worker's exit together,
    so a worker that dies (killed, out of memory, a crash in a forked child) is
    noticed at once, whatever it was doing: running a unit, sending its result
    (the pipe, which only that worker writes to, closes before the whole result
    has come), or waiting for the next unit. Then :meth:`wait_for` raises
    :class:`_WorkerDied`, and the caller runs the units left elsewhere. Workers
    share no lock and no queue: the result queue of
    :class:`~concurrent.futures.ProcessPoolExecutor` is one pipe all its workers
    write to, and one killed halfway through writing a result there left the
    reader waiting for the rest of it forever.
    """

    def __init__(self, workers: int) -> None:
        methods = multiprocessing.get_all_start_methods()
        # fork: workers inherit the degree-multiset tables built before
        self._context = multiprocessing.get_context(
            "fork" if "fork" in methods else "spawn"
        )
        self._workers: list[_Worker] = []
        self._queue: collections.deque[_Task] = collections.deque()
        try:
            for _ in range(workers):
                self._start_worker()
        except BaseException:
            self.close()
            raise

    def _start_worker(self) -> None:
        here, there = self._context.Pipe()
        # A forked worker holds copies of this process's ends of its own pipe and
        # of the earlier workers' pipes: it closes them, so that its pipe reads end
        # of file once this process is gone (killed without a chance to end it) and
        # it stops instead of living on as an orphan
        forked = self._context.get_start_method() == "fork"
        inherited = [worker.connection for worker in self._workers] + [here]
        process = self._context.Process(
            target=_worker_main,
            args=(there, inherited if forked else []),
            name=f"nip-graph-generation-{len(self._workers)}",
            daemon=True,
        )
        # The new worker starts with Ctrl-C and SIGTERM held back, until it has
        # dropped the command line's handlers of them (with which either would
        # raise in it); here they wait until the worker is recorded for close()
        with _interrupts_blocked():
            process.start()
            self._workers.append(_Worker(process, here))
            there.close()

    def submit(self, stream: _Stream, index: int) -> _Task:
        """Queue a unit; workers take queued units in order."""
        task = _Task(self, stream, index)
        self._queue.append(task)
        return task

    def wait_for(self, task: _Task) -> _UnitResult:
        """Give queued units to idle workers and take in results until ``task``'s
        has come.

        Raises
        ------
        _WorkerDied
            When a worker process has ended (the pool is then of no more use).
        """
        if task.cancelled:
            raise RuntimeError("the result of a cancelled unit was asked for")
        while task.value is None:
            self._dispatch()
            busy = {w.connection: w for w in self._workers if w.task is not None}
            exits = {w.process.sentinel: w for w in self._workers}
            ready = set(
                multiprocessing.connection.wait([*busy, *exits], timeout=_POLL_SECONDS)
            )
            # results first: a worker may have sent one just before it died
            for connection, worker in busy.items():
                if connection in ready:
                    self._receive(worker)
            for sentinel, worker in exits.items():
                if sentinel in ready or not worker.process.is_alive():
                    raise self._died(worker)
        return task.value

    def _dispatch(self) -> None:
        for worker in self._workers:
            if worker.task is not None:
                continue
            while self._queue and self._queue[0].cancelled:
                self._queue.popleft()
            if not self._queue:
                return
            task = self._queue.popleft()
            try:
                worker.connection.send((task.stream, task.index))
            except OSError:
                raise self._died(worker) from None
            worker.task = task

    def _receive(self, worker: _Worker) -> None:
        try:
            succeeded, value = worker.connection.recv()
        except (EOFError, OSError):
            # the pipe closed before a whole result came: the worker died
            # before or while sending it
            raise self._died(worker) from None
        task, worker.task = worker.task, None
        if not succeeded:
            raise value
        assert task is not None
        task.value = value

    def _died(self, worker: _Worker) -> _WorkerDied:
        process = worker.process
        # it is ending (its pipe or its exit said so): its exit code says how
        process.join(_EXIT_SECONDS)
        code = process.exitcode
        if code is None:
            how = "its pipe closed"
        elif code < 0:
            try:
                how = f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return _WorkerDied(f"pid {process.pid}, {how}")

    def close(self) -> None:
        """End every worker (SIGKILL: what they run is no longer wanted) and wait
        for them to end."""
        for worker in self._workers:
            if worker.process.exitcode is None:
                worker.process.kill()
        for worker in self._workers:
            worker.process.join(_EXIT_SECONDS)
            worker.connection.close()
        self._workers.clear()
        self._queue.clear()


_INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _interrupts_blocked() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back in this thread (and in a process it starts)
    until the block ends; they are delivered then."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _INTERRUPTS)


def _worker_main(connection: Any, inherited: list[Any]) -> None:
    """A worker process: run the units sent over ``connection`` and send each
    result back, until the pipe closes."""
    for other in inherited:
        other.close()
    # One thread per worker process: the workers are the parallelism (and no
    # OpenMP thread team is started in a forked child). A forked worker inherits
    # the command line's handlers (SIGTERM raised as an interrupt): a worker ends
    # on SIGTERM, and Ctrl-C is the main process's to handle (it ends the workers).
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _INTERRUPTS)
    while True:
        try:
            stream, index = connection.recv()
        except (EOFError, OSError):
            return  # the main process closed the pipe or is gone
        try:
            message: tuple[bool, Any] = (True, _run_unit(stream, index))
        except Exception as error:  # noqa: BLE001 - raised again in the main process
            error.add_note(
                "raised in a graph generation worker process, at:\n"
                + "".join(traceback.format_tb(error.__traceback__))
            )
            message = (False, error)
        try:
            _send_to_main(connection, message)
        except (EOFError, OSError):
            return  # the main process is gone


def _send_to_main(connection: Any, message: tuple[bool, Any]) -> None:
    """Send a unit's outcome to the main process: ``(True, result)`` or ``(False,
    error)``. (A function of its own so that a test can stop a worker halfway
    through sending.) An error that cannot be pickled ends the worker: the main
    process then runs the unit itself, and the error is raised there."""
    connection.send(message)


def _run_streams(
    streams: list[_Stream],
    workers: int,
    on_accept: Callable[[int], None],
    max_units: int = 300,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run every stream to its quota; return (pairs, scores) per stream.

    Units of all streams are interleaved on the worker processes; each stream's
    results are consumed in unit order and cut at its quota, so the output does not
    depend on scheduling. If a worker process dies (killed, out of memory, a crash
    in a forked child), the other workers are killed, a warning says which died and
    how, and the units whose results have not come run in this process, with the
    same result.
    """
    if max_units < 1:
        raise ValueError(f"max_units must be at least 1, got {max_units}")
    pool: _WorkerPool | _SerialPool = (
        _WorkerPool(workers) if workers > 1 else _SerialPool()
    )
    pending: dict[int, dict[int, Any]] = {i: {} for i in range(len(streams))}

    def fall_back(death: _WorkerDied) -> _SerialPool:
        """A worker died: end the others, then run every unit whose result has
        not come in this process."""
        pool.close()
        logger.warning(
            "a graph generation worker process died (%s); generating the rest in "
            "this process (the other workers are stopped)",
            death,
        )
        serial = _SerialPool()
        for i, units in pending.items():
            for index, unit in units.items():
                if not unit.done:
                    units[index] = serial.submit(streams[i], index)
        return serial

    try:
        next_submit = [0] * len(streams)
        next_consume = [0] * len(streams)
        collected: list[list[np.ndarray]] = [[] for _ in streams]
        collected_scores: list[list[np.ndarray]] = [[] for _ in streams]
        accepted = [0] * len(streams)
        active = [i for i, s in enumerate(streams) if s.quota > 0]
        in_flight_limit = max(2 * workers, 2)
        while active:
            # keep the workers busy: submit round-robin over unfinished streams
            in_flight = sum(len(pending[i]) for i in active)
            cursor = 0
            while in_flight < in_flight_limit * len(active) and cursor < len(active):
                for i in list(active):
                    # a stream without a pair yet gets max_units units at most
                    hopeless = next_submit[i] >= max_units and accepted[i] == 0
                    if len(pending[i]) < in_flight_limit and not hopeless:
                        pending[i][next_submit[i]] = pool.submit(
                            streams[i], next_submit[i]
                        )
                        next_submit[i] += 1
                        in_flight += 1
                cursor += 1
            # consume the next result of each stream, in unit order
            for i in list(active):
                index = next_consume[i]
                try:
                    result: _UnitResult = pending[i][index].result()
                except _WorkerDied as death:
                    pool = fall_back(death)
                    result = pending[i][index].result()
                del pending[i][index]
                next_consume[i] += 1
                take = min(streams[i].quota - accepted[i], len(result.scores))
                if take:
                    collected[i].append(result.adjacency[:take])
                    collected_scores[i].append(result.scores[:take])
                    accepted[i] += take
                    on_accept(take)
                # judged on the units consumed, not those submitted ahead (more
                # with more workers): the outcome does not depend on the workers
                if accepted[i] == 0 and next_consume[i] >= max_units:
                    raise ImpossibleCellError(streams[i], max_units)
                if accepted[i] >= streams[i].quota:
                    active.remove(i)
                    for unit in pending[i].values():
                        unit.cancel()
                    pending[i].clear()
        out = []
        for i, stream in enumerate(streams):
            if collected[i]:
                out.append(
                    (np.concatenate(collected[i]), np.concatenate(collected_scores[i]))
                )
            else:
                n = stream.n
                out.append((np.zeros((0, 2, n, n), np.uint8), np.zeros(0, np.int64)))
        return out
    finally:
        pool.close()


def _method_for(n: int, score_class: str) -> Method:
    if score_class != "1" and n <= MAX_TABLE_NODES:
        return "degree_matched"
    return "rejection"


def _pad(adjacency: np.ndarray, nodes: int) -> np.ndarray:
    extra = nodes - adjacency.shape[-1]
    return np.pad(adjacency, [(0, 0)] * (adjacency.ndim - 2) + [(0, extra), (0, extra)])


def generate_pairs(
    config: GenerationConfig,
    seed: int,
    workers: int | None = None,
    progress: bool = False,
    description: str = "graph pairs",
    max_units: int = 300,
) -> GraphPairs:
    """Generate a dataset of graph pairs following ``config``.

    Parameters
    ----------
    config : GenerationConfig
        The recipe.
    seed : int
        Everything is derived from it; the result does not depend on ``workers``.
    workers : int | None
        Processes to use; by default ``min(2, os.cpu_count())``.
    progress : bool
        Show a tqdm progress bar of accepted pairs.
    description : str
        The progress bar's label.
    max_units : int
        Work units a score class may use without producing a single pair before it
        is reported as impossible for its cell.

    Raises
    ------
    ImpossibleCellError
        When a cell's score class yields no pair in ``max_units`` units (a
        :class:`~nip_core.errors.NipError`, which the command line prints as one
        message, and a ``RuntimeError``).
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    quotas = non_isomorphic_quotas(config)
    streams = [
        _Stream(
            n=n,
            p=p,
            score_class=c,
            quota=quota,
            method=_method_for(n, c),
            seed=derive_seed(seed, f"non_isomorphic/{n}/{p!r}/{c}"),
            max_iterations=config.max_wl_iterations,
        )
        for (n, p, c), quota in quotas.items()
    ]
    # build the tables before forking so that workers inherit them
    for stream in streams:
        if stream.method == "degree_matched" and stream.quota:
            _cdf(stream.n, stream.p)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.num_pairs, desc=description, disable=not progress, unit="pair"
    )
    try:
        results = _run_streams(streams, workers, bar.update, max_units=max_units)
        max_nodes = max(config.graph_sizes)
        non_iso = [_pad(pairs, max_nodes) for pairs, _ in results]
        non_iso_adjacency = (
            np.concatenate(non_iso)
            if non_iso
            else np.zeros((0, 2, max_nodes, max_nodes))
        )
        non_iso_scores = np.concatenate([scores for _, scores in results]).astype(
            np.int64
        )
        non_iso_sizes = np.concatenate(
            [
                np.full(len(scores), s.n, dtype=np.int64)
                for (_, scores), s in zip(results, streams, strict=True)
            ]
        )

        rng = np.random.default_rng(derive_seed(seed, "isomorphic"))
        num_iso = config.num_pairs - len(non_iso_scores)
        num_from_non_iso = round(num_iso * config.iso_prop_from_non_iso)
        if len(non_iso_scores) == 0:
            num_from_non_iso = 0
        pair_index = rng.integers(0, max(len(non_iso_scores), 1), num_from_non_iso)
        side = rng.integers(0, 2, num_from_non_iso)
        from_non_iso = non_iso_adjacency[pair_index, side]
        from_non_iso_sizes = non_iso_sizes[pair_index]

        fresh_counts = _largest_remainder(
            num_iso - num_from_non_iso, [1.0] * len(config.cells)
        )
        generator = torch.Generator().manual_seed(derive_seed(seed, "isomorphic/fresh"))
        fresh, fresh_sizes = [], []
        for (n, p), count in zip(config.cells, fresh_counts, strict=True):
            adjacency = _edges_to_adjacency(
                _er_edges(count, n, p, generator), n
            ).numpy()
            fresh.append(_pad(adjacency, max_nodes))
            fresh_sizes.append(np.full(count, n, dtype=np.int64))
        iso_graphs = np.concatenate(
            [from_non_iso.reshape(-1, max_nodes, max_nodes), *fresh]
        )
        iso_sizes = np.concatenate([from_non_iso_sizes, *fresh_sizes])
        iso_pairs = np.stack(
            (
                _permute_nodes(iso_graphs, iso_sizes, rng),
                _permute_nodes(iso_graphs, iso_sizes, rng),
            ),
            axis=1,
        )
        bar.update(len(iso_sizes))
    finally:
        bar.close()

    adjacency = np.concatenate(
        (non_iso_adjacency.astype(np.uint8), iso_pairs.astype(np.uint8))
    )
    sizes = np.concatenate((non_iso_sizes, iso_sizes))
    scores = np.concatenate(
        (non_iso_scores, np.full(len(iso_sizes), -1, dtype=np.int64))
    )
    order = np.random.default_rng(derive_seed(seed, "order")).permutation(len(sizes))
    return GraphPairs(
        adjacency=adjacency[order],
        sizes=np.stack((sizes, sizes), axis=1)[order],
        wl_scores=scores[order],
        labels=(scores[order] == -1).astype(np.int64),
    )
