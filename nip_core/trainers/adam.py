"""The tensor-world RL trainers' optimizer step, with less Python per call.

At ``ppo_gi`` one minibatch's update is a few tens of milliseconds, and torch's
generic bookkeeping around gradient clipping and the fused Adam step (per-tensor
checks, regrouping the tensors by device and dtype, a ``.to`` per gradient norm)
took about 2 ms of it on the single-threaded path. :func:`clip_grad_norm` and
:class:`FusedAdam` call the same kernels on the same tensors in the same order as
:func:`torch.nn.utils.clip_grad_norm_` and ``torch.optim.Adam(fused=True)``, so
their results are the same bit for bit; what they leave out is only that
bookkeeping. Cases the short paths do not cover go through torch's own code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils import clip_grad_norm_


def _homogeneous(tensors: list[Tensor]) -> bool:
    """Whether ``tensors`` all sit on one device with one dtype, of a device type
    torch's foreach kernels support."""
    first = tensors[0]
    device, dtype = first.device, first.dtype
    if device.type not in ("cpu", "cuda", torch._C._get_privateuse1_backend_name()):
        return False
    return all(t.device == device and t.dtype == dtype for t in tensors)


def clip_grad_norm(parameters: Iterable[Tensor] | Tensor, max_norm: float) -> Tensor:
    """:func:`torch.nn.utils.clip_grad_norm_` with the 2-norm, bit for bit.

    One ``torch._foreach_norm`` over the gradients, the norm of their norms, the
    coefficient ``min(max_norm / (norm + 1e-6), 1)`` and one
    ``torch._foreach_mul_``, as torch computes them, without its regrouping by
    device and dtype: for the 154 gradients of nip at ``ppo_gi`` on one CPU thread
    0.3 ms instead of 0.8 ms, at every minibatch. Gradients on several devices or
    of several dtypes go through torch's own function. Returns the total norm of
    the gradients before clipping (a tensor), as torch's does.
    """
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads or not _homogeneous(grads):
        return clip_grad_norm_(parameters, max_norm)
    with torch.no_grad():
        norms = torch._foreach_norm(grads, 2.0)
        total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
        coefficient = torch.clamp(float(max_norm) / (total + 1e-6), max=1.0)
        torch._foreach_mul_(grads, coefficient)
    return total


class FusedAdam(torch.optim.Adam):
    """``torch.optim.Adam(params, fused=True, ...)`` with a cheaper :meth:`step`.

    The step is torch's fused one, bit for bit: per parameter group, the
    parameters that have a gradient, in the group's order, with their state
    (initialised as torch initialises it), one ``torch._foreach_add_`` on their
    step counters and one ``torch._fused_adam_`` call (``_fused_adamw_`` with
    decoupled weight decay). Left out is torch's per-step bookkeeping around it:
    for nip at ``ppo_gi`` (12 groups, 154 tensors) 0.35 ms a step instead of
    1.2 ms on one CPU thread, at every minibatch. A closure, a gradient scaler's
    ``grad_scale``/``found_inf``, a group added with ``fused=False``,
    ``amsgrad``, ``differentiable``, a tensor learning rate, sparse gradients, or
    a group with tensors on several devices or of several dtypes take torch's own
    step (the step hooks run once either way). State dicts are torch's Adam's.
    """

    def __init__(self, params: Any, **kwargs: Any) -> None:
        kwargs["fused"] = True
        super().__init__(params, **kwargs)

    def _short_path(self) -> bool:
        if (
            getattr(self, "grad_scale", None) is not None
            or getattr(self, "found_inf", None) is not None
        ):
            return False
        return not any(
            not group["fused"]
            or group["amsgrad"]
            or group["differentiable"]
            or torch.is_tensor(group["lr"])
            for group in self.param_groups
        )

    def _torch_step(self, closure: Any = None) -> Any:
        """torch's own step. This class's :meth:`step` already runs the step
        hooks (torch wraps it), and so may ``Adam.step`` (torch wraps it too once
        a plain ``Adam`` exists): its unwrapped function, so the hooks run once."""
        step = torch.optim.Adam.step
        if getattr(step, "hooked", False):
            step = step.__wrapped__
        return step(self, closure)

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        if closure is not None or not self._short_path():
            return self._torch_step(closure)
        plans = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if not _homogeneous(params) or not _homogeneous(grads):
                return self._torch_step()
            if any(g.is_sparse for g in grads):
                # torch raises before making any state for them
                return self._torch_step()
            plans.append((group, params))
        with torch.no_grad():
            for group, params in plans:
                self._step_group(group, params)
        return None

    def _step_group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        states = [self.state[p] for p in params]
        if not all(states):
            for p, state in zip(params, states, strict=True):
                if not state:
                    _initial_state(p, state)
        grads = [p.grad for p in params]
        steps = [state["step"] for state in states]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        kernel = (
            torch._fused_adamw_
            if group["decoupled_weight_decay"]
            else torch._fused_adam_
        )
        kernel(
            params,
            grads,
            [state["exp_avg"] for state in states],
            [state["exp_avg_sq"] for state in states],
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
            grad_scale=None,
            found_inf=None,
        )


def _initial_state(p: Tensor, state: dict[str, Any]) -> None:
    """A parameter's first Adam state, as ``torch.optim.Adam`` makes it with
    ``fused=True``."""
    from torch.optim.optimizer import _device_dtype_check_for_fused, _get_scalar_dtype

    _device_dtype_check_for_fused(p)
    state["step"] = torch.zeros(
        (), dtype=_get_scalar_dtype(is_fused=True), device=p.device
    )
    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
