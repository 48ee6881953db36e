"""The RL trainers' optimizer step (``nip_core.trainers.adam``): the same results as
torch's ``clip_grad_norm_`` and fused Adam, bit for bit, on every path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils import clip_grad_norm_

from nip_core.trainers.adam import FusedAdam, clip_grad_norm

pytestmark = pytest.mark.usefixtures("single_thread")

SHAPES = [(7, 5), (5,), (3, 4, 2), (), (16, 9), (9,)]


def _params(seed: int = 0, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(shape, generator=generator, dtype=dtype))
        for shape in SHAPES
    ]


def _groups(params: list[torch.Tensor]) -> list[dict]:
    # three groups with their own learning rates, as the trainers build them
    return [
        {"params": params[:2], "lr": 3e-3},
        {"params": params[2:4], "lr": 1e-3},
        {"params": params[4:], "lr": 5e-4},
    ]


def _set_grads(params, step: int, missing=()) -> None:
    generator = torch.Generator().manual_seed(100 + step)
    for index, p in enumerate(params):
        grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        p.grad = None if index in missing else grad


def _run(make_optimizer, steps: int = 6, missing_at=None, **kwargs):
    params = _params(dtype=kwargs.pop("dtype", torch.float32))
    optimizer = make_optimizer(_groups(params), **kwargs)
    for step in range(steps):
        missing = (missing_at or {}).get(step, ())
        _set_grads(params, step, missing)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return params, optimizer


def _torch_adam(groups, **kwargs):
    return torch.optim.Adam(groups, fused=True, **kwargs)


def _assert_same_state(ours, theirs) -> None:
    a, b = ours.state_dict(), theirs.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for index in a["state"]:
        assert a["state"][index].keys() == b["state"][index].keys()
        for key, value in a["state"][index].items():
            other = b["state"][index][key]
            assert value.dtype == other.dtype and value.device == other.device
            assert torch.equal(value, other), (index, key)


@pytest.mark.parametrize(
    "options",
    [
        {"eps": 1e-5},
        {"eps": 1e-5, "weight_decay": 0.1},
        {"betas": (0.8, 0.95), "maximize": True},
        {"weight_decay": 0.05, "decoupled_weight_decay": True},
    ],
    ids=["plain", "weight-decay", "betas-maximize", "decoupled"],
)
def test_fused_adam_steps_as_torch_does_bit_for_bit(options):
    # some parameters without a gradient at some steps, a whole group at one:
    # Adam skips them (no step, no state change), here as in torch
    missing_at = {1: (3,), 2: (0, 1), 4: (5,)}
    ours, ours_opt = _run(FusedAdam, missing_at=missing_at, **options)
    theirs, theirs_opt = _run(_torch_adam, missing_at=missing_at, **options)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    _assert_same_state(ours_opt, theirs_opt)
    # the parameter left out at step 1 took one step fewer
    assert float(ours_opt.state[ours[3]]["step"]) == 5.0
    assert float(ours_opt.state[ours[0]]["step"]) == 5.0
    assert float(ours_opt.state[ours[2]]["step"]) == 6.0


def test_fused_adam_is_fused_and_moves_parameters():
    params = _params()
    optimizer = FusedAdam(_groups(params), eps=1e-5)
    assert all(group["fused"] for group in optimizer.param_groups)
    before = [p.detach().clone() for p in params]
    _set_grads(params, 0)
    optimizer.step()
    # Adam's first step moves every coordinate by about the learning rate
    for p, old, lr in zip(
        params, before, [3e-3] * 2 + [1e-3] * 2 + [5e-4] * 2, strict=True
    ):
        assert torch.allclose((p - old).abs(), torch.full_like(p, lr), rtol=1e-3)


def test_fused_adam_state_dict_moves_both_ways_with_torch_adam():
    params, ours = _run(FusedAdam, steps=3, eps=1e-5)
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    theirs = _torch_adam(_groups(twin), eps=1e-5)
    # deep copies, as saving and loading make (a state dict holds the live tensors)
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))
    back = FusedAdam(_groups([torch.nn.Parameter(p.detach().clone()) for p in params]))
    back.load_state_dict(copy.deepcopy(theirs.state_dict()))
    back_params = [p for group in back.param_groups for p in group["params"]]
    for step in range(3, 6):
        for group in (params, twin, back_params):
            _set_grads(group, step)
        ours.step()
        theirs.step()
        back.step()
    for a, b, c in zip(params, twin, back_params, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    _assert_same_state(ours, theirs)


def test_fused_adam_takes_torchs_step_where_the_short_path_does_not_apply():
    # amsgrad: torch's own step (the short path does not implement it)
    ours, _ = _run(FusedAdam, amsgrad=True, eps=1e-5)
    theirs, _ = _run(_torch_adam, amsgrad=True, eps=1e-5)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    # a closure is evaluated and its loss returned
    params = _params()
    optimizer = FusedAdam(_groups(params))

    def closure():
        optimizer.zero_grad()
        loss = sum((p**2).sum() for p in params)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert torch.is_tensor(loss) and loss.item() > 0
    assert float(optimizer.state[params[0]]["step"]) == 1.0


def test_fused_adam_group_added_without_fusing_steps_as_torch_does():
    """A group added with ``fused=False`` takes torch's (for-each) step, whose
    rounding may differ from the fused kernel's: the same as torch's Adam."""

    def build(make):
        params = _params()
        optimizer = make(_groups(params)[:2], eps=1e-5)
        optimizer.add_param_group({"params": params[4:], "lr": 5e-4, "fused": False})
        for step in range(4):
            _set_grads(params, step)
            optimizer.step()
        return params

    for a, b in zip(build(FusedAdam), build(_torch_adam), strict=True):
        assert torch.equal(a, b)


def test_fused_adam_in_float64_matches_torch():
    ours, _ = _run(FusedAdam, dtype=torch.float64)
    theirs, _ = _run(_torch_adam, dtype=torch.float64)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == torch.float64 and torch.equal(a, b)


@pytest.mark.parametrize("max_norm", [0.5, 1e6], ids=["clipping", "not-clipping"])
def test_clip_grad_norm_matches_torch_bit_for_bit(max_norm):
    ours, theirs = _params(), _params()
    for group in (ours, theirs):
        _set_grads(group, 0, missing=(2,))
    ours_norm = clip_grad_norm(ours, max_norm)
    theirs_norm = clip_grad_norm_(theirs, max_norm)
    assert torch.equal(ours_norm, theirs_norm)
    assert ours[2].grad is None
    for a, b in zip(ours, theirs, strict=True):
        if b.grad is not None:
            assert torch.equal(a.grad, b.grad)
    total = torch.cat([p.grad.flatten() for p in ours if p.grad is not None]).norm()
    if max_norm < 1:
        # clipped to the maximum norm
        assert total.item() == pytest.approx(max_norm, rel=1e-5)
    else:
        assert total.item() == pytest.approx(theirs_norm.item(), rel=1e-6)


def test_clip_grad_norm_without_gradients_and_with_mixed_dtypes():
    params = _params()
    assert clip_grad_norm(params, 1.0).item() == 0.0
    # parameters (so gradients) of two dtypes: torch's own function, same result
    ours = _params()
    theirs = _params()
    for group in (ours, theirs):
        group[0] = torch.nn.Parameter(group[0].detach().double())
        _set_grads(group, 0)
    assert torch.equal(clip_grad_norm(ours, 0.1), clip_grad_norm_(theirs, 0.1))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a.grad, b.grad)


def test_fused_adam_runs_the_step_hooks_once_on_either_path():
    # a plain Adam makes torch wrap Adam.step with the hooks too
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    calls = []
    for lr in (1e-3, torch.tensor(1e-3)):  # the short path, then torch's
        p = torch.nn.Parameter(torch.randn(3))
        optimizer = FusedAdam([p], lr=lr)
        optimizer.register_step_pre_hook(lambda *_: calls.append("pre"))
        optimizer.register_step_post_hook(lambda *_: calls.append("post"))
        p.grad = torch.randn(3)
        optimizer.step()
        assert calls == ["pre", "post"]
        calls.clear()


def test_fused_adam_sparse_gradients_raise_as_torchs_and_leave_the_same_state():
    for make in (FusedAdam, _torch_adam):
        params = [torch.nn.Parameter(torch.randn(3)) for _ in range(3)]
        optimizer = make([{"params": params}])
        for p in params:
            p.grad = torch.randn(3)
        params[1].grad = params[1].grad.to_sparse()
        with pytest.raises(RuntimeError, match="sparse gradients"):
            optimizer.step()
        assert [len(optimizer.state[p]) for p in params] == [3, 0, 0]


def test_clip_grad_norm_takes_a_single_tensor_as_torch_does():
    ours, theirs = _params()[0], _params()[0]
    for p in (ours, theirs):
        p.grad = torch.full_like(p, 10.0)
    assert torch.equal(clip_grad_norm(ours, 0.5), clip_grad_norm_(theirs, 0.5))
    assert torch.equal(ours.grad, theirs.grad)
    assert ours.grad.norm().item() == pytest.approx(0.5, rel=1e-5)
