"""One run across several processes: ``torch.distributed`` under ``torchrun``.

``torchrun --nproc-per-node N $(which nip) run ...`` starts N processes with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set.
:func:`prepare_process_settings` (called by ``run_experiment``) joins them into a
process group (gloo on CPU, NCCL when the run's device is a GPU), gives every
process the same run id, and each process the GPU of its ``LOCAL_RANK``. Rank 0
writes the run directory; the others read the checkpoint they resume from.

Training splits its work over *shards* (``distributed.num_shards``, see
:mod:`nip_core.trainers.sharding`); this module holds what shards need from the
process group: small typed collectives that are no-ops in a single process, one
random stream per shard (:class:`RngStream`), and :func:`buffers_unchanged`.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) nothing here starts a process
group and every collective returns its input.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from nip_core.settings import ExperimentSettings

logger = logging.getLogger(__name__)

__all__ = [
    "RngStream",
    "all_reduce_sum",
    "barrier",
    "broadcast_module_states",
    "broadcast_object",
    "buffers_unchanged",
    "gather_objects",
    "is_main_process",
    "main_process_first",
    "prepare_process_settings",
    "rank",
    "world_size",
]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _initialised() -> bool:
    # A process group exists only if torch.distributed was imported: do not import
    # it (seconds) just to learn that a single-process run has none
    if "torch.distributed" not in sys.modules:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of processes of the run (1 without a process group)."""
    if not _initialised():
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    if not _initialised():
        return 0
    import torch.distributed as dist

    return dist.get_rank()


def is_main_process() -> bool:
    """Whether this process writes the run directory (rank 0)."""
    return rank() == 0


def launched_world_size() -> int:
    """``WORLD_SIZE`` as ``torchrun`` sets it (1 when not launched by it)."""
    return _env_int("WORLD_SIZE", 1)


def process_device(device: str) -> str:
    """The device of this process: a GPU device becomes ``cuda:<LOCAL_RANK>``."""
    if launched_world_size() > 1 and device.startswith("cuda"):
        return f"cuda:{_env_int('LOCAL_RANK', 0)}"
    return device


def init_process_group(device: str) -> bool:
    """Join the process group ``torchrun`` describes; return whether one exists.

    The backend is NCCL for a GPU device and gloo otherwise. Idempotent: a process
    group that exists already (started by the caller) is used as it is. The group
    is destroyed when the process exits.
    """
    if launched_world_size() <= 1:
        return _initialised()
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
    dist.init_process_group(backend=backend)
    atexit.register(_destroy_process_group)
    logger.info(
        "process %d of %d joined the process group (%s)",
        dist.get_rank(),
        dist.get_world_size(),
        backend,
    )
    return True


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def prepare_process_settings(settings: ExperimentSettings) -> ExperimentSettings:
    """Settings for this process of a run launched by ``torchrun``.

    Joins the process group, gives every process rank 0's run id and this process
    its own GPU (``cuda`` → ``cuda:<LOCAL_RANK>``). Returns ``settings`` unchanged
    in a single process.
    """
    import attrs

    if not init_process_group(settings.device):
        return settings
    run_id = broadcast_object(settings.run_id)
    return attrs.evolve(settings, run_id=run_id, device=process_device(settings.device))


# ------------------------------------------------------------------------------------
# Collectives (no-ops in a single process)


def barrier() -> None:
    """Wait until every process gets here."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the others (rank 0 writes files the
    others then read).

    Rank 0 releases the others even when its block raises, so they run the block
    and meet the same problem instead of waiting forever.
    """
    if not is_main_process():
        barrier()
        yield
        return
    try:
        yield
    finally:
        barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process (picklable objects)."""
    if world_size() <= 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any] | None:
    """Every process's ``obj``, in rank order, on rank 0 (``None`` elsewhere)."""
    if world_size() <= 1:
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] | None = [None] * world_size() if is_main_process() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def all_reduce_sum(tensors: Sequence[torch.Tensor]) -> None:
    """Sum ``tensors`` over the processes, in place, one flat message per dtype.

    Every process must pass tensors of the same shapes and dtypes in the same
    order (as gradients of the same parameters are). Tensors may live on any
    device: they travel on the backend's (the process's GPU for NCCL, the CPU for
    gloo).
    """
    if world_size() <= 1 or not tensors:
        return
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        transport = torch.device("cuda", torch.cuda.current_device())
    else:
        transport = torch.device("cpu")
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for tensor in tensors:
        by_dtype.setdefault(tensor.dtype, []).append(tensor)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1).to(transport) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for tensor in group:
            n = tensor.numel()
            tensor.copy_(flat[offset : offset + n].view_as(tensor))
            offset += n


def broadcast_module_states(modules: Iterable[torch.nn.Module], src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every process's modules."""
    if world_size() <= 1:
        return
    import torch
    import torch.distributed as dist

    tensors = [
        t
        for module in modules
        for t in [*module.parameters(), *module.buffers()]
        if t.numel() > 0
    ]
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor.data, src=src)


# ------------------------------------------------------------------------------------
# Random streams and buffers


class RngStream:
    """A torch random stream of its own (CPU, and the run's GPU when there is one).

    ``with stream.active():`` makes it torch's default generator for the block and
    puts the previous state back afterwards, so what the block draws depends only
    on this stream, whatever else the process does.

    Parameters
    ----------
    seed : int
        The seed of the stream.
    device : str
        The run's device; a CUDA device gets a CUDA stream too.
    """

    def __init__(self, seed: int, device: str = "cpu"):
        import torch

        self.seed = int(seed)
        self.cpu_state = torch.Generator().manual_seed(self.seed).get_state()
        self.cuda_device: int | None = None
        self.cuda_state: torch.Tensor | None = None
        if device.startswith("cuda") and torch.cuda.is_available():
            self.cuda_device = torch.device(device).index or 0
            with torch.random.fork_rng(devices=[self.cuda_device]):
                torch.cuda.manual_seed(self.seed)
                self.cuda_state = torch.cuda.get_rng_state(self.cuda_device)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        import torch

        outer_cpu = torch.get_rng_state()
        outer_cuda = None
        torch.set_rng_state(self.cpu_state)
        if self.cuda_state is not None:
            outer_cuda = torch.cuda.get_rng_state(self.cuda_device)
            torch.cuda.set_rng_state(self.cuda_state, self.cuda_device)
        try:
            yield
        finally:
            self.cpu_state = torch.get_rng_state()
            torch.set_rng_state(outer_cpu)
            if outer_cuda is not None:
                self.cuda_state = torch.cuda.get_rng_state(self.cuda_device)
                torch.cuda.set_rng_state(outer_cuda, self.cuda_device)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "cpu": self.cpu_state, "cuda": self.cuda_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.cpu_state = state["cpu"].cpu()
        if state.get("cuda") is not None and self.cuda_state is not None:
            self.cuda_state = state["cuda"].cpu()


@contextlib.contextmanager
def buffers_unchanged(buffers: Sequence[torch.Tensor]) -> Iterator[None]:
    """Put ``buffers`` (batch norm's running statistics, say) back as they were
    after the block."""
    if not buffers:
        yield
        return
    import torch

    with torch.no_grad():
        saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved, strict=True):
                buffer.copy_(value)
