"""The GIN on packed real nodes computes the textbook dense GIN, and the pair
transformer's written-out layers compute torch's own encoder layers."""

from __future__ import annotations

import pytest
import torch

from nip_plugin_graph_isomorphism.networks import DenseGin

_TORCH_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def _dense_reference(gin: DenseGin, x, adjacency, node_mask, act: str = "tanh"):
    """GIN on padded graphs, every row computed, padding re-zeroed each layer."""
    mask = node_mask[..., None].to(x.dtype)
    function = _TORCH_ACTIVATIONS[act]
    for layer in gin.layers:
        aggregated = (1 + layer.eps) * x + adjacency @ x
        hidden = function(layer.mlp[0](aggregated))
        x = function(layer.mlp[2](hidden)) * mask
    return x


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_packed_gin_matches_the_dense_gin_and_zeroes_padding(num_layers, act) -> None:
    torch.manual_seed(0)
    batch, n = 6, 5
    sizes = torch.tensor([[5, 3], [4, 4], [1, 5], [2, 2], [5, 5], [3, 1]])
    node_mask = torch.arange(n) < sizes[..., None]  # (batch, 2, n)
    adjacency = (torch.rand(batch, 2, n, n) < 0.5).double()
    adjacency = ((adjacency + adjacency.transpose(-1, -2)) > 0).double()
    adjacency = adjacency * node_mask[..., None] * node_mask[..., None, :]
    x = torch.randn(batch, 2, n, 3, dtype=torch.float64) * node_mask[..., None]
    gin = DenseGin(3, 4, 8, num_layers, act).double()
    for layer in gin.layers:
        torch.nn.init.normal_(layer.eps, std=0.3)
    x.requires_grad_(True)
    out = gin(x, adjacency, node_mask.double())
    expected = _dense_reference(gin, x, adjacency, node_mask, act)
    torch.testing.assert_close(out, expected)
    assert out.shape == (batch, 2, n, 4)
    assert not out[~node_mask].any()
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [x, *gin.parameters()])
    expected_grads = torch.autograd.grad(
        (expected * weights).sum(), [x, *gin.parameters()]
    )
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_gin_layer_state_dict_keys_are_the_mlps_and_eps():
    """The activation inside each layer's MLP has no parameters: a layer's state
    dict is ``eps`` and the two linear layers (checkpoints load unchanged)."""
    gin = DenseGin(3, 4, 8, 2, "tanh")
    assert list(gin.state_dict()) == [
        f"layers.{i}.{key}"
        for i in range(2)
        for key in ("eps", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias")
    ]


def _random_pair_batch(batch: int, n: int, d: int):
    torch.manual_seed(0)
    sizes = torch.randint(1, n + 1, (batch, 2))
    node_mask = torch.arange(n) < sizes[..., None]  # (batch, 2, n)
    pooled = torch.randn(batch, d, dtype=torch.float64, requires_grad=True)
    nodes = torch.randn(batch, 2, n, d, dtype=torch.float64, requires_grad=True)
    return pooled, nodes, node_mask


@pytest.mark.parametrize(
    ("num_layers", "norm_first", "act"),
    [(1, False, "relu"), (2, False, "gelu"), (2, True, "relu")],
)
def test_pair_transformer_computes_torchs_encoder_layers(num_layers, norm_first, act):
    """The written-out attention (transposed scores, scale on the queries) is
    ``nn.TransformerEncoder`` with the pair mask, outputs and every gradient."""
    from nip_plugin_graph_isomorphism.networks import PairTransformer

    batch, n, d, heads = 5, 4, 8, 2
    transformer = PairTransformer(d, heads, 16, num_layers, 0.0, act).double()
    for layer in transformer.encoder.layers:
        layer.norm_first = norm_first
    pooled, nodes, node_mask = _random_pair_batch(batch, n, d)
    pair, node_out = transformer(pooled, nodes, node_mask)

    tokens = torch.cat((pooled[:, None], nodes.reshape(batch, 2 * n, d)), dim=1)
    blocked = transformer.attention_mask(node_mask)
    expected = tokens
    for layer in transformer.encoder.layers:
        expected = layer(expected, src_mask=blocked.repeat_interleave(heads, 0))
    torch.testing.assert_close(pair, expected[:, 0])
    torch.testing.assert_close(node_out, expected[:, 1:].reshape(batch, 2, n, d))

    weights = torch.randn_like(expected)
    ours = torch.cat((pair[:, None], node_out.reshape(batch, 2 * n, d)), dim=1)
    inputs = [pooled, nodes, *transformer.parameters()]
    got = torch.autograd.grad((ours * weights).sum(), inputs)
    want = torch.autograd.grad((expected * weights).sum(), inputs)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_pair_transformer_pair_output_alone_is_the_full_runs():
    """``node_level=False`` runs the last layer for the pair token only, with the
    same pair output and gradients."""
    from nip_plugin_graph_isomorphism.networks import PairTransformer

    transformer = PairTransformer(8, 2, 16, 2, 0.0, "relu").double()
    pooled, nodes, node_mask = _random_pair_batch(5, 4, 8)
    full, _ = transformer(pooled, nodes, node_mask)
    alone, none = transformer(pooled, nodes, node_mask, node_level=False)
    assert none is None
    torch.testing.assert_close(alone, full)
    inputs = [pooled, nodes, *transformer.parameters()]
    grads_full = torch.autograd.grad(full.sum(), inputs, allow_unused=True)
    grads_alone = torch.autograd.grad(alone.sum(), inputs, allow_unused=True)
    for a, b in zip(grads_alone, grads_full, strict=True):
        if a is None or b is None:
            assert a is None and (b is None or not b.any())
        else:
            torch.testing.assert_close(a, b)


def test_attention_mask_blocks_exactly_what_the_docstring_says():
    """Pair token (position 0) sees every real node and itself; a node sees the
    pair token and the other graph's real nodes, never its own graph or padding."""
    from nip_plugin_graph_isomorphism.networks import PairTransformer

    # two graphs of 2 padded nodes; graph 0's second node is padding
    node_mask = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    blocked = PairTransformer.attention_mask(None, node_mask)[0]
    allowed = ~blocked
    expected = torch.tensor(
        [
            # to: pair, g0n0, g0n1(pad), g1n0, g1n1
            [True, True, False, True, True],  # from the pair token
            [True, False, False, True, True],  # from g0n0
            [True, False, False, True, True],  # from g0n1 (padding; never read)
            [True, True, False, False, False],  # from g1n0
            [True, True, False, False, False],  # from g1n1
        ]
    )
    assert torch.equal(allowed, expected)


@pytest.mark.slow
# inductor's own imports use torch.jit.script, deprecated in this torch
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pair_transformer_compiles_to_the_same_function():
    """torch.compile (inductor) lowers the transformer, masks included, and computes
    the eager function to float tolerance (it once failed on the boolean mask)."""
    from nip_plugin_graph_isomorphism.networks import PairTransformer

    torch.manual_seed(0)
    transformer = PairTransformer(8, 2, 16, 1, 0.0, "relu").eval()
    pooled = torch.randn(4, 8)
    nodes = torch.randn(4, 2, 3, 8)
    node_mask = torch.ones(4, 2, 3)
    node_mask[1, 0, 2] = 0
    node_mask[3, 1, 1:] = 0
    eager = transformer(pooled, nodes, node_mask)
    compiled = torch.compile(transformer, dynamic=False)(pooled, nodes, node_mask)
    for got, want in zip(compiled, eager, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
