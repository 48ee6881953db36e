"""Exact counts of labelled graphs by degree sequence, and exact sampling from them.

An Erdős–Rényi graph ``G(n, p)`` has probability ``p^m (1 - p)^(E - m)`` with ``m``
edges out of ``E = n (n - 1) / 2``, which depends on the graph only through its degree
sequence. So ``G(n, p)`` conditioned on its degree multiset ``D`` is the uniform
distribution over labelled graphs with degree multiset ``D``, and

    P(degree multiset = D) = (number of labelled graphs with degree multiset D)
                             * p^m * (1 - p)^(E - m).

The generator (:mod:`nip_plugin_graph_isomorphism.generation`) uses these exact
probabilities to propose pairs of graphs that already share a degree multiset, with
exactly the frequencies rejection sampling would give them, instead of drawing
thousands of independent pairs per match.

Counts are Python integers (exact); they are computed once per node count by a
memoised recursion over sorted degree sequences (about 8 s for 11 nodes).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from functools import cache

import numpy as np

__all__ = [
    "MAX_TABLE_NODES",
    "count_graphs_with_degrees",
    "degree_multiset_table",
    "multiset_key",
    "sample_graph_with_degrees",
]

MAX_TABLE_NODES = 12
"""Largest node count for which degree-multiset tables are built (12 takes ~40 s)."""


def _groups(degrees: Sequence[int]) -> list[tuple[int, int]]:
    """(value, multiplicity) pairs of the positive values, largest value first."""
    return sorted(Counter(d for d in degrees if d > 0).items(), reverse=True)


def _compositions(groups: list[tuple[int, int]], total: int):
    """Ways to pick ``total`` vertices: ``k_i`` of group ``i``, ``0 <= k_i <= c_i``."""
    capacity_after = [0] * (len(groups) + 1)
    for i in range(len(groups) - 1, -1, -1):
        capacity_after[i] = capacity_after[i + 1] + groups[i][1]

    def rec(i: int, left: int, chosen: tuple[int, ...]):
        if i == len(groups):
            if left == 0:
                yield chosen
            return
        count = groups[i][1]
        for k in range(max(0, left - capacity_after[i + 1]), min(count, left) + 1):
            yield from rec(i + 1, left - k, (*chosen, k))

    return rec(0, total, ())


def _residual(groups: list[tuple[int, int]], chosen: tuple[int, ...]) -> tuple:
    values: list[int] = []
    for (value, count), k in zip(groups, chosen, strict=True):
        values.extend([value - 1] * k)
        values.extend([value] * (count - k))
    return tuple(sorted((v for v in values if v > 0), reverse=True))


@cache
def _count_sorted(degrees: tuple[int, ...]) -> int:
    # degrees: positive, non-increasing; isolated vertices do not change the count
    if not degrees:
        return 1
    if sum(degrees) % 2:
        return 0
    first, rest = degrees[0], degrees[1:]
    if first > len(rest):
        return 0
    groups = _groups(rest)
    total = 0
    for chosen in _compositions(groups, first):
        ways = math.prod(
            math.comb(c, k) for (_, c), k in zip(groups, chosen, strict=True)
        )
        total += ways * _count_sorted(_residual(groups, chosen))
    return total


def count_graphs_with_degrees(degrees: Sequence[int]) -> int:
    """The number of labelled simple graphs whose vertex ``i`` has degree ``d_i``.

    Parameters
    ----------
    degrees : Sequence[int]
        One degree per vertex (the count depends only on their multiset).
    """
    return _count_sorted(tuple(sorted((d for d in degrees if d > 0), reverse=True)))


def multiset_key(degrees: np.ndarray, num_nodes: int) -> np.ndarray:
    """Exact integer key of degree multisets: ``sum_v (n + 1) ** d_v``.

    Injective because every degree count is at most ``n < n + 1``; fits in int64
    for ``n <= 15``.

    Parameters
    ----------
    degrees : np.ndarray
        ``(..., n)`` degrees.
    num_nodes : int
        ``n``.
    """
    base = num_nodes + 1
    powers = base ** np.arange(num_nodes, dtype=np.int64)
    return powers[degrees].sum(-1)


@cache
def degree_multiset_table(num_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every graphical degree multiset on ``num_nodes`` vertices, with its graph count.

    Returns
    -------
    keys : np.ndarray
        ``(K,)`` int64 :func:`multiset_key` of each multiset, sorted.
    edges : np.ndarray
        ``(K,)`` int64 number of edges (half the degree sum).
    log_counts : np.ndarray
        ``(K,)`` float64 natural log of the number of labelled graphs with that
        degree multiset.

    Raises
    ------
    ValueError
        When ``num_nodes`` exceeds :data:`MAX_TABLE_NODES`.
    """
    if num_nodes > MAX_TABLE_NODES:
        raise ValueError(
            f"degree-multiset tables are built for at most {MAX_TABLE_NODES} nodes, "
            f"got {num_nodes}"
        )
    base = num_nodes + 1
    keys, edges, log_counts = [], [], []
    factorial = math.factorial(num_nodes)
    for multiset in itertools.combinations_with_replacement(
        range(num_nodes - 1, -1, -1), num_nodes
    ):
        if sum(multiset) % 2:
            continue
        labelled = _count_sorted(tuple(d for d in multiset if d > 0))
        if labelled == 0:
            continue
        arrangements = factorial
        for multiplicity in Counter(multiset).values():
            arrangements //= math.factorial(multiplicity)
        keys.append(sum(base**d for d in multiset))
        edges.append(sum(multiset) // 2)
        log_counts.append(math.log(arrangements * labelled))
    order = np.argsort(np.asarray(keys, dtype=np.int64))
    return (
        np.asarray(keys, dtype=np.int64)[order],
        np.asarray(edges, dtype=np.int64)[order],
        np.asarray(log_counts, dtype=np.float64)[order],
    )


def key_to_multiset(key: int, num_nodes: int) -> list[int]:
    """The degree multiset (non-increasing) encoded by :func:`multiset_key`."""
    base = num_nodes + 1
    degrees: list[int] = []
    for degree in range(num_nodes):
        count = (key // base**degree) % base
        degrees.extend([degree] * int(count))
    return sorted(degrees, reverse=True)


def sample_graph_with_degrees(degrees: Sequence[int], rng: random.Random) -> np.ndarray:
    """A uniformly random labelled graph with the given degree sequence.

    Vertex by vertex, the neighbours of vertex ``i`` among the later vertices are
    drawn with probability proportional to the number of completions of the
    remaining degree sequence, so every graph is equally likely (exact, with integer
    weights).

    Parameters
    ----------
    degrees : Sequence[int]
        The degree of each vertex; must be graphical.
    rng : random.Random
        The source of randomness.

    Returns
    -------
    np.ndarray
        ``(n, n)`` uint8 adjacency matrix.
    """
    residual = list(degrees)
    n = len(residual)
    if count_graphs_with_degrees(residual) == 0:
        raise ValueError(f"degree sequence {list(degrees)} is not graphical")
    adjacency = np.zeros((n, n), dtype=np.uint8)
    for vertex in range(n):
        needed = residual[vertex]
        if needed == 0:
            continue
        later = range(vertex + 1, n)
        by_value: dict[int, list[int]] = {}
        for other in later:
            if residual[other] > 0:
                by_value.setdefault(residual[other], []).append(other)
        groups = sorted(((v, len(m)) for v, m in by_value.items()), reverse=True)
        options, weights = [], []
        for chosen in _compositions(groups, needed):
            ways = math.prod(
                math.comb(c, k) for (_, c), k in zip(groups, chosen, strict=True)
            )
            # the vertices after this one, with the chosen ones decremented
            rest = [residual[o] for o in later if residual[o] == 0] + list(
                _residual(groups, chosen)
            )
            weight = ways * count_graphs_with_degrees(rest)
            if weight:
                options.append(chosen)
                weights.append(weight)
        pick = rng.randrange(sum(weights))
        option = 0
        while pick >= weights[option]:
            pick -= weights[option]
            option += 1
        chosen = options[option]
        for (value, _), k in zip(groups, chosen, strict=True):
            for other in rng.sample(by_value[value], k):
                adjacency[vertex, other] = adjacency[other, vertex] = 1
                residual[other] -= 1
        residual[vertex] = 0
    return adjacency
