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


NARROW = 16
"""Below this many columns a CPU matrix product is computed in the other orientation
(see :func:`linear`)."""


def _product(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for 2-d ``a`` and ``b``, computed as ``(bᵀ aᵀ)ᵀ`` when the result is
    narrow and tall.

    A CPU BLAS handles a product with few output columns (fewer than
    :data:`NARROW`, not a multiple of its vector width) several times slower than
    the same product transposed: at 4 604 × 64 by 64 × 9, one thread, 0.46 ms
    against 0.10 ms. The transposed result is returned as a view (column-major).
    """
    rows, columns = a.shape[0], b.shape[1]
    if columns < NARROW and rows > 4 * columns:
        return (b.t() @ a.t()).t()
    return a @ b


class _NarrowInputLinear(torch.autograd.Function):
    """``F.linear`` on a 2-d input with few features, whose backward computes both
    gradients' products in their faster orientation (:func:`_product`)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _product(grad, weight)  # (rows, in): narrow
        if ctx.needs_input_grad[1]:
            grad_weight = (x.t() @ grad).t().contiguous()  # not grad.t() @ x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """:func:`torch.nn.functional.linear`, faster on CPU for few input features.

    With fewer than :data:`NARROW` input features, the backward's two products
    that would write that few columns (the input's gradient, the weight's
    gradient) are computed transposed (:func:`_product`): graph isomorphism's first
    GIN layer (9 input features, 4 604 rows) takes 0.5 ms instead of 1.2 ms forward
    and backward on one thread. Elsewhere (wider inputs, fewer than 1 024 rows, off
    the CPU) this is ``F.linear``. The function is the same up to float rounding
    (the gradients' sums run in another order). Few *output* features need
    nothing: torch's own kernels handle those as fast.
    """
    if (
        weight.shape[1] >= NARROW
        or x.device.type != "cpu"
        or x.dim() < 2
        or x.shape[:-1].numel() < 1024
    ):
        return F.linear(x, weight, bias)
    if x.dim() == 2:
        return _NarrowInputLinear.apply(x, weight, bias)
    lead = x.shape[:-1]
    out = _NarrowInputLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)
    return out.reshape(*lead, weight.shape[0])


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
                x = linear(x, weight, bias)
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
