"""Shared network blocks: the fast tanh and the MLP that folds it into its linears."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nip_core.scenario.networks import Mlp, Tanh, mlp


def _as_plain_sequential(model: Mlp) -> nn.Sequential:
    """The same modules run one after the other (torch's own tanh)."""
    layers = [nn.Tanh() if isinstance(m, Tanh) else m for m in model]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("num_layers", [2, 3, 4])
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "gelu"])
def test_mlp_computes_the_sequential_function_and_gradients(num_layers, act):
    torch.manual_seed(0)
    model = mlp(5, 7, 3, num_layers, act)
    reference = _as_plain_sequential(model)
    x = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)
    model.double()
    out = model(x)
    expected = reference(x)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.square().sum(), [x, *model.parameters()])
    expected_grads = torch.autograd.grad(
        expected.square().sum(), [x, *reference.parameters()]
    )
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_mlp_folds_tanh_around_layers_without_bias_and_ending_in_tanh():
    torch.manual_seed(1)
    model = Mlp(
        nn.Linear(4, 6, bias=False),
        Tanh(),
        nn.Linear(6, 6, bias=False),
        Tanh(),
        nn.LayerNorm(6),
        nn.Linear(6, 2),
        Tanh(),
    ).double()
    x = torch.randn(9, 4, dtype=torch.float64)
    torch.testing.assert_close(model(x), _as_plain_sequential(model)(x))


def test_mlp_keeps_the_sequential_state_dict_keys():
    model = mlp(3, 4, 2, 3, "tanh")
    assert list(model.state_dict()) == [
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
        "4.weight",
        "4.bias",
    ]
    plain = nn.Sequential(*_as_plain_sequential(model))
    plain.load_state_dict(model.state_dict())


def test_fast_tanh_matches_torch():
    x = torch.linspace(-30, 30, 10_001)
    assert (Tanh()(x) - torch.tanh(x)).abs().max() < 3e-7


def test_mlp_runs_hooked_linear_layers_through_their_own_forward():
    torch.manual_seed(2)
    model = mlp(3, 5, 2, 2, "tanh").double()
    seen = []
    model[0].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(model(x), _as_plain_sequential(model)(x))
    assert seen == [torch.Size([4, 5])] * 2  # our forward, then the reference's
