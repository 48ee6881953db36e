"""Shared network blocks: the fast tanh, the MLP that folds it into its linears, and
the linear map whose backward products run in their faster orientation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nip_core.scenario.networks import Mlp, Tanh, linear, mlp


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


@pytest.mark.parametrize(
    ("rows", "d_in", "d_out", "bias"),
    [
        (1500, 9, 64, True),  # narrow input: the oriented backward
        (1500, 9, 3, False),
        (1500, 40, 64, True),  # wide: F.linear
        (20, 9, 64, True),  # few rows: F.linear
    ],
)
def test_linear_computes_f_linear_and_its_gradients(rows, d_in, d_out, bias):
    torch.manual_seed(3)
    x = torch.randn(3, rows // 3, d_in, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(d_out, d_in, dtype=torch.float64, requires_grad=True)
    b = torch.randn(d_out, dtype=torch.float64, requires_grad=True) if bias else None
    inputs = [x, weight] + ([b] if bias else [])
    out = linear(x, weight, b)
    expected = F.linear(x, weight, b)
    assert out.shape == expected.shape == (3, rows // 3, d_out)
    torch.testing.assert_close(out, expected)
    upstream = torch.randn_like(expected)
    got = torch.autograd.grad(out, inputs, upstream)
    want = torch.autograd.grad(expected, inputs, upstream)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w)


def test_linear_takes_the_oriented_backward_only_for_narrow_inputs_with_many_rows():
    weight = torch.randn(64, 9, requires_grad=True)
    narrow = linear(torch.randn(2048, 9), weight)
    assert "NarrowInputLinear" in type(narrow.grad_fn).__name__
    assert (
        "NarrowInputLinear"
        not in type(linear(torch.randn(20, 9), weight).grad_fn).__name__
    )
    wide = torch.randn(64, 32, requires_grad=True)
    assert (
        "NarrowInputLinear"
        not in type(linear(torch.randn(2048, 32), wide).grad_fn).__name__
    )


def test_linear_gives_no_gradient_to_inputs_that_need_none():
    weight = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2000, 5, dtype=torch.float64)  # an observation: no gradient wanted
    linear(x, weight).sum().backward()
    assert x.grad is None
    torch.testing.assert_close(weight.grad, x.sum(0).expand(8, 5))


def test_mlp_on_narrow_inputs_computes_the_sequential_gradients():
    torch.manual_seed(4)
    model = mlp(9, 64, 16, 2, "tanh").double()
    reference = _as_plain_sequential(model)
    x = torch.randn(3000, 9, dtype=torch.float64, requires_grad=True)
    out = model(x)
    expected = reference(x)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.square().sum(), [x, *model.parameters()])
    want = torch.autograd.grad(expected.square().sum(), [x, *reference.parameters()])
    for got, w in zip(grads, want, strict=True):
        torch.testing.assert_close(got, w)


@pytest.mark.slow
def test_linear_compiles_to_the_eager_function_and_gradients():
    # run.compile_loss traces the bodies' MLPs, narrow-input layers included
    torch.manual_seed(5)
    model = mlp(9, 64, 16, 2, "tanh")
    x = torch.randn(2048, 9, requires_grad=True)

    def loss(inputs):
        return model(inputs).square().mean()

    compiled = torch.compile(loss)
    got = compiled(x)
    want = loss(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    inputs = [x, *model.parameters()]
    for g, w in zip(
        torch.autograd.grad(got, inputs),
        torch.autograd.grad(want, inputs),
        strict=True,
    ):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
