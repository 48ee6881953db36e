"""The GIN on packed real nodes computes the textbook dense GIN."""

from __future__ import annotations

import pytest
import torch

from nip_plugin_graph_isomorphism.networks import DenseGin


def _dense_reference(gin: DenseGin, x, adjacency, node_mask):
    """GIN on padded graphs, every row computed, padding re-zeroed each layer."""
    mask = node_mask[..., None].to(x.dtype)
    for layer in gin.layers:
        aggregated = (1 + layer.eps) * x + adjacency @ x
        hidden = torch.tanh(layer.mlp[0](aggregated))
        x = torch.tanh(layer.mlp[2](hidden)) * mask
    return x


@pytest.mark.parametrize("num_layers", [1, 3])
def test_packed_gin_matches_the_dense_gin_and_zeroes_padding(num_layers) -> None:
    torch.manual_seed(0)
    batch, n = 6, 5
    sizes = torch.tensor([[5, 3], [4, 4], [1, 5], [2, 2], [5, 5], [3, 1]])
    node_mask = torch.arange(n) < sizes[..., None]  # (batch, 2, n)
    adjacency = (torch.rand(batch, 2, n, n) < 0.5).double()
    adjacency = ((adjacency + adjacency.transpose(-1, -2)) > 0).double()
    adjacency = adjacency * node_mask[..., None] * node_mask[..., None, :]
    x = torch.randn(batch, 2, n, 3, dtype=torch.float64) * node_mask[..., None]
    gin = DenseGin(3, 4, 8, num_layers, "tanh").double()
    for layer in gin.layers:
        torch.nn.init.normal_(layer.eps, std=0.3)
    x.requires_grad_(True)
    out = gin(x, adjacency, node_mask.double())
    expected = _dense_reference(gin, x, adjacency, node_mask)
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
