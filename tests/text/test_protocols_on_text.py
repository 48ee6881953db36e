"""Every built-in protocol stepped on text episodes: who speaks when, on which
channel, who sees what, and the exact rewards, done signals and verdicts.

Each test serves a responder on the local test server that answers from the
system prompt and the chat, so the decisions are known in advance.
"""

from __future__ import annotations

import re

import attrs
import pytest

from nip_core.factory import build_scenario_instance
from nip_core.testing.openai_server import OpenAiTestServer
from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN
from nip_core.testing.synthetic_text.fixtures import SyntheticTextScenario
from nip_core.text.sampling import sample_rollouts

NUMBER = re.compile(r"the number (\d+) is even")
HEADERS = re.compile(r"'((?:Question|Message) for [^']+:)'")


def truth(messages) -> bool:
    return int(NUMBER.search(messages[0]["content"]).group(1)) % 2 == 0


def responder(verdict_round_marker: str = "last turn", verdict: str = "truth"):
    """Verifiers ask (with headers when asked to) until told it is their last turn,
    then give ``verdict`` (the truth, always accept, or never decide)."""

    def respond(model, messages, request, rng):
        system = messages[0]["content"]
        last = messages[-1]["content"]
        if "You are the verifier" not in system:
            side = "holds" if "claim holds" in system else "fails"
            return f"I say the claim {side} (turn {len(messages) // 2})."
        if verdict_round_marker in last and verdict != "never":
            accept = truth(messages) if verdict == "truth" else verdict == "accept"
            return f"Done.\nDecision: {'accept' if accept else 'reject'}"
        headers = HEADERS.findall(last)
        if headers:
            return "\n".join(
                f"{h} is it even? (turn {len(messages)}, {h[:-1]})" for h in headers
            )
        return f"Is it even? (turn {len(messages)})"

    return respond


@pytest.fixture
def play(register_plugin, tmp_path, test_protocols):
    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    servers = []

    def run(protocol, respond=None, count=4, **overrides):
        server = OpenAiTestServer(models=["scripted"], responder=respond or responder())
        server.start()
        servers.append(server)
        scenario = SyntheticTextScenario(tmp_path, server)
        hyper_params = scenario.hyper_params(protocol, **overrides)
        instance = build_scenario_instance(hyper_params, scenario.settings())
        try:
            rollouts = sample_rollouts(
                instance.train_environment, instance.agents, list(range(count))
            )
        finally:
            instance.close()
        return rollouts, instance.protocol_handler

    yield run
    for server in servers:
        server.stop()


def active(rollouts, b):
    """``[(round, agent, channels)]`` of episode b's turns."""
    out = []
    for r in range(rollouts.max_rounds):
        for a, agent in enumerate(rollouts.agent_names):
            if rollouts["agents.active"][b, r, a]:
                channels = [
                    c
                    for i, c in enumerate(rollouts.channel_names)
                    if rollouts["agents.message"][b, r, a, i] is not None
                ]
                out.append((r, agent, channels))
    return out


def rewards(rollouts, b):
    return dict(
        zip(rollouts.agent_names, rollouts.episode_reward[b].tolist(), strict=True)
    )


def test_nip(play):
    rollouts, _ = play("nip")
    for b in range(4):
        y = int(rollouts["y"][b])
        assert active(rollouts, b) == [
            (0, "verifier", ["main"]),
            (1, "prover", ["main"]),
            (2, "verifier", ["main"]),
        ]
        assert rollouts["verdict"][b] == y
        assert rewards(rollouts, b) == {"prover": float(y), "verifier": 1.0}
        assert rollouts["done"][b].tolist() == [False, False, True]
        assert not rollouts["terminated"][b].any()
        # the verifier's last prompt holds its question and the prover's answer
        prompt = rollouts["agents.prompt"][b, 2, 1]
        assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
        assert prompt[3]["content"].startswith("Prover: I say the claim holds")
        assert "This is your last turn" in prompt[3]["content"]


def test_nip_verdict_before_min_rounds_is_ignored(play):
    # The verifier says "accept" on every turn: round 0 is before min round 3 - 1
    def respond(model, messages, request, rng):
        if "You are the verifier" in messages[0]["content"]:
            return "Decision: accept"
        return "Believe me."

    rollouts, _ = play(
        "nip",
        respond,
        nip_protocol={"max_message_rounds": 3, "min_message_rounds": 3},
    )
    for b in range(4):
        y = int(rollouts["y"][b])
        assert rollouts["agents.decision"][b, 0, 1] == 1
        assert not rollouts["done"][b, 0]
        assert rollouts["done"][b, 2]
        assert rollouts["verdict"][b] == 1
        assert rewards(rollouts, b)["verifier"] == (1.0 if y == 1 else -1.0)


def test_nip_without_a_verdict_terminates_with_the_penalty(play):
    rollouts, _ = play("nip", responder(verdict="never"))
    for b in range(4):
        assert rollouts["terminated"][b].tolist() == [False, False, True]
        assert rollouts["verdict"][b] == -1
        assert rewards(rollouts, b) == {"prover": 0.0, "verifier": -1.0}


def test_adp(play):
    rollouts, _ = play("adp")
    for b in range(4):
        assert active(rollouts, b) == [
            (0, "prover", ["main"]),
            (1, "verifier", ["main"]),
        ]
        assert rollouts["verdict"][b] == rollouts["y"][b]


def test_solo_verifier(play):
    rollouts, _ = play("solo_verifier")
    for b in range(4):
        assert active(rollouts, b) == [(0, "verifier", ["main"])]
        assert (
            rollouts["padding"][b].tolist() == [False, True] or rollouts.max_rounds == 1
        )
        assert rewards(rollouts, b) == {"verifier": 1.0}


def test_debate_addresses_each_prover_and_rewards_by_side(play):
    rollouts, handler = play("debate")
    channels = ["prover0_channel", "prover1_channel"]
    for b in range(4):
        y = int(rollouts["y"][b])
        assert active(rollouts, b) == [
            (0, "verifier", channels),
            (1, "prover0", ["prover0_channel"]),
            (1, "prover1", ["prover1_channel"]),
            (2, "verifier", channels),
        ]
        # the verifier's round-0 response was split at its headers
        v = rollouts.agent_index("verifier")
        assert rollouts["agents.message"][b, 0, v, 0].startswith("is it even?")
        assert "Question for Prover 1" in rollouts["agents.raw_output"][b, 0, v]
        assert rollouts["verdict"][b] == y
        assert rewards(rollouts, b) == {
            "prover0": float(y == 0),
            "prover1": float(y == 1),
            "verifier": 1.0,
        }
        # in debate every prover sees both channels: each hears both questions,
        # each labelled with the prover it was addressed to
        for prover in ("prover0", "prover1"):
            prompt = rollouts["agents.prompt"][b, 1, rollouts.agent_index(prover)]
            parts = prompt[-1]["content"].split("\n\n")
            questions = [part for part in parts if part.startswith("Verifier")]
            assert len(questions) == 2
            for n in (0, 1):
                (part,) = (
                    q for q in questions if q.startswith(f"Verifier, to Prover {n}:")
                )
                assert part.endswith(f"Question for Prover {n})")


def test_mnip_provers_see_only_their_own_channel(play):
    rollouts, _ = play(
        "mnip",
        responder(),
        mnip_protocol={"max_message_rounds": 5, "min_message_rounds": 1},
    )
    p0 = rollouts.agent_index("prover0")
    for b in range(4):
        turns = active(rollouts, b)
        assert [t[:2] for t in turns] == [
            (0, "verifier"),
            (1, "prover0"),
            (1, "prover1"),
            (2, "verifier"),
            (3, "prover0"),
            (3, "prover1"),
            (4, "verifier"),
        ]
        prompt = rollouts["agents.prompt"][b, 3, p0]
        shown = "\n".join(m["content"] for m in prompt)
        own = rollouts["agents.message"][b, 2, rollouts.agent_index("verifier"), 0]
        other = rollouts["agents.message"][b, 2, rollouts.agent_index("verifier"), 1]
        assert own in shown
        assert other not in shown
        assert rollouts["verdict"][b] == rollouts["y"][b]


def test_merlin_arthur_picks_the_prover_by_seed_parity(play):
    rollouts, _ = play("merlin_arthur", count=8)
    for b in range(8):
        speaker = "prover0" if rollouts["seed"][b] % 2 == 0 else "prover1"
        assert active(rollouts, b) == [
            (0, speaker, ["main"]),
            (1, "verifier", ["main"]),
        ]


def test_multi_channel_test_routes_channels(play):
    rollouts, handler = play("multi_channel_test", count=2)
    for b in range(2):
        for r, agent, channels in active(rollouts, b):
            for channel in channels:
                assert handler.can_agent_be_active(agent, r, channel)
                assert handler.can_agent_see_channel(agent, channel)


def test_force_guess_is_logged(play):
    rollouts, _ = play(
        "nip", responder(verdict="accept"), protocol_common={"force_guess": "y"}
    )
    for b in range(4):
        y = int(rollouts["y"][b])
        # the forced verdict (the truth) is what the rollouts record
        assert rollouts["verdict"][b] == y
        assert rewards(rollouts, b)["verifier"] == 1.0


def test_a_forced_verdict_is_logged_only_where_it_counts(play):
    # the verifier speaks in rounds 0 and 2; verdicts count from round 2 on
    rollouts, _ = play(
        "nip",
        responder(),
        protocol_common={"force_guess": "one"},
        nip_protocol={"max_message_rounds": 3, "min_message_rounds": 3},
    )
    v = rollouts.agent_index("verifier")
    for b in range(4):
        # round 0: the verifier asked, and that is what is recorded
        assert rollouts["agents.decision"][b, 0, v] == 2
        # round 2: the forced verdict
        assert rollouts["agents.decision"][b, 2, v] == 1
        assert rollouts["verdict"][b] == 1


def test_invalid_prover_response_is_penalised(play):
    def respond(model, messages, request, rng):
        if "You are the verifier" in messages[0]["content"]:
            return "Is it even?"
        return "   "  # empty: invalid every time

    rollouts, _ = play(
        "nip",
        respond,
        protocol_common={"prover_invalid_response_penalty": -2.0},
        agents={"_default": {"num_invalid_generation_retries": 2}},
    )
    p = rollouts.agent_index("prover")
    for b in range(4):
        assert rollouts["agents.retries"][b, 1, p] == 2
        assert not rollouts["agents.valid_response"][b, 1, p]
        assert rollouts["agents.message"][b, 1, p, 0] == ""
        assert rollouts["terminated"][b, 1]
        assert rewards(rollouts, b)["prover"] == -2.0
        assert rollouts.episode_length[b] == 2


def test_a_verdict_in_the_round_a_prover_answers_invalidly_is_the_verdict(play):
    # multi_channel_test: in round 2 the verifier gives its first verdict while
    # prover2 speaks on prover_chat; prover2's empty answer terminates the episode
    # there, yet the verdict counted in the rewards, so it is the episode's verdict
    prover_calls = []

    def respond(model, messages, request, rng):
        if "You are the verifier" in messages[0]["content"]:
            return "Done.\nDecision: accept"
        prover_calls.append(len(messages))
        # rounds 0 and 1 hold 5 prover turns; the 6th is prover2's in round 2
        return "   " if len(prover_calls) > 5 else "It holds."

    rollouts, _ = play(
        "multi_channel_test",
        respond,
        count=1,
        protocol_common={
            "prover_invalid_response_penalty": -2.0,
            "verifier_incorrect_penalty": -1.0,
        },
        agents={"_default": {"num_invalid_generation_retries": 0}},
    )
    v, p2 = rollouts.agent_index("verifier"), rollouts.agent_index("prover2")
    assert len(prover_calls) == 6
    assert not rollouts["agents.valid_response"][0, 2, p2]
    assert rollouts["terminated"][0, 2] and not rollouts["terminated"][0, 1]
    assert rollouts["agents.decision"][0, 2, v] == 1
    assert rollouts["verdict"][0] == 1
    right = int(rollouts["y"][0]) == 1
    assert rewards(rollouts, 0) == {
        "prover0": 0.0,
        "prover1": 0.0,
        "prover2": -2.0,
        "verifier": 1.0 if right else -1.0,
    }


def test_rewards_are_the_configured_values_not_their_float32_roundings(play):
    # The protocol step computes in float32 (the tensor world's dtype): -0.1 came
    # out as -0.10000000149011612 and 0.3 as 0.30000001192092896, so a verifier
    # that asked one question and was right returned 0.8999999985 and fell below
    # expert iteration's threshold of 0.9
    rollouts, _ = play(
        "nip",
        count=4,
        protocol_common={
            "verifier_no_guess_reward": -0.1,
            "verifier_reward": 1.0,
            "prover_reward": 0.3,
        },
    )
    v, p = rollouts.agent_index("verifier"), rollouts.agent_index("prover")
    for b in range(4):
        y = int(rollouts["y"][b])
        assert rollouts["agents.reward"][b, :, v].tolist() == [-0.1, 0.0, 1.0]
        assert rollouts["agents.reward"][b, :, p].tolist() == [0.0, 0.0, 0.3 * y]
        assert rollouts.episode_reward[b, v] == 0.9
        assert rollouts.episode_reward[b, v] >= 0.9


@pytest.mark.parametrize("backend_stops", [True, False])
def test_responses_end_before_a_stop_sequence(play, monkeypatch, backend_stops):
    # the prover's reply runs on past its stop sequence: the response ends before
    # it, whether the backend stops there (an endpoint taking ``stop``) or not
    # (then the sampler cuts it)
    from nip_core.text.openai_backend import OpenAiBackend

    sent = []
    agenerate = OpenAiBackend.agenerate

    async def ignoring_stop(self, request):
        sent.append(request.stop)
        return await agenerate(self, attrs.evolve(request, stop=()))

    if not backend_stops:
        monkeypatch.setattr(OpenAiBackend, "agenerate", ignoring_stop)

    def respond(model, messages, request, rng):
        if "You are the verifier" in messages[0]["content"]:
            if "last turn" in messages[-1]["content"]:
                return "Done.\nDecision: accept"
            return "Is it even? END of question"
        return "It holds. END The verifier: accept it."

    rollouts, _ = play(
        "nip",
        respond,
        count=2,
        agents={
            "verifier": {"stop_sequences": ["\nX"]},
            "prover": {"stop_sequences": ["END", "The verifier:"]},
        },
    )
    p, v = rollouts.agent_index("prover"), rollouts.agent_index("verifier")
    assert rollouts["agents.raw_output"][0, 1, p] == "It holds. "
    assert rollouts["agents.message"][0, 1, p, 0] == "It holds."
    assert rollouts["agents.raw_output"][0, 0, v] == "Is it even? END of question"
    assert not rollouts["agents.token_limit"][0, 1, p]
    if not backend_stops:
        assert ("END", "The verifier:") in sent and ("\nX",) in sent


def test_randomized_stance_is_in_the_prompt(play):
    rollouts, _ = play(
        "nip", count=8, protocol_common={"randomize_prover_stance": True}
    )
    p = rollouts.agent_index("prover")
    for b in range(8):
        stance = int(rollouts["seed"][b]) % 2
        system = rollouts["agents.prompt"][b, 1, p][0]["content"]
        assert ("claim holds" in system) == (stance == 1)
        y = int(rollouts["y"][b])
        assert rewards(rollouts, b)["prover"] == float(y == stance)


@pytest.mark.parametrize("protocol", ["nip", "debate", "mnip", "merlin_arthur"])
def test_pipelined_and_round_by_round_schedules_agree(
    register_plugin, tmp_path, protocol
):
    """Episodes that move on as soon as their own turns are done give exactly the
    rollouts of rounds played in lock step (seeds never depend on timing)."""
    from nip_core.testing.synthetic_text.fixtures import scripted_server

    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    results = []
    with scripted_server() as server:
        scenario = SyntheticTextScenario(tmp_path, server)
        for batched in (False, True):
            instance = build_scenario_instance(
                scenario.hyper_params(protocol, dataset="small"), scenario.settings()
            )
            for backend in instance.text_backends.values():
                backend.prefers_batches = batched
            try:
                results.append(
                    sample_rollouts(
                        instance.train_environment, instance.agents, list(range(12))
                    )
                )
            finally:
                instance.close()
    pipelined, lock_step = results
    if protocol in ("nip", "debate"):
        assert pipelined["agents.retries"].sum() > 0  # retries were exercised
    assert pipelined == lock_step
