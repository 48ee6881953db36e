"""Shards: one run's batches split so that any number of processes can run them.

With ``distributed.num_shards = S``, every batch of a tensor-world trainer is cut
into S equal slices, the *shards*. A shard has

- its own random stream (:class:`~nip_core.distributed.RngStream`, seeded from the
  run's seed and the shard's index): action sampling, minibatch sampling and dropout
  inside the shard draw from it alone;
- for RL trainers, its own training and test environments (``num_envs / S``
  environments each, seeded per shard) with their own carried-over state, and its
  own replay buffer (``frames_per_batch / S`` frames, minibatches of
  ``minibatch_size / S``);
- its own forward passes, so per-minibatch statistics (advantage normalisation,
  batch norm's batch statistics) are per shard.

The processes of a run (:mod:`nip_core.distributed`) each take a contiguous block of
``S / world_size`` shards. A minibatch's gradient is the mean over all shards of each
shard's loss gradient: every process sums its shards' gradients (each scaled by
``1 / S``), the sums are added up across processes (all-reduce), and every process
takes the same optimizer step, so the agents stay identical everywhere. Nothing
depends on which process ran which shard: a run gives the same result on any
number of processes that divides S (bit for bit with two shards; with more shards
per process the gradient sums are added in another order, so to float tolerance),
and a checkpoint (which holds every shard's state) resumes on any such number.
Logged sums over shards (:meth:`Sharding.sum_over_shards`) are added up in shard
order, the same bit for bit on any number of processes.

Two rules keep that true where state is not per shard:

- **Buffers follow shard 0.** Running statistics (batch norm) are updated only by
  the forward passes of shard 0; they are broadcast from rank 0, which holds
  shard 0, before testing and before checkpoints.
- **Rank 0 reports.** Metrics are computed by rank 0 from the whole batch, gathered
  from every process; only rank 0 writes the run directory.

``num_shards = 1`` in one process is the plain loop, untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from nip_core import distributed as dist
from nip_core.errors import ConfigProblem, NipConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "Shard",
    "ShardLayout",
    "Sharding",
    "build_shard_environments",
    "check_sharding",
    "shard_layout",
    "shard_replay_buffer",
    "shard_seed",
]


class ShardLayout:
    """Which shards this process runs.

    Parameters
    ----------
    num_shards : int
        Shards of the run.
    world_size : int
        Processes of the run.
    rank : int
        This process.
    """

    def __init__(self, num_shards: int, world_size: int, rank: int):
        self.num_shards = num_shards
        self.world_size = world_size
        self.rank = rank
        per_process = num_shards // world_size
        self.local_indices = list(range(rank * per_process, (rank + 1) * per_process))

    def __repr__(self) -> str:
        return (
            f"ShardLayout(num_shards={self.num_shards}, world_size="
            f"{self.world_size}, rank={self.rank}, local={self.local_indices})"
        )


def shard_layout(hyper_params: Any) -> ShardLayout | None:
    """The layout of this process; ``None`` for the plain loop (one shard, one
    process).

    Raises
    ------
    NipConfigError
        When the number of processes does not divide ``distributed.num_shards``.
    """
    num_shards = int(hyper_params.distributed.num_shards)
    world = dist.world_size()
    if num_shards == 1 and world == 1:
        return None
    if num_shards % world != 0:
        raise NipConfigError(
            ConfigProblem(
                "distributed.num_shards",
                f"must be a multiple of the number of processes ({world}): each "
                f"process runs the same number of shards; set "
                f"distributed.num_shards={world} (or a multiple of it)",
                num_shards,
            )
        )
    return ShardLayout(num_shards, world, dist.rank())


def check_sharding(hyper_params: Any, trainer_class: type) -> None:
    """Refuse, before anything is written, a sharded run (``num_shards > 1`` or
    several processes) that cannot be: a trainer that does not shard, or shards the
    processes cannot share.

    Raises
    ------
    NipConfigError
        Saying what to change.
    """
    num_shards = int(hyper_params.distributed.num_shards)
    world = dist.world_size()
    if num_shards == 1 and world == 1:
        return
    check = getattr(trainer_class, "sharding_config_problems", None)
    if check is not None:
        problems = check(hyper_params)
    elif not getattr(trainer_class, "supports_sharding", False):
        problems = [
            ConfigProblem(
                "trainer",
                f"the {hyper_params.trainer} trainer cannot run sharded "
                f"(distributed.num_shards={num_shards}) nor across processes "
                f"({world} here); run it in one process with "
                "distributed.num_shards=1",
                hyper_params.trainer,
            )
        ]
    else:
        problems = []
    if problems:
        raise NipConfigError(problems)
    shard_layout(hyper_params)


def shard_seed(seed: int, index: int, purpose: str = "") -> int:
    """The seed of shard ``index``'s random stream (``purpose`` tells streams of
    different trainers apart)."""
    from nip_core.seeding import derive_seed

    return derive_seed(int(seed), f"shard/{index}{'/' + purpose if purpose else ''}")


class Shard:
    """One shard of this process: its index, random stream and whatever the
    trainer keeps per shard (environments, carried state, replay buffer)."""

    def __init__(self, index: int, rng: dist.RngStream):
        self.index = index
        self.rng = rng
        self.train_environment: Any = None
        self.test_environment: Any = None
        self.carry: Any = None
        self.test_carry: Any = None
        self.replay_buffer: Any = None


class Sharding:
    """The shards of this process and what they share with the other processes.

    Parameters
    ----------
    trainer : TensorDictTrainer
        The trainer (its agents, settings, run context).
    layout : ShardLayout
        This process's shards.
    purpose : str
        Tells the random streams of different trainers of one run apart (the
        pre-training step of an RL run has streams of its own).
    """

    def __init__(self, trainer: Any, layout: ShardLayout, purpose: str = ""):

        from nip_core.trainers.base import agent_part_modules

        self.layout = layout
        seed = int(trainer.hyper_params.seed)
        self.shards = [
            Shard(
                i, dist.RngStream(shard_seed(seed, i, purpose), trainer.settings.device)
            )
            for i in layout.local_indices
        ]
        self.modules: list[torch.nn.Module] = []
        seen: set[int] = set()
        for agent in trainer.agents.values():
            for module in agent_part_modules(agent).values():
                if id(module) not in seen:
                    seen.add(id(module))
                    self.modules.append(module)
        # every buffer, integer ones too (batch norm's num_batches_tracked, which
        # its cumulative average with momentum=None divides by)
        self.buffers = [b for m in self.modules for b in m.buffers()]
        # Whether rank 0 writes the run directory: every process must take part in
        # building a checkpoint's state, even those that write nothing
        self.main_writes_files = bool(dist.broadcast_object(trainer.run.writes_files))

    @property
    def num_shards(self) -> int:
        return self.layout.num_shards

    @contextlib.contextmanager
    def forward(self, shard: Shard) -> Iterator[None]:
        """Run the block as shard ``shard``: its random stream; buffers kept as
        they were unless it is shard 0.

        Put a training forward pass's backward pass inside the block too: autograd
        refuses a backward pass through buffers changed in place after the forward
        pass saved them (batch norm saves its running statistics).
        """
        with shard.rng.active():
            if shard.index == 0:
                yield
            else:
                with dist.buffers_unchanged(self.buffers):
                    yield

    # --------------------------------------------------------------------------------
    # Gradients, metrics, agents

    def all_reduce_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Sum the gradients of ``params`` over the processes (each shard's
        contribution is already scaled by ``1 / num_shards``).

        A parameter has a gradient afterwards where any process gave it one, as in
        one process running every shard: a process whose shards gave it none (an
        empty slice of a batch, say) takes part with zeros, so every process sends
        the same tensors (otherwise the all-reduce would pair mismatched messages).
        """
        params = list(params)
        if dist.world_size() > 1 and params:
            import torch

            present = torch.tensor(
                [p.grad is not None for p in params], dtype=torch.int32
            )
            dist.all_reduce_sum([present])
            for param, count in zip(params, present.tolist(), strict=True):
                if count and param.grad is None:
                    param.grad = torch.zeros_like(param)
        dist.all_reduce_sum([p.grad for p in params if p.grad is not None])

    def sum_over_shards(
        self, per_shard: dict[int, Sequence[torch.Tensor]]
    ) -> list[torch.Tensor]:
        """Every shard's tensors (``per_shard[index]``: this process's shards, the
        same shapes and dtypes for each) summed over every shard of every process,
        added up in shard order.

        The order makes the sums the same, bit for bit, on any number of processes
        (an all-reduce of per-process sums would add them in another order).
        """
        import torch

        local = [per_shard[shard.index] for shard in self.shards]
        tables = [
            torch.zeros((self.num_shards, *t.shape), dtype=t.dtype, device=t.device)
            for t in local[0]
        ]
        for shard, tensors in zip(self.shards, local, strict=True):
            for table, tensor in zip(tables, tensors, strict=True):
                table[shard.index] = tensor
        # each row is one shard's, zeros elsewhere: the sum over processes is exact
        dist.all_reduce_sum(tables)
        sums = []
        for table in tables:
            total = table[0].clone()
            for row in table[1:]:
                total = total + row
            sums.append(total)
        return sums

    def all_reduce_totals(self, totals: dict[Any, Any]) -> None:
        """Sum the values of ``totals`` (tensors) over the processes, in place."""
        dist.all_reduce_sum(list(totals.values()))

    def synchronise_agents(self) -> None:
        """Give every process rank 0's parameters and buffers."""
        dist.broadcast_module_states(self.modules)

    def chunks(self, indices: torch.Tensor) -> list[tuple[Shard, torch.Tensor]]:
        """This process's slices of a batch of datapoint indices, by shard (the
        batch is cut into ``num_shards`` slices as equal as possible)."""
        import torch

        slices = torch.tensor_split(indices, self.num_shards)
        return [(shard, slices[shard.index]) for shard in self.shards]

    # --------------------------------------------------------------------------------
    # Checkpoints

    def gather_state(self, shard_state: Any) -> dict[int, Any] | None:
        """Every shard's state (``shard_state(shard)``), by index, on rank 0."""
        local = {shard.index: shard_state(shard) for shard in self.shards}
        gathered = dist.gather_objects(local)
        if gathered is None:
            return None
        merged: dict[int, Any] = {}
        for part in gathered:
            merged.update(part)
        return merged

    def local_states(self, states: dict[int, Any] | None) -> list[tuple[Shard, Any]]:
        """This process's shards with their saved states.

        Raises
        ------
        CheckpointError
            When the checkpoint holds other shards than the run has.
        """
        from nip_core.errors import CheckpointError

        if states is None:
            raise CheckpointError(
                f"the checkpoint holds no shard states, but the run has "
                f"{self.num_shards} shards (distributed.num_shards)"
            )
        states = {int(k): v for k, v in states.items()}
        if sorted(states) != list(range(self.num_shards)):
            raise CheckpointError(
                f"the checkpoint holds shards {sorted(states)}, but the run has "
                f"{self.num_shards} (distributed.num_shards)"
            )
        return [(shard, states[shard.index]) for shard in self.shards]

    def rng_state(self, shard: Shard) -> dict[str, Any]:
        return shard.rng.state_dict()


# ------------------------------------------------------------------------------------
# RL trainers: environments and replay buffers per shard


def build_shard_environments(trainer: Any, sharding: Sharding) -> None:
    """Give each shard of this process its training and test environment.

    A shard's environment is the scenario's environment class with a batch of
    ``num_envs / num_shards`` environments (``rl.frames_per_batch`` scaled down)
    and the shard's own seed (datapoint order, episode seeds). Built without
    touching the global random state, so every process continues from the same
    one whatever shards it builds.
    """
    import torch

    from nip_core.plugins import get_plugin_manager
    from nip_core.records import resolve_ref

    hyper_params = trainer.hyper_params
    spec = get_plugin_manager().scenarios[hyper_params.scenario]
    environment_class = resolve_ref(spec.environment_class)
    num_shards = sharding.num_shards
    with torch.random.fork_rng(devices=[]):
        for split in ("train", "test"):
            full = getattr(trainer, f"{split}_environment")
            frames = int(full.frames_per_batch) // num_shards
            params = _with_frames_per_batch(hyper_params, frames)
            for shard in sharding.shards:
                env = environment_class(
                    hyper_params=params,
                    settings=trainer.settings,
                    dataset=full.dataset,
                    protocol_handler=full.protocol_handler,
                )
                env.set_seed(shard_seed(int(hyper_params.seed), shard.index, "env"))
                setattr(shard, f"{split}_environment", env)


def _with_frames_per_batch(hyper_params: Any, frames: int) -> Any:
    data = hyper_params.to_dict()
    data["rl"] = {**data["rl"], "frames_per_batch": frames}
    return type(hyper_params).from_dict(data)


def shard_replay_buffer(trainer: Any) -> Any:
    """A replay buffer for one shard: ``frames_per_batch / num_shards`` frames,
    minibatches of ``minibatch_size / num_shards``, sampled without replacement."""
    from torchrl.data.replay_buffers import ReplayBuffer
    from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
    from torchrl.data.replay_buffers.storages import LazyTensorStorage

    num_shards = trainer.sharding.num_shards
    return ReplayBuffer(
        storage=LazyTensorStorage(
            trainer.frames_per_batch // num_shards, device=trainer.device
        ),
        sampler=SamplerWithoutReplacement(),
        batch_size=trainer.minibatch_size // num_shards,
    )
