"""Whole text agents: names, headers, channel order, response parsing, random
agents, and the factory's text branch."""

from __future__ import annotations

import pytest

from nip_core.text.agents import (
    RandomTextAgent,
    TextWholeAgent,
    TurnContext,
)
from nip_core.text.rollouts import TextRollouts


@pytest.fixture
def debate(synthetic_text_scenario):
    instance = synthetic_text_scenario.build(
        synthetic_text_scenario.hyper_params("debate")
    )
    yield instance
    instance.close()


def context(instance, agent, round_id=0, channels=None, restriction=0, seed=5):
    handler = instance.protocol_handler
    rollouts = TextRollouts(
        handler.agent_names,
        handler.message_channel_names,
        handler.max_message_rounds,
        [{"y": 1, "number": 12, "id": 0}],
    )
    rollouts["seed"] = [seed]
    rollouts["sample_key"] = [f"episode-{seed}"]
    return TurnContext(
        rollouts=rollouts,
        episode=0,
        round_id=round_id,
        channels=tuple(channels or handler.get_agent_visible_channels(agent)),
        restriction=restriction,
    )


def test_default_speaker_names():
    assert TextWholeAgent.default_speaker_name("verifier") == "Verifier"
    assert TextWholeAgent.default_speaker_name("prover0") == "Prover 0"
    assert TextWholeAgent.default_speaker_name("adversarial_verifier") == (
        "Adversarial Verifier"
    )


def test_the_factory_builds_whole_agents_in_groups(debate):
    verifier = debate.agents["verifier"].whole
    assert isinstance(verifier, TextWholeAgent)
    assert verifier.group is debate.shared_model_groups["verifier"]
    assert verifier.model_name == "scripted"
    assert set(debate.text_backends) == {"openai"}
    assert verifier.channel_header("prover0_channel") == "Question for Prover 0:"
    prover = debate.agents["prover0"].whole
    assert prover.channel_header("prover0_channel") == "Message for Verifier:"


def test_multi_channel_responses_are_split_at_the_headers(debate):
    verifier = debate.agents["verifier"].whole
    ctx = context(debate, "verifier")
    parsed = verifier.parse_response(
        ctx,
        "Thinking first.\n**Question for Prover 1:** why odd?\n"
        "question for prover 0: why even?",
    )
    assert parsed.valid
    assert parsed.messages == {
        "prover0_channel": "why even?",
        "prover1_channel": "why odd?",
    }
    missing = verifier.parse_response(ctx, "Question for Prover 0: hello")
    assert not missing.valid
    assert "'Question for Prover 1:'" in missing.reason
    # a verdict needs no headers
    decided = verifier.parse_response(ctx, "Enough.\nDecision: reject")
    assert decided.valid and decided.decision == 0
    # but one given before verdicts count does not end the episode: the messages
    # must be addressed as always
    early = context(debate, "verifier", restriction=1)
    too_soon = verifier.parse_response(early, "Enough.\nDecision: reject")
    assert not too_soon.valid
    assert "'Question for Prover 0:'" in too_soon.reason
    # on its last turn the verifier must give a verdict: a question is asked again
    last = context(debate, "verifier", restriction=2)
    question = verifier.parse_response(
        last, "Question for Prover 0: why?\nQuestion for Prover 1: why not?"
    )
    assert not question.valid
    assert question.reason == (
        "this is the verifier's last turn and the response gives no verdict"
    )
    assert verifier.parse_response(last, "Decision: accept").decision == 1
    empty = verifier.parse_response(ctx, "  ")
    assert not empty.valid and empty.reason == "the response is empty"


def test_headers_split_only_where_they_open_a_line(debate):
    verifier = debate.agents["verifier"].whole
    ctx = context(debate, "verifier")
    # the same words inside a sentence are part of the message, not a header
    parsed = verifier.parse_response(
        ctx,
        "Question for Prover 1: why odd, unlike my question for Prover 0: above?\n"
        "1. **Question for Prover 0:** why even?",
    )
    assert parsed.valid
    assert parsed.messages == {
        "prover0_channel": "why even?",
        "prover1_channel": "why odd, unlike my question for Prover 0: above?",
    }


def test_a_channel_addressed_twice_gets_its_own_parts_only(debate):
    verifier = debate.agents["verifier"].whole
    ctx = context(debate, "verifier")
    parsed = verifier.parse_response(
        ctx,
        "Question for Prover 0: why a?\nQuestion for Prover 1: why b?\n"
        "Question for Prover 0: and c?",
    )
    assert parsed.valid
    assert parsed.messages == {
        "prover0_channel": "why a?\n\nand c?",
        "prover1_channel": "why b?",
    }


def test_a_header_with_nothing_under_it_is_invalid(debate):
    verifier = debate.agents["verifier"].whole
    ctx = context(debate, "verifier")
    parsed = verifier.parse_response(
        ctx, "Question for Prover 0:\n**Question for Prover 1:** why b?"
    )
    assert not parsed.valid
    assert parsed.reason == "nothing under the 'Question for Prover 0:' header"
    # a verdict that counts needs no question under any header
    decided = verifier.parse_response(
        ctx, "Question for Prover 0:\nQuestion for Prover 1:\nDecision: accept"
    )
    assert decided.valid and decided.decision == 1


def test_turn_notices(debate):
    verifier = debate.agents["verifier"].whole
    notice = verifier.turn_notice(context(debate, "verifier", restriction=2))
    assert "'Question for Prover 0:', 'Question for Prover 1:'" in notice
    assert "This is your last turn" in notice
    early = verifier.turn_notice(
        context(debate, "verifier", channels=["prover0_channel"], restriction=1)
    )
    assert early == "You cannot give your verdict yet."


def test_channel_order_is_random_per_episode_but_reproducible(debate):
    verifier = debate.agents["verifier"].whole
    orders = {
        tuple(verifier.channel_order(context(debate, "verifier", seed=s), 1))
        for s in range(20)
    }
    assert orders == {
        ("prover0_channel", "prover1_channel"),
        ("prover1_channel", "prover0_channel"),
    }
    ctx = context(debate, "verifier", seed=3)
    assert verifier.channel_order(ctx, 1) == verifier.channel_order(ctx, 1)


def test_only_the_verifier_reads_the_channels_in_a_random_order(debate):
    # randomize_channel_order is about the verifier (as in the original): a debate
    # prover reads the other prover's channel first and its own, where the
    # verifier's question to it stands, last, in every episode
    for seed in range(20):
        assert debate.agents["prover0"].whole.channel_order(
            context(debate, "prover0", seed=seed), 1
        ) == ["prover1_channel", "prover0_channel"]
        assert debate.agents["prover1"].whole.channel_order(
            context(debate, "prover1", seed=seed), 1
        ) == ["prover0_channel", "prover1_channel"]


def test_channel_order_is_fixed_when_not_randomised(synthetic_text_scenario):
    instance = synthetic_text_scenario.build(
        synthetic_text_scenario.hyper_params(
            "debate", debate_protocol={"randomize_channel_order": False}
        )
    )
    verifier = instance.agents["verifier"].whole
    for seed in range(10):
        assert verifier.channel_order(context(instance, "verifier", seed=seed), 1) == [
            "prover0_channel",
            "prover1_channel",
        ]
    instance.close()


def test_random_agents_need_no_model(synthetic_text_scenario):
    hyper_params = synthetic_text_scenario.hyper_params(
        "nip", agents={"_default": {}, "prover": {"is_random": True}}
    )
    instance = synthetic_text_scenario.build(hyper_params)
    prover = instance.agents["prover"].whole
    assert isinstance(prover, RandomTextAgent)
    assert list(instance.shared_model_groups) == ["verifier"]
    out = prover.random_turn(context(instance, "prover", round_id=1))
    again = prover.random_turn(context(instance, "prover", round_id=1))
    assert out == again
    assert set(out.messages) == {"main"} and out.messages["main"]
    instance.close()


def test_random_verifier_decides_only_when_it_may(synthetic_text_scenario):
    hyper_params = synthetic_text_scenario.hyper_params(
        "nip", agents={"_default": {"is_random": True}}
    )
    instance = synthetic_text_scenario.build(hyper_params)
    verifier = instance.agents["verifier"].whole
    decisions = {
        restriction: {
            verifier.random_turn(
                context(instance, "verifier", restriction=restriction, seed=s)
            ).decision
            for s in range(30)
        }
        for restriction in (0, 1, 2)
    }
    assert decisions == {0: {0, 1, 2}, 1: {2}, 2: {0, 1}}
    instance.close()


def test_an_agent_class_that_lacks_system_prompt_is_a_plugin_error(
    synthetic_text_scenario, monkeypatch
):
    # a scenario's agent that forgot (or misspelt) system_prompt: one error naming
    # the registered part, its class and the missing method, not a TypeError
    # traceback from the factory
    from nip_core.errors import PluginError
    from nip_core.testing.synthetic_text import scenario as module

    class Forgetful(TextWholeAgent):
        def system_promt(self, context):  # misspelt
            return "Decide."

    monkeypatch.setattr(module, "SyntheticTextAgent", Forgetful)
    with pytest.raises(PluginError) as info:
        synthetic_text_scenario.build(synthetic_text_scenario.hyper_params("nip"))
    message = str(info.value)
    assert "synthetic_text/whole" in message
    assert "Forgetful" in message and "system_prompt" in message


def test_stop_sequences_take_one_string_or_several():
    from nip_core.parameters.text import TextAgentParameters

    def params(**values):
        return TextAgentParameters(model_name="m", **values)

    assert params(stop_sequences="END").stop_sequences == ("END",)
    assert params(stop_sequences=["a", "b c"]).stop_sequences == ("a", "b c")
    assert params().stop_sequences == ()
    with pytest.raises(Exception, match="non-empty strings"):
        params(stop_sequences=["ok", ""])
