"""Process-level tuning for training on CPU.

:func:`tune_memory_allocator` keeps freed memory in the process for reuse. Tensor
programs on CPU allocate and free many buffers of a few megabytes per step (the
activations of every layer, their gradients). glibc's ``malloc`` serves such sizes
with fresh ``mmap`` pages, or trims its heap as soon as a few megabytes are free at
its top, so each step faults in the same memory again: on graph isomorphism at the
``ppo_gi`` settings that is about 400 000 page faults per training iteration, and
an elementwise chain such as ``2 sigmoid(2x) - 1`` on a 5632 x 64 tensor took 3 times
as long as with the memory kept (measured on one thread). PyTorch's CPU allocator
does not cache; the usual advice is to preload jemalloc or tcmalloc, which needs the
environment set before Python starts. ``mallopt`` gets glibc to the same effect
from inside the process.

The trainers call it when training starts, unless
``ExperimentSettings.tune_memory_allocator`` is off. Peak memory (the resident
high-water mark) is not raised: memory kept is memory that was in use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter numbers (``malloc.h``)."""

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Allocations below this come from the heap (glibc's maximum, on 64-bit)."""

TRIM_THRESHOLD_BYTES = 512 * 1024 * 1024
"""Free memory kept at the top of the heap before some is given back."""

_tuned = False


def tune_memory_allocator() -> bool:
    """Have glibc keep freed memory for reuse (see the module docstring).

    Returns
    -------
    bool
        Whether the allocator is tuned: ``False`` off Linux or without glibc (musl,
        for instance), where nothing is changed.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        return False
    if mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        return False
    logger.debug(
        "malloc keeps freed memory: mmap threshold %d, trim threshold %d bytes",
        MMAP_THRESHOLD_BYTES,
        TRIM_THRESHOLD_BYTES,
    )
    _tuned = True
    return True
