"""The networks of graph isomorphism agents (plain torch modules).

The GNN is a dense GIN: graphs are padded to ``n`` nodes and batched as
``(batch, 2, n, n)`` adjacency matrices, so one layer is a batched matrix product
and an MLP, computing torch_geometric's ``GINConv`` update
``h' = MLP((1 + eps) h + sum of neighbours' h)``. Measured on one CPU thread (5
layers, 512 graphs of 11 nodes, forward and backward) it costs about the same as
``GINConv`` on edge lists (33 ms against 30 ms), and needs no conversion of the
environment's padded tensors to edge lists.

Two choices here are for speed on CPU, where these networks are small enough that
per-operator costs dominate (graph isomorphism at the ``ppo_gi`` settings spends
most of its training time in them):

- ``tanh`` is computed as ``2 sigmoid(2x) - 1`` (:class:`Tanh`): torch's CPU ``tanh``
  kernel is about six times slower than its ``sigmoid`` (measured with AVX-512 on
  one thread), and the two agree to within 2e-7; between two linear layers
  (:class:`Mlp`) the affine maps are folded into the linears, leaving one
  ``sigmoid``, and so is the activation that ends each GIN layer
  (:class:`DenseGinLayer`);
- the GIN's MLPs run on the real nodes' rows only (:class:`DenseGin`), the padded
  layout being used for the neighbour sum alone;
- the transformer's attention is written out (:class:`PairTransformer`) rather than
  run through :func:`torch.nn.functional.scaled_dot_product_attention`: with
  sequences of at most ``2 n + 1`` tokens and 4-dimensional heads the fused CPU
  kernels (flash and MATH alike) cost 1.3-1.7 times the plain batched products and
  softmax, and need the mask expanded per head; where only the pooled token's
  output is needed (the value bodies' last layer), its one query per head is
  computed with broadcast products and sums rather than matrix-vector products
  (:meth:`PairTransformer._first_token_attention`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from nip_core.scenario.networks import (  # noqa: F401 (re-exported)
    ACTIVATIONS,
    ZERO_PRESERVING,
    Mlp,
    RoundMlp,
    Tanh,
    activation,
    mlp,
)
from torch import Tensor, nn


class DenseGinLayer(nn.Module):
    """One GIN layer on padded dense graphs, with its activation:
    ``act(MLP((1 + eps) h + A h))``.

    The node features come packed: the rows of the real nodes only (see
    :class:`DenseGin`); the neighbour sum scatters them into the padded layout for
    the batched product with the adjacency and gathers the result back.

    The activation after the MLP is the last module of ``mlp`` (``Linear → act →
    Linear → act``; it has no parameters, so the state dict is that of the MLP
    alone): with ``tanh`` the :class:`Mlp` folds it into the second linear layer
    too, one ``sigmoid`` and no autograd function of its own (with two agent
    threads, nip minibatches at ``ppo_gi`` 0.5 % faster).
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int, act: str):
        super().__init__()
        self.eps = nn.Parameter(torch.zeros(()))
        self.mlp = Mlp(
            nn.Linear(d_in, d_hidden),
            activation(act),
            nn.Linear(d_hidden, d_out),
            activation(act),
        )

    def forward(self, x: Tensor, adjacency: Tensor, real_index: Tensor) -> Tensor:
        """``x``: ``(R, d_in)``, the real nodes' rows; ``adjacency``: ``(..., n,
        n)``; ``real_index``: ``(R,)``, their positions among the padded rows.
        Returns ``(R, d_out)``."""
        padded = x.new_zeros(adjacency.shape[:-1].numel(), x.shape[-1])
        padded = padded.index_copy(0, real_index, x)
        neighbours = adjacency @ padded.view(*adjacency.shape[:-1], x.shape[-1])
        neighbours = neighbours.reshape(-1, x.shape[-1]).index_select(0, real_index)
        return self.mlp(torch.addcmul(neighbours, x, 1 + self.eps))


class DenseGin(nn.Module):
    """A stack of :class:`DenseGinLayer` (each ending with the activation).

    Input ``(..., n, d_in)`` with the adjacency ``(..., n, n)`` and node mask
    ``(..., n)``; output ``(..., n, d_gnn)``, zero at padding nodes. In between the
    layers work on the real nodes' rows only: graphs of 7 to 11 nodes padded to 11
    leave a fifth of the padded rows empty, and the MLPs are most of a layer's cost
    (measured: 5 layers at minibatch 256, forward and backward, 15.5 ms packed
    against 19.8 ms padded on one thread).
    """

    def __init__(self, d_in: int, d_gnn: int, d_hidden: int, num_layers: int, act: str):
        super().__init__()
        dims = [d_in] + [d_gnn] * num_layers
        self.layers = nn.ModuleList(
            DenseGinLayer(dims[i], d_hidden, dims[i + 1], act)
            for i in range(num_layers)
        )

    def forward(self, x: Tensor, adjacency: Tensor, node_mask: Tensor) -> Tensor:
        rows = node_mask.numel()
        real_index = node_mask.reshape(rows).nonzero().squeeze(1)
        packed = x.reshape(rows, x.shape[-1]).index_select(0, real_index)
        for layer in self.layers:
            packed = layer(packed, adjacency, real_index)
        out = packed.new_zeros(rows, packed.shape[-1]).index_copy(0, real_index, packed)
        return out.view(*node_mask.shape, packed.shape[-1])


class SparseGin(DenseGin):
    """The GIN of :class:`DenseGin`, with the neighbour sum as message passing.

    The same layers and parameters (a state dict moves between the two unchanged),
    and the same function to float tolerance; the neighbour sum runs over edge lists
    with torch_geometric's :class:`~torch_geometric.nn.MessagePassing` (``"add"``
    aggregation) instead of a batched product with the padded adjacency. The edge
    list is read off the adjacency once per forward.

    Per layer the dense product costs ``O(n² d)`` per graph of ``n`` padded nodes,
    message passing ``O(E d)`` for ``E`` edges: the sparse body pays off for large
    sparse graphs, the dense one for the paper's 7 to 11 nodes
    (``benchmarks/gin_dense_vs_sparse.py`` measures where they cross). Choose it with
    the agent parameter ``gnn_implementation: sparse``.
    """

    def __init__(self, d_in: int, d_gnn: int, d_hidden: int, num_layers: int, act: str):
        super().__init__(d_in, d_gnn, d_hidden, num_layers, act)
        self.neighbour_sum = NeighbourSum()

    def forward(self, x: Tensor, adjacency: Tensor, node_mask: Tensor) -> Tensor:
        rows = node_mask.numel()
        real = node_mask.reshape(rows) != 0
        real_index = real.nonzero().squeeze(1)
        packed = x.reshape(rows, x.shape[-1]).index_select(0, real_index)
        # edge (source -> target) for adjacency[..., target, source] != 0, so that
        # the sum over sources is the dense ``adjacency @ h``
        n = adjacency.shape[-1]
        flat = adjacency.reshape(-1, n, n)
        graph, target, source = flat.nonzero(as_tuple=True)
        weight = flat[graph, target, source]
        position = torch.full((rows,), -1, dtype=torch.long, device=x.device)
        position[real_index] = torch.arange(real_index.numel(), device=x.device)
        edge_index = torch.stack(
            (position[graph * n + source], position[graph * n + target])
        )
        keep = (edge_index >= 0).all(0)  # edges to padding nodes carry nothing
        edge_index, weight = edge_index[:, keep], weight[keep].to(packed.dtype)
        for layer in self.layers:
            neighbours = self.neighbour_sum(packed, edge_index, weight)
            packed = layer.mlp(torch.addcmul(neighbours, packed, 1 + layer.eps))
        out = packed.new_zeros(rows, packed.shape[-1]).index_copy(0, real_index, packed)
        return out.view(*node_mask.shape, packed.shape[-1])


def NeighbourSum() -> nn.Module:  # noqa: N802 - a factory standing for a class
    """``out[i] = Σ_j w_ij h_j`` over the edges ``j -> i``: torch_geometric's
    message passing with ``"add"`` aggregation (imported on first use)."""
    global _NEIGHBOUR_SUM
    if _NEIGHBOUR_SUM is None:
        from torch_geometric.nn import MessagePassing

        class _NeighbourSum(MessagePassing):
            def __init__(self) -> None:
                super().__init__(aggr="add")

            def forward(self, x: Tensor, edge_index: Tensor, weight: Tensor) -> Tensor:
                return self.propagate(edge_index, x=x, weight=weight)

            def message(self, x_j: Tensor, weight: Tensor) -> Tensor:
                return x_j * weight.unsqueeze(-1)

        first = _NeighbourSum()
        _remove_generated_source(_NeighbourSum)
        _NEIGHBOUR_SUM = _NeighbourSum
        return first
    return _NEIGHBOUR_SUM()


_NEIGHBOUR_SUM: type[nn.Module] | None = None


def _remove_generated_source(cls: type) -> None:
    """Delete the source file torch_geometric wrote for ``cls.propagate``.

    The first instance of a message-passing class has its ``propagate`` generated
    from a template, written to a file in the temporary directory, imported, and
    never deleted: one file per process, which a sweep's runs pile up. The module
    is loaded by then and runs without its file (a traceback shows no source line
    for it).
    """
    module = sys.modules.get(getattr(cls.propagate, "__module__", ""))
    path = getattr(module, "__file__", None)
    if not path or Path(path).parent != Path(tempfile.gettempdir()):
        return
    with contextlib.suppress(OSError):
        os.unlink(path)


GIN_IMPLEMENTATIONS: dict[str, type[DenseGin]] = {
    "dense": DenseGin,
    "sparse": SparseGin,
}
"""The GIN of each value of the agent parameter ``gnn_implementation``."""


_STRUCTURE: dict[tuple[int, str], Tensor] = {}


def _pair_structure(n: int, device: torch.device) -> Tensor:
    """bool ``(2n + 1, 2n + 1)``: which tokens of ``[pair, graph 0's n nodes, graph
    1's n nodes]`` may attend to which, padding aside: the pair token to and from
    every token, a node to the other graph's nodes. Symmetric. Kept per ``(n,
    device)``, except while compiling (then it is traced)."""
    key = (n, str(device))
    compiling = torch.compiler.is_compiling()
    if not compiling and key in _STRUCTURE:
        return _STRUCTURE[key]
    # which graph each node is in, as integers, and built out of place: inductor
    # cannot lower a comparison of two boolean index expressions
    graph = torch.div(torch.arange(2 * n, device=device), n, rounding_mode="floor")
    other_graph = graph[:, None] != graph[None, :]  # (2n, 2n)
    rows = torch.cat(
        [torch.ones(2 * n, 1, dtype=torch.bool, device=device), other_graph], dim=1
    )
    structure = torch.cat(
        [torch.ones(1, 2 * n + 1, dtype=torch.bool, device=device), rows], dim=0
    )
    if not compiling:
        _STRUCTURE[key] = structure
    return structure


def _allowed_keys(node_mask: Tensor, transposed: bool = False) -> Tensor:
    """bool ``(batch, L, L)``, ``[query, key]`` (``[key, query]`` if
    ``transposed``): ``True`` where the query may attend to the key, the
    :func:`_pair_structure` restricted to real keys (``node_mask`` ``(batch, 2,
    n)``; the pair token is always real)."""
    batch, _, n = node_mask.shape
    real = node_mask.reshape(batch, 2 * n).to(torch.bool)
    real = torch.cat(
        [torch.ones(batch, 1, dtype=torch.bool, device=real.device), real], dim=1
    )
    structure = _pair_structure(n, node_mask.device)[None]
    return structure & (real[:, :, None] if transposed else real[:, None, :])


class PairTransformer(nn.Module):
    """Transformer over ``[pooled token, nodes of graph 0, nodes of graph 1]``.

    Nodes attend only to the other graph's (real) nodes and to the pooled token; the
    pooled token attends to every real node and itself.

    The layers are ``nn.TransformerEncoderLayer`` modules (so parameters, their
    initialisation and state-dict keys are torch's), run by :meth:`_layer`, which
    computes their forward with the attention written out (module docstring).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_mlp: int,
        num_layers: int,
        dropout: float,
        act: str,
    ):
        super().__init__()
        self.num_heads = num_heads
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            d_mlp,
            dropout=dropout,
            activation="gelu" if act == "gelu" else "relu",
            batch_first=True,
        )
        self.encoder = (
            nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
            if num_layers
            else None
        )

    def attention_mask(self, node_mask: Tensor) -> Tensor:
        """bool ``(batch, L, L)``, ``True`` where attention is *blocked* (every head
        shares it): ``[query, key]``."""
        return ~_allowed_keys(node_mask)

    def additive_mask(self, node_mask: Tensor) -> Tensor:
        """float ``(batch, 1, L, L)``, ``[key, query]``: ``0`` where the query may
        attend to the key, ``-inf`` where :meth:`attention_mask` blocks it
        (broadcast over the heads). Keys come first: :meth:`_attention` computes
        the scores transposed."""
        batch, _, n = node_mask.shape
        device = node_mask.device
        zero = torch.zeros((), device=device)
        # the structure's blocks plus the padding keys' rows, one broadcast sum
        structure = torch.where(_pair_structure(n, device), zero, float("-inf"))
        real = node_mask.reshape(batch, 2 * n).to(torch.bool)
        padding = F.pad(torch.where(real, zero, float("-inf")), (1, 0))  # (batch, L)
        return (structure + padding[:, :, None])[:, None]

    def _attention(
        self,
        attention: nn.MultiheadAttention,
        x: Tensor,
        mask: Tensor,
        num_queries: int | None = None,
    ) -> Tensor:
        """``attention(x, x, x, attn_mask=mask)``, written out (module docstring);
        ``mask`` from :meth:`additive_mask`.

        With ``num_queries``, only the first ``num_queries`` tokens' outputs are
        computed (every token is still attended to).
        """
        if num_queries == 1:
            return self._first_token_attention(attention, x, mask)
        batch, length, d = x.shape
        heads = self.num_heads
        qkv = F.linear(x, attention.in_proj_weight, attention.in_proj_bias)
        # Queries, keys and values as (batch, head, d_head, token), and the scores
        # and attention weights transposed, (batch, head, key, query): every
        # product then reads its operands in the layouts the CPU kernels handle
        # fastest, the softmax (over keys, dim -2) gets its gradient contiguous
        # (with [query, key] weights, the output product hands it transposed and
        # the softmax's backward copies it: about 1 ms at ppo_gi sizes), and the
        # scale is applied to the queries, 23 times fewer elements than the scores.
        q_t, k_t, v_t = (
            qkv.view(batch, length, 3, heads, d // heads)
            .permute(2, 0, 3, 4, 1)
            .unbind(0)
        )
        if num_queries is not None:
            q_t, mask = q_t[..., :num_queries], mask[..., :num_queries]
        q_t = q_t * (1.0 / math.sqrt(d // heads))
        scores_t = torch.matmul(k_t.transpose(-1, -2), q_t).add_(mask)
        weights_t = torch.softmax(scores_t, dim=-2)
        if self.training and attention.dropout > 0:
            weights_t = F.dropout(weights_t, attention.dropout)
        out_t = torch.matmul(v_t, weights_t)  # (b, h, d_head, q)
        out = out_t.permute(0, 3, 1, 2).reshape(batch, q_t.shape[-1], d)
        return attention.out_proj(out)

    def _first_token_attention(
        self, attention: nn.MultiheadAttention, x: Tensor, mask: Tensor
    ) -> Tensor:
        """:meth:`_attention` for the first token's output alone, ``(batch, 1,
        d)``: what the value bodies' last layer computes (``node_level=False``).

        With one query per head the two products are a dot product per key and
        a weighted sum over the keys. As batched products they are matrix-vector
        products whose backward passes are rank-one ``bmm`` calls, which the CPU
        kernels run at a fraction of a GFLOP/s; written as broadcast products and
        sums they cost about a quarter less (the first-token attention's forward and
        backward at ``ppo_gi`` sizes on one thread: 3.3 against 4.5 ms). Only the
        first token's query is projected.
        """
        batch, length, d = x.shape
        heads = self.num_heads
        d_head = d // heads
        weight, bias = attention.in_proj_weight, attention.in_proj_bias
        q = F.linear(x[:, 0], weight[:d], None if bias is None else bias[:d])
        kv = F.linear(x, weight[d:], None if bias is None else bias[d:])
        k, v = kv.view(batch, length, 2, heads, d_head).unbind(2)  # (b, key, h, dh)
        q = (q * (1.0 / math.sqrt(d_head))).view(batch, 1, heads, d_head)
        # ``mask`` is [key, query] (batch, 1, L, L): the first query's column
        scores = (k * q).sum(-1) + mask[:, 0, :, :1]  # (b, key, h)
        weights = torch.softmax(scores, dim=1)
        if self.training and attention.dropout > 0:
            weights = F.dropout(weights, attention.dropout)
        out = (v * weights[..., None]).sum(1)  # (b, h, dh)
        return attention.out_proj(out.reshape(batch, 1, d))

    def _layer(
        self,
        layer: nn.TransformerEncoderLayer,
        x: Tensor,
        mask: Tensor,
        num_queries: int | None = None,
    ) -> Tensor:
        """One ``nn.TransformerEncoderLayer`` forward (its parameters, its maths).

        With ``num_queries``, the output of the first ``num_queries`` tokens only.
        """

        def attention_block(y: Tensor) -> Tensor:
            return layer.dropout1(
                self._attention(layer.self_attn, y, mask, num_queries)
            )

        def feed_forward_block(y: Tensor) -> Tensor:
            hidden = layer.dropout(layer.activation(layer.linear1(y)))
            return layer.dropout2(layer.linear2(hidden))

        kept = x if num_queries is None else x[:, :num_queries]
        if layer.norm_first:
            kept = kept + attention_block(layer.norm1(x))
            return kept + feed_forward_block(layer.norm2(kept))
        kept = layer.norm1(kept + attention_block(x))
        return layer.norm2(kept + feed_forward_block(kept))

    def forward(
        self,
        pooled: Tensor,
        nodes: Tensor | None,
        node_mask: Tensor,
        *,
        node_level: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """``(pair, nodes)``: the pooled token's and the nodes' outputs.

        With ``node_level=False`` the nodes' outputs are not computed (``None`` is
        returned for them): the last layer runs for the pooled token only, and
        without layers ``nodes`` may be ``None``.
        """
        if self.encoder is None:
            if not node_level:
                return pooled, None
            return pooled, nodes
        batch, _, n, d = nodes.shape
        tokens = torch.cat((pooled[:, None, :], nodes.reshape(batch, 2 * n, d)), dim=1)
        mask = self.additive_mask(node_mask)
        layers = list(self.encoder.layers)
        for index, layer in enumerate(layers):
            last = index == len(layers) - 1
            tokens = self._layer(
                layer, tokens, mask, None if node_level or not last else 1
            )
        if self.encoder.norm is not None:
            tokens = self.encoder.norm(tokens)
        if not node_level:
            return tokens[:, 0], None
        return tokens[:, 0], tokens[:, 1:].reshape(batch, 2, n, d)


class GraphIsomorphismEncoder(nn.Module):
    """GIN(s) → sum pooling → batch norm → paired noise → pair pooling → transformer.

    Input: node features ``(batch, 2, n, d_in)`` (the message history at each node),
    adjacency ``(batch, 2, n, n)`` and node mask ``(batch, 2, n)``. Output: the pair
    representation ``(batch, d_transformer)`` and node representations ``(batch, 2, n,
    d_transformer)``.
    """

    def __init__(self, d_in: int, params) -> None:
        super().__init__()
        act = params.activation_function
        gin = GIN_IMPLEMENTATIONS[getattr(params, "gnn_implementation", "dense")]
        self.gnn = gin(d_in, params.d_gnn, params.d_gin_mlp, params.num_gnn_layers, act)
        self.dual_gnn = (
            gin(1, params.d_gnn, params.d_gin_mlp, params.num_gnn_layers, act)
            if params.use_dual_gnn
            else None
        )
        d_gnn_out = params.d_gnn * (2 if params.use_dual_gnn else 1)
        self.gnn_output_digits = params.gnn_output_digits
        self.batch_norm = nn.BatchNorm1d(d_gnn_out) if params.use_batch_norm else None
        self.noise_sigma = float(params.noise_sigma)
        self.pair_invariant = params.use_pair_invariant_pooling
        self.pair_pool = nn.Linear(2 * d_gnn_out, params.d_transformer)
        self.node_in = nn.Linear(d_gnn_out, params.d_transformer)
        self.transformer = PairTransformer(
            params.d_transformer,
            params.num_heads,
            params.d_transformer_mlp,
            params.num_transformer_layers,
            params.transformer_dropout,
            act,
        )

    def gnn_parameters(self) -> list[nn.Parameter]:
        """The GNN's parameters (their learning rate is scaled by ``gnn_lr_factor``)."""
        params = list(self.gnn.parameters())
        if self.dual_gnn is not None:
            params += list(self.dual_gnn.parameters())
        return params

    def forward(
        self,
        x: Tensor,
        adjacency: Tensor,
        node_mask: Tensor,
        *,
        node_level: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """``(pair, nodes)``; ``nodes`` is ``None`` with ``node_level=False`` (the
        transformer's last layer then runs for the pair token only)."""
        adjacency = adjacency.to(x.dtype)
        node_mask_f = node_mask.to(x.dtype)
        nodes = self.gnn(x, adjacency, node_mask_f)
        if self.dual_gnn is not None:
            zeros = x.new_zeros(*x.shape[:-1], 1)
            nodes = torch.cat(
                (nodes, self.dual_gnn(zeros, adjacency, node_mask_f)), dim=-1
            )
        if self.gnn_output_digits is not None:
            scale = 10.0**self.gnn_output_digits
            # rounded forward, identity gradient
            nodes = nodes + (torch.round(nodes * scale) / scale - nodes).detach()
        pooled = nodes.sum(dim=-2)  # (batch, 2, d)
        if self.batch_norm is not None:
            batch = pooled.shape[0]
            pooled = self.batch_norm(pooled.reshape(batch * 2, -1)).reshape(
                batch, 2, -1
            )
        if self.training and self.noise_sigma > 0:
            scale = pooled.detach().std() if pooled.numel() > 1 else pooled.new_ones(())
            # the same draw for both graphs of a pair keeps isomorphic pairs equal
            noise = torch.randn_like(pooled[:, :1]) * self.noise_sigma * scale
            pooled = pooled + noise
        if self.pair_invariant:
            pair = torch.cat(
                (pooled.sum(1), (pooled[:, 0] - pooled[:, 1]).abs()), dim=-1
            )
        else:
            pair = pooled.flatten(1)
        pair = self.pair_pool(pair)
        if not node_level and self.transformer.encoder is None:
            return pair, None
        return self.transformer(
            pair, self.node_in(nodes), node_mask, node_level=node_level
        )
