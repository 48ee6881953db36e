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
from torch.distributions import Categorical, Distribution, constraints

from nip_core.scenario import keys as K

MESSAGE_ACTION_KEY = (K.AGENTS, K.MESSAGE_SELECTED)
DECISION_ACTION_KEY = (K.AGENTS, K.DECISION)
LINEAR_MESSAGE_ACTION_KEY = (K.AGENTS, K.LINEAR_MESSAGE_SELECTED)
LOG_PROB_KEY = (K.AGENTS, K.SAMPLE_LOG_PROB)


def action_keys(include_linear_message_space: bool = False) -> list[tuple[str, str]]:
    """The actor's action keys, in the order the distribution samples them."""
    keys = [MESSAGE_ACTION_KEY, DECISION_ACTION_KEY]
    if include_linear_message_space:
        keys.append(LINEAR_MESSAGE_ACTION_KEY)
    return keys


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


def _mask_message_logits(
    logits: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    if valid is None:
        return logits
    valid = valid.to(torch.bool)
    # A row with nothing valid (an inactive channel the scenario's rule leaves
    # empty) would make the softmax undefined; such rows never count, so any
    # choice will do.
    valid = valid | ~valid.any(dim=-1, keepdim=True)
    return logits.masked_fill(~valid, float("-inf"))


def _mask_decision_logits(
    logits: torch.Tensor, restriction: torch.Tensor | None
) -> torch.Tensor:
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
            logits=_mask_message_logits(main_message_logits, valid_message_mask)
        )
        self.decision_dist = Categorical(
            logits=_mask_decision_logits(decision_logits, decision_restriction)
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

    def _position_mask(self, like: torch.Tensor) -> torch.Tensor:
        """The active mask broadcast to ``(..., A, C, P)`` like ``like``."""
        return torch.broadcast_to(self.active_mask.unsqueeze(-1), like.shape)

    def _masked_sum(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # ``where`` rather than multiplication: an inactive -inf must not become NaN.
        return torch.where(mask, values, torch.zeros_like(values))

    # --- sampling --------------------------------------------------------------------

    def sample(
        self, sample_shape: torch.Size = torch.Size()
    ) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            out = [
                self.message_dist.sample(sample_shape),
                self.decision_dist.sample(sample_shape),
            ]
            if self.linear_message_dist is not None:
                out.append(self.linear_message_dist.sample(sample_shape))
        return tuple(out)

    @property
    def mode(self) -> tuple[torch.Tensor, ...]:
        out = [self.message_dist.mode, self.decision_dist.mode]
        if self.linear_message_dist is not None:
            out.append(self.linear_message_dist.mode)
        return tuple(out)

    @property
    def deterministic_sample(self) -> tuple[torch.Tensor, ...]:
        return self.mode

    # --- log-probability and entropy --------------------------------------------------

    def log_prob(
        self,
        message_selected: torch.Tensor | TensorDictBase,
        decision: torch.Tensor | None = None,
        linear_message_selected: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Log-probability of the actions that happen: ``(*sample, *batch, A)``.

        Takes the action tensors, or one TensorDict holding them under
        ``("agents", "message_selected")``, ``("agents", "decision")`` (and
        ``("agents", "linear_message_selected")``), as TorchRL losses pass them.
        """
        if isinstance(message_selected, TensorDictBase):
            td = message_selected
            message_selected = td.get(MESSAGE_ACTION_KEY)
            decision = td.get(DECISION_ACTION_KEY)
            if self.linear_message_dist is not None:
                linear_message_selected = td.get(LINEAR_MESSAGE_ACTION_KEY)
        if decision is None:
            raise TypeError("NipActionDistribution.log_prob needs the decision too")
        message_lp = self.message_dist.log_prob(message_selected.long())
        position_mask = self._position_mask(message_lp)
        total = self._masked_sum(message_lp, position_mask).sum(dim=(-1, -2))
        decision_lp = self.decision_dist.log_prob(decision.long())
        total = total + self._masked_sum(
            decision_lp, torch.broadcast_to(self.decision_mask, decision_lp.shape)
        )
        if self.linear_message_dist is not None:
            if linear_message_selected is None:
                raise TypeError(
                    "NipActionDistribution.log_prob needs the linear message too"
                )
            linear_lp = self.linear_message_dist.log_prob(
                linear_message_selected.long()
            )
            total = total + self._masked_sum(
                linear_lp, self._position_mask(linear_lp)
            ).sum(dim=(-1, -2))
        return total

    def entropy(self) -> torch.Tensor:
        """Entropy of the actions that happen: ``(*batch, A)``."""
        message_entropy = self.message_dist.entropy()
        total = self._masked_sum(
            message_entropy, self._position_mask(message_entropy)
        ).sum(dim=(-1, -2))
        total = total + self._masked_sum(
            self.decision_dist.entropy(), self.decision_mask
        )
        if self.linear_message_dist is not None:
            linear_entropy = self.linear_message_dist.entropy()
            total = total + self._masked_sum(
                linear_entropy, self._position_mask(linear_entropy)
            ).sum(dim=(-1, -2))
        return total

    def message_entropy(self) -> torch.Tensor:
        """Entropy of the message choices on active channels: ``(*batch, A)``."""
        entropy = self.message_dist.entropy()
        return self._masked_sum(entropy, self._position_mask(entropy)).sum(dim=(-1, -2))

    def decision_entropy(self) -> torch.Tensor:
        """Entropy of the decisions that count: ``(*batch, A)``."""
        return self._masked_sum(self.decision_dist.entropy(), self.decision_mask)


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
    torchrl.modules.ProbabilisticActor
        Writes the actions (:func:`action_keys`) and their log-probability
        ``("agents", "sample_log_prob")`` ``(*batch, A)``. For a TorchRL loss, set
        its ``action`` key to :func:`action_keys` and its ``sample_log_prob`` key
        to ``("agents", "sample_log_prob")``.
    """
    from torchrl.modules import ProbabilisticActor

    return ProbabilisticActor(
        module=policy_module,
        in_keys=distribution_in_keys(include_linear_message_space),
        out_keys=action_keys(include_linear_message_space),
        spec=spec,
        distribution_class=NipActionDistribution,
        return_log_prob=True,
        log_prob_keys=[LOG_PROB_KEY],
        default_interaction_type=default_interaction_type,
    )
