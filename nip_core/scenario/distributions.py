"""The action distribution of the combined policy, with turn masks.

Each step every agent picks, per channel and message position, one message (a
categorical over the ``N`` messages of the flattened message space) and one decision
(reject, accept, continue). Most of these choices have no effect: an agent speaks only
on the channels it is active on this round, and only a verifier's decision, on a round
it may decide in, counts. :class:`NipActionDistribution` therefore counts, in
:meth:`~NipActionDistribution.log_prob` and :meth:`~NipActionDistribution.entropy`,

- message choices only where ``("agents", "active_mask")`` is true (per agent and
  channel, every position of that channel);
- decisions only where ``("agents", "decision_mask")`` is true;

so gradients and entropy bonuses never come from actions that did not happen.

The public API, for trainers and losses:

- :meth:`NipActionDistribution.log_prob` of stored actions: the packed action
  (``("agents", "action")``), a TensorDict holding the actions, or the action
  tensors; shape ``(*batch, A)`` (one log-probability per agent: the sum over the
  choices that happen);
- :meth:`~NipActionDistribution.entropy` ``(*batch, A)``, and its parts
  :meth:`~NipActionDistribution.message_entropy` and
  :meth:`~NipActionDistribution.decision_entropy`;
- :meth:`~NipActionDistribution.kl_divergence` ``(*batch, A)``, also registered
  with :func:`torch.distributions.kl_divergence`;
- :meth:`~NipActionDistribution.counted_message_mask` and
  :meth:`~NipActionDistribution.counted_decision_mask`, which say which choices
  count, to weigh per-choice quantities of your own.

TorchRL's losses (``ClipPPOLoss``, ``KLPENPPOLoss``, ``A2CLoss``, ``ReinforceLoss``)
work with the actor unchanged: it samples the packed action ``("agents", "action")``
first (TorchRL's default action key for a single-log-prob actor) and writes the
unpacked actions the environment reads beside it; set the loss's
``sample_log_prob`` key to ``("agents", "sample_log_prob")`` and its value, reward,
done and terminated keys to the ``"agents"`` ones
(:func:`torchrl_loss_keys` has them all).
Messages the scenario forbids (``("agents", "valid_message_mask")`` false, e.g.
padding nodes) get logit ``-inf`` and are never sampled; decisions the protocol rules
out (``decision_restriction``: 1 = only continue, 2 = only accept or reject) likewise.

:func:`build_policy_actor` wraps a module producing the logits (a combined body
followed by a :class:`~nip_core.scenario.agents.CombinedPolicyHead`) into a TorchRL
:class:`~torchrl.modules.ProbabilisticActor` with the right keys.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import InteractionType, TensorDictModuleBase
from torch.distributions import Categorical, Distribution, constraints, register_kl

from nip_core.scenario import keys as K

ACTION_KEY = (K.AGENTS, K.ACTION)
MESSAGE_ACTION_KEY = (K.AGENTS, K.MESSAGE_SELECTED)
DECISION_ACTION_KEY = (K.AGENTS, K.DECISION)
LINEAR_MESSAGE_ACTION_KEY = (K.AGENTS, K.LINEAR_MESSAGE_SELECTED)
LOG_PROB_KEY = (K.AGENTS, K.SAMPLE_LOG_PROB)


def action_keys(include_linear_message_space: bool = False) -> list[tuple[str, str]]:
    """The environment's action keys (what the unpacked actions are written to)."""
    keys = [MESSAGE_ACTION_KEY, DECISION_ACTION_KEY]
    if include_linear_message_space:
        keys.append(LINEAR_MESSAGE_ACTION_KEY)
    return keys


def actor_out_keys(
    include_linear_message_space: bool = False,
) -> list[tuple[str, str]]:
    """The actor's sample keys, in the order the distribution samples them: the
    packed action, then :func:`action_keys`."""
    return [ACTION_KEY, *action_keys(include_linear_message_space)]


def torchrl_loss_keys() -> dict[str, Any]:
    """The keys to give a TorchRL loss with ``loss.set_keys(**torchrl_loss_keys())``.

    The packed action, the per-agent log-probability, and the per-agent value,
    reward, done and terminated (``[*batch, agent, 1]`` when the loss runs).
    """
    return {
        "action": ACTION_KEY,
        "sample_log_prob": LOG_PROB_KEY,
        "value": (K.AGENTS, K.VALUE),
        "reward": (K.AGENTS, K.REWARD),
        "done": (K.AGENTS, K.DONE),
        "terminated": (K.AGENTS, K.TERMINATED),
    }


def pack_actions(
    message_selected: torch.Tensor,
    decision: torch.Tensor,
    linear_message_selected: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pack one step's actions into ``("agents", "action")``.

    Parameters
    ----------
    message_selected : torch.Tensor
        long ``(*batch, A, C, P)``.
    decision : torch.Tensor
        long ``(*batch, A)``.
    linear_message_selected : torch.Tensor | None
        long ``(*batch, A, C, P)``, with the linear message space.

    Returns
    -------
    torch.Tensor
        long ``(*batch, A, C*P + 1 [+ C*P])``.
    """
    parts = [message_selected.flatten(-2), decision.unsqueeze(-1)]
    if linear_message_selected is not None:
        parts.append(linear_message_selected.flatten(-2))
    return torch.cat([part.long() for part in parts], dim=-1)


def unpack_actions(
    action: torch.Tensor, num_channels: int, position_shape: int, linear: bool = False
) -> tuple[torch.Tensor, ...]:
    """Undo :func:`pack_actions`: ``(message_selected, decision[, linear])``.

    Parameters
    ----------
    action : torch.Tensor
        long ``(*batch, A, C*P + 1 [+ C*P])``.
    num_channels : int
        ``C``.
    position_shape : int
        ``P``, the message positions per channel (``message_size``).
    linear : bool
        Whether the linear messages are packed too.
    """
    width = num_channels * position_shape
    batch = action.shape[:-1]
    message = action[..., :width].reshape(*batch, num_channels, position_shape)
    out = [message, action[..., width]]
    if linear:
        out.append(
            action[..., width + 1 : 2 * width + 1].reshape(
                *batch, num_channels, position_shape
            )
        )
    return tuple(out)


def distribution_in_keys(
    include_linear_message_space: bool = False,
) -> dict[str, Any]:
    """Distribution keyword to TensorDict key (``ProbabilisticActor(in_keys=...)``)."""
    in_keys: dict[str, Any] = {
        "main_message_logits": (K.AGENTS, K.MAIN_MESSAGE_LOGITS),
        "decision_logits": (K.AGENTS, K.DECISION_LOGITS),
        "active_mask": (K.AGENTS, K.ACTIVE_MASK),
        "decision_mask": (K.AGENTS, K.DECISION_MASK),
        "valid_message_mask": (K.AGENTS, K.VALID_MESSAGE_MASK),
        "decision_restriction": K.DECISION_RESTRICTION,
    }
    if include_linear_message_space:
        in_keys["linear_message_logits"] = (K.AGENTS, K.LINEAR_MESSAGE_LOGITS)
    return in_keys


def counted_agents(
    active_mask: torch.Tensor, decision_mask: torch.Tensor
) -> torch.Tensor:
    """Where an agent's choices count at all: bool ``(*batch, A)``.

    True where the agent speaks on some channel (``active_mask`` ``(*batch, A, C)``)
    or its decision counts (``decision_mask`` ``(*batch, A)``). Elsewhere
    :class:`NipActionDistribution` gives the agent log-probability, entropy and
    KL divergence 0 whatever its logits, so a loss reading the policy only
    through the distribution needs no logits there.
    """
    return active_mask.to(torch.bool).any(dim=-1) | decision_mask.to(torch.bool)


def mask_message_logits(
    logits: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """The message logits the policy samples from: ``-inf`` where ``valid`` (the
    ``valid_message_mask``) is false."""
    if valid is None:
        return logits
    valid = valid.to(torch.bool)
    # A row with nothing valid (an inactive channel the scenario's rule leaves
    # empty) would make the softmax undefined; such rows never count, so any
    # choice will do.
    valid = valid | ~valid.any(dim=-1, keepdim=True)
    return logits.masked_fill(~valid, float("-inf"))


def mask_decision_logits(
    logits: torch.Tensor, restriction: torch.Tensor | None
) -> torch.Tensor:
    """The decision logits the policy samples from: ``-inf`` for the decisions
    ``restriction`` (the ``decision_restriction``: 1 = only continue, 2 = only
    accept or reject) rules out."""
    if restriction is None:
        return logits
    restriction = restriction.to(logits.device).long()
    while restriction.ndim < logits.ndim - 1:
        restriction = restriction.unsqueeze(-1)
    restriction = restriction.expand(logits.shape[:-1]).unsqueeze(-1)
    choice = torch.arange(logits.shape[-1], device=logits.device)
    continue_only = (restriction == 1) & (choice != 2)
    guess_only = (restriction == 2) & (choice == 2)
    return logits.masked_fill(continue_only | guess_only, float("-inf"))


class NipActionDistribution(Distribution):
    """Messages and decisions of every agent, counting only the actions that happen.

    Batch shape ``(*batch, A)``: one entry per agent. Samples are tuples
    ``(message_selected, decision[, linear_message_selected])`` with shapes
    ``(*sample, *batch, A, C, P)``, ``(*sample, *batch, A)`` and
    ``(*sample, *batch, A, C, P)``.

    Parameters
    ----------
    main_message_logits : torch.Tensor
        float ``(*batch, A, C, P, N)``.
    decision_logits : torch.Tensor
        float ``(*batch, A, 3)``.
    active_mask : torch.Tensor
        bool ``(*batch, A, C)``: which agents speak on which channel.
    decision_mask : torch.Tensor
        bool ``(*batch, A)``: whose decision counts.
    valid_message_mask : torch.Tensor | None
        bool ``(*batch, A, C, P, N)``: which messages may be sent.
    decision_restriction : torch.Tensor | None
        long ``(*batch,)``: 0 any decision, 1 only continue, 2 only accept/reject.
    linear_message_logits : torch.Tensor | None
        float ``(*batch, A, C, P, D)``, with the linear message space.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    has_rsample = False

    def __init__(
        self,
        main_message_logits: torch.Tensor,
        decision_logits: torch.Tensor,
        active_mask: torch.Tensor,
        decision_mask: torch.Tensor,
        valid_message_mask: torch.Tensor | None = None,
        decision_restriction: torch.Tensor | None = None,
        linear_message_logits: torch.Tensor | None = None,
        validate_args: bool | None = False,
    ):
        self.active_mask = active_mask.to(torch.bool)
        self.decision_mask = decision_mask.to(torch.bool)
        self.message_dist = Categorical(
            logits=mask_message_logits(main_message_logits, valid_message_mask)
        )
        self.decision_dist = Categorical(
            logits=mask_decision_logits(decision_logits, decision_restriction)
        )
        self.linear_message_dist = (
            Categorical(logits=linear_message_logits)
            if linear_message_logits is not None
            else None
        )
        super().__init__(
            batch_shape=decision_logits.shape[:-1], validate_args=validate_args
        )

    # --- masks ------------------------------------------------------------------------

    def counted_message_mask(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """Which message choices count: bool ``(*batch, A, C, P)`` (broadcast to the
        shape of ``like`` when given, e.g. ``(*sample, *batch, A, C, P)``)."""
        shape = self.message_dist.logits.shape[:-1] if like is None else like.shape
        return torch.broadcast_to(self.active_mask.unsqueeze(-1), shape)

    def counted_decision_mask(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """Which decisions count: bool ``(*batch, A)`` (broadcast like ``like``)."""
        if like is None:
            return self.decision_mask
        return torch.broadcast_to(self.decision_mask, like.shape)

    @staticmethod
    def only_counted(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``values`` where ``mask`` is true, 0 elsewhere (never ``0 * -inf``)."""
        # ``where`` rather than multiplication: an inactive -inf must not become NaN.
        return torch.where(mask, values, torch.zeros_like(values))

    def _per_agent(
        self,
        message_values: torch.Tensor,
        decision_values: torch.Tensor,
        linear_values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sum per-choice values over the choices that count: ``(..., A)``."""
        total = self.only_counted(
            message_values, self.counted_message_mask(message_values)
        ).sum(dim=(-1, -2))
        total = total + self.only_counted(
            decision_values, self.counted_decision_mask(decision_values)
        )
        if linear_values is not None:
            total = total + self.only_counted(
                linear_values, self.counted_message_mask(linear_values)
            ).sum(dim=(-1, -2))
        return total

    # --- sampling --------------------------------------------------------------------

    def sample(
        self, sample_shape: torch.Size = torch.Size()
    ) -> tuple[torch.Tensor, ...]:
        """``(action, message_selected, decision[, linear_message_selected])``: the
        packed action first (see :func:`pack_actions`), then its parts."""
        with torch.no_grad():
            out = [
                self.message_dist.sample(sample_shape),
                self.decision_dist.sample(sample_shape),
            ]
            if self.linear_message_dist is not None:
                out.append(self.linear_message_dist.sample(sample_shape))
        return (pack_actions(*out), *out)

    @property
    def mode(self) -> tuple[torch.Tensor, ...]:
        out = [self.message_dist.mode, self.decision_dist.mode]
        if self.linear_message_dist is not None:
            out.append(self.linear_message_dist.mode)
        return (pack_actions(*out), *out)

    @property
    def deterministic_sample(self) -> tuple[torch.Tensor, ...]:
        return self.mode

    # --- log-probability and entropy --------------------------------------------------

    @property
    def packed_width(self) -> int:
        """The last dimension of the packed action: ``C*P + 1 [+ C*P]``."""
        channels, positions = self.message_dist.logits.shape[-3:-1]
        width = channels * positions
        return width + 1 + (width if self.linear_message_dist is not None else 0)

    def sample_and_log_prob(
        self, sample_shape: torch.Size = torch.Size()
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """:meth:`sample` and the log-probability of the sample (TorchRL's actors
        call this)."""
        sample = self.sample(sample_shape)
        return sample, self.log_prob(*sample[1:])

    def log_prob(
        self,
        action: torch.Tensor | TensorDictBase,
        *actions: torch.Tensor,
    ) -> torch.Tensor:
        """Log-probability of stored actions, counting only the choices that happen.

        Takes the packed action ``("agents", "action")`` (what TorchRL losses pass;
        any unpacked copies given after it, as in a :meth:`sample` tuple, are
        ignored), a TensorDict holding the actions (``("agents",
        "message_selected")``, ``("agents", "decision")``, and ``("agents",
        "linear_message_selected")`` with the linear message space), or the action
        tensors ``(message_selected, decision[, linear_message_selected])``.

        Returns
        -------
        torch.Tensor
            float ``(*sample, *batch, A)``: per agent, the sum of the log-probabilities
            of its messages on active channels and of its decision where it counts.
        """
        message_selected = action
        decision = actions[0] if actions else None
        linear_message_selected = actions[1] if len(actions) > 1 else None
        if isinstance(action, TensorDictBase):
            message_selected = action.get(MESSAGE_ACTION_KEY)
            decision = action.get(DECISION_ACTION_KEY)
            if self.linear_message_dist is not None:
                linear_message_selected = action.get(LINEAR_MESSAGE_ACTION_KEY)
        elif action.shape[-1] == self.packed_width:
            # a message tensor ends in P, never in C*P + 1 (+ C*P)
            message_shape = self.message_dist.logits.shape
            message_selected, decision, *linear = unpack_actions(
                action,
                message_shape[-3],
                message_shape[-2],
                linear=self.linear_message_dist is not None,
            )
            linear_message_selected = linear[0] if linear else None
        if decision is None:
            raise TypeError(
                "NipActionDistribution.log_prob takes the packed action "
                "('agents', 'action'), a TensorDict of actions, or the message and "
                "the decision tensors; it got only a message tensor"
            )
        if self.linear_message_dist is not None and linear_message_selected is None:
            raise TypeError(
                "NipActionDistribution.log_prob needs the linear message too"
            )
        linear_lp = (
            None
            if self.linear_message_dist is None
            else self.linear_message_dist.log_prob(linear_message_selected.long())
        )
        return self._per_agent(
            self.message_dist.log_prob(message_selected.long()),
            self.decision_dist.log_prob(decision.long()),
            linear_lp,
        )

    def entropy(self) -> torch.Tensor:
        """Entropy of the choices that happen: float ``(*batch, A)``."""
        linear = (
            None
            if self.linear_message_dist is None
            else self.linear_message_dist.entropy()
        )
        return self._per_agent(
            self.message_dist.entropy(), self.decision_dist.entropy(), linear
        )

    def message_entropy(self) -> torch.Tensor:
        """Entropy of the message choices on active channels: ``(*batch, A)``."""
        entropy = self.message_dist.entropy()
        return self.only_counted(entropy, self.counted_message_mask(entropy)).sum(
            dim=(-1, -2)
        )

    def decision_entropy(self) -> torch.Tensor:
        """Entropy of the decisions that count: ``(*batch, A)``."""
        return self.only_counted(self.decision_dist.entropy(), self.decision_mask)

    def kl_divergence(self, other: NipActionDistribution) -> torch.Tensor:
        """``KL(self || other)`` per agent, ``(*batch, A)``, over the choices that
        happen.

        Both distributions describe the same states, so this one's masks say which
        choices count. Messages masked out in both (logit ``-inf``) contribute
        nothing. ``torch.distributions.kl_divergence(p, q)`` calls this.
        """
        from torch.distributions import kl_divergence

        linear = None
        if (
            self.linear_message_dist is not None
            and other.linear_message_dist is not None
        ):
            linear = kl_divergence(self.linear_message_dist, other.linear_message_dist)
        return self._per_agent(
            kl_divergence(self.message_dist, other.message_dist),
            kl_divergence(self.decision_dist, other.decision_dist),
            linear,
        )


@register_kl(NipActionDistribution, NipActionDistribution)
def _kl_nip_action_distributions(
    p: NipActionDistribution, q: NipActionDistribution
) -> torch.Tensor:
    return p.kl_divergence(q)


def build_policy_actor(
    policy_module: TensorDictModuleBase,
    *,
    include_linear_message_space: bool = False,
    spec: Any = None,
    default_interaction_type: InteractionType = InteractionType.RANDOM,
):
    """Wrap a logits module into an actor sampling :class:`NipActionDistribution`.

    Parameters
    ----------
    policy_module : TensorDictModuleBase
        Writes ``("agents", "main_message_logits")`` and ``("agents",
        "decision_logits")``: typically ``TensorDictSequential(combined_body,
        combined_policy_head)``.
    include_linear_message_space : bool
        Whether the linear message space is on (``hyper_params.
        include_linear_message_space``).
    spec : TensorSpec | None
        The environment's action spec, if the actor should carry it.
    default_interaction_type : InteractionType
        Random sampling by default.

    Returns
    -------
    nip_core.scenario.actor.NipActor
        A :class:`~torchrl.modules.ProbabilisticActor` (that finds its
        distribution module once). Writes the packed action ``("agents",
        "action")``, the actions the environment reads (:func:`action_keys`),
        and their log-probability ``("agents", "sample_log_prob")`` ``(*batch,
        A)``. For a TorchRL loss, ``loss.set_keys(**torchrl_loss_keys())``.
    """
    from nip_core.scenario.actor import NipActor

    return NipActor(
        module=policy_module,
        in_keys=distribution_in_keys(include_linear_message_space),
        out_keys=actor_out_keys(include_linear_message_space),
        spec=spec,
        distribution_class=NipActionDistribution,
        return_log_prob=True,
        log_prob_keys=[LOG_PROB_KEY],
        default_interaction_type=default_interaction_type,
    )
