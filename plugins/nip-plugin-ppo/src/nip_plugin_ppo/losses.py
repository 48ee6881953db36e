"""The loss modules of the PPO plugin.

- :class:`PerAgentPpoLoss` presents TorchRL's :class:`~torchrl.objectives.ClipPPOLoss`
  and :class:`~torchrl.objectives.KLPENPPOLoss` the way nip's trainers read losses:
  one entry per agent (``[agent]``) for every ``loss_*`` term, with the KL divergence
  and the effective sample size alongside. TorchRL computes everything; the wrapper
  only asks it for unreduced losses (``reduction="none"``) and averages them over the
  minibatch, agent by agent.
- :class:`SpgLoss` builds, per agent, a surrogate over the *joint* likelihood of the
  sampled actions and hands the agents' surrogates to
  :func:`~nip_plugin_ppo.stackelberg.stackelberg_update`, which turns them into the
  update directions of the SPG family.

Both read the policy through the public API of nip-core's
:class:`~nip_core.scenario.distributions.NipActionDistribution` (log-probability of
the packed action, entropy, and the KL divergence nip-core registers with
:func:`torch.distributions.kl_divergence`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor, nn
from torchrl.data.replay_buffers.samplers import Sampler
from torchrl.objectives import ClipPPOLoss, KLPENPPOLoss

from nip_core.scenario import keys as K
from nip_core.scenario.distributions import ACTION_KEY, NipActionDistribution
from nip_plugin_ppo.stackelberg import stackelberg_update

ADVANTAGE_KEY = (K.AGENTS, "advantage")
VALUE_TARGET_KEY = (K.AGENTS, "value_target")
VALUE_KEY = (K.AGENTS, K.VALUE)
REWARD_KEY = (K.AGENTS, K.REWARD)
DONE_KEY = (K.AGENTS, K.DONE)
TERMINATED_KEY = (K.AGENTS, K.TERMINATED)
LOG_PROB_KEY = (K.AGENTS, K.SAMPLE_LOG_PROB)

LOSS_KEYS = ("loss_objective", "loss_critic", "loss_entropy")


# ----------------------------------------------------------------------------------
# Helpers


def per_agent_mean(value: Tensor, num_agents: int) -> Tensor:
    """Average ``(*batch, A[, 1])`` over the batch: ``(A,)``."""
    if value.shape[-1] == 1 and value.ndim >= 2 and value.shape[-2] == num_agents:
        value = value.squeeze(-1)
    return value.reshape(-1, num_agents).mean(dim=0)


def normalize_per_agent(advantage: Tensor, eps: float = 1e-6) -> Tensor:
    """Standardise ``(*batch, A)`` over the batch, separately for each agent.

    The same rule as TorchRL's PPO losses with ``normalize_advantage_exclude_dims``
    on the agent dimension: ``(a - mean) / max(std, eps)`` with the sample
    (Bessel-corrected) standard deviation.
    """
    flat = advantage.reshape(-1, advantage.shape[-1])
    mean = flat.mean(dim=0)
    std = flat.std(dim=0).clamp_min(eps)
    return (advantage - mean) / std


def critic_distance(prediction: Tensor, target: Tensor, kind: str) -> Tensor:
    """TorchRL's value distance (``"l1"``, ``"l2"``, ``"smooth_l1"``), unreduced."""
    from torchrl.objectives.utils import distance_loss

    return distance_loss(target, prediction, loss_function=kind)


# ----------------------------------------------------------------------------------
# vanilla_ppo


class _AnalyticEntropy:
    """The entropy of nip's action distribution as it is, compiled or not.

    Under ``torch.compile`` TorchRL's PPO losses estimate the entropy by sampling
    from the distribution (they cannot check the analytic entropy for infinities
    while tracing) and then keep the analytic one where it is finite. The
    entropy of :class:`~nip_core.scenario.distributions.NipActionDistribution`
    is always finite (masked choices' logits are clamped, so they add 0), so the
    sampling only drew random numbers from the global generator: under
    ``run.compile_loss`` every minibatch moved the run's random stream, and the
    next epoch's minibatches and the next rollout's actions differed from the
    same run without compiling. Other distributions take TorchRL's own path.
    """

    def _get_entropy(self, dist: Any, adv_shape: torch.Size) -> Any:
        if isinstance(dist, NipActionDistribution):
            return dist.entropy().unsqueeze(-1)
        return super()._get_entropy(dist, adv_shape)  # type: ignore[misc]


class NipClipPPOLoss(_AnalyticEntropy, ClipPPOLoss):
    """TorchRL's :class:`~torchrl.objectives.ClipPPOLoss`, with nip's action
    distribution's entropy taken as it is (:class:`_AnalyticEntropy`)."""


class NipKLPENPPOLoss(_AnalyticEntropy, KLPENPPOLoss):
    """TorchRL's :class:`~torchrl.objectives.KLPENPPOLoss`, with nip's action
    distribution's entropy taken as it is (:class:`_AnalyticEntropy`)."""


class PerAgentPpoLoss(nn.Module):
    """TorchRL's PPO loss with one entry per agent.

    Parameters
    ----------
    loss : torchrl.objectives.PPOLoss
        A :class:`~torchrl.objectives.ClipPPOLoss` or
        :class:`~torchrl.objectives.KLPENPPOLoss` built with ``reduction="none"``,
        advantage normalisation excluding the agent dimension, and nip's keys.
    agent_names : Sequence[str]
        The agents, in the order of the agent dimension.
    log_kl_and_ess : bool
        Whether the KL divergence and the effective sample size are returned.

    Notes
    -----
    The output holds, for each agent (shape ``[agent]``): ``loss_objective``,
    ``loss_critic`` (when the critic is trained), ``loss_entropy``; and
    ``entropy``, ``clip_fraction``, ``kl_approx`` (the mean of
    ``log π_old − log π``), for the KL-penalty objective ``kl`` (per agent) and
    ``kl_beta`` (the current coefficient), and the effective sample size of the
    importance weights as ``ess`` (mean over agents) and ``{agent}.ess``, each the
    fraction ``(Σ w)² / (B Σ w²)`` of the minibatch of size ``B``.
    """

    def __init__(
        self,
        loss: Any,
        agent_names: Sequence[str],
        *,
        log_kl_and_ess: bool = True,
    ):
        super().__init__()
        self.loss = loss
        self.agent_names = list(agent_names)
        self.log_kl_and_ess = log_kl_and_ess

    @property
    def num_agents(self) -> int:
        return len(self.agent_names)

    @property
    def reads_counted_choices_only(self) -> bool:
        """Whether the loss reads the policy only through nip's action
        distribution (the losses :func:`build_ppo_loss` builds): the trainer then
        runs the policy only on the rows where each agent's choices count
        (:func:`~nip_core.scenario.combined.counted_rows_only`)."""
        return isinstance(self.loss, _AnalyticEntropy)

    @contextlib.contextmanager
    def holding_coefficients(self) -> Iterator[None]:
        """Leave the KL-penalty coefficient β as it is over the forward passes
        inside: the trainer enters this on iterations where no agent trains, when
        the loss runs only for its logged values (TorchRL's KL-penalty loss
        adapts β on every forward pass)."""
        beta = getattr(self.loss, "beta", None)
        saved = None if beta is None else beta.detach().clone()
        try:
            yield
        finally:
            if saved is not None:
                beta.data.copy_(saved)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        out = self.loss(tensordict)
        a = self.num_agents
        result: dict[str, Tensor] = {}
        for key in LOSS_KEYS:
            value = out.get(key, None)
            if value is not None:
                result[key] = per_agent_mean(value, a)
        for key in ("entropy", "clip_fraction", "value_clip_fraction"):
            value = out.get(key, None)
            if value is not None:
                result[key] = value.detach().reshape(()).float()
        explained = out.get("explained_variance", None)
        if explained is not None:
            result["explained_variance"] = explained.detach().reshape(-1)
        if self.log_kl_and_ess:
            result["kl_approx"] = out.get("kl_approx").detach().reshape(())
            kl = out.get("kl", None)
            if kl is not None:
                result["kl"] = per_agent_mean(kl.detach(), a)
                result["kl_beta"] = self.loss.beta.detach().clone().reshape(())
            ess = out.get("ESS", None)
            if ess is None:
                ess = self._ess(tensordict)
            ess = ess.detach().reshape(-1)
            if ess.numel() == a:
                for name, value in zip(self.agent_names, ess, strict=True):
                    result[f"{name}.ess"] = value
            result["ess"] = ess.mean()
        return TensorDict(result, batch_size=[])

    def _ess(self, tensordict: TensorDictBase) -> Tensor:
        """The effective sample size per agent (the KL-penalty loss does not give
        one)."""
        with torch.no_grad():
            dist = self.loss.actor_network.get_dist(tensordict.clone(False))
            log_prob = dist.log_prob(tensordict)
            log_weight = log_prob - tensordict.get(LOG_PROB_KEY)
            log_weight = log_weight.reshape(-1, self.num_agents)
            ess = (2 * log_weight.logsumexp(0) - (2 * log_weight).logsumexp(0)).exp()
            return ess / log_weight.shape[0]


def build_gae(value_network: Any, *, gamma: float, lmbda: float) -> Any:
    """TorchRL's GAE on nip's per-agent keys (``[*batch, agent, 1]``).

    Without vmap: TorchRL's vmapped value calls reject modules with running
    statistics (batch norm in train mode), which scenarios' bodies may have.
    """
    from torchrl.objectives.value import GAE

    gae = GAE(
        gamma=gamma,
        lmbda=lmbda,
        value_network=value_network,
        average_gae=False,
        deactivate_vmap=True,
    )
    gae.set_keys(
        reward=REWARD_KEY,
        done=DONE_KEY,
        terminated=TERMINATED_KEY,
        value=VALUE_KEY,
        advantage=ADVANTAGE_KEY,
        value_target=VALUE_TARGET_KEY,
    )
    return gae


def build_ppo_loss(
    actor: Any,
    critic: Any,
    ppo: Any,
    *,
    loss_critic_type: str,
    clip_value: float | None,
) -> Any:
    """TorchRL's clipped or KL-penalty PPO loss, set up for nip's keys.

    Parameters
    ----------
    actor : ProbabilisticActor
        The policy operator.
    critic : TensorDictModule
        What the critic loss runs on a minibatch: the value operator, or only the
        value head when the body is shared (the actor's pass has then written the
        body's output into the minibatch, so the body runs once).
    ppo : PpoParameters
        The ``ppo`` section.
    loss_critic_type : str
        ``rl.loss_critic_type``.
    clip_value : float | None
        The clip range of the value prediction, or ``None``.

    Returns
    -------
    torchrl.objectives.PPOLoss
        With ``reduction="none"`` and advantage normalisation excluding the agent
        dimension (``-2`` of the ``[*batch, agent, 1]`` advantage). The advantage
        must be in the minibatch (:func:`build_gae` writes it).
    """
    common: dict[str, Any] = dict(
        entropy_bonus=True,
        entropy_coeff=float(ppo.entropy_eps),
        critic_coeff=float(ppo.critic_coef),
        loss_critic_type=loss_critic_type,
        normalize_advantage=bool(ppo.normalize_advantage),
        normalize_advantage_exclude_dims=(-2,),
        # The agents' parameters are trained by the trainer's optimizer: TorchRL
        # must use the modules themselves, not functional copies of them.
        functional=False,
        reduction="none",
        clip_value=clip_value,
    )
    if ppo.loss_type == "clip":
        loss = NipClipPPOLoss(
            actor, critic, clip_epsilon=float(ppo.clip_epsilon), **common
        )
    else:
        loss = NipKLPENPPOLoss(
            actor,
            critic,
            dtarg=float(ppo.kl_target),
            beta=float(ppo.kl_beta),
            increment=float(ppo.kl_increment),
            decrement=float(ppo.kl_decrement),
            **common,
        )
    loss.set_keys(
        action=ACTION_KEY,
        sample_log_prob=LOG_PROB_KEY,
        value=VALUE_KEY,
        advantage=ADVANTAGE_KEY,
        value_target=VALUE_TARGET_KEY,
        reward=REWARD_KEY,
        done=DONE_KEY,
        terminated=TERMINATED_KEY,
    )
    return loss


# ----------------------------------------------------------------------------------
# spg


class SpgLoss(nn.Module):
    """The SPG family's per-agent surrogates, critic and entropy losses.

    For each agent ``i`` with normalised advantage ``A_i`` the surrogate over the
    joint likelihood of the sampled actions, with
    ``r_t = exp(Σ_{s ≤ t} Σ_k (log π_k(a_s) − log π_k,old(a_s)))`` summed over every
    agent ``k`` and every step ``s`` of the episode so far, is

    - ``L_i = −mean(r A_i)`` for ``spg``, ``lola``, ``sos`` (the policy-gradient
      gain: at ``r = 1`` its gradient is the policy gradient and its mixed second
      derivatives the score-function estimates of the cross terms);
    - ``L_i = −mean(min(r A_i, clip(r, 1 − ε, 1 + ε) A_i))`` for ``pspg``,
      ``pola``, ``psos`` (the clipped PPO gain).

    The sum over the episode's earlier steps matters: in protocols where agents take
    turns, a single step holds one agent's action, so a per-step joint ratio would
    make every cross-agent second derivative (the opponent-shaping terms) zero. Over
    the episode prefix they are the score-function estimates
    ``E[(Σ_s ∇_l log π_l)(Σ_s ∇_f log π_f)^T A_f]`` of the cross terms (as in
    LOLA-DiCE with a baseline), while the first derivative stays the policy
    gradient (earlier steps' scores are uncorrelated with a later advantage).

    :meth:`backward` passes these to
    :func:`~nip_plugin_ppo.stackelberg.stackelberg_update` with each agent's actor
    parameters (body and policy head) and writes the directions to ``.grad``; the
    critic and entropy losses are back-propagated as usual and added.

    Parameters
    ----------
    actor : ProbabilisticActor
        The policy operator.
    critic : TensorDictModule | None
        The value operator, or only the value head when the body is shared (it
        then reads the body's output the actor's pass wrote).
    agent_names : Sequence[str]
        The agents, in the order of the agent dimension.
    actor_params : Mapping[str, Sequence[Tensor]]
        Each trained agent's actor parameters. Agents missing here (no trainable
        actor parameters, or none left by :meth:`keep_stepped_parameters`) neither
        shape nor follow anyone.
    sequence : Sequence[Sequence[str]]
        The Stackelberg sequence over the agents of ``actor_params``.
    learning_rates : Mapping[str, float]
        Each agent's actor learning rate.
    variant : str
        The SPG variant.
    clip_epsilon : float
        The clip range of the ``p`` variants.
    entropy_coef, critic_coef : float
        Weights of the entropy bonus and the critic loss.
    normalize_advantage : bool
        Standardise the advantage per agent in each minibatch.
    loss_critic_type : str
        ``"l1"``, ``"l2"`` or ``"smooth_l1"``.
    clip_value : float | None
        Clip the value prediction to within this of the sampled value.
    stackelberg_options : Mapping[str, Any]
        Keyword arguments of :func:`stackelberg_update` (``ihvp_rank``, ``ihvp_rho``,
        ``sos_scaling_factor``, ``sos_threshold_factor``, ``additional_lola_term``).
    seed : int
        Seeds the generator of the Nyström column choice.
    row_length : int, optional
        The minibatch is made of whole environment rows of this many consecutive
        steps (:class:`RowSampler`); the joint ratio then covers each episode's
        actions so far. ``None``: the ratio of each step alone.
    """

    def __init__(
        self,
        actor: Any,
        critic: Any,
        *,
        agent_names: Sequence[str],
        actor_params: Mapping[str, Sequence[Tensor]],
        sequence: Sequence[Sequence[str]],
        learning_rates: Mapping[str, float],
        variant: str,
        clip_epsilon: float = 0.2,
        entropy_coef: float = 0.0,
        critic_coef: float = 1.0,
        normalize_advantage: bool = True,
        loss_critic_type: str = "smooth_l1",
        clip_value: float | None = None,
        stackelberg_options: Mapping[str, Any] | None = None,
        seed: int = 0,
        row_length: int | None = None,
    ):
        super().__init__()
        self.actor = actor
        self.critic = critic
        self.agent_names = list(agent_names)
        self.actor_params = {name: list(ps) for name, ps in actor_params.items()}
        self.sequence = [tuple(group) for group in sequence]
        self.learning_rates = dict(learning_rates)
        self.variant = variant
        self.clip_epsilon = float(clip_epsilon)
        self.entropy_coef = float(entropy_coef)
        self.critic_coef = float(critic_coef)
        self.normalize_advantage = normalize_advantage
        self.loss_critic_type = loss_critic_type
        self.clip_value = clip_value
        self.stackelberg_options = dict(stackelberg_options or {})
        self.generator = torch.Generator().manual_seed(int(seed))
        self.row_length = row_length

    # The policy is read through nip's action distribution alone: the trainer runs
    # it only on the rows where each agent's choices count (counted_rows_only).
    reads_counted_choices_only: ClassVar[bool] = True

    @property
    def clipped(self) -> bool:
        return self.variant.startswith("p")

    # The Nyström column choice must continue where it stopped when a run resumes.
    def get_extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        td = tensordict.clone(False)
        a = len(self.agent_names)
        dist = self.actor.get_dist(td)
        log_prob = dist.log_prob(tensordict).reshape(-1, a)
        old_log_prob = tensordict.get(LOG_PROB_KEY).detach().reshape(-1, a)
        advantage = tensordict.get(ADVANTAGE_KEY).detach().reshape(-1, a)
        if self.normalize_advantage and advantage.shape[0] > 1:
            advantage = normalize_per_agent(advantage)

        step_log_ratio = (log_prob - old_log_prob).sum(dim=-1)  # (B,): all agents
        joint_log_ratio = self._prefix_sum(step_log_ratio, tensordict).unsqueeze(-1)
        ratio = joint_log_ratio.exp()  # (B, 1)
        gain = ratio * advantage  # (B, A): agent i's gain in column i
        if self.clipped:
            clipped = ratio.clamp(1 - self.clip_epsilon, 1 + self.clip_epsilon)
            gain = torch.minimum(gain, clipped * advantage)
        entropy = dist.entropy().reshape(-1, a)
        out: dict[str, Tensor] = {
            "loss_objective": -gain.mean(dim=0),
            "loss_entropy": -self.entropy_coef * entropy.mean(dim=0),
            "entropy": entropy.detach().mean(dim=0),
        }
        with torch.no_grad():
            lw = joint_log_ratio.squeeze(-1)
            out["kl_approx"] = (old_log_prob - log_prob).detach().mean(dim=0)
            out["ess"] = (
                (2 * lw.logsumexp(0) - (2 * lw).logsumexp(0)).exp() / lw.shape[0]
            ).reshape(())
            if self.clipped:
                out["clip_fraction"] = (
                    ((ratio - 1).abs() > self.clip_epsilon).float().mean().reshape(())
                )
        if self.critic is not None and self.critic_coef > 0:
            out["loss_critic"] = self.critic_coef * self._critic_loss(td, a)
        return TensorDict(out, batch_size=[])

    def _prefix_sum(self, step_log_ratio: Tensor, tensordict: TensorDictBase) -> Tensor:
        """The log-ratio of each episode's actions so far (the step's included).

        With ``row_length`` set, the minibatch is whole rows of ``row_length``
        consecutive steps of one environment (:class:`RowSampler`); the sum restarts
        after every step whose ``("next", "done")`` is set. A row's first step
        starts a sum even when its episode began in the previous iteration.
        """
        if self.row_length is None or step_log_ratio.numel() % self.row_length:
            return step_log_ratio
        rows = step_log_ratio.reshape(-1, self.row_length)
        done = tensordict.get(("next", K.DONE), None)
        if done is None:
            return step_log_ratio
        done = done.reshape(rows.shape[0], self.row_length, -1).any(-1)
        running = torch.zeros_like(rows[:, 0])
        sums = []
        for t in range(self.row_length):
            running = running + rows[:, t]
            sums.append(running)
            running = torch.where(done[:, t], torch.zeros_like(running), running)
        return torch.stack(sums, dim=1).reshape(-1)

    def _critic_loss(self, td: TensorDictBase, num_agents: int) -> Tensor:
        # ``td`` is the actor's TensorDict: a value head alone reads the body's
        # output the actor wrote there
        old_value = td.get(VALUE_KEY).detach()
        value = self.critic(td.clone(False)).get(VALUE_KEY)
        if self.clip_value is not None:
            value = old_value + (value - old_value).clamp(
                -self.clip_value, self.clip_value
            )
        target = td.get(VALUE_TARGET_KEY).detach().reshape(value.shape)
        distance = critic_distance(value, target, self.loss_critic_type)
        return per_agent_mean(distance, num_agents)

    def keep_stepped_parameters(self, stepped: Iterable[Tensor]) -> None:
        """Keep only the actor parameters the optimizer steps.

        The trainer builds its optimizer after this loss, leaving out the parts
        whose learning rate is 0 (``agent_lr_factor.actor`` 0, a body factor 0). An
        agent left with no parameter neither shapes nor follows anyone: it does not
        learn, so it has no learning step (LOLA, SOS) or best response (SPG) to
        anticipate, and its gradient would be thrown away. (``requires_grad`` could
        not tell when the trainer gathered the actor parameters: the optimizer,
        built after this loss, turns it off for those parts.)
        """
        ids = {id(p) for p in stepped}
        self.actor_params = {
            name: kept
            for name, params in self.actor_params.items()
            if (kept := [p for p in params if id(p) in ids])
        }
        self.sequence = [
            kept
            for kept in (
                tuple(name for name in group if name in self.actor_params)
                for group in self.sequence
            )
            if kept
        ]

    def directions(self, loss_vals: TensorDictBase) -> dict[str, list[Tensor]]:
        """The SPG update direction of every trained agent's actor parameters."""
        objective = loss_vals.get("loss_objective")
        losses = {
            name: objective[self.agent_names.index(name)] for name in self.actor_params
        }
        return stackelberg_update(
            self.variant,
            losses,
            self.actor_params,
            self.sequence,
            self.learning_rates,
            generator=self.generator,
            **self.stackelberg_options,
        )

    def backward(self, loss_vals: TensorDictBase) -> None:
        """Write the SPG directions (plus critic and entropy gradients) to
        ``.grad``."""
        directions = self.directions(loss_vals) if self.actor_params else {}
        other = [
            loss_vals.get(key).sum()
            for key in ("loss_critic", "loss_entropy")
            if key in loss_vals.keys() and loss_vals.get(key).requires_grad
        ]
        if other:
            torch.stack(other).sum().backward()
        for name, params in self.actor_params.items():
            for param, direction in zip(params, directions[name], strict=True):
                if param.grad is None:
                    param.grad = direction.clone()
                else:
                    param.grad.add_(direction)


class RowSampler(Sampler):
    """Replay-buffer sampler of whole environment rows, without replacement.

    The trainer stores a ``[env, time]`` rollout flattened row by row, so row ``e``
    is the indices ``e * row_length ... (e + 1) * row_length - 1``. Each call returns
    ``max(1, batch_size // row_length)`` rows in random order (torch's global
    generator, which checkpoints save), reshuffling once every row was used.
    """

    def __init__(self, row_length: int):
        super().__init__()
        self.row_length = int(row_length)
        self._order: Tensor | None = None
        self._position = 0

    def sample(self, storage: Any, batch_size: int) -> tuple[Tensor, dict]:
        num_rows = max(1, len(storage) // self.row_length)
        wanted = min(num_rows, max(1, batch_size // self.row_length))
        if self._order is None or self._order.numel() != num_rows:
            self._order, self._position = torch.randperm(num_rows), 0
        if self._position + wanted > num_rows:
            self._order, self._position = torch.randperm(num_rows), 0
        rows = self._order[self._position : self._position + wanted]
        self._position += wanted
        offsets = torch.arange(self.row_length)
        index = (rows.unsqueeze(-1) * self.row_length + offsets).reshape(-1)
        return index, {}

    def extend(self, index: Any) -> None:
        self._order, self._position = None, 0

    def _empty(self) -> None:
        self._order, self._position = None, 0

    def dumps(self, path: Any) -> None:
        return None

    def loads(self, path: Any) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        return None
