"""The graph isomorphism environment.

A message is one node of either graph: an index in ``[0, 2 n)`` of the flattened
``(2, n)`` message space (``n`` = the dataset's largest graph), graph ``0`` first.
Padding nodes are never valid messages. Provers (agents whose name contains
``"prover"``) may only send a node of the graph opposite the latest message on the
channel; when the channel has no message yet, or its latest message touched both
graphs, any real node is valid. Everything else (turns, rewards, done signals) is the
tensor world's common stepping.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from nip_core.scenario import keys as K
from nip_core.scenario.environment import TensorDictEnvironment
from tensordict import TensorDictBase


class GraphIsomorphismEnvironment(TensorDictEnvironment):
    """Batched environment of the graph isomorphism scenario.

    Observations add ``"adjacency"`` (int32, ``(num_envs, 2, n, n)``) and
    ``"node_mask"`` (bool, ``(num_envs, 2, n)``); ``message_history`` has shape
    ``(num_envs, rounds, channels, message_size, 2, n)``.
    """

    observation_data_keys: ClassVar[tuple[str, ...]] = ("adjacency", "node_mask")

    @property
    def max_num_nodes(self) -> int:
        """``n``: the node count graphs are padded to."""
        return int(self.dataset.data.get("node_mask").shape[-1])

    @property
    def message_space_shape(self) -> tuple[int, int]:
        return (2, self.max_num_nodes)

    def latest_messages(self, env_td: TensorDictBase) -> torch.Tensor:
        """``(*batch, C, P, 2, n)``: per channel and position, the latest message
        sent on it in any earlier round (zeros where none was). In the alternating
        schedules that is the last round's; in sequential ones a prover's channel
        may have been silent last round, and its latest message is older."""
        history = env_td.get(K.MESSAGE_HISTORY, None)
        if history is None:
            return env_td[K.MESSAGE]
        # (*batch, R, C, P, 2, n)
        sent = history.flatten(-2).ne(0).any(-1)  # (*batch, R, C, P)
        rounds = torch.arange(sent.shape[-3], device=sent.device).view(-1, 1, 1)
        last = torch.where(sent, rounds, -1).amax(-3)  # (*batch, C, P)
        index = last.clamp(min=0)[..., None, :, :, None, None]
        index = index.expand(*index.shape[:-2], *history.shape[-2:])
        latest = torch.take_along_dim(history, index, dim=-5).squeeze(-5)
        return latest * (last >= 0)[..., None, None].to(latest.dtype)

    def compute_valid_message_mask(self, env_td: TensorDictBase) -> torch.Tensor:
        node_mask = env_td["node_mask"].to(torch.bool)  # (*batch, 2, n)
        message = self.latest_messages(env_td)  # (*batch, C, P, 2, n)
        batch_shape = env_td.batch_size
        in_graph = message.sum(-1) > 0  # (*batch, C, P, 2)
        # a node of graph g is allowed to a prover when the latest message is only in
        # the other graph; with no message, or one in both graphs, all real nodes are
        opposite_only = in_graph.flip(-1) & ~in_graph
        unrestricted = in_graph.sum(-1, keepdim=True) != 1
        prover_graphs = opposite_only | unrestricted  # (*batch, C, P, 2)

        real = node_mask[..., None, None, :, :]  # (*batch, 1, 1, 2, n)
        prover_valid = real & prover_graphs[..., None]
        other_valid = real.expand_as(prover_valid)
        is_prover = torch.tensor(
            ["prover" in name for name in self.agent_names], device=message.device
        )
        shape = (*batch_shape, 1, *prover_valid.shape[len(batch_shape) :])
        valid = torch.where(
            is_prover.reshape(1, -1, 1, 1, 1, 1).reshape(
                *([1] * len(batch_shape)), -1, 1, 1, 1, 1
            ),
            prover_valid.reshape(shape),
            other_valid.reshape(shape),
        )
        return valid.flatten(-2)
