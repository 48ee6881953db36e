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


def mlp(
    d_in: int, d_hidden: int, d_out: int, num_layers: int, act: str
) -> nn.Sequential:
    """``Linear → act → (Linear → act) × (num_layers - 2) → Linear``."""
    layers: list[nn.Module] = [nn.Linear(d_in, d_hidden), activation(act)]
    for _ in range(num_layers - 2):
        layers += [nn.Linear(d_hidden, d_hidden), activation(act)]
    layers.append(nn.Linear(d_hidden, d_out))
    return nn.Sequential(*layers)


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
