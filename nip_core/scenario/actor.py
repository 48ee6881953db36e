"""The policy actor: TorchRL's :class:`~torchrl.modules.ProbabilisticActor` with
its distribution module found once.

TensorDict's ``ProbabilisticTensorDictSequential.build_dist_from_params`` (what
``get_dist``, and so every PPO loss, calls) looks for the last
:class:`~tensordict.nn.ProbabilisticTensorDictModule` by walking every module of
the sequence, the agents' bodies included: about 0.5 ms per loss at graph
isomorphism's ``ppo_gi`` settings, on the training loop's single-threaded path.
:class:`NipActor` makes the same search once and keeps the result. Imported by
:func:`nip_core.scenario.distributions.build_policy_actor` (TorchRL is imported
only when an actor is built).
"""

from __future__ import annotations

from typing import Any

from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictModule
from torch import distributions as D
from torchrl.modules import ProbabilisticActor

__all__ = ["NipActor"]


class NipActor(ProbabilisticActor):
    """A :class:`~torchrl.modules.ProbabilisticActor` that finds the module
    building its distribution once (module docstring).

    The module found is the one TensorDict's own search finds: the last
    :class:`~tensordict.nn.ProbabilisticTensorDictModule` among ``modules()``.
    Replacing submodules after the first distribution is built is not
    supported (nothing in nip does).
    """

    def _distribution_module(self) -> ProbabilisticTensorDictModule:
        found: tuple[Any, ...] | None = self.__dict__.get("_nip_distribution_module")
        if found is None:
            module = None
            for candidate in reversed(list(self.modules())):
                if isinstance(candidate, ProbabilisticTensorDictModule):
                    module = candidate
                    break
            if module is None:
                raise RuntimeError(
                    "Could not find any ProbabilisticTensorDictModule in the sequence."
                )
            # in a tuple: an attribute holding a module would register it
            found = (module,)
            self._nip_distribution_module = found
        return found[0]

    def build_dist_from_params(self, tensordict: TensorDictBase) -> D.Distribution:
        return self._distribution_module().get_dist(tensordict)
