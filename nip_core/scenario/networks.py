"""Small building blocks shared by scenarios' agent networks (plain torch modules).

``mlp``, the named activations (with a faster ``tanh``) and ``RoundMlp``, the MLP
heads use on a representation with the round optionally one-hot encoded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _SigmoidTanh(torch.autograd.Function):
    """``tanh`` as ``2 sigmoid(2x) - 1``, with ``tanh``'s own backward kernel."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y = torch.sigmoid(x * 2).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Module):
    """Hyperbolic tangent through the CPU sigmoid kernel, several times faster than
    torch's own ``tanh`` there; absolute difference from :func:`torch.tanh` at most
    2e-7."""

    def forward(self, x: Tensor) -> Tensor:
        return _SigmoidTanh.apply(x)


ACTIVATIONS = {"relu": nn.ReLU, "tanh": Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
ZERO_PRESERVING = frozenset({"relu", "tanh", "gelu"})
"""Activations with ``act(0) = 0``: masked (zero) rows stay zero through them."""


def activation(name: str) -> nn.Module:
    """The activation module called ``name``."""
    return ACTIVATIONS[name]()


def _plain_linear(module: nn.Linear) -> bool:
    """An ``nn.Linear`` itself, with no hooks (its maths can be folded)."""
    return (
        type(module) is nn.Linear
        and not module._forward_hooks
        and not module._forward_pre_hooks
        and not module._backward_hooks
        and not nn.modules.module._global_forward_hooks
        and not nn.modules.module._global_forward_pre_hooks
    )


class Mlp(nn.Sequential):
    """A sequence of modules whose ``tanh`` between linear layers costs one kernel.

    Modules, parameters and state-dict keys are those of the ``nn.Sequential``.
    :class:`Tanh` modules that follow a linear layer are computed as ``sigmoid``
    with the affine maps folded into the linear layers around them:
    ``tanh(z) = 2 sigmoid(2 z) - 1``, so ``L2(tanh(L1 x))`` is
    ``L2'(sigmoid(L1' x))`` with ``L1' = 2 L1`` (weight and bias) and
    ``L2'(s) = 2 W2 s + b2 - W2 1``. On CPU that replaces the four elementwise
    passes of :class:`Tanh` over the hidden activations by one (the scaled weights
    are small); the function is the same up to float rounding. When a linear layer
    has hooks (``spectral_norm``, say) or is a subclass, the modules run one after
    the other instead.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        layers = list(self)
        if not all(_plain_linear(m) for m in layers if isinstance(m, nn.Linear)):
            # a hooked or customised linear layer must run its own forward
            return super().forward(x)
        sigmoid_form = False  # x holds (tanh + 1) / 2 of the true activations
        i = 0
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, nn.Linear):
                to_tanh = i + 1 < len(layers) and isinstance(layers[i + 1], Tanh)
                weight, bias = layer.weight, layer.bias
                if sigmoid_form:
                    correction = weight.sum(1)
                    bias = -correction if bias is None else bias - correction
                scale = (2.0 if sigmoid_form else 1.0) * (2.0 if to_tanh else 1.0)
                if scale != 1.0:
                    weight = weight * scale
                if to_tanh and bias is not None:
                    bias = bias * 2.0
                x = F.linear(x, weight, bias)
                if to_tanh:
                    x = torch.sigmoid(x)
                    i += 1  # the Tanh is done
                sigmoid_form = to_tanh
            else:
                if sigmoid_form:
                    x = x * 2.0 - 1.0
                    sigmoid_form = False
                x = layer(x)
            i += 1
        return x * 2.0 - 1.0 if sigmoid_form else x


def mlp(d_in: int, d_hidden: int, d_out: int, num_layers: int, act: str) -> Mlp:
    """``Linear → act → (Linear → act) × (num_layers - 2) → Linear`` (an
    :class:`Mlp`)."""
    layers: list[nn.Module] = [nn.Linear(d_in, d_hidden), activation(act)]
    for _ in range(num_layers - 2):
        layers += [nn.Linear(d_hidden, d_hidden), activation(act)]
    layers.append(nn.Linear(d_hidden, d_out))
    return Mlp(*layers)


class RoundMlp(nn.Module):
    """An MLP on a representation, optionally with the round one-hot appended."""

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        d_out: int,
        num_layers: int,
        act: str,
        num_rounds: int | None = None,
    ):
        super().__init__()
        self.num_rounds = num_rounds
        self.mlp = mlp(d_in + (num_rounds or 0), d_hidden, d_out, num_layers, act)

    def forward(self, x: Tensor, round_id: Tensor | None = None) -> Tensor:
        if self.num_rounds is not None:
            if round_id is None:
                raise ValueError("this head needs the round number")
            one_hot = F.one_hot(
                round_id.long().clamp(0, self.num_rounds - 1), self.num_rounds
            )
            x = torch.cat((x, one_hot.to(x.dtype).expand(*x.shape[:-1], -1)), dim=-1)
        return self.mlp(x)
