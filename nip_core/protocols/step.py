"""A protocol step's inputs and outputs: the keys it reads, the decisions and
restrictions, :class:`ProtocolStepInputs` and :class:`ProtocolStepResult`.

Step inputs (keys of ``env_td``; ``...`` is the batch shape)
-----------------------------------------------------------
``"round"`` : long ``[...]``
    The round being played (0-based).
``"seed"`` : long ``[...]``
    The episode's seed, drawn at reset. Seed-dependent protocols (merlin_arthur) and
    randomized prover stances read it.
``"y"`` : long ``[..., 1]``
    The label (1: the claim holds, accept is right). ``[...]`` is accepted too.
``"done"`` : bool ``[...]``
    Whether the episode was already over before this step.
``"terminated"`` : bool ``[...]``
    Whether the episode was already terminated before this step.
``("agents", "decision")`` : long ``[..., agents]``
    Each agent's decision this step: 0 reject, 1 accept, 2 continue; text worlds
    may also give 3, neither accept nor reject (a verdict that ends the episode
    with ``verifier_neither_accept_nor_reject_reward``). Only the verifiers'
    entries are read.
``("agents", "done")`` : bool ``[..., agents]``, optional
    Which agents were already done (zeros when absent).
``"prover_stance"`` : long ``[...]``, optional
    With ``randomize_prover_stance``: the verdict the single prover argues for; when
    absent it is ``seed % 2``.
``("agents", "valid_response")`` : bool ``[..., agents]``, optional
    Text worlds: whether each agent's response was valid (see
    ``protocol_common.prover_invalid_response_penalty``).

Zero-knowledge handlers read two more keys (see
:class:`~nip_core.protocols.zero_knowledge.ZeroKnowledgeProtocolHandler`).

Step outputs
------------
``shared_done`` : bool ``[...]``
    The episode is over: already done, a verdict was given, or it was terminated.
    (Unlike the original library, termination is included, so the environment copies
    it to ``"done"`` unchanged.)
``agent_done`` : bool ``[..., agents]``
    Per-agent done; ``shared_done`` implies every agent is done.
``terminated`` : bool ``[...]``
    The episode reached its last round (``max_message_rounds - 1``) without a
    verdict (or was already terminated, or a prover's response was invalid).
``reward`` : float ``[..., agents]``
    Each agent's reward for this step; zero in rows that were already done.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import attrs
import torch
from tensordict import TensorDictBase
from torch import Tensor

from nip_core.protocols.decisions import (  # noqa: F401 (re-exported)
    DECISION_ACCEPT,
    DECISION_CONTINUE,
    DECISION_NEITHER,
    DECISION_REJECT,
    RESTRICTION_CONTINUE_ONLY,
    RESTRICTION_GUESS_ONLY,
    RESTRICTION_NONE,
)

# --------------------------------------------------------------------------------------
# Step inputs and outputs
# --------------------------------------------------------------------------------------


class ProtocolStepResult(NamedTuple):
    """What one protocol step returns (unpacks as a 4-tuple)."""

    shared_done: Tensor
    agent_done: Tensor
    terminated: Tensor
    reward: Tensor


def read_entry(env_td: Any, key: str | tuple[str, ...], default: Any = None) -> Any:
    """Read ``key`` from a TensorDict, a nested dict or a mapping with tuple keys.

    Returns ``default`` when the key is absent.
    """
    if isinstance(env_td, TensorDictBase):
        return env_td.get(key, default)
    if isinstance(key, tuple) and len(key) == 1:
        key = key[0]
    try:
        return env_td[key]
    except (KeyError, TypeError, IndexError):
        pass
    if not isinstance(key, tuple):
        return default
    node: Any = env_td
    for part in key:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return default
    return node


def _as_tensor(value: Any, device: torch.device | None = None) -> Tensor:
    return torch.as_tensor(value, device=device)


@attrs.define(kw_only=True)
class ProtocolStepInputs:
    """The arrays a protocol step reads, as tensors (see the module docstring).

    Parameters
    ----------
    round : Tensor
        long ``[...]``.
    seed : Tensor
        long ``[...]``.
    y : Tensor
        long ``[...]`` (the trailing 1 of ``env_td["y"]`` removed).
    decision : Tensor
        long ``[..., agents]``.
    done : Tensor
        bool ``[...]``.
    agent_done : Tensor
        bool ``[..., agents]``.
    terminated : Tensor
        bool ``[...]``.
    prover_stance : Tensor | None
        long ``[...]`` when given.
    valid_response : Tensor | None
        bool ``[..., agents]`` when given.
    source : Any
        The mapping the inputs were read from (for handler-specific keys).
    """

    round: Tensor
    seed: Tensor
    y: Tensor
    decision: Tensor
    done: Tensor
    agent_done: Tensor
    terminated: Tensor
    prover_stance: Tensor | None = None
    valid_response: Tensor | None = None
    source: Any = None

    @classmethod
    def from_env_td(cls, env_td: Any, num_agents: int) -> ProtocolStepInputs:
        """Read the inputs from ``env_td``, checking that the shapes agree."""

        def required(key: str | tuple[str, ...]) -> Tensor:
            value = read_entry(env_td, key)
            if value is None:
                raise KeyError(
                    f"the protocol step needs the key {key!r} in the environment "
                    "TensorDict (see nip_core.protocols.base for the keys and shapes)"
                )
            return _as_tensor(value)

        round_id = required("round").long()
        batch_shape = round_id.shape
        device = round_id.device
        seed = required("seed").long()
        y = required("y").long()
        if y.shape == (*batch_shape, 1):
            y = y.squeeze(-1)
        decision = required(("agents", "decision")).long()
        done = required("done").bool()
        terminated = required("terminated").bool()
        if done.shape == (*batch_shape, 1):
            done = done.squeeze(-1)
        if terminated.shape == (*batch_shape, 1):
            terminated = terminated.squeeze(-1)
        agent_done_value = read_entry(env_td, ("agents", "done"))
        if agent_done_value is None:
            agent_done = torch.zeros(
                (*batch_shape, num_agents), dtype=torch.bool, device=device
            )
        else:
            agent_done = _as_tensor(agent_done_value).bool()
            # TorchRL keeps a trailing feature dimension of 1 on per-agent entries
            if agent_done.shape == (*batch_shape, num_agents, 1):
                agent_done = agent_done.squeeze(-1)
        stance_value = read_entry(env_td, "prover_stance")
        prover_stance = (
            None if stance_value is None else _as_tensor(stance_value).long()
        )
        valid_value = read_entry(env_td, ("agents", "valid_response"))
        valid_response = None if valid_value is None else _as_tensor(valid_value).bool()

        expected = {
            "seed": (seed, batch_shape),
            "y": (y, batch_shape),
            "done": (done, batch_shape),
            "terminated": (terminated, batch_shape),
            "('agents', 'decision')": (decision, (*batch_shape, num_agents)),
            "('agents', 'done')": (agent_done, (*batch_shape, num_agents)),
        }
        if prover_stance is not None:
            expected["prover_stance"] = (prover_stance, batch_shape)
        if valid_response is not None:
            expected["('agents', 'valid_response')"] = (
                valid_response,
                (*batch_shape, num_agents),
            )
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != tuple(shape):
                raise ValueError(
                    f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)} "
                    f"(batch shape {tuple(batch_shape)} from 'round', {num_agents} "
                    "agents)"
                )
        return cls(
            round=round_id,
            seed=seed,
            y=y,
            decision=decision,
            done=done,
            agent_done=agent_done,
            terminated=terminated,
            prover_stance=prover_stance,
            valid_response=valid_response,
            source=env_td,
        )

    def restricted_to_agents(self, count: int) -> ProtocolStepInputs:
        """The same inputs with the agent dimension cut to the first ``count``."""
        return attrs.evolve(
            self,
            decision=self.decision[..., :count],
            agent_done=self.agent_done[..., :count],
            valid_response=(
                None
                if self.valid_response is None
                else self.valid_response[..., :count]
            ),
        )
