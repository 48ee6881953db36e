"""Text rollouts: shapes, the protocol step's view, exact JSONL round trips,
selection, chats for fine-tuning, transcripts, and no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from nip_core.runs.rollouts import episodes_from_rollout, read_rollout_sample
from nip_core.text.rollouts import TextRollouts


def make_rollouts() -> TextRollouts:
    rollouts = TextRollouts(
        ["prover", "verifier"],
        ["main"],
        3,
        [{"y": 1, "question": "Is 4 even?"}, {"y": 0, "question": "Ünïcødé 7?"}],
        iteration=5,
        split="train",
    )
    rollouts["seed"] = [11, 12]
    rollouts["datapoint_index"] = [3, 9]
    rollouts["sample_key"] = ["k0", "k1"]
    # episode 0: verifier asks, prover answers, verifier accepts (right)
    rollouts["agents.active"][0, 0, 1] = True
    rollouts["agents.message"][0, 0, 1, 0] = "Why?"
    rollouts["agents.raw_output"][0, 0, 1] = "Why?"
    rollouts["agents.prompt"][0, 0, 1] = [
        {"role": "system", "content": "You verify."},
        {"role": "user", "content": "Please begin."},
    ]
    rollouts["agents.active"][0, 1, 0] = True
    rollouts["agents.message"][0, 1, 0, 0] = "Because it is."
    rollouts["agents.raw_output"][0, 1, 0] = "Because it is."
    rollouts["agents.retries"][0, 1, 0] = 2
    rollouts["agents.tokens"][0, 1, 0] = 4
    rollouts["agents.active"][0, 2, 1] = True
    rollouts["agents.decision"][0, 2, 1] = 1
    rollouts["agents.raw_output"][0, 2, 1] = "Fine.\nDecision: accept"
    rollouts["agents.prompt"][0, 2, 1] = [
        {"role": "system", "content": "You verify."},
        {"role": "user", "content": "Please begin."},
        {"role": "assistant", "content": "Why?"},
        {"role": "user", "content": "Prover: Because it is."},
    ]
    rollouts["agents.reward"][0, 2] = [1.0, 1.0 / 3.0]
    rollouts["done"][0, 2] = True
    rollouts["agents.done"][0, 2] = True
    rollouts["verdict"][0] = 1
    # episode 1: ends at round 0 with an invalid verifier response, then padding
    rollouts["agents.active"][1, 0, 1] = True
    rollouts["agents.valid_response"][1, 0, 1] = False
    rollouts["agents.message"][1, 0, 1, 0] = ""
    rollouts["agents.token_limit"][1, 0, 1] = True
    rollouts["done"][1] = True
    rollouts["terminated"][1] = True
    rollouts["padding"][1, 1:] = True
    rollouts["agents.reward"][1, 0, 1] = -1.0
    return rollouts


def test_shapes_and_defaults():
    rollouts = TextRollouts(["a_prover", "verifier"], ["c0", "c1"], 4, [{"y": 1}] * 3)
    assert rollouts["seed"].shape == (3,)
    assert rollouts["done"].shape == (3, 4)
    assert rollouts["agents.decision"].shape == (3, 4, 2)
    assert rollouts["agents.message"].shape == (3, 4, 2, 2)
    assert (rollouts["agents.decision"] == 2).all()
    assert (rollouts["verdict"] == -1).all()
    assert rollouts["agents.valid_response"].all()
    assert (rollouts["y"] == 1).all()
    # tuple keys read the same arrays
    assert rollouts[("agents", "decision")] is rollouts["agents.decision"]
    with pytest.raises(KeyError, match="no field 'bogus'"):
        rollouts["bogus"] = 1


def test_step_inputs_are_what_the_protocol_reads():
    rollouts = make_rollouts()
    at0 = rollouts.step_inputs(0)
    assert at0["round"].tolist() == [0, 0]
    assert at0["done"].tolist() == [False, False]
    assert at0[("agents", "done")].tolist() == [[False, False], [False, False]]
    at1 = rollouts.step_inputs(1)
    # "done" is the state before the round: episode 1 ended in round 0
    assert at1["done"].tolist() == [False, True]
    assert at1["terminated"].tolist() == [False, True]
    assert at1[("agents", "decision")].tolist() == [[2, 2], [2, 2]]
    assert "prover_stance" not in at1
    rollouts["prover_stance"] = [0, 1]
    assert rollouts.step_inputs(2)["prover_stance"].tolist() == [0, 1]
    assert rollouts.step_inputs(2)[("agents", "decision")].tolist() == [[2, 1], [2, 2]]


def test_derived_quantities():
    rollouts = make_rollouts()
    assert rollouts.episode_length.tolist() == [3, 1]
    assert rollouts.episode_reward.tolist() == [[1.0, 1.0 / 3.0], [0.0, -1.0]]


def test_returns_are_the_decimals_their_rewards_add_up_to():
    from nip_core.text.rollouts import exact_returns

    sums = [0.7 + 0.1, -0.2 + -0.2 + -0.2 + 1.0, 0.1 * 3, 1234.5 + 0.1]
    assert sums[:3] == [0.7999999999999999, 0.3999999999999999, 0.30000000000000004]
    assert exact_returns(sums).tolist() == [0.8, 0.4, 0.3, 1234.6]
    # anything else stays as it is: a third, decimals of more than 9 places
    others = [1.0 / 3.0, 1.234567e-5, -2.0 / 7.0, 0.0, -1.0]
    assert exact_returns(others).tolist() == others
    rollouts = make_rollouts()
    rollouts["agents.reward"][0, :, 0] = [-0.2, -0.2, -0.2 + 1.0]
    assert rollouts.episode_reward[0, 0] == 0.4


def test_a_damaged_rollouts_file_is_named_with_its_line(tmp_path):
    from nip_core.errors import CheckpointError

    path = make_rollouts().save_jsonl(tmp_path / "iter_000000.jsonl")
    text = path.read_bytes()
    path.write_bytes(text + b'{"bad')
    with pytest.raises(
        CheckpointError, match=r"iter_000000.jsonl is damaged at line 3"
    ):
        TextRollouts.load_jsonl(path)
    path.write_bytes(b"\xff" + text)
    with pytest.raises(CheckpointError, match=r"is damaged at line 1 \('utf-8' codec"):
        TextRollouts.load_jsonl(path)


def test_jsonl_round_trip_is_exact(tmp_path):
    rollouts = make_rollouts()
    rollouts["prover_stance"] = [1, 0]
    path = rollouts.save_jsonl(tmp_path / "rollouts" / "iter_000005.jsonl")
    loaded = TextRollouts.load_jsonl(path)
    assert loaded == rollouts
    assert loaded["agents.reward"][0, 2, 1] == 1.0 / 3.0  # float64 exactly
    assert loaded.datapoints[1]["question"] == "Ünïcødé 7?"
    assert loaded.iteration == 5 and loaded.split == "train"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["verdict"] == 1
    assert first["rounds"][2]["agents"]["verifier"]["decision"] == 1
    assert first["rounds"][1]["agents"]["prover"]["messages"] == {
        "main": "Because it is."
    }


def test_changed_rollouts_are_not_equal():
    left, right = make_rollouts(), make_rollouts()
    assert left == right
    right["agents.prompt"][0, 0, 1][1]["content"] = "Begin now."
    assert left != right


def test_unknown_format_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    record = make_rollouts().episode_dict(0)
    record["format"] = 99
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match="unknown text rollout format 99"):
        TextRollouts.load_jsonl(path)


def test_select_repeats_and_copies():
    rollouts = make_rollouts()
    picked = rollouts.select([1, 0, 0])
    assert picked.batch_size == 3
    assert picked["datapoint_index"].tolist() == [9, 3, 3]
    picked["agents.prompt"][1, 0, 1][0]["content"] = "changed"
    assert rollouts["agents.prompt"][0, 0, 1][0]["content"] == "You verify."


def test_concatenate():
    rollouts = make_rollouts()
    both = TextRollouts.concatenate([rollouts, rollouts.select([1])])
    assert both.batch_size == 3
    assert both["datapoint_index"].tolist() == [3, 9, 9]
    assert both.select([0, 1]) == rollouts
    other = TextRollouts(["prover", "verifier"], ["main"], 2, [{"y": 1}])
    with pytest.raises(ValueError, match="different agents, channels or rounds"):
        TextRollouts.concatenate([rollouts, other])


def test_agent_chat_ends_on_the_agents_own_message():
    rollouts = make_rollouts()
    chat = rollouts.agent_chat(0, "verifier")
    assert chat[-1] == {"role": "assistant", "content": "Fine.\nDecision: accept"}
    assert chat[:-1] == rollouts["agents.prompt"][0, 2, 1]
    first = rollouts.agent_chat(0, "verifier", round_id=0)
    assert first[-1]["content"] == "Why?"
    # the prover got no prompt recorded in this hand-built batch
    assert rollouts.agent_chat(0, "prover") is None
    assert rollouts.agent_chat(1, "prover") is None


def test_transcript_is_readable():
    text = make_rollouts().transcript(0)
    assert "verdict: accept, correct" in text
    assert "[round 1] prover (2 retries)" in text
    assert "  -> main: Because it is." in text
    assert "[round 2] verifier (decision: accept)" in text
    invalid = make_rollouts().transcript(1)
    assert "invalid response; hit the token limit" in invalid
    assert "round 1" not in invalid  # padding is not shown
    assert "not sent" not in invalid  # no raw output recorded


def test_transcript_shows_what_an_invalid_response_said():
    rollouts = make_rollouts()
    rollouts["agents.retries"][1, 0, 1] = 1
    rollouts["agents.raw_output"][1, 0, 1] = "Decision: maybe"
    lines = rollouts.transcript(1).splitlines()
    assert lines[1:4] == [
        "[round 0] verifier (1 retry; invalid response; hit the token limit)",
        "  -> main: ",
        "  (its last attempt, not sent: Decision: maybe)",
    ]


def test_runs_rollouts_take_text_rollouts(tmp_path):
    rollouts = make_rollouts()
    episodes = episodes_from_rollout(rollouts, num_episodes=1, iteration=5)
    assert episodes == [rollouts.episode_dict(0)]
    path = rollouts.save_jsonl(tmp_path / "iter_000005.jsonl")
    assert read_rollout_sample(path)[1]["datapoint_index"] == 9


def test_text_world_modules_import_without_torch():
    code = (
        "import sys\n"
        "import nip_core.text.rollouts, nip_core.text.environment\n"
        "import nip_core.text.agents, nip_core.text.sampling, nip_core.text.groups\n"
        "import nip_core.text.backend, nip_core.text.data, nip_core.text.stats\n"
        "import nip_core.text.parsing, nip_core.parameters.text\n"
        "import nip_core.scenario.environment_base, nip_core.scenario.data_base\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'openai' not in sys.modules, 'openai was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_start_up_does_not_import_openai():
    code = (
        "import sys\n"
        "import nip_core, nip_core.cli.main\n"
        "from nip_core.plugins import get_plugin_manager\n"
        "get_plugin_manager().build_all()\n"
        "assert 'openai' not in sys.modules\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_empty_batch_fields():
    rollouts = TextRollouts(["verifier"], ["main"], 1, [])
    assert rollouts.batch_size == 0
    assert rollouts.episode_length.shape == (0,)
    assert np.asarray(rollouts["seed"]).shape == (0,)
