"""Response trees: their shape, node values, labels, preference pairs, statistics.

MALT samples, per datapoint, a tree of partial episodes (see
:mod:`nip_plugin_malt.sampling`): the root is the episode before its first round;
every node whose episode is not over gets ``K`` children
(``pure_text_malt.num_responses_per_timestep``), each one more round played with
fresh responses of every agent active in it; a node whose episode is over is a leaf
(its rounds after the end are padding). The tree is stored as its leaves, one
complete episode each, in an ordinary :class:`~nip_core.text.rollouts.TextRollouts`
(saved as the iteration's JSONL like any rollouts), and the branches are recorded in
the episodes' sample keys: a child's key is its parent's plus its branch
(:func:`branch_key`), so ``"train/3/5#1.0.1"`` is the leaf reached from the root
``"train/3/5"`` by branches 1, 0 and 1. The request seeds derive from the sample
keys, so every branch samples its own responses.

For an agent ``a``:

Value
    A leaf's value is the episode's reward for ``a`` (its return). A node's value,
    with ``node_value="leaves"`` (the default, the original library's rule), is the
    mean reward of the leaves below it, each leaf weighing the same (a branch whose
    episode ended early is one leaf). With ``node_value="branches"`` it is the mean
    of its children's values, an ended branch counting as the whole padded subtree
    of identical leaves it stands for, so each of a node's ``K`` responses weighs
    the same however soon its episode ended.
Label
    Positive iff the value is at least ``a``'s reward mid-point (the middle of its
    return range, ``protocol_handler.reward_mid_point_estimate``), else negative.
    Values and mid-points are compared as the decimals they add up to
    (:func:`nip_core.text.rollouts.exact_returns`): a mean of returns that adds up
    to the mid-point is at it, not a float rounding below.
Preference pair
    At each node whose children are a turn of ``a`` (``a`` is active in their
    round), the root included: when the children hold both a positive and a
    negative response of ``a``, one pair, chosen with a generator seeded by the run
    seed, the node and the agent (:func:`pair_seed`): a positive child whose
    response was valid and a negative child whose response differs from it
    (identical responses teach nothing). Prompt: ``a``'s chat before that turn
    (the same for every child); chosen and rejected: the two responses as
    generated.

This module imports neither torch nor a backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from nip_core.seeding import derive_seed
from nip_core.text.backend import PreferenceExample
from nip_core.text.rollouts import TextRollouts, exact_returns
from nip_plugin_malt.parameters import NODE_VALUES

__all__ = [
    "BRANCH_SEPARATOR",
    "PreferencePair",
    "ResponseForest",
    "ResponseNode",
    "branch_key",
    "pair_seed",
    "split_branch_key",
]

BRANCH_SEPARATOR = "#"
"""Separates a tree's root key from the branch path in a sample key."""


def branch_key(parent_key: str, branch: int) -> str:
    """The sample key of a node's child on ``branch``."""
    if BRANCH_SEPARATOR in parent_key:
        return f"{parent_key}.{int(branch)}"
    return f"{parent_key}{BRANCH_SEPARATOR}{int(branch)}"


def split_branch_key(key: str) -> tuple[str, tuple[int, ...]]:
    """``(root key, branch path)`` of a sample key (an empty path for a root)."""
    root, separator, path = str(key).partition(BRANCH_SEPARATOR)
    if not separator:
        return root, ()
    try:
        return root, tuple(int(part) for part in path.split("."))
    except ValueError:
        raise ValueError(
            f"sample key {key!r} has no valid branch path after {BRANCH_SEPARATOR!r}"
        ) from None


def pair_seed(seed: int, node_key: str, agent_name: str) -> int:
    """The seed of the choice of one node's preference pair for one agent."""
    return derive_seed(int(seed), f"pure_text_malt/pair/{node_key}/{agent_name}")


@attrs.define(eq=False)
class ResponseNode:
    """A node of a response tree.

    Parameters
    ----------
    key : str
        Its sample key (root key plus branch path).
    root : str
        The tree's root key.
    path : tuple[int, ...]
        The branches from the root.
    episodes : list[int]
        The leaves below it (episode indices in the rollouts).
    children : list[ResponseNode]
        Its children, by branch.
    value : numpy.ndarray
        ``(A,)``: each agent's value.
    positive : numpy.ndarray
        ``(A,)``: each agent's label.
    """

    key: str
    root: str
    path: tuple[int, ...]
    episodes: list[int] = attrs.field(factory=list)
    children: list[ResponseNode] = attrs.field(factory=list)
    value: np.ndarray | None = None
    positive: np.ndarray | None = None

    @property
    def round_id(self) -> int:
        """The round whose responses the node holds (-1 for a root)."""
        return len(self.path) - 1

    @property
    def is_root(self) -> bool:
        return not self.path

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def episode(self) -> int:
        """An episode through the node (they all share its history)."""
        return self.episodes[0]


@attrs.frozen(kw_only=True)
class PreferencePair:
    """One preference pair of an agent at a node.

    Parameters
    ----------
    agent_name : str
    node_key : str
        The node whose children the responses are.
    round_id : int
        The round of the responses.
    chosen_key, rejected_key : str
        The positive and the negative child.
    example : PreferenceExample
        The prompt, chosen and rejected responses.
    """

    agent_name: str
    node_key: str
    round_id: int
    chosen_key: str
    rejected_key: str
    example: PreferenceExample


@attrs.frozen(kw_only=True)
class AgentPairs:
    """An agent's preference pairs and what the nodes offered.

    Parameters
    ----------
    pairs : tuple[PreferencePair, ...]
    decision_points : int
        Nodes whose children are a turn of the agent.
    with_both_labels : int
        Those whose children have a positive and a negative response.
    unpaired : int
        Those with both labels but no pair: no valid positive response differs
        from a negative one.
    """

    pairs: tuple[PreferencePair, ...]
    decision_points: int
    with_both_labels: int
    unpaired: int


class ResponseForest:
    """The response trees of a batch of rollouts, with values and labels.

    Parameters
    ----------
    rollouts : TextRollouts
        The trees' leaves (see the module docstring); several iterations' trees may
        be concatenated.
    mid_points : Sequence[float]
        Each agent's reward mid-point (in ``rollouts.agent_names`` order).
    node_value : {"leaves", "branches"}
        How a node's value is formed (see the module docstring).

    Raises
    ------
    ValueError
        When the episodes do not form response trees: a sample key whose branch
        path does not name one branch per played round, two leaves with one key, or
        a node that both ends an episode and has children.
    """

    def __init__(
        self,
        rollouts: TextRollouts,
        mid_points: Sequence[float],
        *,
        node_value: str = "leaves",
    ):
        if node_value not in NODE_VALUES:
            raise ValueError(
                f"node_value must be one of {', '.join(NODE_VALUES)}, "
                f"got {node_value!r}"
            )
        # compared as decimals, as the values are (exact_returns)
        mid = exact_returns(mid_points)
        if mid.shape != (rollouts.num_agents,):
            raise ValueError(
                f"one reward mid-point per agent is needed ({rollouts.num_agents}), "
                f"got {mid.shape}"
            )
        self.rollouts = rollouts
        self.mid_points = mid
        self.roots: dict[str, ResponseNode] = {}
        self.nodes: dict[str, ResponseNode] = {}
        lengths = rollouts.episode_length
        returns = rollouts.episode_reward
        ends: dict[str, int] = {}
        for b in range(rollouts.batch_size):
            key = str(rollouts["sample_key"][b])
            root, path = split_branch_key(key)
            if len(path) != int(lengths[b]):
                raise ValueError(
                    f"episode {b} (sample key {key!r}) played {int(lengths[b])} "
                    f"rounds but its key names {len(path)} branches: these rollouts "
                    "are not response trees (sampled by pure_text_malt)"
                )
            if key in ends:
                raise ValueError(
                    f"episodes {ends[key]} and {b} have the same sample key {key!r}"
                )
            ends[key] = b
            parent = None
            for depth in range(len(path) + 1):
                prefix = path[:depth]
                node_key = (
                    root
                    if depth == 0
                    else f"{root}{BRANCH_SEPARATOR}{'.'.join(map(str, prefix))}"
                )
                node = self.nodes.get(node_key)
                if node is None:
                    node = ResponseNode(key=node_key, root=root, path=prefix)
                    self.nodes[node_key] = node
                    if parent is None:
                        self.roots[root] = node
                    else:
                        parent.children.append(node)
                node.episodes.append(b)
                parent = node
        for key, b in ends.items():
            node = self.nodes[key]
            if node.children:
                raise ValueError(
                    f"episode {b} ends at node {key!r}, which has children: these "
                    "rollouts are not response trees"
                )
            node.value = returns[b].astype(np.float64)
        for node in sorted(self.nodes.values(), key=lambda n: -len(n.path)):
            node.children.sort(key=lambda child: child.path[-1])
            if node.children and node_value == "leaves":
                node.value = exact_returns(returns[node.episodes].mean(axis=0))
            elif node.children:
                node.value = exact_returns(
                    np.mean([child.value for child in node.children], axis=0)
                )
            node.positive = node.value >= self.mid_points

    # ----------------------------------------------------------------------------------
    # Reading the trees

    def __iter__(self) -> Iterator[ResponseNode]:
        """Every node, tree by tree (in order of first appearance), depth first."""
        for root in self.roots.values():
            stack = [root]
            while stack:
                node = stack.pop()
                yield node
                stack.extend(reversed(node.children))

    def response_nodes(self) -> Iterator[ResponseNode]:
        """Every node but the roots."""
        return (node for node in self if not node.is_root)

    def active(self, node: ResponseNode, agent_name: str) -> bool:
        """Whether ``agent_name`` spoke in the node's round."""
        if node.is_root:
            return False
        a = self.rollouts.agent_index(agent_name)
        return bool(self.rollouts["agents.active"][node.episode, node.round_id, a])

    def response(self, node: ResponseNode, agent_name: str) -> str | None:
        """The agent's response (as generated) in the node's round, if any."""
        if node.is_root:
            return None
        a = self.rollouts.agent_index(agent_name)
        return self.rollouts["agents.raw_output"][node.episode, node.round_id, a]

    def value(self, node_key: str, agent_name: str) -> float:
        """A node's value for an agent."""
        return float(self.nodes[node_key].value[self.rollouts.agent_index(agent_name)])

    def is_positive(self, node_key: str, agent_name: str) -> bool:
        """A node's label for an agent."""
        a = self.rollouts.agent_index(agent_name)
        return bool(self.nodes[node_key].positive[a])

    def turns(self, agent_names: Sequence[str] | None = None) -> int:
        """Generated turns the trees hold: every (node, agent) whose response a
        model generated (it has a prompt: random agents generate nothing), of
        ``agent_names`` (default: every agent); what sampling them generated,
        without retries, as ``tree_generation_bound`` counts them."""
        names = self.rollouts.agent_names if agent_names is None else agent_names
        agents = [self.rollouts.agent_index(name) for name in names]
        active = self.rollouts["agents.active"]
        prompts = self.rollouts["agents.prompt"]
        return sum(
            1
            for node in self.response_nodes()
            for a in agents
            if active[node.episode, node.round_id, a]
            and prompts[node.episode, node.round_id, a] is not None
        )

    # ----------------------------------------------------------------------------------
    # Preference pairs

    def preference_pairs(self, agent_name: str, seed: int) -> AgentPairs:
        """The agent's preference pairs (see the module docstring), tree by tree,
        node by node (depth first)."""
        a = self.rollouts.agent_index(agent_name)
        rollouts = self.rollouts
        valid = rollouts["agents.valid_response"]
        pairs: list[PreferencePair] = []
        decision_points = with_both = unpaired = 0
        for node in self:
            children = [
                c
                for c in node.children
                if self.active(c, agent_name)
                and self.response(c, agent_name) is not None
            ]
            if not children:
                continue
            decision_points += 1
            positive = [c for c in children if c.positive[a]]
            negative = [c for c in children if not c.positive[a]]
            if not positive or not negative:
                continue
            with_both += 1
            rng = np.random.default_rng(pair_seed(seed, node.key, agent_name))
            chosen = [
                positive[i]
                for i in rng.permutation(len(positive))
                if valid[positive[i].episode, positive[i].round_id, a]
            ]
            rejected = [negative[i] for i in rng.permutation(len(negative))]
            pair = next(
                (
                    (p, n)
                    for p in chosen
                    for n in rejected
                    if self.response(p, agent_name) != self.response(n, agent_name)
                ),
                None,
            )
            if pair is None:
                unpaired += 1
                continue
            p, n = pair
            prompt = rollouts["agents.prompt"][p.episode, p.round_id, a]
            pairs.append(
                PreferencePair(
                    agent_name=agent_name,
                    node_key=node.key,
                    round_id=p.round_id,
                    chosen_key=p.key,
                    rejected_key=n.key,
                    example=PreferenceExample(
                        prompt=prompt,
                        chosen=self.response(p, agent_name),
                        rejected=self.response(n, agent_name),
                    ),
                )
            )
        return AgentPairs(
            pairs=tuple(pairs),
            decision_points=decision_points,
            with_both_labels=with_both,
            unpaired=unpaired,
        )

    # ----------------------------------------------------------------------------------
    # Statistics

    def statistics(self, agent_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The original library's per-round statistics, per agent.

        For each tree, round ``r`` and agent ``a`` that spoke in round ``r``: the
        mean value and the share of positive labels of the tree's nodes of round
        ``r``, and the share of the nodes whose children are those responses that
        have both labels. Over the trees: ``<a>.round_<r>.mean_expected_reward``
        (and ``std_``), ``<a>.round_<r>.mean_is_positive_example``,
        ``<a>.round_<r>.mean_has_positive_and_negative``; over every tree and round:
        ``<a>.mean_expected_reward``, ``<a>.std_expected_reward`` and likewise.
        Also ``num_trees``, ``mean_tree_leaves`` and ``num_tree_turns`` (turns
        generated, without retries).
        """
        rollouts = self.rollouts
        names = list(rollouts.agent_names if agent_names is None else agent_names)
        labels = ("expected_reward", "is_positive_example", "has_positive_and_negative")
        # cells[agent][round]: one (value, positive, both) triple of means per tree
        cells: dict[str, dict[int, list[tuple[float, ...]]]] = {n: {} for n in names}
        for root in self.roots.values():
            tree: dict[tuple[str, int], tuple[list, list, list]] = {}
            stack = [root]
            while stack:
                node = stack.pop()
                stack.extend(node.children)
                for name in names:
                    a = rollouts.agent_index(name)
                    spoke = [c for c in node.children if self.active(c, name)]
                    if spoke:
                        values, positive, both = tree.setdefault(
                            (name, node.round_id + 1), ([], [], [])
                        )
                        values.extend(c.value[a] for c in spoke)
                        positive.extend(c.positive[a] for c in spoke)
                        labelled = {bool(c.positive[a]) for c in spoke}
                        both.append(len(labelled) == 2)
            for (name, round_id), lists in tree.items():
                cells[name].setdefault(round_id, []).append(
                    tuple(float(np.mean(values)) for values in lists)
                )
        stats: dict[str, Any] = {
            "num_trees": len(self.roots),
            "mean_tree_leaves": (
                rollouts.batch_size / len(self.roots) if self.roots else 0.0
            ),
            "num_tree_turns": self.turns(),
        }
        for name in names:
            everything: list[tuple[float, float, float]] = []
            for round_id, values in sorted(cells[name].items()):
                everything.extend(values)
                array = np.asarray(values)
                for i, label in enumerate(labels):
                    stats[f"{name}.round_{round_id}.mean_{label}"] = float(
                        array[:, i].mean()
                    )
                    stats[f"{name}.round_{round_id}.std_{label}"] = float(
                        array[:, i].std()
                    )
            if not everything:
                continue
            array = np.asarray(everything)
            for i, label in enumerate(labels):
                stats[f"{name}.mean_{label}"] = float(array[:, i].mean())
                stats[f"{name}.std_{label}"] = float(array[:, i].std())
        return stats
