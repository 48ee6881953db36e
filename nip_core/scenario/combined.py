"""Combined parts: one kind of part gathered across every agent, stacked along an
agent dimension (see :mod:`nip_core.scenario.agents`)."""

from __future__ import annotations

import time
import weakref
from abc import ABC
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch
from tensordict import (
    NonTensorData,
    NonTensorStack,
    TensorDict,
    TensorDictBase,
    is_tensor_collection,
)
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torch import nn

from nip_core.scenario import keys as K
from nip_core.scenario.concurrency import (
    active_runner,
    backward_allowed,
    join_parts,
    prefetched_for,
    store_prefetched,
    take_prefetched,
    unchanged,
    versions_of,
)
from nip_core.scenario.distributions import counted_agents
from nip_core.scenario.parts import (
    AgentBody,
    AgentPart,
    AgentPolicyHead,
    AgentValueHead,
    SoloAgentHead,
    TensorDictAgentPartMixin,
)

if TYPE_CHECKING:
    from nip_core.protocols import ProtocolHandler
    from nip_core.scenario.agents import Agent

# --------------------------------------------------------------------------------------
# Rows whose outputs are read
# --------------------------------------------------------------------------------------

_counting_rows: ContextVar[bool] = ContextVar("nip_counted_rows_only", default=False)


@contextmanager
def counted_rows_only() -> Iterator[None]:
    """Within: the policy's parts compute only the rows where the agent's choices
    count.

    An agent's message logits count only on the rounds it speaks, its decision
    logits only where its decision counts (:func:`~nip_core.scenario.distributions.
    counted_agents`); everywhere else :class:`~nip_core.scenario.distributions.
    NipActionDistribution` gives it log-probability, entropy and KL divergence 0
    whatever the logits are. A loss that reads the policy through that
    distribution alone (the built-in tensor losses say so with
    ``reads_counted_choices_only``) therefore needs no logits on the other rows,
    and the tensor trainers enter this around such a loss's forward pass. Inside,
    on a one-dimensional batch:

    - the combined policy head runs each agent's head part on the rows where that
      agent's choices count, and the combined body chained to it
      (:meth:`CombinedTensorDictAgentPart.chain`) runs each agent's body part on
      the same rows;
    - their outputs on the other rows are zeros (no gradient flows there).

    Only parts that say :attr:`~nip_core.scenario.parts.TensorDictAgentPartMixin.
    rows_independent` are run on fewer rows; the outputs on the counted rows are
    then those of a run on every row, to float tolerance (smaller matrix products
    may round differently). Collection, tests and value estimation run without
    it, on every row.
    """
    token = _counting_rows.set(True)
    try:
        yield
    finally:
        _counting_rows.reset(token)


def counting_rows() -> bool:
    """Whether :func:`counted_rows_only` is in force."""
    return _counting_rows.get()


def _output_leaf(cls: type) -> bool:
    """Leaves of a part's outputs: tensors and non-tensor values."""
    return not is_tensor_collection(cls) or issubclass(
        cls, NonTensorData | NonTensorStack
    )


def _pad_rows(out: TensorDictBase, rows: torch.Tensor, size: int) -> TensorDict:
    """``out``, computed on the rows ``rows`` of a batch of ``size``, as outputs
    on the whole batch: zeros on the other rows. A non-tensor output keeps its
    value when it is one for the whole batch (``NonTensorData``), and is ``None``
    on the other rows when it is one per row (``NonTensorStack``)."""
    padded = TensorDict({}, batch_size=(size, *out.batch_size[1:]), device=out.device)
    for key, value in out.items(True, True, is_leaf=_output_leaf):
        if isinstance(value, torch.Tensor):
            full = value.new_zeros((size, *value.shape[1:]))
            padded.set(key, full.index_copy(0, rows, value))
        elif isinstance(value, NonTensorStack):
            per_row: list[Any] = [None] * size
            for row, item in zip(rows.tolist(), value.tolist(), strict=True):
                per_row[row] = item
            padded.set(key, NonTensorStack(*(NonTensorData(x) for x in per_row)))
        else:
            padded.set_non_tensor(key, value.data)
    return padded


def _run_on_rows(part: Any, view: TensorDict, rows: torch.Tensor | None) -> Any:
    """``part(view)``, computed on ``rows`` only when given (:func:`_pad_rows`)."""
    if rows is None:
        return part(view)
    return _pad_rows(part(view[rows]), rows, view.batch_size[0])


# --------------------------------------------------------------------------------------
# Combined parts
# --------------------------------------------------------------------------------------


class CombinedAgentPart(ABC):  # noqa: B024 - a base to subclass
    """Base of modules that gather one kind of part across every agent.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters.
    settings : ExperimentSettings
        The run's settings.
    protocol_handler : ProtocolHandler
        The interaction protocol; its ``agent_names`` fix the agent order.
    parts : Mapping[str, AgentPart]
        One part per agent of the protocol.
    """

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        parts: Mapping[str, AgentPart],
    ):
        super().__init__()
        self.hyper_params = hyper_params
        self.settings = settings
        self.protocol_handler = protocol_handler
        self.agent_names: list[str] = list(protocol_handler.agent_names)
        if set(parts) != set(self.agent_names):
            raise ValueError(
                f"{type(self).__name__} needs one part per agent of the protocol "
                f"({', '.join(self.agent_names)}), got {', '.join(parts) or 'none'}"
            )
        self._part_order = list(self.agent_names)

    @property
    def num_agents(self) -> int:
        return len(self.agent_names)


def agent_view(
    tensordict: TensorDictBase,
    part: TensorDictAgentPartMixin,
    agent_index: int,
    visible_channels: torch.Tensor | None,
    agent_outputs: TensorDictBase | None = None,
    rows: torch.Tensor | None = None,
) -> TensorDict:
    """The TensorDict one agent's part reads (see the module docstring).

    Parameters
    ----------
    tensordict : TensorDictBase
        The environment TensorDict (batch ``(*batch,)``).
    part : TensorDictAgentPartMixin
        The part; its ``env_level_in_keys`` and ``agent_level_in_keys`` are read.
    agent_index : int
        The agent's index along the agent dimension.
    visible_channels : torch.Tensor | None
        bool ``(C,)``: the channels the agent sees; ``None`` leaves channels alone.
    agent_outputs : TensorDictBase | None
        This agent's outputs of the part before (a chained head's body, see
        :meth:`CombinedTensorDictAgentPart.chain`): agent-level keys found there
        are read from it instead of from ``tensordict``'s ``("agents", key)``.
    rows : torch.Tensor | None
        long ``(k,)``: only these rows of a one-dimensional batch (the values
        read from ``agent_outputs`` are taken to be these rows' already).
    """
    batch_dims = tensordict.batch_dims
    batch_size = tensordict.batch_size if rows is None else (rows.numel(),)
    view = TensorDict({}, batch_size=batch_size, device=tensordict.device)
    for key in part.env_level_in_keys:
        value = tensordict.get(key)
        name = key if isinstance(key, str) else None
        if (
            visible_channels is not None
            and name in part.channel_dims
            and isinstance(value, torch.Tensor)
        ):
            dim = batch_dims + part.channel_dims[name]
            shape = [1] * value.ndim
            shape[dim] = value.shape[dim]
            mask = visible_channels.to(value.device).reshape(shape)
            value = (
                value * mask.to(value.dtype)
                if value.is_floating_point()
                else (torch.where(mask, value, torch.zeros_like(value)))
            )
        if rows is not None:
            value = value[rows]
        view.set(key, value)
    for key in part.agent_level_in_keys:
        value = None if agent_outputs is None else agent_outputs.get(key, None)
        if value is None:
            full_key = (K.AGENTS, *((key,) if isinstance(key, str) else key))
            value = tensordict.get(full_key)
            if isinstance(value, torch.Tensor):
                value = value.select(batch_dims, agent_index)
            else:
                value = value[(slice(None),) * batch_dims + (agent_index,)]
            if rows is not None:
                value = value[rows]
        if view.get(key, None) is not None:
            raise KeyError(
                f"{type(part).__name__} reads {key!r} both at the environment level "
                f"and at the agent level; rename one of them"
            )
        view.set(key, value)
    return view


class CombinedTensorDictAgentPart(CombinedAgentPart, TensorDictModuleBase):
    """Runs one tensor part per agent and stacks the outputs along the agent dimension.

    The in-keys are the parts' environment-level keys and ``("agents", key)`` for
    their agent-level keys; the out-keys are ``("agents", key)`` for the parts'
    out-keys, which must be the same for every agent.

    With :attr:`run_concurrently` (bodies: the costly parts) the parts run on the
    threads of ``run.agent_threads`` when they allow it
    (:mod:`nip_core.scenario.concurrency`).
    """

    run_concurrently: ClassVar[bool] = False

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        parts: Mapping[str, TensorDictAgentPartMixin],
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            protocol_handler=protocol_handler,
            parts=parts,
        )
        out_keys = {name: tuple(parts[name].out_keys) for name in self.agent_names}
        first = out_keys[self.agent_names[0]]
        for name, keys in out_keys.items():
            if set(keys) != set(first):
                raise ValueError(
                    f"every agent's part must produce the same keys to be stacked: "
                    f"{self.agent_names[0]!r} produces {list(first)}, {name!r} "
                    f"produces {list(keys)}"
                )
        self._part_out_keys = list(first)
        self.parts = nn.ModuleDict({name: parts[name] for name in self.agent_names})

    @property
    def in_keys(self) -> list[NestedKey]:  # type: ignore[override]
        keys: list[NestedKey] = []
        for part in self.parts.values():
            for key in part.env_level_in_keys:
                key = unravel_key(key)
                if key not in keys:
                    keys.append(key)
            for key in part.agent_level_in_keys:
                key = unravel_key((K.AGENTS, key))
                if key not in keys:
                    keys.append(key)
        return keys

    @property
    def out_keys(self) -> list[NestedKey]:  # type: ignore[override]
        return [unravel_key((K.AGENTS, key)) for key in self._part_out_keys]

    def visibility_mask(self, agent_index: int) -> torch.Tensor:
        """bool ``(C,)``: the channels agent ``agent_index`` sees."""
        return self.protocol_handler.agent_channel_visibility_mask[agent_index]

    def _stack_output(
        self, key: NestedKey, values: list[torch.Tensor], dim: int
    ) -> torch.Tensor:
        """Stack one out-key's per-agent values along the agent dimension."""
        return torch.stack(values, dim=dim)

    def _view_masks(self) -> list[torch.Tensor | None]:
        """Per agent, its visibility mask, or ``None`` when it sees every channel.

        Computed once: the protocol's visibility never changes, and an agent that
        sees everything needs no masking (no copy of its inputs, no device sync).
        """
        masks = self.__dict__.get("_view_masks_cache")
        if masks is None:
            masks = []
            for index in range(self.num_agents):
                mask = self.visibility_mask(index)
                masks.append(None if bool(mask.all()) else mask)
            self.__dict__["_view_masks_cache"] = masks
        return masks

    def pair_with(self, other: CombinedTensorDictAgentPart) -> None:
        """Let ``other``'s parts run in the same threaded section as this one's.

        The trainers pair the combined policy body with the combined value body
        (separate actor and critic bodies): the loss runs the actor, then the
        critic, on the same minibatch. Inside
        :func:`~nip_core.scenario.concurrency.concurrent_backward`, whichever runs
        first runs the other's parts too, on the same threads, and hands it their
        outputs; it uses them if its inputs are the very same tensors, unchanged
        (else it computes its own). Running every body in one section balances
        the threads (a large policy body beside a small value body), and so does
        their backward pass, which runs in one section too.
        """
        for a, b in ((self, other), (other, self)):
            partners = a.__dict__.setdefault("_partners", [])
            if b not in partners:
                partners.append(b)

    def chain(self, head: CombinedTensorDictAgentPart) -> None:
        """Let ``head``, which reads this combined part's outputs, run in the
        same threaded section, each agent's head part right after its own part
        in one task.

        The trainers chain a combined body to the head that reads it when it
        feeds that head alone (separate actor and critic bodies, or a single
        body without a critic): the heads are small, and on the
        single-threaded path between the sections their forward and backward
        passes took about a tenth of a minibatch at graph isomorphism's
        ``ppo_gi`` settings. Inside
        :func:`~nip_core.scenario.concurrency.concurrent_backward`, when this
        part's parts run on the threads (and the head's parts may, see
        :meth:`_threadable`, sharing no parameter with anything else in the
        section), each task runs the agent's part, then the agent's head part on
        its outputs, and the backward pass of both in one task; the head's
        outputs are kept for ``head`` (it uses them if what it reads is what the
        task read: this part's stacked outputs, the same environment tensors
        unchanged, its parameters unchanged, the same training and grad modes),
        else it computes its own. The head's agent-level
        inputs must all be outputs of this part.
        """
        if list(head.agent_names) != list(self.agent_names):
            raise ValueError(
                f"a chained head must have the same agents in the same order: "
                f"{list(self.agent_names)} against {list(head.agent_names)}"
            )
        self.__dict__["_chained_head"] = head

    def _chained(self) -> CombinedTensorDictAgentPart | None:
        """The head :meth:`chain` gave, if its parts may run in this part's
        tasks now."""
        head: CombinedTensorDictAgentPart | None = self.__dict__.get("_chained_head")
        if head is None:
            return None
        outputs = {unravel_key(key) for key in self._part_out_keys}
        readable = all(
            unravel_key(key) in outputs
            for part in head._part_list()
            for key in part.agent_level_in_keys
        )
        if not readable or not head._threadable(alone=False):
            return None
        return head

    def rows_read(self, tensordict: TensorDictBase) -> list[torch.Tensor | None] | None:
        """Per agent, the rows of ``tensordict``'s batch whose outputs are read
        (long indices, ``None`` for every row), or ``None`` when every agent's
        every row is.

        Every row, except under :func:`counted_rows_only`: there a part chained to
        a head (:meth:`chain`) computes only the rows the head reads, when its
        parts are all :attr:`~nip_core.scenario.parts.TensorDictAgentPartMixin.
        rows_independent`; the combined policy head reads the rows where each
        agent's choices count (:meth:`CombinedPolicyHead.rows_read`).
        """
        if not counting_rows():
            return None
        head = self.__dict__.get("_chained_head")
        if head is None or not self._rows_independent():
            return None
        return head.rows_read(tensordict)

    def _rows_independent(self) -> bool:
        return all(part.rows_independent for part in self._part_list())

    def _env_input_tensors(self, tensordict: TensorDictBase) -> list[Any]:
        """The environment-level tensors this combined part reads (``None`` where
        absent)."""
        keys: list[NestedKey] = []
        for part in self._part_list():
            for key in part.env_level_in_keys:
                key = unravel_key(key)
                if key not in keys:
                    keys.append(key)
        return [tensordict.get(key, None) for key in keys]

    def _state(self) -> list[Any]:
        """What decides the parts' outputs besides their inputs: their parameters
        (whose version counters an optimizer step moves), the training mode, the
        grad mode and whether only the counted rows are computed
        (:func:`counted_rows_only`: outputs computed there hold zeros on the
        other rows). Outputs computed ahead are checked against these too."""
        parameters = self.__dict__.get("_parameter_list")
        if parameters is None:
            parameters = list(self.parameters())
            self.__dict__["_parameter_list"] = parameters
        return [*parameters, self.training, torch.is_grad_enabled(), counting_rows()]

    def _part_list(self) -> list[Any]:
        return [self.parts[name] for name in self.agent_names]

    def _views(self, tensordict: TensorDictBase) -> list[TensorDict]:
        masks = self._view_masks()
        return [
            agent_view(tensordict, self.parts[name], index, masks[index])
            for index, name in enumerate(self.agent_names)
        ]

    def _input_tensors(self, tensordict: TensorDictBase) -> list[Any]:
        """The tensors this combined part reads (``None`` where absent): what a
        partner's prefetched outputs are checked against."""
        return [tensordict.get(key, None) for key in self.in_keys]

    def _disjoint_from(self, *others: CombinedTensorDictAgentPart) -> bool:
        """Whether no parameter belongs to two of this combined part's parts (and
        ``others``', if given). Computed once per set of others: parameters are
        fixed objects, and this runs at every forward pass."""
        cache = self.__dict__.setdefault("_disjoint_cache", {})
        key = tuple(id(other) for other in others)
        if key not in cache:
            parts = self._part_list()
            for other in others:
                parts += other._part_list()
            cache[key] = _disjoint_parameters(parts)
        return cache[key]

    def _threadable(self, alone: bool = True) -> bool:
        """Whether the parts may run on threads now: two or more (unless not
        ``alone``: a chained head's parts run in their body's tasks), none
        sharing a parameter with another (their gradients would race), every one
        :attr:`~nip_core.scenario.parts.TensorDictAgentPartMixin.concurrent_safe`
        and on the CPU, autocast off."""
        if alone and not self.run_concurrently:
            return False
        if torch.is_autocast_enabled("cpu"):
            return False
        parts = self._part_list()
        if (alone and len(parts) < 2) or not self._disjoint_from():
            return False
        return all(p.concurrent_safe and p.device.type == "cpu" for p in parts)

    def _run_parts(
        self, views: list[TensorDict], tensordict: TensorDictBase
    ) -> tuple[list[TensorDictBase], _Chained | None]:
        """Each agent's part on its view: on the active runner's threads when this
        combined part may use them (:mod:`nip_core.scenario.concurrency`), with
        its partners' parts (:meth:`pair_with`) and the chained heads' parts
        (:meth:`chain`) when their backward passes can be joined; else one after
        the other.

        Returns the outputs, and the chained head's outputs (to be kept for it
        once the outputs are stacked) or ``None``.
        """
        parts = self._part_list()
        runner = active_runner() if self.run_concurrently else None
        if runner is None or not self._threadable():
            rows = self.rows_read(tensordict) or [None] * len(parts)
            return [
                _run_on_rows(part, view, r)
                for part, view, r in zip(parts, views, rows, strict=True)
            ], None
        joining = torch.is_grad_enabled() and backward_allowed()
        members: list[tuple[CombinedTensorDictAgentPart, list[Any]]] = [(self, views)]
        if joining:
            for partner in self.__dict__.get("_partners", []):
                if (
                    partner._threadable()
                    and all(t is not None for t in partner._input_tensors(tensordict))
                    and self._disjoint_from(partner)
                ):
                    members.append((partner, partner._views(tensordict)))
        if joining and any(
            isinstance(value, torch.Tensor) and value.requires_grad
            for _, member_views in members
            for view in member_views
            for value in view.values(True, True)
        ):
            # an input carries gradients further up: each part's backward pass
            # would run that shared graph, so keep the graph connected
            joining = False
            members = members[:1]
        # per member, its chained head, with what the head reads from the
        # environment (the same check as a partner's inputs, when it is kept)
        heads: list[tuple[CombinedTensorDictAgentPart, list[Any]] | None] = []
        for member, _ in members:
            head = member._chained() if joining else None
            if head is not None:
                env_inputs = head._env_input_tensors(tensordict)
                if any(
                    t is None or (isinstance(t, torch.Tensor) and t.requires_grad)
                    for t in env_inputs
                ):
                    head = None
                else:
                    env_inputs += head._state()
                    head._view_masks()  # filled here, not on the threads
            heads.append(None if head is None else (head, env_inputs))
        chained_heads = [entry[0] for entry in heads if entry is not None]
        if chained_heads and not self._disjoint_from(
            *(member for member, _ in members[1:]), *chained_heads
        ):
            heads = [None] * len(members)

        # per member and agent, the rows computed (counted_rows_only): the chained
        # head's part runs on the same rows as its body's
        member_rows = [
            member.rows_read(tensordict) or [None] * member.num_agents
            for member, _ in members
        ]
        size = tensordict.batch_size[0] if tensordict.batch_dims else 0

        grad = torch.is_grad_enabled()

        def task(m: int, i: int, part: Any) -> Any:
            start = time.perf_counter()
            try:
                return run_task(m, i, part)
            finally:
                # this task's time per row, for the order of the next tasks
                rows = member_rows[m][i]
                count = max(1, size if rows is None else rows.numel())
                seconds = (time.perf_counter() - start) / count
                timings = members[m][0].__dict__.setdefault("_task_seconds", {})
                old = timings.get((i, grad))
                timings[(i, grad)] = seconds if old is None else (old + seconds) / 2

        def run_task(m: int, i: int, part: Any) -> Any:
            rows = member_rows[m][i]
            view = members[m][1][i]
            out = part(view if rows is None else view[rows])
            entry = heads[m]
            if entry is None:
                return out if rows is None else _pad_rows(out, rows, size)
            head = entry[0]
            head_view = agent_view(
                tensordict,
                head.parts[head.agent_names[i]],
                i,
                head._view_masks()[i],
                agent_outputs=out,
                rows=rows,
            )
            head_out = head.parts[head.agent_names[i]](head_view)
            if rows is None:
                return out, head_out
            return _pad_rows(out, rows, size), _pad_rows(head_out, rows, size)

        tasks = [
            (m, i, member._part_list()[i])
            for m, (member, _) in enumerate(members)
            for i in range(member.num_agents)
        ]

        def measured(m: int, i: int, part: Any) -> float | None:
            seconds = members[m][0].__dict__.get("_task_seconds", {}).get((i, grad))
            if seconds is None:
                return None
            rows = member_rows[m][i]
            return seconds * max(1, size if rows is None else rows.numel())

        def cost(m: int, i: int, part: Any) -> int:
            entry = heads[m]
            extra = 0 if entry is None else _num_parameters(entry[0]._part_list()[i])
            return _num_parameters(part) + extra

        # costliest first, the threads then balance: by the time each task took
        # per row the last times (with the rows it has now), else by parameter
        # count. Which thread runs a part changes nothing in its results.
        estimates = [measured(*t) for t in tasks]
        if all(e is not None for e in estimates):
            order = sorted(range(len(tasks)), key=lambda k: -estimates[k])
            tasks = [tasks[k] for k in order]
        else:
            tasks.sort(key=lambda t: -cost(*t))
        results = runner.run(
            [
                (lambda m=m, i=i, part=part: task(m, i, part))  # type: ignore[misc]
                for m, i, part in tasks
            ]
        )
        outputs: list[list[Any]] = [[None] * member.num_agents for member, _ in members]
        head_outputs: list[list[Any]] = [
            [None] * member.num_agents for member, _ in members
        ]
        for (m, i, _), out in zip(tasks, results, strict=True):
            if heads[m] is not None:
                out, head_outputs[m][i] = out
            outputs[m][i] = out
        if joining:
            # per task, its part's outputs then its head part's, that require
            # gradients
            groups = [
                [
                    (out, key, out.get(key))
                    for out, keys in (
                        (outputs[m][i], members[m][0]._part_out_keys),
                        (
                            head_outputs[m][i],
                            [] if heads[m] is None else heads[m][0]._part_out_keys,
                        ),
                    )
                    if out is not None
                    for key in keys
                    if isinstance(out.get(key, None), torch.Tensor)
                    and out.get(key).requires_grad
                ]
                # in the forward pass's order: the costliest first
                for m, i, _ in tasks
            ]
            joined = join_parts(runner, [[t for *_, t in group] for group in groups])
            for group, stand_ins in zip(groups, joined, strict=True):
                for (out, key, _), tensor in zip(group, stand_ins, strict=True):
                    out.set(key, tensor)
        chained = [
            None
            if entry is None
            else _Chained(
                entry[0],
                entry[1],
                versions_of(entry[1]),
                head_outputs[m],
            )
            for m, entry in enumerate(heads)
        ]
        if joining:
            for m, (member, _) in enumerate(members[1:], start=1):
                store_prefetched(
                    member,
                    member._input_tensors(tensordict) + member._state(),
                    (outputs[m], chained[m]),
                )
        return outputs[0], chained[0]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        batch_dims = tensordict.batch_dims
        prefetched = None
        if prefetched_for(self):  # the check's inputs are only gathered then
            prefetched = take_prefetched(
                self, self._input_tensors(tensordict) + self._state()
            )
        if prefetched is None:
            outputs, chained = self._run_parts(self._views(tensordict), tensordict)
        else:
            outputs, chained = prefetched
        stacked = {
            key: self._stack_output(
                key, [out.get(key) for out in outputs], dim=batch_dims
            )
            for key in self._part_out_keys
        }
        agents = tensordict.get(K.AGENTS, None)
        if agents is None:
            agents = TensorDict(
                {},
                batch_size=(*tensordict.batch_size, self.num_agents),
                device=tensordict.device,
            )
            tensordict.set(K.AGENTS, agents)
        for key, value in stacked.items():
            tensordict.set(
                (K.AGENTS, *((key,) if isinstance(key, str) else key)), value
            )
        head = None if chained is None else chained.head
        if head is not None and chained.unchanged(
            head._env_input_tensors(tensordict) + head._state()
        ):
            # the head's parts ran on these very outputs: keep theirs for it
            store_prefetched(
                head,
                head._input_tensors(tensordict) + head._state(),
                (chained.outputs, None),
            )
        return tensordict


class _Chained(NamedTuple):
    """A chained head's outputs, computed in its body's tasks (see
    :meth:`CombinedTensorDictAgentPart.chain`), with the environment tensors it
    read and its state (:meth:`CombinedTensorDictAgentPart._state`), and their
    version counters then."""

    head: CombinedTensorDictAgentPart
    env_inputs: list[Any]
    versions: list[Any]
    outputs: list[Any]

    def unchanged(self, env_inputs: list[Any]) -> bool:
        """Whether ``env_inputs`` (and state) are what the head read, unchanged."""
        return unchanged(self.env_inputs, self.versions, env_inputs)


class CombinedBody(CombinedTensorDictAgentPart):
    """Every agent's body, stacked: writes ``("agents", <body out key>)``.

    The bodies run on ``run.agent_threads`` threads when they allow it.
    """

    run_concurrently: ClassVar[bool] = True

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        bodies: Mapping[str, AgentBody],
    ):
        super().__init__(hyper_params, settings, protocol_handler, bodies)

    @property
    def bodies(self) -> dict[str, AgentBody]:
        return dict(self.parts.items())


class CombinedPolicyHead(CombinedTensorDictAgentPart):
    """Every agent's policy head, stacked: writes ``("agents", "main_message_logits")``
    ``(*batch, A, C, P, N)`` and ``("agents", "decision_logits")`` ``(*batch, A, 3)``.

    Turn it into an actor with
    :func:`nip_core.scenario.distributions.build_policy_actor`.
    """

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        policy_heads: Mapping[str, AgentPolicyHead],
    ):
        super().__init__(hyper_params, settings, protocol_handler, policy_heads)

    def rows_read(self, tensordict: TensorDictBase) -> list[torch.Tensor | None] | None:
        """Under :func:`counted_rows_only`, on a one-dimensional batch holding
        ``("agents", "active_mask")`` and ``("agents", "decision_mask")``, when
        every head part is :attr:`~nip_core.scenario.parts.TensorDictAgentPartMixin.
        rows_independent`: per agent, the rows where its choices count
        (:func:`~nip_core.scenario.distributions.counted_agents`; ``None`` when
        they all do, one row when none does). Else ``None``: every row."""
        if (
            not counting_rows()
            or tensordict.batch_dims != 1
            or not self._rows_independent()
        ):
            return None
        active = tensordict.get((K.AGENTS, K.ACTIVE_MASK), None)
        decision = tensordict.get((K.AGENTS, K.DECISION_MASK), None)
        if active is None or decision is None:
            return None
        counted = counted_agents(active, decision)
        size = counted.shape[0]
        rows: list[torch.Tensor | None] = []
        for index, total in enumerate(counted.sum(0).tolist()):
            if total == size:
                rows.append(None)
            elif total == 0:
                # nothing counts: one row keeps the shapes (its outputs are unread)
                rows.append(torch.zeros(1, dtype=torch.long, device=counted.device))
            else:
                rows.append(counted[:, index].nonzero().squeeze(-1))
        return None if all(r is None for r in rows) else rows

    @property
    def policy_heads(self) -> dict[str, AgentPolicyHead]:
        return dict(self.parts.items())


class CombinedValueHead(CombinedTensorDictAgentPart):
    """Every agent's value head, stacked: writes ``("agents", "value")``
    ``(*batch, A, 1)`` (the trailing 1 matches the shape of ``("agents", "reward")``,
    as TorchRL's value estimators expect)."""

    def _stack_output(
        self, key: NestedKey, values: list[torch.Tensor], dim: int
    ) -> torch.Tensor:
        stacked = torch.stack(values, dim=dim)
        if key == K.VALUE:
            stacked = stacked.unsqueeze(-1)
        return stacked

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        value_heads: Mapping[str, AgentValueHead],
    ):
        super().__init__(hyper_params, settings, protocol_handler, value_heads)

    @property
    def value_heads(self) -> dict[str, AgentValueHead]:
        return dict(self.parts.items())


class CombinedSoloHead(CombinedTensorDictAgentPart):
    """Every agent's solo head, stacked: writes ``("agents", "solo_logits")``
    ``(*batch, A, 2)``."""

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        solo_heads: Mapping[str, SoloAgentHead],
    ):
        super().__init__(hyper_params, settings, protocol_handler, solo_heads)

    @property
    def solo_heads(self) -> dict[str, SoloAgentHead]:
        return dict(self.parts.items())


def combine_parts(
    agents: Mapping[str, Agent],
    role: str,
    hyper_params: Any,
    settings: Any,
    protocol_handler: ProtocolHandler,
) -> CombinedTensorDictAgentPart:
    """Combine one role's parts across agents (``"body"``, ``"policy_head"``, ...).

    ``"policy_body"`` and ``"value_body"`` give a :class:`CombinedBody` too.
    """
    classes: dict[str, type[CombinedTensorDictAgentPart]] = {
        "body": CombinedBody,
        "policy_body": CombinedBody,
        "value_body": CombinedBody,
        "policy_head": CombinedPolicyHead,
        "value_head": CombinedValueHead,
        "solo_head": CombinedSoloHead,
    }
    if role not in classes:
        raise ValueError(f"unknown part role {role!r}; roles: {', '.join(classes)}")
    parts = {}
    for name in protocol_handler.agent_names:
        part = getattr(agents[name], role)
        if part is None:
            raise ValueError(f"agent {name!r} has no {role}")
        parts[name] = part
    return classes[role](hyper_params, settings, protocol_handler, parts)


_PARAMETER_COUNTS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _num_parameters(part: Any) -> int:
    """How many parameters ``part`` has: the cost the threads take parts in order
    of. Counted once per part (walking a body's modules took about 0.25 ms, at
    every forward pass); a part whose modules change later keeps its first count,
    which orders the tasks only."""
    count = _PARAMETER_COUNTS.get(part)
    if count is None:
        count = sum(p.numel() for p in part.parameters())
        _PARAMETER_COUNTS[part] = count
    return count


def _disjoint_parameters(parts: list[Any]) -> bool:
    """Whether no parameter belongs to two of ``parts``."""
    seen: set[int] = set()
    for part in parts:
        ids = {id(p) for p in part.parameters()}
        if ids & seen:
            return False
        seen |= ids
    return True
