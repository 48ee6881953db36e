"""The update's minibatches, each sampled on a helper thread while the step before
runs (``nip_core.trainers.rl._Minibatches``): the same minibatches as sampling in
the loop, and the random state after them the same too."""

from __future__ import annotations

import threading

import pytest
import torch
from tensordict import TensorDict
from torchrl.data.replay_buffers import ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.data.replay_buffers.storages import LazyTensorStorage

from nip_core.scenario.concurrency import concurrent_parts
from nip_core.trainers.rl import _Minibatches

pytestmark = pytest.mark.usefixtures("single_thread")


class _RecordingBuffer(ReplayBuffer):
    """Records the thread that sampled each minibatch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threads: list[str] = []

    def sample(self, *args, **kwargs):
        self.threads.append(threading.current_thread().name)
        return super().sample(*args, **kwargs)


def _buffer(frames: int = 12, minibatch: int = 4) -> _RecordingBuffer:
    buffer = _RecordingBuffer(
        storage=LazyTensorStorage(frames),
        sampler=SamplerWithoutReplacement(),
        batch_size=minibatch,
    )
    buffer.extend(TensorDict({"frame": torch.arange(frames)}, [frames]))
    return buffer


def _update(threads: int, count: int, draw_between: bool):
    """``count`` minibatches the way the trainer's loop takes them, with a random
    draw in each "forward pass" (as dropout would) when ``draw_between``."""
    torch.manual_seed(0)
    buffer = _buffer()
    taken, draws = [], []
    with concurrent_parts(threads):
        minibatches = _Minibatches(buffer, count)
        for _ in range(count):
            minibatch = minibatches.take()
            if draw_between:
                draws.append(torch.rand(()).item())
            taken.append(minibatch["frame"].tolist())
            minibatches.prefetch()
    return taken, draws, torch.rand(()).item(), buffer.threads


@pytest.mark.parametrize("draw_between", [False, True])
def test_prefetched_minibatches_are_the_loops_own(draw_between):
    # 7 minibatches of 4 from 12 frames: three permutations drawn, one mid-way
    sequential = _update(1, 7, draw_between)
    prefetched = _update(2, 7, draw_between)
    assert prefetched[:3] == sequential[:3]  # minibatches, draws, the state after
    main = threading.current_thread().name
    assert sequential[3] == [main] * 7
    # the first is sampled where it is taken, every later one on a helper
    assert prefetched[3][0] == main
    assert all(name != main for name in prefetched[3][1:])
    assert len(prefetched[3]) == 7  # none sampled ahead of the last


def test_without_a_runner_each_minibatch_is_sampled_when_taken():
    buffer = _buffer()
    minibatches = _Minibatches(buffer, 2)
    first = minibatches.take()
    minibatches.prefetch()
    assert buffer.threads == [threading.current_thread().name]
    second = minibatches.take()
    assert len(buffer.threads) == 2
    assert set(first["frame"].tolist()).isdisjoint(second["frame"].tolist())
