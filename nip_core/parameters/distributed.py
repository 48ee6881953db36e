"""The ``distributed`` section: how a run's work is split into shards.

A shard is a slice of every batch with random streams of its own (the environments'
datapoint order and episode seeds, action sampling, minibatch sampling, dropout) and
its own forward passes. The processes of a run (``torchrun``) each take a block of
shards, so a run's result depends on the number of shards, never on how many
processes run them: two processes with two shards each reproduce, to float
tolerance, one process running all four. See :mod:`nip_core.trainers.sharding`.
"""

from __future__ import annotations

from attrs import field
from attrs import validators as v

from nip_core.parameters.base import SubParameters, parameters_class

__all__ = ["DistributedParameters"]


@parameters_class
class DistributedParameters(SubParameters):
    """How training is split into shards (section ``distributed``).

    Parameters
    ----------
    num_shards : int
        Shards of every batch (at least 1). The number of processes of a run must
        divide it; the training environments' batch (``num_envs``), the test
        environments' and ``rl.minibatch_size`` must be multiples of it. 1 (the
        default) is the plain single-process loop; a run with ``num_shards=N`` gives
        the same result on any number of processes that divides N.
    """

    num_shards: int = field(default=1, validator=v.ge(1))
