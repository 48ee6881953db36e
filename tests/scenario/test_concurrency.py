"""The agents' parts on threads (:mod:`nip_core.scenario.concurrency`)."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from nip_core.scenario import concurrency
from nip_core.scenario.concurrency import (
    PartRunner,
    active_runner,
    concurrent_backward,
    concurrent_parts,
    join_parts,
)

pytestmark = pytest.mark.usefixtures("single_thread")

# Tasks that meet at a barrier finish only if they run at the same time; the
# timeout turns a sequential run into a failure instead of a hang.
BARRIER_TIMEOUT = 20.0


@pytest.fixture
def runner():
    runner = PartRunner(2)
    yield runner
    runner.close()


def test_runner_returns_results_in_order_and_runs_tasks_at_the_same_time(runner):
    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    threads: list[str] = []

    def task(value):
        def run():
            barrier.wait()
            threads.append(threading.current_thread().name)
            return value

        return run

    assert runner.run([task("a"), task("b")]) == ["a", "b"]
    assert len(set(threads)) == 2  # the caller and a helper


def test_runner_balances_unequal_tasks_over_its_threads(runner):
    # one long task (waits for the short ones) and three short ones: the short
    # ones all run on the other thread while the long one waits
    done = threading.Semaphore(0)

    def long():
        for _ in range(3):
            assert done.acquire(timeout=BARRIER_TIMEOUT)
        return "long"

    def short(i):
        def run():
            done.release()
            return i

        return run

    assert runner.run([long, short(1), short(2), short(3)]) == ["long", 1, 2, 3]


def test_runner_raises_a_tasks_error_after_every_task_finished(runner):
    finished = []

    def failing():
        raise ValueError("part failed")

    def slow():
        finished.append(True)
        return 1

    with pytest.raises(ValueError, match="part failed"):
        runner.run([failing, slow, slow])
    assert finished == [True, True]


def test_nested_runs_in_a_helper_thread_run_inline(runner):
    """A combined part inside a part (a helper calling ``run`` again) must not wait
    for the helper it is running on."""
    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT)

    def outer():
        barrier.wait()
        return runner.run([lambda: 1, lambda: 2])

    assert runner.run([outer, outer]) == [[1, 2], [1, 2]]


def test_runner_passes_the_callers_grad_mode_to_its_threads(runner):
    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT)

    def task():
        barrier.wait()
        return torch.is_grad_enabled()

    with torch.no_grad():
        assert runner.run([task, task]) == [False, False]
    assert runner.run([task, task]) == [True, True]


def test_submit_runs_a_task_on_a_helper_while_the_caller_runs_on(runner):
    started = threading.Event()
    release = threading.Event()

    def task():
        started.set()
        # the caller must be free to run on while this waits for it
        assert release.wait(BARRIER_TIMEOUT)
        return threading.current_thread().name, torch.is_grad_enabled()

    with torch.no_grad():
        future = runner.submit(task)
    assert started.wait(BARRIER_TIMEOUT)
    assert not future.done()
    release.set()
    name, grad = future.result(BARRIER_TIMEOUT)
    assert name != threading.current_thread().name
    assert grad is False  # the caller's grad mode at submission


def test_submit_hands_the_tasks_error_to_its_future(runner):
    def task():
        raise KeyError("no such leaf")

    with pytest.raises(KeyError, match="no such leaf"):
        runner.submit(task).result(BARRIER_TIMEOUT)


def test_a_closed_runner_runs_a_submitted_task_in_the_caller():
    runner = PartRunner(2)
    runner.close()
    future = runner.submit(lambda: threading.current_thread().name)
    assert future.done()
    assert future.result() == threading.current_thread().name


def test_a_runner_needs_two_threads():
    with pytest.raises(ValueError, match="at least 2 threads"):
        PartRunner(1)


def test_concurrent_parts_sets_and_restores_torch_threads():
    torch.set_num_threads(2)
    with concurrent_parts(2) as runner:
        assert active_runner() is runner
        assert torch.get_num_threads() == 1
    assert active_runner() is None
    assert runner.closed
    assert torch.get_num_threads() == 2
    with concurrent_parts(1) as runner:
        assert runner is None and active_runner() is None
        assert torch.get_num_threads() == 2


def test_no_runner_is_active_in_its_own_helper_threads():
    with concurrent_parts(2) as runner:
        barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT)

        def task():
            barrier.wait()
            return active_runner()

        seen = runner.run([task, task])
    assert seen.count(None) == 1 and runner in seen


class _MeetInBackward(torch.autograd.Function):
    """Identity whose backward pass waits at a barrier: two of them finish their
    backward passes only if they run at the same time."""

    @staticmethod
    def forward(ctx, x, barrier):  # type: ignore[override]
        ctx.barrier = barrier
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        ctx.barrier.wait()
        return grad, None


def test_joined_parts_run_their_backward_passes_at_the_same_time(runner):
    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    torch.manual_seed(0)
    w1 = torch.randn(3, requires_grad=True)
    w2 = torch.randn(3, requires_grad=True)
    x = torch.arange(3.0)
    out1 = _MeetInBackward.apply(x * w1, barrier)
    out2 = _MeetInBackward.apply(x * w2 * w2, barrier)
    (j1,), (j2,) = join_parts(runner, [[out1], [out2]])
    assert not j1.requires_grad or j1.grad_fn is not None
    (j1.sum() * 2 + (j2 * x).sum()).backward()
    torch.testing.assert_close(w1.grad, 2 * x, rtol=0, atol=0)
    torch.testing.assert_close(w2.grad, x * x * 2 * w2.detach(), rtol=0, atol=0)


def test_joined_parts_give_the_gradients_of_the_connected_graph(runner):
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)) for _ in "ab"]
    x = torch.randn(5, 4)
    target = torch.randn(5, 2)

    def loss(outputs):
        return ((outputs[0] - target) ** 2).sum() + (outputs[1] * outputs[0]).sum()

    loss([net(x) for net in nets]).backward()
    expected = [p.grad.clone() for net in nets for p in net.parameters()]
    for net in nets:
        net.zero_grad(set_to_none=True)
    joined = join_parts(runner, [[net(x)] for net in nets])
    loss([group[0] for group in joined]).backward()
    for p, want in zip(
        [p for net in nets for p in net.parameters()], expected, strict=True
    ):
        torch.testing.assert_close(p.grad, want, rtol=0, atol=0)


def test_concurrent_backward_is_a_scoped_flag():
    assert not concurrency.backward_allowed()
    with concurrent_backward():
        assert concurrency.backward_allowed()
    assert not concurrency.backward_allowed()


# ----------------------------------------------------------------------------------
# Combined parts


class _Part(nn.Module):
    """A stand-in agent part: ``y = tanh(x W)``, optionally unsafe to thread."""

    def __init__(
        self,
        weight: nn.Parameter,
        safe: bool = True,
        barrier: threading.Barrier | None = None,
    ):
        super().__init__()
        self.weight = weight
        self.safe = safe
        self.barrier = barrier
        self.threads: list[str] = []

    @property
    def concurrent_safe(self) -> bool:
        return self.safe

    @property
    def device(self) -> torch.device:
        return self.weight.device

    def forward(self, view):
        self.threads.append(threading.current_thread().name)
        if self.barrier is not None:
            # both parts must be running at once: a runner that ran them one
            # after the other (or one thread that took both) breaks the barrier
            self.barrier.wait()
        return TensorDict({"y": torch.tanh(view.get("x") @ self.weight)}, [4])


def _combined(parts):
    """A combined body over ``parts`` (built without the factory)."""
    from nip_core.scenario.combined import CombinedBody

    combined = CombinedBody.__new__(CombinedBody)
    nn.Module.__init__(combined)
    combined.agent_names = [f"agent{i}" for i in range(len(parts))]
    combined._part_out_keys = ["y"]
    combined.parts = nn.ModuleDict(dict(zip(combined.agent_names, parts, strict=True)))
    return combined


def _views(x):
    return [TensorDict({"x": x}, [4]) for _ in range(2)]


def _weights(shared: bool = False):
    torch.manual_seed(0)
    first = nn.Parameter(torch.randn(3, 2))
    return first, first if shared else nn.Parameter(torch.randn(3, 2))


@pytest.mark.parametrize("case", ["threads", "shared weights", "unsafe part"])
def test_combined_body_uses_threads_only_when_its_parts_allow(case):
    w1, w2 = _weights(shared=case == "shared weights")
    # with threads, the parts meet at a barrier, so that the test does not depend
    # on the helper thread starting before the caller has taken both tasks
    barrier = (
        threading.Barrier(2, timeout=BARRIER_TIMEOUT) if case == "threads" else None
    )
    parts = [
        _Part(w1, barrier=barrier),
        _Part(w2, safe=case != "unsafe part", barrier=barrier),
    ]
    combined = _combined(parts)
    with concurrent_parts(2), concurrent_backward():
        x = torch.randn(4, 3)
        outputs, _ = combined._run_parts(_views(x), TensorDict({"x": x}, [4]))
        sum(out.get("y").sum() for out in outputs).backward()
    names = {name for part in parts for name in part.threads}
    main = threading.current_thread().name
    if case == "threads":
        assert len(names) == 2
    else:
        assert names == {main}


def test_combined_body_gives_the_same_outputs_and_gradients_on_threads():
    x = torch.randn(4, 3)
    results = []
    for threads in (1, 2):
        parts = [_Part(w) for w in _weights()]
        combined = _combined(parts)
        with concurrent_parts(threads), concurrent_backward():
            outputs, _ = combined._run_parts(_views(x), TensorDict({"x": x}, [4]))
            ys = [out.get("y") for out in outputs]
            (ys[0].sum() * 3 + (ys[1] ** 2).sum()).backward()
        results.append(([y.detach() for y in ys], [p.weight.grad for p in parts]))
    for sequential, threaded in zip(*results, strict=True):
        for a, b in zip(sequential, threaded, strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_combined_body_keeps_the_graph_whole_when_its_input_has_gradients():
    """An input that requires gradients (an upstream module) must see the parts'
    gradients: ``torch.autograd.grad`` through the combined body still works."""
    parts = [_Part(w) for w in _weights()]
    combined = _combined(parts)
    x = torch.randn(4, 3, requires_grad=True)
    with concurrent_parts(2), concurrent_backward():
        outputs, _ = combined._run_parts(_views(x), TensorDict({"x": x}, [4]))
        total = sum(out.get("y").sum() for out in outputs)
        (grad,) = torch.autograd.grad(total, x)
    expected = sum(
        (1 - torch.tanh(x.detach() @ p.weight.detach()) ** 2) @ p.weight.detach().T
        for p in parts
    )
    torch.testing.assert_close(grad, expected)


def test_a_part_s_parameters_are_counted_once():
    # the threads take parts costliest first at every forward pass: the count is
    # not walked again each time
    from nip_core.scenario.combined import _num_parameters

    part = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    assert _num_parameters(part) == 8 + 3

    def walked():
        raise AssertionError("the parameters were walked again")

    part.parameters = walked
    assert _num_parameters(part) == 11


# ----------------------------------------------------------------------------------
# Chained heads


class _StandIn(nn.Module):
    """A part stand-in with one weight that records the threads it ran on."""

    channel_dims: dict = {}

    def __init__(self, weight: nn.Parameter):
        super().__init__()
        self.weight = weight
        self.threads: list[str] = []

    @property
    def device(self) -> torch.device:
        return self.weight.device

    def forward(self, view):
        self.threads.append(threading.current_thread().name)
        return TensorDict({self.out_keys[0]: self.compute(view)}, [4])


class _Body(_StandIn):
    """A body stand-in read through the combined part's views: ``y = tanh(x W)``."""

    env_level_in_keys = ("x",)
    agent_level_in_keys = ()
    out_keys = ("y",)
    concurrent_safe = True

    def compute(self, view):
        return torch.tanh(view.get("x") @ self.weight)


class _Head(_StandIn):
    """A head stand-in reading its body's ``y`` and the environment's ``r``:
    ``z = (y v) * r``."""

    env_level_in_keys = ("r",)
    agent_level_in_keys = ("y",)
    out_keys = ("z",)

    def __init__(self, weight: nn.Parameter, safe: bool = True):
        super().__init__(weight)
        self.concurrent_safe = safe

    def compute(self, view):
        return (view.get("y") @ self.weight).squeeze(-1) * view.get("r")


def _chained_pair(head_safe: bool = True):
    """A combined body of two agents chained to a combined head; fixed weights."""
    from types import SimpleNamespace

    from nip_core.scenario.combined import CombinedBody, CombinedPolicyHead

    handler = SimpleNamespace(agent_names=["a", "b"])
    generator = torch.Generator().manual_seed(0)
    bodies = {
        name: _Body(nn.Parameter(torch.randn(3, 2, generator=generator)))
        for name in handler.agent_names
    }
    heads = {
        name: _Head(nn.Parameter(torch.randn(2, 1, generator=generator)), head_safe)
        for name in handler.agent_names
    }
    body = CombinedBody(None, None, handler, bodies)
    head = CombinedPolicyHead(None, None, handler, heads)
    for combined in (body, head):
        combined.__dict__["_view_masks_cache"] = [None, None]  # every channel seen
    body.chain(head)
    return body, head


def _chained_inputs(seed: int) -> TensorDict:
    """The environment of :func:`_chained_pair`'s parts: ``x`` and ``r``."""
    generator = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "x": torch.randn(4, 3, generator=generator),
            "r": torch.rand(4, generator=generator),
        },
        [4],
    )


def _chained_run(
    threads: int, head_safe: bool = True, change: str | None = None
) -> tuple:
    """Forward and backward of ``body`` then ``head`` on one TensorDict, the loss
    reading the head's outputs and the body's (a second reader of ``y``).
    ``change`` between the two calls: ``"r"`` (a new environment tensor),
    ``"weight"`` (the head's weights changed in place), ``"mode"`` (the head in
    eval mode)."""
    body, head = _chained_pair(head_safe)
    td = _chained_inputs(seed=1)
    with concurrent_parts(threads), concurrent_backward():
        body(td)
        if change == "r":
            td.set("r", td.get("r") + 1)
        elif change == "weight":
            with torch.no_grad():
                for parameter in head.parameters():
                    parameter.mul_(2)
        elif change == "mode":
            head.eval()
        head(td)
        y, z = td.get(("agents", "y")), td.get(("agents", "z"))
        ((z * torch.tensor([1.0, 2.0])).sum() + (y**2).sum()).backward()
    grads = [p.grad.clone() for module in (body, head) for p in module.parameters()]
    return body, head, [y.detach(), z.detach()], grads


def test_a_chained_head_runs_in_its_body_s_tasks_with_the_same_result():
    _, _, sequential_out, sequential_grads = _chained_run(1)
    body, head, outputs, grads = _chained_run(2)
    main = threading.current_thread().name
    # each agent's head ran once, in the task of its body: one of them on the
    # helper thread, and none again when the combined head was called
    head_threads = [name for part in head.parts.values() for name in part.threads]
    body_threads = [name for part in body.parts.values() for name in part.threads]
    assert len(head_threads) == 2
    assert head_threads == body_threads
    assert set(head_threads) != {main}
    for a, b in zip(sequential_out + sequential_grads, outputs + grads, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


@pytest.mark.parametrize("change", ["r", "weight", "mode"])
def test_a_chained_head_computes_its_own_outputs_when_its_input_changed(change):
    _, _, sequential_out, sequential_grads = _chained_run(1, change=change)
    _, head, outputs, grads = _chained_run(2, change=change)
    # run in the body's tasks, then again for the change (on the caller)
    head_threads = [name for part in head.parts.values() for name in part.threads]
    assert len(head_threads) == 4
    for a, b in zip(sequential_out + sequential_grads, outputs + grads, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_a_head_not_safe_to_thread_is_not_chained():
    _, _, sequential_out, sequential_grads = _chained_run(1, head_safe=False)
    _, head, outputs, grads = _chained_run(2, head_safe=False)
    main = threading.current_thread().name
    head_threads = [name for part in head.parts.values() for name in part.threads]
    assert head_threads == [main, main]
    for a, b in zip(sequential_out + sequential_grads, outputs + grads, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_a_chained_head_must_have_the_body_s_agents():
    from types import SimpleNamespace

    from nip_core.scenario.combined import CombinedPolicyHead

    body, _ = _chained_pair()
    handler = SimpleNamespace(agent_names=["b", "a"])
    weight = nn.Parameter(torch.zeros(2, 1))
    other = CombinedPolicyHead(
        None, None, handler, {"a": _Head(weight), "b": _Head(weight)}
    )
    with pytest.raises(ValueError, match="same agents in the same order"):
        body.chain(other)


def test_a_partner_s_chained_head_computes_its_own_outputs_when_its_input_changed():
    """The policy body's section runs the value body and its head too (a
    partner, :meth:`pair_with`); the environment tensor the head reads changes
    before the value body asks for its outputs: the head's kept outputs are
    stale and not used."""

    def run(threads: int):
        body, head = _chained_pair()
        partner, _ = _chained_pair()
        partner.pair_with(body)
        td = _chained_inputs(seed=2)
        with concurrent_parts(threads), concurrent_backward():
            out = partner(td.clone(False)).get(("agents", "y"))
            td.set("r", td.get("r") + 1)  # after the section, before body asks
            body(td)
            head(td)
            z = td.get(("agents", "z"))
            (z.sum() + out.sum()).backward()
        grads = [p.grad.clone() for m in (body, head, partner) for p in m.parameters()]
        return head, z.detach(), grads

    _, sequential_z, sequential_grads = run(1)
    head, z, grads = run(2)
    head_threads = [name for part in head.parts.values() for name in part.threads]
    assert len(head_threads) == 4  # in the section, then again for the new r
    torch.testing.assert_close(z, sequential_z, rtol=0, atol=0)
    for a, b in zip(sequential_grads, grads, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_a_head_naming_the_body_s_output_as_a_tuple_key_is_chained(monkeypatch):
    monkeypatch.setattr(_Head, "agent_level_in_keys", (("y",),))
    _, _, sequential_out, sequential_grads = _chained_run(1)
    _, head, outputs, grads = _chained_run(2)
    head_threads = [name for part in head.parts.values() for name in part.threads]
    assert len(head_threads) == 2 and set(head_threads) != {
        threading.current_thread().name
    }
    for a, b in zip(sequential_out + sequential_grads, outputs + grads, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


class _SlowPart(_Part):
    """A part whose forward pass takes ``seconds`` (and records its start)."""

    def __init__(self, weight, seconds: float, starts: list):
        super().__init__(weight)
        self.seconds = seconds
        self.starts = starts

    def forward(self, view):
        self.starts.append(self)
        time.sleep(self.seconds)
        return super().forward(view)


def test_the_threads_take_the_parts_that_took_longest_last_time_first(monkeypatch):
    """Costliest first, by the time each part's task took per row the time
    before (parameter counts say nothing once parts run on different rows);
    the first time by parameter count."""
    torch.manual_seed(0)
    starts: list = []
    parts = [
        _SlowPart(nn.Parameter(torch.randn(3, 2)), seconds, starts)
        for seconds in (0.0, 0.06, 0.03)
    ]
    combined = _combined([*parts])
    # the tasks one after the other in the order given, to see that order
    monkeypatch.setattr(PartRunner, "run", lambda self, tasks: [t() for t in tasks])
    x = torch.randn(4, 3)
    with concurrent_parts(2):
        combined._run_parts(_views(x) + _views(x)[:1], TensorDict({"x": x}, [4]))
        assert starts == parts  # equal parameter counts: the order given
        starts.clear()
        combined._run_parts(_views(x) + _views(x)[:1], TensorDict({"x": x}, [4]))
    assert starts == [parts[1], parts[2], parts[0]]
