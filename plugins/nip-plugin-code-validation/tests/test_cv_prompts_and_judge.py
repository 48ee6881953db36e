"""Prompts agree with rewards; the mutation operators; the judge's grade parser."""

from __future__ import annotations

import pytest

from nip_plugin_code_validation.agents import render_template
from nip_plugin_code_validation.analysis import parse_grades
from nip_plugin_code_validation.generation import extract_code
from nip_plugin_code_validation.mutation import mutants


def _prover_prompt(protocol: str, stance: str, **extra) -> str:
    return _prompt(protocol, "prover", stance, **extra)


def _prompt(protocol: str, role: str, stance: str, **extra) -> str:
    extra.setdefault("shared_reward", False)
    extra.setdefault("randomized_stance", False)
    return render_template(
        f"{protocol}/{role}.j2",
        question="Q",
        solution="def f():\n    return 1",
        max_response_words=50,
        verifier_name="Verifier",
        prover_name="Expert_1",
        prover_names=["Expert_1", "Expert_2"],
        other_prover="Expert_2",
        stance=stance,
        headers=["Question for Expert_1:", "Question for Expert_2:"],
        max_questions=2,
        decision_scale="accept or reject",
        decision_example="accept",
        **extra,
    )


def test_prover_prompts_state_their_stance() -> None:
    for protocol in ("nip", "adp", "debate", "mnip", "merlin_arthur"):
        for stance in ("accept", "reject"):
            text = _prover_prompt(protocol, stance)
            assert f"*{stance}*" in text
            assert "{{" not in text and "def f():" in text
            assert "rewarded if it is to " + stance in text
            assert "reach the *correct* verdict" not in text


PROTOCOLS_WITH_PROVERS = ("nip", "adp", "debate", "mnip", "merlin_arthur")


def test_with_a_shared_reward_prompts_say_the_provers_want_the_correct_verdict():
    for protocol in PROTOCOLS_WITH_PROVERS:
        for stance in ("accept", "reject"):
            text = _prover_prompt(protocol, stance, shared_reward=True)
            # no stance to argue: the verdict they are paid for is the correct one
            assert f"*{stance}*" not in text
            assert "whatever its true correctness" not in text
            assert "reach the *correct* verdict" in text
            assert "rewarded if the verdict is correct" in text
        verifier = _prompt(protocol, "verifier", "", shared_reward=True)
        assert "rewarded when your verdict is correct" in verifier
        assert "whatever its true correctness" not in verifier
        # without it the verifier is warned that the provers argue a side
        assert "whatever its true correctness" in _prompt(protocol, "verifier", "")


def test_mutants_keep_formatting_and_parse() -> None:
    source = "def f(xs):\n    # keep me\n    return [x for x in xs if x < 3]\n"
    found = mutants(source, first_line=3)
    assert {m.description for m in found} >= {
        "line 3: '<' -> '<='",
        "line 3: 3 -> 4",
        "line 3: 3 -> 2",
    }
    for mutant in found:
        assert "# keep me" in mutant.source and mutant.source != source


def test_parse_grades() -> None:
    assert parse_grades("relevant: 8\ntruthful: 5") == {
        "relevant": 0.8,
        "truthful": 0.5,
    }
    assert parse_grades("**Relevant**: 10\ntruthful: 0") == {
        "relevant": 1.0,
        "truthful": 0.0,
    }
    assert parse_grades("relevant: 8") is None
    assert parse_grades("relevant: 11\ntruthful: 2") is None


def test_extract_code() -> None:
    assert extract_code("Here:\n```python\ndef f():\n    pass\n```\n") == (
        "def f():\n    pass\n"
    )
    assert extract_code("no code here") is None


def test_judge_grades_provers_through_a_backend(code_validation_plugin) -> None:
    from cv_helpers import hyper_params_dict
    from nip_core.parameters import HyperParameters
    from nip_core.testing.openai_server import OpenAiTestServer
    from nip_core.text.rollouts import TextRollouts

    from nip_plugin_code_validation.analysis import ProverArgumentJudge

    def judge(model, messages, request, rng):
        prompt = messages[-1]["content"]
        assert "argue that the solution below should be *accepted*" in prompt
        return "relevant: 7\ntruthful: 9" if "line 2" in prompt else "no idea"

    with OpenAiTestServer(models=["code-model"], responder=judge) as server:
        hyper_params = HyperParameters.from_dict(
            hyper_params_dict("nip", server.base_url)
        )
        rollouts = TextRollouts(
            ["prover", "verifier"],
            ["main"],
            2,
            [{"y": 1, "question": "Q", "solution": "def f(): pass"}] * 2,
        )
        rollouts["agents.active"][:, 0, 0] = True
        rollouts["agents.message"][0, 0, 0, 0] = "line 2 is right"
        rollouts["agents.message"][1, 0, 0, 0] = "trust me"
        analyser = ProverArgumentJudge(hyper_params, None, "code_validation_judge")
        try:
            out = analyser.analyse(rollouts)
        finally:
            analyser.close()
    assert out == {
        "prover.unparsed_rate": 0.5,
        "prover.mean_relevant": 0.7,
        "prover.mean_truthful": 0.9,
    }


def test_the_scripted_models_fine_tune_effect_follows_its_examples_verdicts() -> None:
    import types

    from nip_plugin_code_validation.data import test_rows
    from nip_plugin_code_validation.scripted import fine_tune_effect, verdict_correct

    rows = test_rows("train")
    system = _prompt("nip", "verifier", "")

    def chat(row, verdict):
        text = system.replace("def f():\n    return 1", row["solution"].strip())
        return [
            {"role": "system", "content": text},
            {"role": "user", "content": "Please begin."},
            {"role": "assistant", "content": f"Checked.\nDecision: {verdict}"},
        ]

    right = [chat(r, "accept" if r["y"] else "reject") for r in rows]
    wrong = [chat(r, "reject" if r["y"] else "accept") for r in rows]
    assert [verdict_correct(c) for c in right] == [True] * len(rows)
    assert [verdict_correct(c) for c in wrong] == [False] * len(rows)
    parent = types.SimpleNamespace(attributes={"skill": 0.6})
    examples = [{"messages": c} for c in right]
    assert fine_tune_effect(parent, "supervised", examples) == {"skill": 0.8}
    mixed = [{"messages": c} for c in right[:2] + wrong[:2]]
    assert fine_tune_effect(parent, "supervised", mixed) == {"skill": 0.55}
    # prover examples say nothing about the verifier's skill
    assert fine_tune_effect(parent, "supervised", [{"messages": []}]) == {"skill": 0.6}
    pair = {
        "input": {"messages": right[0][:-1]},
        "preferred_output": [right[0][-1]],
        "non_preferred_output": [wrong[0][-1]],
    }
    assert fine_tune_effect(parent, "dpo", [pair]) == {"skill": 0.8}


def _judge_with(responder, messages_by_episode, y=1):
    from cv_helpers import hyper_params_dict
    from nip_core.parameters import HyperParameters
    from nip_core.testing.openai_server import OpenAiTestServer
    from nip_core.text.rollouts import TextRollouts

    from nip_plugin_code_validation.analysis import ProverArgumentJudge

    with OpenAiTestServer(models=["code-model"], responder=responder) as server:
        hyper_params = HyperParameters.from_dict(
            hyper_params_dict("nip", server.base_url)
        )
        count = len(messages_by_episode)
        rollouts = TextRollouts(
            ["prover", "verifier"],
            ["main"],
            2,
            [{"y": y, "question": "Q", "solution": "def f(): pass"}] * count,
        )
        rollouts["agents.active"][:, 0, 0] = True
        for b, text in enumerate(messages_by_episode):
            rollouts["agents.message"][b, 0, 0, 0] = text
        analyser = ProverArgumentJudge(hyper_params, None, "code_validation_judge")
        try:
            return analyser.analyse(rollouts)
        finally:
            analyser.close()


def test_a_judge_whose_replies_never_parse_is_a_warning(code_validation_plugin):
    from nip_core.errors import BackendWarning

    with pytest.warns(BackendWarning) as caught:
        out = _judge_with(lambda *_: "A fine argument.", ["line 2 is right"] * 2)
    assert out["prover.unparsed_rate"] == 1.0
    [warning] = caught
    assert str(warning.message).startswith(
        "code_validation_judge: none of the 2 replies of model 'code-model' "
        "(backend 'openai', code_validation.judge_model and judge_backend) grading "
        "prover gave the two lines 'relevant: N' and 'truthful: N'; the first was "
        "'A fine argument.'"
    )


def test_the_scripted_model_answers_the_judge(code_validation_plugin):
    from nip_plugin_code_validation.scripted import responder

    # the single prover argues for accept: honest on a correct solution
    honest = _judge_with(responder, ["line 2 is right"], y=1)
    assert honest == {
        "prover.unparsed_rate": 0.0,
        "prover.mean_relevant": 0.8,
        "prover.mean_truthful": 0.9,
    }
    dishonest = _judge_with(responder, ["line 2 is right"], y=0)
    assert dishonest["prover.mean_truthful"] == 0.2
