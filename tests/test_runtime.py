"""Process-level tuning: glibc keeps freed memory for reuse."""

from __future__ import annotations

import resource
import sys

import pytest

from nip_core.runtime import tune_memory_allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuned_allocator_reuses_freed_memory_without_faulting_it_in_again():
    import torch

    assert tune_memory_allocator()
    assert tune_memory_allocator()  # idempotent
    size = 2 * 1024 * 1024  # 8 MiB of float32, below the 32 MiB mmap threshold
    # the first rounds grow the heap to hold three buffers
    for _ in range(5):
        buffers = [torch.ones(size) for _ in range(3)]
        del buffers
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        buffers = [torch.ones(size) for _ in range(3)]
        del buffers
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # Given back and faulted in again each round (glibc's defaults: measured 4 000
    # to 6 000 faults a round), the buffers would cost up to 20 x 3 x 2048 pages;
    # kept, none most of the time, once in a while one buffer's pages again
    pages_per_round = 3 * size * 4 // resource.getpagesize()
    assert faults < 20 * pages_per_round / 10
