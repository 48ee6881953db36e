"""The protocol contract: structural checks every protocol handler must pass.

Subclass :class:`ProtocolContract` in a test module and say how to build the
handler::

    from nip_core.testing.contracts.protocol import ProtocolContract

    class TestMyProtocolContract(ProtocolContract):
        def make_handler(self):
            return MyProtocolHandler.from_sections(my_protocol={"rounds": 4})

        def protocol_spec(self):  # optional: checks the registered record too
            return my_plugin.register_protocols()[0]

pytest then runs every ``test_*`` method below against the handler. The checks are
about structure, not about a protocol's particular rules: names, channels and
visibility agree; masks have the documented shapes and dtypes; agents only speak on
channels they see; a verifier gets a turn; every episode ends by its last round;
ending an episode gives a verifier a reward (under the default rewards); already
finished episodes stay finished and earn nothing; rewards are finite; stepping is
deterministic and leaves its inputs alone; and, where the handler allows it, its
zero-knowledge version passes the same structural checks.

:func:`make_protocol_step_td` builds the step's input TensorDict, for these checks
and for a protocol's own rule tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from tensordict import TensorDict
from torch import Tensor

from nip_core.protocols.base import (
    ProtocolHandler,
    SingleVerifierProtocolHandler,
    validate_agent_names,
)
from nip_core.records import ProtocolSpec

__all__ = ["ProtocolContract", "make_protocol_step_td"]


def make_protocol_step_td(
    handler: ProtocolHandler,
    round_id: Sequence[int] | Tensor,
    decision: Sequence[Sequence[int]] | Tensor,
    *,
    y: Sequence[int] | Tensor | None = None,
    seed: Sequence[int] | Tensor | None = None,
    done: Sequence[bool] | Tensor | None = None,
    agent_done: Sequence[Sequence[bool]] | Tensor | None = None,
    terminated: Sequence[bool] | Tensor | None = None,
    prover_stance: Sequence[int] | Tensor | None = None,
    main_message_logits: Tensor | None = None,
    decision_logits: Tensor | None = None,
    with_logits: bool = False,
) -> TensorDict:
    """The TensorDict a protocol step reads, for a one-dimensional batch.

    Parameters
    ----------
    handler : ProtocolHandler
        Gives the number of agents.
    round_id : sequence of int
        ``"round"``, one per row; its length is the batch size.
    decision : sequence of sequences of int
        ``("agents", "decision")``, ``[batch, agents]``.
    y, seed : sequence of int, optional
        ``"y"`` (stored as ``[batch, 1]``; default all 1) and ``"seed"`` (default 0).
    done, agent_done, terminated : optional
        Default all false.
    prover_stance : sequence of int, optional
        Added as ``"prover_stance"`` when given.
    main_message_logits, decision_logits : Tensor, optional
        Added under ``"agents"`` when given (zero-knowledge handlers need them).
    with_logits : bool
        Add all-zero logits (``[batch, agents, channels, 1, 2]`` and ``[batch,
        agents, 3]``) where none are given.
    """
    round_tensor = torch.as_tensor(round_id, dtype=torch.long)
    (batch,) = round_tensor.shape
    agents = handler.num_agents

    def filled(value: Any, shape: tuple[int, ...], dtype: torch.dtype, fill: Any):
        if value is None:
            return torch.full(shape, fill, dtype=dtype)
        return torch.as_tensor(value, dtype=dtype).reshape(shape)

    agents_td: dict[str, Tensor] = {
        "decision": filled(decision, (batch, agents), torch.long, 2),
        "done": filled(agent_done, (batch, agents), torch.bool, False),
    }
    if with_logits and main_message_logits is None:
        main_message_logits = torch.zeros(
            (batch, agents, handler.num_message_channels, 1, 2)
        )
    if with_logits and decision_logits is None:
        decision_logits = torch.zeros((batch, agents, 3))
    if main_message_logits is not None:
        agents_td["main_message_logits"] = main_message_logits
    if decision_logits is not None:
        agents_td["decision_logits"] = decision_logits
    data: dict[str, Any] = {
        "round": round_tensor,
        "seed": filled(seed, (batch,), torch.long, 0),
        "y": filled(y, (batch,), torch.long, 1).unsqueeze(-1),
        "done": filled(done, (batch,), torch.bool, False),
        "terminated": filled(terminated, (batch,), torch.bool, False),
        "agents": TensorDict(agents_td, batch_size=(batch, agents)),
    }
    if prover_stance is not None:
        data["prover_stance"] = filled(prover_stance, (batch,), torch.long, 1)
    return TensorDict(data, batch_size=(batch,))


def _forces_guesses(handler: ProtocolHandler) -> bool:
    # With ``force_guess`` a verifier that "continues" still gives a verdict
    return getattr(handler.protocol_common, "force_guess", None) is not None


class ProtocolContract(ABC):
    """Structural checks for one protocol handler; subclass and define
    :meth:`make_handler`."""

    seeds: ClassVar[tuple[int, ...]] = (0, 1, 2, 3, 10, 65535)
    """Episode seeds the schedule is checked for."""

    num_random_steps: ClassVar[int] = 64
    """Rows of the random step batches."""

    done_implies_verifier_reward: ClassVar[bool] = True
    """Whether ending an episode gives some verifier a non-zero reward (true under
    the default ``protocol_common`` rewards). Set false for handlers built with zero
    verdict rewards."""

    @abstractmethod
    def make_handler(self) -> ProtocolHandler:
        """Build a fresh handler of the protocol under test."""

    def protocol_spec(self) -> ProtocolSpec | None:
        """The protocol's registered record, if it should be checked too."""
        return None

    def handlers(self) -> list[ProtocolHandler]:
        """The handler, and its zero-knowledge version where it has one."""
        handler = self.make_handler()
        found = [handler]
        if handler.can_be_zero_knowledge and isinstance(
            handler, SingleVerifierProtocolHandler
        ):
            from nip_core.protocols.zero_knowledge import ZeroKnowledgeProtocolHandler

            found.append(
                ZeroKnowledgeProtocolHandler(
                    handler.hyper_params, handler.settings, base_protocol=handler
                )
            )
        return found

    # ----- Helpers

    @staticmethod
    def _random_td(handler: ProtocolHandler, rows: int, seed: int) -> TensorDict:
        generator = torch.Generator().manual_seed(seed)
        agents = handler.num_agents
        channels = handler.num_message_channels
        return make_protocol_step_td(
            handler,
            torch.randint(0, handler.max_message_rounds, (rows,), generator=generator),
            torch.randint(0, 3, (rows, agents), generator=generator),
            y=torch.randint(0, 2, (rows,), generator=generator),
            seed=torch.randint(0, 2**16, (rows,), generator=generator),
            done=torch.rand(rows, generator=generator) < 0.2,
            main_message_logits=torch.randn(
                (rows, agents, channels, 1, 5), generator=generator
            ),
            decision_logits=torch.randn((rows, agents, 3), generator=generator),
        )

    def _all_rounds_and_seeds(self, handler: ProtocolHandler) -> tuple[Tensor, Tensor]:
        rounds = torch.arange(handler.max_message_rounds)
        seeds = torch.tensor(self.seeds)
        grid_rounds = rounds.repeat_interleave(len(self.seeds))
        grid_seeds = seeds.repeat(len(rounds))
        return grid_rounds, grid_seeds

    # ----- Names, channels, visibility

    def test_agent_names(self) -> None:
        for handler in self.handlers():
            names = list(handler.agent_names)
            assert names, "a protocol needs agents"
            validate_agent_names(names, handler.agent_name_substring_exemptions)
            assert handler.num_agents == len(names)
            assert handler.prover_names == [n for n in names if "prover" in n]
            assert handler.verifier_names, "a protocol needs a verifier"
            assert all(name in names for name in handler.decider_names)
            for name in names:
                assert handler.agent_names[handler.agent_index(name)] == name

    def test_channels_and_visibility(self) -> None:
        for handler in self.handlers():
            channels = list(handler.message_channel_names)
            assert channels and len(set(channels)) == len(channels)
            assert handler.num_message_channels == len(channels)
            mask = handler.agent_channel_visibility_mask
            assert mask.dtype == torch.bool
            assert tuple(mask.shape) == (
                handler.num_agents,
                handler.num_message_channels,
            )
            expected = torch.zeros_like(mask)
            for agent, channel in handler.agent_channel_visibility:
                expected[handler.agent_index(agent), handler.channel_index(channel)] = (
                    True
                )
            assert torch.equal(mask, expected)
            for agent in handler.agent_names:
                visible = handler.get_agent_visible_channels(agent)
                assert visible, f"{agent!r} sees no channel"
                row = mask[handler.agent_index(agent)]
                assert [
                    channels[i] for i in row.nonzero().flatten().tolist()
                ] == visible

    def test_round_limits(self) -> None:
        for handler in self.handlers():
            assert 1 <= handler.min_message_rounds <= handler.max_message_rounds
            assert 1 <= handler.max_verifier_questions <= handler.max_message_rounds

    def test_spec_matches_handler(self) -> None:
        spec = self.protocol_spec()
        if spec is None:
            return
        handler = self.make_handler()
        assert tuple(spec.agent_names) == tuple(handler.agent_names)
        if spec.supports_zero_knowledge:
            assert handler.can_be_zero_knowledge
        if spec.parameter_section is not None:
            assert hasattr(handler.hyper_params, spec.parameter_section)

    # ----- Masks

    def test_mask_shapes_and_dtypes(self) -> None:
        for handler in self.handlers():
            agents, channels = handler.num_agents, handler.num_message_channels
            for shape in [(), (5,), (2, 3)]:
                rounds = torch.zeros(shape, dtype=torch.long)
                seeds = torch.ones(shape, dtype=torch.long)
                active = handler.get_active_agents_mask_from_rounds_and_seed(
                    rounds, seeds
                )
                assert active.dtype == torch.bool
                assert tuple(active.shape) == (*shape, agents, channels)
                guess = handler.get_verifier_guess_mask_from_rounds_and_seed(
                    rounds, seeds
                )
                assert guess.dtype == torch.bool and tuple(guess.shape) == shape
                decision_mask = handler.get_decision_mask_from_rounds_and_seed(
                    rounds, seeds
                )
                assert decision_mask.dtype == torch.bool
                assert tuple(decision_mask.shape) == (*shape, agents)
                restriction = handler.get_decision_restriction_from_rounds_and_seed(
                    rounds, seeds
                )
                assert tuple(restriction.shape) == shape
                assert set(restriction.flatten().tolist()) <= {0, 1, 2}

    def test_agents_only_speak_on_visible_channels(self) -> None:
        for handler in self.handlers():
            rounds, seeds = self._all_rounds_and_seeds(handler)
            active = handler.get_active_agents_mask_from_rounds_and_seed(rounds, seeds)
            visible = handler.agent_channel_visibility_mask
            assert not (active & ~visible).any(), "an agent speaks on a hidden channel"
            for row in active.nonzero().tolist():
                index, agent, channel = row
                assert handler.can_agent_be_active(
                    handler.agent_names[agent],
                    int(rounds[index]),
                    handler.message_channel_names[channel],
                ), "the tensor schedule disagrees with can_agent_be_active"

    def test_rounds_outside_schedule_are_silent(self) -> None:
        for handler in self.handlers():
            rounds = torch.tensor([-1, handler.max_message_rounds])
            active = handler.get_active_agents_mask_from_rounds_and_seed(
                rounds, torch.zeros(2, dtype=torch.long)
            )
            assert not active.any()

    def test_verifier_gets_a_turn(self) -> None:
        for handler in self.handlers():
            for seed in self.seeds:
                rounds = torch.arange(handler.max_message_rounds)
                guess = handler.get_verifier_guess_mask_from_rounds_and_seed(
                    rounds, torch.full_like(rounds, seed)
                )
                assert guess.any(), f"no verifier turn for seed {seed}"
                active = handler.get_active_agents_mask_from_rounds_and_seed(
                    rounds, torch.full_like(rounds, seed)
                )
                verifiers = [handler.agent_index(n) for n in handler.verifier_names]
                verifier_active = active[:, verifiers, :].flatten(1).any(dim=-1)
                assert not (guess & ~verifier_active).any()

    # ----- Steps

    def test_step_shapes_dtypes_and_finite_rewards(self) -> None:
        for handler in self.handlers():
            td = self._random_td(handler, self.num_random_steps, seed=1)
            shared_done, agent_done, terminated, reward = (
                handler.step_interaction_protocol(td)
            )
            rows, agents = self.num_random_steps, handler.num_agents
            assert shared_done.dtype == torch.bool and shared_done.shape == (rows,)
            assert terminated.dtype == torch.bool and terminated.shape == (rows,)
            assert agent_done.dtype == torch.bool
            assert agent_done.shape == (rows, agents)
            assert reward.dtype == torch.float and reward.shape == (rows, agents)
            assert torch.isfinite(reward).all()

    def test_done_signals_are_consistent(self) -> None:
        for handler in self.handlers():
            td = self._random_td(handler, self.num_random_steps, seed=2)
            shared_done, agent_done, terminated, reward = (
                handler.step_interaction_protocol(td)
            )
            assert not (terminated & ~shared_done).any()
            assert agent_done[shared_done].all()
            already = td["done"]
            assert shared_done[already].all(), "a finished episode was reopened"
            assert (reward[already] == 0).all(), "a finished episode earned a reward"

    def test_last_round_ends_every_episode(self) -> None:
        for handler in self.handlers():
            rows = len(self.seeds)
            td = make_protocol_step_td(
                handler,
                [handler.max_message_rounds - 1] * rows,
                [[2] * handler.num_agents] * rows,
                seed=list(self.seeds),
                with_logits=True,
            )
            shared_done, _, terminated, _ = handler.step_interaction_protocol(td)
            assert shared_done.all()
            if not _forces_guesses(handler):
                assert terminated.all(), "continuing on the last round must terminate"

    def test_continuing_before_the_last_round_does_not_end(self) -> None:
        for handler in self.handlers():
            if _forces_guesses(handler):
                continue
            rounds, seeds = self._all_rounds_and_seeds(handler)
            keep = rounds < handler.max_message_rounds - 1
            rounds, seeds = rounds[keep], seeds[keep]
            if not len(rounds):
                continue
            td = make_protocol_step_td(
                handler,
                rounds,
                torch.full((len(rounds), handler.num_agents), 2),
                seed=seeds,
                with_logits=True,
            )
            shared_done, agent_done, terminated, _ = handler.step_interaction_protocol(
                td
            )
            assert not shared_done.any()
            assert not terminated.any()

    def test_ending_an_episode_gives_a_verifier_reward(self) -> None:
        if not self.done_implies_verifier_reward:
            return
        for handler in self.handlers():
            td = self._random_td(handler, self.num_random_steps, seed=3)
            shared_done, _, _, reward = handler.step_interaction_protocol(td)
            newly_done = shared_done & ~td["done"]
            verifiers = [handler.agent_index(n) for n in handler.verifier_names]
            verifier_rewards = reward[newly_done][:, verifiers]
            assert (verifier_rewards != 0).any(dim=-1).all()

    def test_step_is_deterministic_and_leaves_inputs_alone(self) -> None:
        for handler in self.handlers():
            td = self._random_td(handler, self.num_random_steps, seed=4)
            before = td.clone()
            first = handler.step_interaction_protocol(td)
            second = handler.step_interaction_protocol(td)
            assert (td == before).all(), "the step modified its input TensorDict"
            for a, b in zip(first, second, strict=True):
                assert torch.equal(a, b)
