"""Ready-made value and solo heads: an MLP on one representation of the body.

Most tensor scenarios estimate an agent's value and its solo guess the same way: an
MLP (:class:`~nip_core.scenario.networks.RoundMlp`) on one pooled representation the
body outputs, with the round one-hot appended for the value. A scenario subclasses
:class:`RepresentationValueHead` and :class:`RepresentationSoloHead`, naming the
body output in ``representation_key``::

    class MyValueHead(RepresentationValueHead):
        representation_key = "graph_level_repr"

    class MySoloHead(RepresentationSoloHead):
        representation_key = "graph_level_repr"

The representation's width is :attr:`RepresentationHead.d_representation`:
``hyper_params.d_representation`` unless the scenario overrides the property (a
scenario mixin that defines it comes first in the bases and wins).

The heads read these agent parameters, which the scenario's agent parameter class
must have:

- value head: ``d_value``, ``num_value_layers``, ``include_round_in_value``,
  ``activation_function``;
- solo head: ``d_decider``, ``num_decider_layers``, ``activation_function``.

Their state-dict keys are ``value_mlp.mlp.<i>.weight`` / ``.bias`` (value head) and
``decider.mlp.<i>.weight`` / ``.bias`` (solo head), ``<i>`` the index of the linear
layer in the MLP (0, 2, 4, ...).
"""

from __future__ import annotations

from typing import Any, ClassVar

from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey

from nip_core.scenario import keys as K
from nip_core.scenario.agents import AgentHead, AgentValueHead, SoloAgentHead
from nip_core.scenario.networks import RoundMlp

__all__ = ["RepresentationHead", "RepresentationSoloHead", "RepresentationValueHead"]


class RepresentationHead(AgentHead):
    """A head reading one body output, ``representation_key``.

    Class attributes
    ----------------
    representation_key : NestedKey
        The body output the head reads, ``(*batch, d_representation)``. Subclasses
        must set it.
    """

    representation_key: ClassVar[NestedKey | None] = None

    def __init__(
        self, hyper_params: Any, settings: Any, agent_name: str, protocol_handler: Any
    ):
        if type(self).representation_key is None:
            raise TypeError(
                f"{type(self).__name__} must set the class attribute "
                "representation_key (the body output it reads)"
            )
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            agent_name=agent_name,
            protocol_handler=protocol_handler,
        )

    @property
    def agent_level_in_keys(self) -> tuple[NestedKey, ...]:  # type: ignore[override]
        return (self.representation_key,)

    @property
    def d_representation(self) -> int:
        """Width of the representation (``hyper_params.d_representation``)."""
        return int(self.hyper_params.d_representation)

    @property
    def concurrent_safe(self) -> bool:
        """``True`` when the head's ``forward`` is the core's own (an MLP: no
        random numbers, nothing shared), so it may run in its body's tasks on
        ``run.agent_threads`` threads; a subclass that overrides ``forward``
        runs on the main thread unless it says otherwise."""
        return type(self).forward in _OWN_FORWARDS


class RepresentationValueHead(RepresentationHead, AgentValueHead):
    """An MLP on the representation (and the round): ``value`` ``(*batch,)``.

    The MLP has ``num_value_layers`` linear layers of width ``d_value``; with
    ``include_round_in_value`` the round's one-hot encoding is appended to its input
    and ``round`` is read from the environment.
    """

    def __init__(
        self, hyper_params: Any, settings: Any, agent_name: str, protocol_handler: Any
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            agent_name=agent_name,
            protocol_handler=protocol_handler,
        )
        params = self.agent_params
        self.value_mlp = RoundMlp(
            self.d_representation,
            params.d_value,
            1,
            params.num_value_layers,
            params.activation_function,
            num_rounds=self.round_one_hot_size
            if params.include_round_in_value
            else None,
        ).to(self._default_device)
        self.init_weights()

    @property
    def env_level_in_keys(self) -> tuple[NestedKey, ...]:  # type: ignore[override]
        return (K.ROUND,) if self.value_mlp.num_rounds is not None else ()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        value = self.value_mlp(
            tensordict.get(self.representation_key), tensordict.get(K.ROUND, None)
        ).squeeze(-1)
        return TensorDict({K.VALUE: value}, batch_size=tensordict.batch_size)


class RepresentationSoloHead(RepresentationHead, SoloAgentHead):
    """Two logits (label 0, label 1) from the representation: ``solo_logits``
    ``(*batch, 2)``, for supervised training of an agent alone (``solo_agent``,
    pre-training).

    The MLP has ``num_decider_layers`` linear layers of width ``d_decider``; it
    never sees the round.
    """

    def __init__(
        self, hyper_params: Any, settings: Any, agent_name: str, protocol_handler: Any
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            agent_name=agent_name,
            protocol_handler=protocol_handler,
        )
        params = self.agent_params
        self.decider = RoundMlp(
            self.d_representation,
            params.d_decider,
            2,
            params.num_decider_layers,
            params.activation_function,
        ).to(self._default_device)
        self.init_weights()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        logits = self.decider(tensordict.get(self.representation_key))
        return TensorDict(
            {key: logits for key in self.agent_level_out_keys},
            batch_size=tensordict.batch_size,
        )


_OWN_FORWARDS = (RepresentationValueHead.forward, RepresentationSoloHead.forward)
"""The forward passes :attr:`RepresentationHead.concurrent_safe` vouches for."""
