"""The zero-knowledge wrapper around single-verifier protocols.

With ``protocol_common.zero_knowledge`` the experiment's protocol is wrapped:

- Agents: the base protocol's, then ``adversarial_verifier`` and ``simulator``.
- Channels: tripled, in the order ``{c}_standard`` for every base channel ``c``, then
  ``{c}_adversarial`` for every ``c``, then ``{c}_simulator`` for every ``c``.
- Visibility and schedule: the verifier on the standard copies, the adversarial
  verifier on the adversarial copies and the simulator on the simulator copies of
  the base verifier's channels, each whenever the base verifier would be active.
  Every other base agent (the provers) sees and speaks on the standard and the
  adversarial copy of what it saw and spoke on before.
- Decisions: the verifier and the adversarial verifier decide under the base rules
  (the verifier's verdict gives the base rewards). The simulator has a decision head
  too; its decision logits are compared with the adversarial verifier's.
- Done: the episode is over when both verifiers are done (or at the last round).
  The simulator is done when the adversarial verifier is (it imitates it: from then
  on its decisions earn nothing, and the environment leaves a done agent's
  decisions out of the decision mask, so out of its loss and entropy).
- Rewards: the simulator gets ``simulator_reward_coefficient`` × (cosine similarity
  of its and the adversarial verifier's message logits on the channels the
  adversarial verifier is active on + cosine similarity of their decision logits
  where a verdict can count: the verifier's turns from round
  ``min_message_rounds - 1`` on); the adversarial verifier gets its negative; every
  prover gets ``aux_prover_reward_coefficient`` × the simulator's reward added to its
  base reward. Rows where the adversarial verifier was already done get no
  simulator reward.

Extra step inputs
-----------------
``("agents", "main_message_logits")`` : float ``[..., agents, channels, *rest]``
    Each agent's message logits per channel; ``rest`` is typically
    ``(message_size, num_messages)``. Everything after the channel dimension is
    flattened for the cosine similarity.
``("agents", "decision_logits")`` : float ``[..., agents, 3]``
    Each agent's decision logits (reject, accept, continue).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.protocols.base import (
    ProtocolHandler,
    ProtocolParameterView,
    ProtocolStepInputs,
    ProtocolStepResult,
    SingleVerifierProtocolHandler,
    read_entry,
)

__all__ = ["ZeroKnowledgeProtocolHandler", "ZK_AGENT_NAMES"]

ZK_AGENT_NAMES: tuple[str, str] = ("adversarial_verifier", "simulator")
"""The agents the wrapper adds, in order."""

_KINDS = ("standard", "adversarial", "simulator")
_CHANNEL_OWNERS = {
    "standard": "verifier",
    "adversarial": "adversarial_verifier",
    "simulator": "simulator",
}


class ZeroKnowledgeProtocolHandler(ProtocolHandler):
    """The zero-knowledge version of a single-verifier protocol.

    Parameters
    ----------
    hyper_params : HyperParameters | ProtocolParameterView
        Read for ``protocol_common`` and ``zk_protocol``.
    settings : ExperimentSettings | None
        As for every handler.
    base_protocol : SingleVerifierProtocolHandler | type
        The handler to wrap, or its class (built with the same parameters).
    """

    can_be_zero_knowledge: ClassVar[bool] = False
    agent_name_substring_exemptions: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {("verifier", "adversarial_verifier")}
    )
    # The base handler already warned about its own schedule
    warn_about_wasted_rounds: ClassVar[bool] = False
    parameter_section: ClassVar[str | None] = "zk_protocol"

    def __init__(
        self,
        hyper_params: Any,
        settings: Any = None,
        *,
        base_protocol: SingleVerifierProtocolHandler | type,
    ):
        if isinstance(base_protocol, type):
            base_protocol = base_protocol(hyper_params, settings)
        name = type(base_protocol).__name__
        if not base_protocol.can_be_zero_knowledge:
            raise NipConfigError(
                ConfigProblem(
                    path="protocol_common.zero_knowledge",
                    message=f"{name} has no zero-knowledge version",
                    value=True,
                )
            )
        if not isinstance(base_protocol, SingleVerifierProtocolHandler) or (
            base_protocol.verifier_names != ["verifier"]
        ):
            raise NipConfigError(
                ConfigProblem(
                    path="protocol_common.zero_knowledge",
                    message=(
                        "zero knowledge wraps protocols with one verifier called "
                        f"'verifier'; {name} has {base_protocol.verifier_names}"
                    ),
                    value=True,
                )
            )
        clash = set(ZK_AGENT_NAMES) & set(base_protocol.agent_names)
        if clash:
            raise NipConfigError(
                ConfigProblem(
                    path="protocol_common.zero_knowledge",
                    message=f"{name} already has agents named {sorted(clash)}",
                    value=True,
                )
            )
        self.base_protocol: SingleVerifierProtocolHandler = base_protocol
        super().__init__(hyper_params, settings)

    @classmethod
    def from_sections(
        cls,
        settings: Any = None,
        *,
        base_protocol: SingleVerifierProtocolHandler | type | None = None,
        **sections: Any,
    ) -> ZeroKnowledgeProtocolHandler:
        """Wrap ``base_protocol`` (a handler class), built from parameter sections.

        See :meth:`ProtocolHandler.from_sections`.
        """
        if base_protocol is None:
            raise TypeError("from_sections() needs base_protocol=<handler class>")
        view = ProtocolParameterView.from_sections(**sections)
        return cls(view, settings, base_protocol=base_protocol)

    # ----- Structure

    @property
    def agent_names(self) -> list[str]:
        return [*self.base_protocol.agent_names, *ZK_AGENT_NAMES]

    @property
    def decider_names(self) -> list[str]:
        return ["verifier", "adversarial_verifier", "simulator"]

    @property
    def base_verifier_index(self) -> int:
        return self.base_protocol.verifier_index

    @property
    def verifier_index(self) -> int:
        return self.agent_index("verifier")

    @property
    def adversarial_verifier_index(self) -> int:
        return self.agent_index("adversarial_verifier")

    @property
    def simulator_index(self) -> int:
        return self.agent_index("simulator")

    @property
    def message_channel_names(self) -> list[str]:
        base = self.base_protocol.message_channel_names
        return [f"{channel}_{kind}" for kind in _KINDS for channel in base]

    def split_channel_name(self, channel_name: str) -> tuple[str, str]:
        """``"main_adversarial"`` -> ``("main", "adversarial")``."""
        for kind in _KINDS:
            suffix = f"_{kind}"
            base = channel_name[: -len(suffix)]
            if (
                channel_name.endswith(suffix)
                and base in self.base_protocol.message_channel_names
            ):
                return base, kind
        raise KeyError(f"{channel_name!r} is not a channel of this protocol")

    @property
    def agent_channel_visibility(self) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        for agent, channel in self.base_protocol.agent_channel_visibility:
            if agent == "verifier":
                pairs += [
                    ("verifier", f"{channel}_standard"),
                    ("adversarial_verifier", f"{channel}_adversarial"),
                    ("simulator", f"{channel}_simulator"),
                ]
            else:
                pairs += [
                    (agent, f"{channel}_standard"),
                    (agent, f"{channel}_adversarial"),
                ]
        return pairs

    @property
    def max_message_rounds(self) -> int:
        return self.base_protocol.max_message_rounds

    @property
    def min_message_rounds(self) -> int:
        return self.base_protocol.min_message_rounds

    @property
    def max_verifier_questions(self) -> int:
        return self.base_protocol.max_verifier_questions

    def can_agent_be_active(
        self, agent_name: str, round_id: int, channel_name: str
    ) -> bool:
        base_channel, kind = self.split_channel_name(channel_name)
        if agent_name in ("verifier", *ZK_AGENT_NAMES):
            if agent_name != _CHANNEL_OWNERS[kind]:
                return False
            return self.base_protocol.can_agent_be_active(
                "verifier", round_id, base_channel
            )
        if kind == "simulator":
            return False
        return self.base_protocol.can_agent_be_active(
            agent_name, round_id, base_channel
        )

    def get_active_agents_mask_from_rounds_and_seed(
        self, round_id: Tensor, seed: Tensor | None
    ) -> Tensor:
        base = self.base_protocol.get_active_agents_mask_from_rounds_and_seed(
            round_id, seed
        )
        v = self.base_verifier_index
        verifier_row = base[..., v : v + 1, :]
        no_row = torch.zeros_like(verifier_row)
        others = base.clone()
        others[..., v, :] = False
        standard = torch.cat([base, no_row, no_row], dim=-2)
        adversarial = torch.cat([others, verifier_row, no_row], dim=-2)
        simulator = torch.cat([torch.zeros_like(base), no_row, verifier_row], dim=-2)
        return torch.cat([standard, adversarial, simulator], dim=-1)

    def get_verifier_guess_mask_from_rounds_and_seed(
        self, round_id: Tensor, seed: Tensor | None
    ) -> Tensor:
        """Both verifiers may decide exactly when the base verifier may."""
        return self.base_protocol.get_verifier_guess_mask_from_rounds_and_seed(
            round_id, seed
        )

    def get_prover_stance_from_seed(self, seed: Tensor) -> Tensor:
        return self.base_protocol.get_prover_stance_from_seed(seed)

    # ----- Step

    def step_interaction_protocol(self, env_td: Any) -> ProtocolStepResult:
        inputs = ProtocolStepInputs.from_env_td(env_td, self.num_agents)
        message_logits = read_entry(env_td, ("agents", "main_message_logits"))
        decision_logits = read_entry(env_td, ("agents", "decision_logits"))
        if message_logits is None or decision_logits is None:
            raise KeyError(
                "zero-knowledge protocols need ('agents', 'main_message_logits') and "
                "('agents', 'decision_logits') in the environment TensorDict"
            )
        return self.step_from_inputs(
            inputs, torch.as_tensor(message_logits), torch.as_tensor(decision_logits)
        )

    def step_from_inputs(
        self,
        inputs: ProtocolStepInputs,
        message_logits: Tensor,
        decision_logits: Tensor,
    ) -> ProtocolStepResult:
        """The step on already-read inputs and logits (shapes: module docstring)."""
        batch_shape = tuple(inputs.round.shape)
        expected_message = (*batch_shape, self.num_agents, self.num_message_channels)
        if tuple(message_logits.shape[: len(expected_message)]) != expected_message:
            raise ValueError(
                f"('agents', 'main_message_logits') has shape "
                f"{tuple(message_logits.shape)}, expected {expected_message} + "
                "message dimensions"
            )
        if tuple(decision_logits.shape) != (*batch_shape, self.num_agents, 3):
            raise ValueError(
                f"('agents', 'decision_logits') has shape "
                f"{tuple(decision_logits.shape)}, expected "
                f"{(*batch_shape, self.num_agents, 3)}"
            )

        base_count = self.base_protocol.num_agents
        base = self.base_protocol.step_from_inputs(
            inputs.restricted_to_agents(base_count)
        )

        round_id = inputs.round
        already_done = inputs.done
        adv = self.adversarial_verifier_index
        v = self.verifier_index

        guess_mask = self.get_verifier_guess_mask_from_rounds_and_seed(
            round_id, inputs.seed
        )
        adv_decision = self.get_effective_verifier_decision(
            inputs.decision[..., adv], inputs.y
        )
        adv_already_done = already_done | inputs.agent_done[..., adv]
        adv_decided = (
            self.get_decision_made_mask(round_id, guess_mask, adv_decision)
            & ~adv_already_done
        )
        adv_done = adv_already_done | adv_decided
        verifier_done = base.agent_done[..., v]
        both_done = verifier_done & adv_done

        terminated = base.terminated | (
            (round_id >= self.max_message_rounds - 1) & ~already_done & ~both_done
        )
        shared_done = already_done | both_done | terminated

        agent_done = inputs.agent_done | shared_done[..., None]
        agent_done[..., v] |= verifier_done
        agent_done[..., adv] |= adv_done
        # the simulator imitates the adversarial verifier: once that is done, its
        # decisions earn nothing (its reward is 0 from then on) and must not train it
        agent_done[..., self.simulator_index] |= adv_done

        simulator_reward = self.get_simulator_reward(
            round_id, inputs.seed, message_logits, decision_logits
        )
        simulator_reward = torch.where(
            adv_already_done, torch.zeros_like(simulator_reward), simulator_reward
        )

        reward = torch.zeros(
            (*batch_shape, self.num_agents), dtype=torch.float, device=round_id.device
        )
        reward[..., :base_count] = base.reward
        reward[..., self.simulator_index] = simulator_reward
        reward[..., adv] = -simulator_reward
        coefficient = float(self.hyper_params.zk_protocol.aux_prover_reward_coefficient)
        for index in self.prover_indices:
            reward[..., index] += coefficient * simulator_reward
        return ProtocolStepResult(shared_done, agent_done, terminated, reward)

    def get_simulator_reward(
        self,
        round_id: Tensor,
        seed: Tensor | None,
        message_logits: Tensor,
        decision_logits: Tensor,
    ) -> Tensor:
        """The simulator's reward before masking: float ``[...]``.

        ``coefficient × (cos(adversarial verifier's and simulator's message logits on
        the channels the adversarial verifier is active on) + cos(their decision
        logits where a verdict can count: the verifier's turns from round
        min_message_rounds - 1 on))``; a cosine similarity of all-zero vectors
        counts as 0.
        """
        count = self.base_protocol.num_message_channels
        adv = self.adversarial_verifier_index
        sim = self.simulator_index
        batch_dims = round_id.dim()
        # Indexed from the front: the message dimensions after the channel vary
        adv_messages = message_logits.select(batch_dims, adv)
        adv_messages = adv_messages.narrow(batch_dims, count, count).float()
        sim_messages = message_logits.select(batch_dims, sim)
        sim_messages = sim_messages.narrow(batch_dims, 2 * count, count).float()
        active = self.get_active_agents_mask_from_rounds_and_seed(round_id, seed)[
            ..., adv, count : 2 * count
        ].to(message_logits.device)
        extra_dims = adv_messages.dim() - active.dim()
        active = active.reshape(*active.shape, *([1] * extra_dims))
        adv_messages = torch.where(active, adv_messages, torch.zeros_like(adv_messages))
        sim_messages = torch.where(active, sim_messages, torch.zeros_like(sim_messages))
        message_similarity = torch.cosine_similarity(
            adv_messages.flatten(batch_dims), sim_messages.flatten(batch_dims), dim=-1
        )

        # Decisions are compared only where a verdict can count: on the verifier's
        # turns from round min_message_rounds - 1 on (the decision mask's rule).
        # Before that every decision is restricted to "continue", so the two agents'
        # decision distributions are the same whatever their logits, and neither
        # agent's loss sees those decisions.
        guess = self.get_verifier_guess_mask_from_rounds_and_seed(round_id, seed)
        guess = guess & (round_id >= self.min_message_rounds - 1)
        guess = guess.to(decision_logits.device)[..., None]
        adv_decisions = decision_logits[..., adv, :].float()
        sim_decisions = decision_logits[..., sim, :].float()
        adv_decisions = torch.where(
            guess, adv_decisions, torch.zeros_like(adv_decisions)
        )
        sim_decisions = torch.where(
            guess, sim_decisions, torch.zeros_like(sim_decisions)
        )
        decision_similarity = torch.cosine_similarity(
            adv_decisions, sim_decisions, dim=-1
        )

        coefficient = float(self.hyper_params.zk_protocol.simulator_reward_coefficient)
        return coefficient * (message_similarity + decision_similarity)

    # ----- Reward ranges

    def _simulator_bound(self) -> float:
        coefficient = abs(
            float(self.hyper_params.zk_protocol.simulator_reward_coefficient)
        )
        return 2.0 * coefficient * max(self.max_verifier_questions, 1)

    def max_reward(self, agent_name: str) -> float:
        if agent_name in ZK_AGENT_NAMES:
            return self._simulator_bound()
        base = self.base_protocol.max_reward(agent_name)
        if agent_name in self.prover_names:
            aux = abs(
                float(self.hyper_params.zk_protocol.aux_prover_reward_coefficient)
            )
            return base + aux * self._simulator_bound()
        return base

    def min_reward(self, agent_name: str) -> float:
        if agent_name in ZK_AGENT_NAMES:
            return -self._simulator_bound()
        base = self.base_protocol.min_reward(agent_name)
        if agent_name in self.prover_names:
            aux = abs(
                float(self.hyper_params.zk_protocol.aux_prover_reward_coefficient)
            )
            return base - aux * self._simulator_bound()
        return base
