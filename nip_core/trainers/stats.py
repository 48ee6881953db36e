"""Per-iteration statistics of tensor-world rollouts (the metrics users expect).

Rollouts have batch shape ``[*env_batch, time]`` and follow the environment keys:
``("next", "done")``, ``("next", "agents", "reward")`` (``[..., agent]``),
``("agents", "decision")``, ``("agents", "decision_logits")`` (``[..., agent, 3]``),
message logits ``("agents", "<name>_logits")`` (``[..., agent, channel, position,
logit]``), ``"y"``, ``"datapoint_id"``, ``"round"``, and, after the value estimator,
``("agents", "value")``, ``"value_target"``, ``"advantage"``.

Names (``test_`` prefixed for the test loop): ``mean_accuracy``, ``std_accuracy``,
``mean_datapoint_accuracy``, ``std_datapoint_accuracy``, ``worst_datapoint_accuracy``,
``mean_episode_length`` (of the episodes that end in the batch: the round each ends
in, plus one, counting the rounds it played in earlier batches),
``{agent}.mean_step_reward``, ``{agent}.mean_episode_reward``,
``{agent}.worst_episode_reward`` (an episode's whole return, also when its first
rounds were played in the batch before: see ``carried_returns``),
``{agent}.mean_decision_entropy`` / ``std_decision_entropy``,
``{agent}.mean_message_entropy`` / ``std_message_entropy``,
``{agent}.mean_max_message_prob``, ``{agent}.mean_value``,
``{agent}.mean_value_target``, ``{agent}.mean_advantage``,
``{agent}.residual_critic_variance``. Entropies, and the largest message
probability, are of the distribution the policy samples from: the logits masked as
the action distribution masks them (messages ``("agents", "valid_message_mask")``
forbids, decisions ``decision_restriction`` rules out). Each is normalised by the
largest entropy that distribution can have (the log of the number of choices left),
so it lies in [0, 1], 1 for a uniform choice among what the agent may do. They
count only the choices that happen: decisions where ``("agents",
"decision_mask")`` is set, messages on the channels ``("agents", "active_mask")``
marks (an agent that never decides has no decision-entropy metric).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from nip_core.scenario.distributions import mask_decision_logits, mask_message_logits

DECISION_LOGITS_KEY = ("agents", "decision_logits")


def _get(td: Any, key: Any) -> torch.Tensor | None:
    try:
        return td.get(key, None)
    except KeyError:
        return None


def message_logits_keys(rollout: Any) -> list[tuple[str, ...]]:
    """Keys ``("agents", "*_logits")`` other than the decision logits."""
    agents_td = _get(rollout, "agents")
    if agents_td is None:
        return []
    return [
        ("agents", key)
        for key in agents_td.keys()
        if isinstance(key, str)
        and key.endswith("_logits")
        and key not in ("decision_logits", "solo_logits")
    ]


def normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim, divided by its largest value,
    the log of the number of choices left: masked-out choices (logit -inf) are no
    choices. A row with one choice left has entropy 0."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    probs = log_probs.exp()
    plogp = torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs))
    entropy = -plogp.sum(-1)
    choices = torch.isfinite(logits).sum(-1).clamp(min=1).float()
    largest = torch.log(choices)
    return torch.where(
        choices > 1, entropy / largest.clamp(min=1e-12), torch.zeros_like(entropy)
    )


def episode_index(done: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Episode ids of a ``[env, time]`` done mask.

    Returns ``(episode_id, complete)``: a global episode id per step (unique across
    environments) and whether the step belongs to an episode that ended within the
    batch.
    """
    done = done.long()
    local = torch.cumsum(done, dim=1) - done
    complete = local < done.sum(dim=1, keepdim=True)
    rows = torch.arange(done.shape[0], device=done.device).unsqueeze(1)
    return rows * (done.shape[1] + 1) + local, complete


def open_episode_returns(
    rollout: Any, carried: torch.Tensor | None = None
) -> torch.Tensor | None:
    """``[env, agent]`` (float64): each environment's rewards since the last episode
    that ended in ``rollout``, the part of the episode still running at its end
    (with ``carried``, this function's value for the batch before, when that
    episode ran through the whole batch). :func:`rollout_statistics` takes it, as
    ``carried_returns``, for the next batch of the same environments, so the
    episodes that carry over are paid their whole return. ``None`` without
    rewards."""
    time = rollout.shape[-1]
    flat = rollout.reshape(-1, time)
    reward = _get(flat, ("next", "agents", "reward"))
    if reward is None:
        return None
    reward = reward.reshape(*flat.shape, -1).double()
    done = flat.get(("next", "done")).reshape(flat.shape[0], time, -1).any(-1)
    # the steps after each row's last done
    after_last = torch.flip(torch.cumsum(torch.flip(done.long(), [1]), 1), [1]) == 0
    open_part = (reward * after_last.unsqueeze(-1)).sum(1)
    if carried is not None and tuple(carried.shape) == tuple(open_part.shape):
        no_end = ~done.any(1)
        open_part[no_end] += carried.to(open_part.device, torch.float64)[no_end]
    return open_part


def _group_mean(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    unique, inverse = torch.unique(groups, return_inverse=True)
    sums = torch.zeros(len(unique), dtype=torch.float64).index_add_(
        0, inverse, values.double()
    )
    counts = torch.zeros(len(unique), dtype=torch.float64).index_add_(
        0, inverse, torch.ones_like(values, dtype=torch.float64)
    )
    return sums / counts


def _item(x: torch.Tensor) -> float:
    return float(x.item()) if x.numel() > 0 else float("nan")


def _std(x: torch.Tensor) -> float:
    return float(x.float().std().item()) if x.numel() > 1 else 0.0


def _verdict_steps(
    flat: Any, verifier: int, num_agents: int, done: torch.Tensor
) -> torch.Tensor:
    """``[env, time]``: the steps at which the verifier's episode ended for it.

    Usually the step at which the episode ends. Under zero knowledge the episode
    goes on until the adversarial verifier is done too, and the verifier, done
    earlier, keeps sampling decisions that count for nothing: its verdict is at the
    step where its own done flag (``("agents", "done")``) turns on. Without the
    per-agent flags, the episode's last step.
    """
    now = _get(flat, ("agents", "done"))
    after = _get(flat, ("next", "agents", "done"))
    if now is None or after is None:
        return done
    now = now.reshape(*flat.shape, -1)
    after = after.reshape(*flat.shape, -1)
    if now.shape[-1] != num_agents or after.shape[-1] != num_agents:
        return done
    return after[..., verifier].bool() & ~now[..., verifier].bool()


def rollout_statistics(
    rollout: Any,
    agent_names: Sequence[str],
    *,
    prefix: str = "",
    verifier_name: str = "verifier",
    effective_decision: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    | None = None,
    carried_returns: torch.Tensor | None = None,
) -> dict[str, float]:
    """Compute the statistics of one batch of rollouts (see the module docstring).

    ``effective_decision(decision, y)`` maps the verifier's sampled decisions to
    the verdicts that counted (the protocol handler's
    ``get_effective_verifier_decision``: with ``protocol_common.force_guess`` the
    forced verdict); the accuracies are of those. The rollout keeps the sampled
    decisions, which the policy's log-probabilities are of. A verdict is read at the
    step where the verifier became done (under zero knowledge that can be before the
    episode ends).

    ``carried_returns`` (``[env, agent]``, :func:`open_episode_returns` of the batch
    before) are the rewards that each environment's first episode, carried over
    from the batch before, got there: its episode reward counts them, so an
    episode's reward is its whole return, as its length is its whole length.
    ``None``: the batch starts with fresh episodes.
    """
    stats: dict[str, float] = {}
    time = rollout.shape[-1]
    flat = rollout.reshape(-1, time)
    done = flat.get(("next", "done")).reshape(flat.shape[0], time, -1).any(-1)
    episode, complete = episode_index(done)
    ep_ids = episode[complete]

    reward = _get(flat, ("next", "agents", "reward"))
    if reward is not None:
        reward = reward.reshape(*flat.shape, -1)
    datapoint = _get(flat, "datapoint_id")
    if ep_ids.numel() > 0:
        unique_eps, inverse = torch.unique(ep_ids, return_inverse=True)
        rounds = _get(flat, "round")
        if rounds is not None and rounds.numel() == done.numel():
            # an episode's length is the round it ended in, plus one: its first
            # steps may lie in the batch before (episodes carry over between
            # iterations), so its steps here can be fewer
            # each complete episode ends at its one done step; in row-major order
            # those come in the order of the (sorted) episode ids
            lengths = rounds.reshape(done.shape)[done & complete].float() + 1
        else:
            lengths = torch.zeros(len(unique_eps)).index_add_(
                0, inverse, torch.ones(len(ep_ids))
            )
        stats[f"{prefix}mean_episode_length"] = float(lengths.mean())
        # The datapoint of an episode: the one at its last step
        episode_datapoint = None
        if datapoint is not None:
            dp_steps = datapoint.reshape(flat.shape)[complete]
            episode_datapoint = torch.zeros(len(unique_eps), dtype=torch.long)
            episode_datapoint[inverse] = dp_steps.long()
    else:
        inverse = None
        episode_datapoint = None

    for i, name in enumerate(agent_names):
        if reward is not None:
            stats[f"{name}.{prefix}mean_step_reward"] = _item(reward[..., i].mean())
            if inverse is not None:
                ep_reward = torch.zeros(
                    len(unique_eps), dtype=torch.float64
                ).index_add_(0, inverse, reward[..., i][complete].double())
                if carried_returns is not None and carried_returns.shape == (
                    flat.shape[0],
                    len(agent_names),
                ):
                    # each row's first episode began in the batch before
                    first = (unique_eps % (time + 1) == 0).to(ep_reward.device)
                    rows = unique_eps.to(ep_reward.device)[first] // (time + 1)
                    ep_reward[first] += carried_returns[:, i].to(
                        ep_reward.device, torch.float64
                    )[rows]
                stats[f"{name}.{prefix}mean_episode_reward"] = float(ep_reward.mean())
                if episode_datapoint is not None:
                    per_dp = _group_mean(ep_reward, episode_datapoint)
                    stats[f"{name}.{prefix}worst_episode_reward"] = float(per_dp.min())
                else:
                    stats[f"{name}.{prefix}worst_episode_reward"] = float(
                        ep_reward.min()
                    )

        decision_logits = _get(flat, DECISION_LOGITS_KEY)
        if decision_logits is not None and decision_logits.shape[-2] == len(
            agent_names
        ):
            ent = normalised_entropy(
                mask_decision_logits(
                    decision_logits[..., i, :],
                    _get(flat, "decision_restriction"),
                )
            )
            # Only decisions that count (the agent may decide this round)
            decision_mask = _get(flat, ("agents", "decision_mask"))
            if decision_mask is not None:
                ent = ent[decision_mask.reshape(*flat.shape, -1)[..., i].bool()]
            if ent.numel() > 0:
                stats[f"{name}.{prefix}mean_decision_entropy"] = _item(ent.mean())
                stats[f"{name}.{prefix}std_decision_entropy"] = _std(ent)
        message_keys = message_logits_keys(flat)
        for key in message_keys:
            logits = flat.get(key)
            if logits.ndim < 4 or logits.shape[2] != len(agent_names):
                continue
            agent_logits = logits[:, :, i]
            valid = _get(flat, ("agents", "valid_message_mask"))
            if (
                key[-1] == "main_message_logits"
                and valid is not None
                and valid.shape == logits.shape
            ):
                agent_logits = mask_message_logits(agent_logits, valid[:, :, i])
            ent = normalised_entropy(agent_logits)
            max_prob = torch.softmax(agent_logits.float(), -1).max(-1).values
            # Only channels the agent speaks on this round
            active = _get(flat, ("agents", "active_mask"))
            if active is not None and active.ndim >= 4 and ent.ndim >= 3:
                mask = active[:, :, i].bool()
                mask = mask.reshape(*mask.shape, *([1] * (ent.ndim - mask.ndim)))
                mask = mask.expand(ent.shape)
                ent, max_prob = ent[mask], max_prob[mask]
            if ent.numel() == 0:
                continue
            # One message space is "the" message; several keep their own names
            label = (
                "message"
                if key[-1] == "main_message_logits" or len(message_keys) == 1
                else key[-1][: -len("_logits")]
            )
            stats[f"{name}.{prefix}mean_{label}_entropy"] = _item(ent.mean())
            stats[f"{name}.{prefix}std_{label}_entropy"] = _std(ent)
            stats[f"{name}.{prefix}mean_max_{label}_prob"] = _item(max_prob.mean())

        value = _get(flat, ("agents", "value"))
        value_target = _get(flat, "value_target")
        if value_target is None:
            value_target = _get(flat, ("agents", "value_target"))
        advantage = _get(flat, "advantage")
        if advantage is None:
            advantage = _get(flat, ("agents", "advantage"))
        per_agent = {}
        for label, tensor in (
            ("value", value),
            ("value_target", value_target),
            ("advantage", advantage),
        ):
            if tensor is not None:
                tensor = tensor.reshape(*flat.shape, -1)
                if tensor.shape[-1] == len(agent_names):
                    per_agent[label] = tensor[..., i].float()
                    stats[f"{name}.{prefix}mean_{label}"] = _item(
                        per_agent[label].mean()
                    )
        if "value" in per_agent and "value_target" in per_agent:
            residual = (per_agent["value_target"] - per_agent["value"]).var()
            stats[f"{name}.{prefix}residual_critic_variance"] = float(
                residual / max(per_agent["value_target"].var().item(), 1e-6)
            )

    decision = _get(flat, ("agents", "decision"))
    y = _get(flat, "y")
    if verifier_name in agent_names and decision is not None and y is not None:
        v = list(agent_names).index(verifier_name)
        verifier_decision = decision.reshape(*flat.shape, -1)[..., v]
        labels = y.reshape(flat.shape).long()
        if effective_decision is not None:
            verifier_decision = effective_decision(verifier_decision, labels)
        correct = (verifier_decision == labels).float()
        verdict_step = _verdict_steps(flat, v, len(agent_names), done)
        done_correct = correct[verdict_step]
        stats[f"{prefix}mean_accuracy"] = _item(done_correct.mean())
        stats[f"{prefix}std_accuracy"] = _std(done_correct)
        if datapoint is not None and done_correct.numel() > 0:
            per_dp = _group_mean(
                done_correct, datapoint.reshape(flat.shape)[verdict_step].long()
            )
            stats[f"{prefix}mean_datapoint_accuracy"] = float(per_dp.mean())
            stats[f"{prefix}std_datapoint_accuracy"] = _std(per_dp)
            stats[f"{prefix}worst_datapoint_accuracy"] = float(per_dp.min())
    return stats
