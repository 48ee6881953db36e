"""Weisfeiler–Lehman colour refinement, vectorised over batches of graphs.

Colours are 64-bit hashes. In round ``r`` every node's colour becomes a hash of its
own colour and the *multiset* of its neighbours' colours (1-WL colour refinement);
the colour histogram of a graph is summarised by the sum of a second hash of its
node colours, which depends only on the multiset of colours. The same hash functions
are used for every graph, so comparing two graphs' summaries round by round is the
same as refining the disjoint union of the pair jointly, as the textbook algorithm
does.

The hashes are deterministic functions of the multisets they summarise, so two
graphs with equal colour histograms always get equal summaries: a pair the hashes
separate really is non-isomorphic. A hash collision (probability about 2^-64 per
comparison) could only hide a separation, i.e. make a score larger, never produce a
wrong isomorphism label.

Everything here runs on integer tensors of shape ``(batch, node, node)`` with no
Python loop over graphs; the loop is over WL rounds, with early exit once every pair
is decided.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["graph_hashes", "mix64", "wl_scores"]

_MULT_1 = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64
_MULT_2 = -4658895280553007687  # 0xBF58476D1CE4E5B9 as a signed int64
_MULT_3 = -7723592293110705685  # 0x94D049BB133111EB as a signed int64
_SELF_SALT = 0x2545F4914F6CDD1D
_NEIGHBOUR_SALT = 0x5851F42D4C957F2D
_GRAPH_SALT = 0x14057B7EF767814F


def _shift_right_logical(x: Tensor, shift: int) -> Tensor:
    # torch's >> is arithmetic on int64; masking the copied sign bits off makes it
    # logical, which the mixer below needs to stay a bijection
    return (x >> shift) & ((1 << (64 - shift)) - 1)


def mix64(x: Tensor) -> Tensor:
    """A bijective 64-bit mixer (the SplitMix64 finaliser) on int64 tensors.

    Multiplication wraps around modulo 2^64, as the finaliser requires.
    """
    x = x ^ _shift_right_logical(x, 30)
    x = x * _MULT_2
    x = x ^ _shift_right_logical(x, 27)
    x = x * _MULT_3
    return x ^ _shift_right_logical(x, 31)


def _refine(colours: Tensor, adjacency: Tensor) -> Tensor:
    """One round: hash (own colour, multiset of neighbour colours)."""
    neighbour_terms = mix64(colours ^ _NEIGHBOUR_SALT)
    neighbour_sum = (adjacency * neighbour_terms[:, None, :]).sum(-1)
    return mix64(mix64(colours ^ _SELF_SALT) * _MULT_1 + neighbour_sum)


def _summary(colours: Tensor, node_mask: Tensor) -> Tensor:
    """Hash of the multiset of the colours of the real nodes of each graph."""
    return (mix64(colours ^ _GRAPH_SALT) * node_mask).sum(-1)


def graph_hashes(
    adjacency: Tensor, node_mask: Tensor | None = None, num_rounds: int = 5
) -> Tensor:
    """Per-graph summaries of the WL colour histogram after each round.

    Parameters
    ----------
    adjacency : Tensor
        ``(batch, node, node)`` 0/1 adjacency matrices (any integer or bool dtype),
        symmetric, zero diagonal, zero rows and columns for padding nodes.
    node_mask : Tensor | None
        ``(batch, node)`` bool, which nodes are real; all of them when ``None``.
    num_rounds : int
        Rounds of refinement.

    Returns
    -------
    Tensor
        ``(batch, num_rounds)`` int64: column ``r`` summarises the histogram after
        round ``r + 1``. Two graphs have equal column ``r`` iff (up to hash
        collisions) WL does not separate them in the first ``r + 1`` rounds.
    """
    adjacency = adjacency.to(torch.int64)
    batch, num_nodes, _ = adjacency.shape
    if node_mask is None:
        node_mask = torch.ones(batch, num_nodes, dtype=torch.bool)
    mask = node_mask.to(torch.int64)
    colours = torch.zeros(batch, num_nodes, dtype=torch.int64)
    summaries = []
    for _ in range(num_rounds):
        colours = _refine(colours, adjacency)
        summaries.append(_summary(colours, mask))
    return torch.stack(summaries, dim=1)


def wl_scores(
    adjacency_a: Tensor,
    adjacency_b: Tensor,
    node_mask_a: Tensor | None = None,
    node_mask_b: Tensor | None = None,
    max_iterations: int = 5,
) -> Tensor:
    """The WL score of each pair: the first round whose colour histograms differ.

    Parameters
    ----------
    adjacency_a, adjacency_b : Tensor
        ``(batch, node, node)`` adjacency matrices of the first and second graphs
        (padded to one node count).
    node_mask_a, node_mask_b : Tensor | None
        ``(batch, node)`` real-node masks; all nodes real when ``None``.
    max_iterations : int
        The most rounds run.

    Returns
    -------
    Tensor
        ``(batch,)`` int64: ``r`` in ``[1, max_iterations]`` when round ``r`` is the
        first to separate the pair (pairs of different sizes score 1), ``-1`` when
        no round up to ``max_iterations`` separates it (isomorphic, or beyond WL).

    Notes
    -----
    Pairs leave the computation as soon as they are separated, or as soon as
    neither graph's colour partition was refined in a round (a stable partition is
    never refined again, so the pair can no longer be separated).
    """
    if adjacency_a.shape != adjacency_b.shape:
        raise ValueError(
            "the two batches of adjacency matrices must have one shape, got "
            f"{tuple(adjacency_a.shape)} and {tuple(adjacency_b.shape)}"
        )
    batch, num_nodes, _ = adjacency_a.shape
    ones = torch.ones(batch, num_nodes, dtype=torch.bool)
    mask_a = ones if node_mask_a is None else node_mask_a.to(torch.bool)
    mask_b = ones if node_mask_b is None else node_mask_b.to(torch.bool)
    scores = torch.full((batch,), -1, dtype=torch.int64)
    if batch == 0 or max_iterations < 1:
        return scores

    # Round 1 from uniform colours depends on the degree only, so it is computed
    # from degrees on the compact input; the int64 copies later rounds need are made
    # only for the pairs round 1 leaves undecided (usually very few).
    mask = torch.cat((mask_a, mask_b)).to(torch.int64)
    degrees = torch.cat((adjacency_a.sum(-1), adjacency_b.sum(-1))).to(torch.int64)
    zero = torch.zeros((), dtype=torch.int64)
    colours = mix64(
        mix64(zero ^ _SELF_SALT) * _MULT_1 + degrees * mix64(zero ^ _NEIGHBOUR_SALT)
    )
    summary = _summary(colours, mask)
    separated = summary[:batch] != summary[batch:]
    scores[separated] = 1
    num_classes = _count_classes(colours, mask)
    # a pair whose graphs are both stable after round 1 (regular graphs) is never
    # separated: a node's new colour determines its old one, since the own colour is
    # hashed in, so colours refine across the pair as well as within each graph
    refined = (num_classes > 1)[:batch] | (num_classes > 1)[batch:]
    undecided = ~separated & refined
    active = torch.nonzero(undecided).squeeze(1)
    both = torch.cat((active, active + batch))
    adjacency = torch.cat((adjacency_a[active], adjacency_b[active])).to(torch.int64)
    mask = mask[both]
    colours = colours[both]
    num_classes = num_classes[both]

    for round_index in range(2, max_iterations + 1):
        count = active.numel()
        if count == 0:
            break
        new_colours = _refine(colours, adjacency)
        summary = _summary(new_colours, mask)
        separated = summary[:count] != summary[count:]
        scores[active[separated]] = round_index
        new_num_classes = _count_classes(new_colours, mask)
        refined = new_num_classes > num_classes
        keep = ~separated & (refined[:count] | refined[count:])
        keep_both = torch.cat((keep, keep))
        active = active[keep]
        adjacency = adjacency[keep_both]
        mask = mask[keep_both]
        colours = new_colours[keep_both]
        num_classes = new_num_classes[keep_both]
    return scores


def _count_classes(colours: Tensor, mask: Tensor) -> Tensor:
    """Number of distinct colours among the real nodes of each graph."""
    # padding nodes get the smallest value so that, after sorting, they form one run
    # at the start which is not counted
    filled = torch.where(mask.bool(), colours, torch.iinfo(torch.int64).min)
    ordered, _ = torch.sort(filled, dim=-1)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    real = ordered != torch.iinfo(torch.int64).min
    return (starts & real).sum(-1)
