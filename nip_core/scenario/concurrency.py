"""The agents' networks run side by side on CPU threads (``run.agent_threads``).

The tensor-world agents' networks are small: at graph isomorphism's ``ppo_gi``
settings one body's forward and backward pass is a few hundred operators of
10-500 µs each, too small for torch's intra-op threads to split well (two intra-op
threads measured no faster than one). The agents' bodies, though, are independent:
each reads the observation and writes its own representation. So on a CPU with
``k`` cores the training loop runs with one intra-op thread and the bodies of one
combined part (:class:`~nip_core.scenario.combined.CombinedBody`) run on ``k``
threads at once, forward and, inside :func:`concurrent_backward`, backward.

How the backward pass runs concurrently: the combined part hands the rest of the
loss *detached* copies of its parts' outputs, joined by one autograd node
(:class:`_JoinParts`). When the loss's backward pass reaches that node, it has the
gradients of every part's outputs; it runs each part's own backward pass
(``torch.autograd.backward`` on the part's real outputs) on the threads, waits for
all, and the outer pass continues. Each parameter belongs to one part, so its
gradient is accumulated by one thread: the result is the same, bit for bit, as
running the parts one after the other with one intra-op thread.

A combined body chained to the head that reads it
(:meth:`~nip_core.scenario.combined.CombinedTensorDictAgentPart.chain`) runs each
agent's head part in the agent's task, right after its body: the joined outputs
are then the head's (and the body's), and each task's backward pass runs the
head's backward, then the body's, on its thread.

That cut is only right for a plain ``loss.backward()``: ``torch.autograd.grad``
with the parameters as inputs, or a second backward pass through the same graph,
would not see through it. The trainers therefore enter :func:`concurrent_backward`
around the loss only on their plain ``backward()`` path; elsewhere (collection,
tests, GAE, losses with their own backward) the parts' forward passes run
concurrently and their graphs stay connected.

A part runs concurrently only when it says it may (:attr:`AgentPart.concurrent_safe
<nip_core.scenario.parts.AgentPart.concurrent_safe>`: its forward draws no random
numbers and touches nothing another agent's part touches), the parts share no
parameter, all sit on the CPU, and autocast is off; otherwise they run one after
the other, as without threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import torch

if TYPE_CHECKING:
    from concurrent.futures import Future

T = TypeVar("T")

_local = threading.local()
_active: PartRunner | None = None


class PartRunner:
    """Runs batches of callables on ``threads`` threads: the caller and a pool.

    The callables are taken from a shared queue in the order given (give the
    costliest first), each thread taking the next when it is done, so unequal
    costs balance themselves.
    """

    def __init__(self, threads: int):
        if threads < 2:
            raise ValueError(f"a PartRunner needs at least 2 threads, got {threads}")
        from concurrent.futures import ThreadPoolExecutor

        self.threads = threads
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="nip-agents")
        self.closed = False

    def run(self, tasks: Sequence[Callable[[], T]]) -> list[T]:
        """Each task's result, in the order of ``tasks``; the first exception any
        task raised is raised here, once all have finished."""
        if len(tasks) <= 1 or self.closed or in_worker():
            return [task() for task in tasks]
        results: list[Any] = [None] * len(tasks)
        errors: list[BaseException] = []
        lock = threading.Lock()
        queue = iter(range(len(tasks)))
        grad = torch.is_grad_enabled()
        inference = torch.is_inference_mode_enabled()

        def drain(worker: bool) -> None:
            if worker and not in_worker():
                _local.worker = True
                _block_signals()
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                while True:
                    with lock:
                        index = next(queue, None)
                    if index is None:
                        return
                    try:
                        results[index] = tasks[index]()
                    except BaseException as error:  # noqa: BLE001 - re-raised below
                        with lock:
                            errors.append(error)

        helpers = [
            self._pool.submit(drain, True)
            for _ in range(min(self.threads, len(tasks)) - 1)
        ]
        drain(False)
        for helper in helpers:
            helper.result()
        if errors:
            raise errors[0]
        return results

    def submit(self, task: Callable[[], T]) -> Future[T]:
        """Start ``task`` on a helper thread and return its future: the caller
        runs on meanwhile and collects the result with ``future.result()``
        (which raises what the task raised). The task runs with the caller's grad
        and inference modes. A closed runner runs it at once, in the caller."""
        from concurrent.futures import Future

        if self.closed or in_worker():
            future: Future[T] = Future()
            try:
                future.set_result(task())
            except BaseException as error:  # noqa: BLE001 - handed to the future
                future.set_exception(error)
            return future
        grad = torch.is_grad_enabled()
        inference = torch.is_inference_mode_enabled()

        def run() -> T:
            if not in_worker():
                _local.worker = True
                _block_signals()
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                return task()

        return self._pool.submit(run)

    def close(self) -> None:
        self.closed = True
        self._pool.shutdown(wait=True)


def _block_signals() -> None:
    """Leave process signals (Ctrl-C, SIGTERM) to the main thread: a signal
    delivered to a helper would not wake the main thread waiting for it, so the
    run's handler would only see it when the section ends."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(
            signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        )


def in_worker() -> bool:
    """Whether this thread is one of a :class:`PartRunner`'s helpers (nested
    combined parts then run their parts one after the other)."""
    return getattr(_local, "worker", False)


def active_runner() -> PartRunner | None:
    """The runner of the enclosing :func:`concurrent_parts`, if any (``None`` in
    its helper threads)."""
    if _active is None or _active.closed or in_worker():
        return None
    return _active


@contextmanager
def concurrent_parts(
    threads: int, intra_op_threads: int = 1
) -> Iterator[PartRunner | None]:
    """Run combined parts' agents on ``threads`` threads inside the block.

    Torch's intra-op threads are set to ``intra_op_threads`` for the block, in the
    calling thread and the runner's (which start inside it), and put back after.
    ``threads < 2`` does nothing.
    """
    global _active
    if threads < 2:
        yield None
        return
    previous_runner = _active
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, intra_op_threads))
    runner = PartRunner(threads)
    _active = runner
    try:
        yield runner
    finally:
        _active = previous_runner
        runner.close()
        torch.set_num_threads(previous_threads)


@contextmanager
def concurrent_backward() -> Iterator[None]:
    """Inside, combined parts running concurrently cut their graphs so that the
    backward pass of each part runs on the threads too (module docstring), and
    paired combined parts run in one section
    (:meth:`~nip_core.scenario.combined.CombinedTensorDictAgentPart.pair_with`).
    Only for a loss whose gradients come from one plain ``backward()`` call.
    Outputs computed ahead for a partner that never asked for them are dropped at
    the end of the block."""
    previous = getattr(_local, "backward", False)
    previous_prefetched = getattr(_local, "prefetched", None)
    _local.backward = True
    _local.prefetched = {}
    try:
        yield
    finally:
        _local.backward = previous
        _local.prefetched = previous_prefetched


def backward_allowed() -> bool:
    """Whether this thread is inside :func:`concurrent_backward`."""
    return getattr(_local, "backward", False)


def store_prefetched(owner: Any, inputs: Sequence[Any], outputs: list[Any]) -> None:
    """Keep ``outputs``, computed ahead for ``owner`` from ``inputs``, until
    ``owner`` asks (:func:`take_prefetched`) or the :func:`concurrent_backward`
    block ends."""
    prefetched = getattr(_local, "prefetched", None)
    if prefetched is None:
        return
    prefetched[id(owner)] = (owner, list(inputs), versions_of(inputs), outputs)


def prefetched_for(owner: Any) -> bool:
    """Whether outputs computed ahead wait for ``owner`` (then ask
    :func:`take_prefetched` whether they fit)."""
    prefetched = getattr(_local, "prefetched", None)
    return bool(prefetched) and id(owner) in prefetched


def take_prefetched(owner: Any, inputs: Sequence[Any]) -> list[Any] | None:
    """The outputs computed ahead for ``owner``, if they were computed from these
    very tensors, unchanged since (same objects, same version counters); else
    ``None``. Either way they are given out once only."""
    prefetched = getattr(_local, "prefetched", None)
    if not prefetched:
        return None
    entry = prefetched.pop(id(owner), None)
    if entry is None or entry[0] is not owner:
        return None
    _, stored, versions, outputs = entry
    return outputs if unchanged(stored, versions, inputs) else None


def versions_of(inputs: Sequence[Any]) -> list[Any]:
    """The version counters of ``inputs`` (``None`` for what is not a tensor)."""
    return [getattr(t, "_version", None) for t in inputs]


def unchanged(
    stored: Sequence[Any], versions: Sequence[Any], inputs: Sequence[Any]
) -> bool:
    """Whether ``inputs`` are the very objects ``stored``, with the version
    counters ``versions`` they had then (:func:`versions_of`)."""
    return len(stored) == len(inputs) and all(
        old is new and getattr(new, "_version", None) == version
        for old, new, version in zip(stored, inputs, versions, strict=True)
    )


class _JoinParts(torch.autograd.Function):
    """Identity on the parts' (detached) outputs; its backward pass runs each
    part's own backward pass on the runner's threads."""

    @staticmethod
    def forward(ctx, anchor, runner, groups, *detached):  # type: ignore[override]
        del anchor
        # an output the loss does not read gets no gradient (None), as in the
        # connected graph, rather than zeros run through its part's backward pass
        ctx.set_materialize_grads(False)
        ctx.runner = runner
        ctx.groups = groups
        return tuple(t.view_as(t) for t in detached)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        runner: PartRunner = ctx.runner
        groups: tuple[tuple[torch.Tensor, ...], ...] = ctx.groups
        tasks = []
        start = 0
        for outputs in groups:
            pairs = [
                (out, grad)
                for out, grad in zip(
                    outputs, grads[start : start + len(outputs)], strict=True
                )
                if grad is not None
            ]
            start += len(outputs)
            if pairs:
                tasks.append(_backward_task(pairs))
        runner.run(tasks)
        ctx.groups = ()
        return (None, None, None) + (None,) * len(grads)


def _backward_task(
    pairs: list[tuple[torch.Tensor, torch.Tensor]],
) -> Callable[[], None]:
    def task() -> None:
        torch.autograd.backward([out for out, _ in pairs], [g for _, g in pairs])

    return task


def join_parts(
    runner: PartRunner, groups: Sequence[Sequence[torch.Tensor]]
) -> list[list[torch.Tensor]]:
    """Detached stand-ins for each part's outputs whose backward pass runs the
    parts' backward passes concurrently (:class:`_JoinParts`).

    ``groups``: per part, its outputs that require gradients. Returns the
    stand-ins in the same structure.
    """
    flat = [t for group in groups for t in group]
    if not flat:
        return [list(group) for group in groups]
    anchor = torch.empty(0, requires_grad=True)
    joined = _JoinParts.apply(
        anchor,
        runner,
        tuple(tuple(group) for group in groups),
        *(t.detach() for t in flat),
    )
    out: list[list[torch.Tensor]] = []
    start = 0
    for group in groups:
        out.append(list(joined[start : start + len(group)]))
        start += len(group)
    return out
