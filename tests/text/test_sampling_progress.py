"""The turns a text sampling announces to its progress: every turn the schedule
gives at the start, then the turns each early end takes away, so the total is an
upper bound at every moment that falls to exactly the turns played.

The verifier of each episode decides at a turn its datapoint fixes, so episodes
end in different rounds (lengths 1 to 7 under nip with 7 rounds).
"""

from __future__ import annotations

import re

import pytest

from nip_core.factory import build_scenario_instance
from nip_core.testing.openai_server import OpenAiTestServer
from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN
from nip_core.testing.synthetic_text.fixtures import SyntheticTextScenario
from nip_core.text.sampling import TurnProgress, continue_rollouts, sample_rollouts

NUMBER = re.compile(r"the number (\d+) is even")
EPISODES = list(range(12))


def decide_early(model, messages, request, rng):
    """The verifier accepts at its turn ``n % 4 + 1`` (``n`` the datapoint's
    number); the provers plead."""
    system = messages[0]["content"]
    if "You are the verifier" not in system:
        return "Believe me."
    number = int(NUMBER.search(system).group(1))
    turn = (len(messages) + 1) // 2
    return "Decision: accept" if turn > number % 4 else "Is it even?"


class Recorder:
    """A :class:`TurnProgress` that records what it hears, in order."""

    def __init__(self):
        self.events: list[tuple[str, int]] = []
        self.progress = TurnProgress(
            advance=lambda n: self.events.append(("advance", n)),
            expect=lambda n: self.events.append(("expect", n)),
        )

    def total(self, kind: str) -> int:
        return sum(n for k, n in self.events if k == kind)

    def expected(self) -> list[int]:
        return [n for k, n in self.events if k == "expect"]

    def check_bound(self) -> None:
        """At every moment the turns announced are at least the turns played."""
        announced = played = 0
        for kind, n in self.events:
            if kind == "expect":
                announced += n
            else:
                played += n
            assert played <= announced, self.events


@pytest.fixture
def build(register_plugin, tmp_path):
    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    server = OpenAiTestServer(models=["scripted"], responder=decide_early)
    server.start()
    scenario = SyntheticTextScenario(tmp_path, server)
    built = []

    def make(protocol, batched):
        hyper_params = scenario.hyper_params(
            protocol,
            dataset="small",
            nip_protocol={"max_message_rounds": 7, "min_message_rounds": 1},
        )
        instance = build_scenario_instance(hyper_params, scenario.settings())
        built.append(instance)
        for backend in instance.text_backends.values():
            backend.prefers_batches = batched
        return instance

    yield make
    for instance in built:
        instance.close()
    server.stop()


@pytest.mark.parametrize("batched", [False, True], ids=["pipelined", "round_by_round"])
@pytest.mark.parametrize(
    ("protocol", "turns_per_episode"),
    # nip: one agent a round, 7 rounds; debate and mnip: the verifier, both
    # provers together, the verifier
    [("nip", 7), ("debate", 4), ("mnip", 4)],
)
def test_the_total_falls_from_the_schedule_to_the_turns_played(
    build, protocol, turns_per_episode, batched
):
    instance = build(protocol, batched)
    recorder = Recorder()
    rollouts = sample_rollouts(
        instance.train_environment,
        instance.agents,
        EPISODES,
        progress=recorder.progress,
    )
    played = int(rollouts["agents.active"].sum())
    lengths = rollouts.episode_length
    assert lengths.min() == 1 and lengths.min() < rollouts.max_rounds
    # first the whole schedule, then only what early ends take away
    first, *rest = recorder.expected()
    assert first == len(EPISODES) * turns_per_episode
    assert rest and all(n < 0 for n in rest)
    assert recorder.total("expect") == recorder.total("advance") == played
    recorder.check_bound()


def test_continuing_announces_the_rounds_it_plays(build):
    instance = build("nip", batched=True)
    environment = instance.train_environment
    rollouts = environment.reset(datapoint_indices=EPISODES)
    first, second = Recorder(), Recorder()
    continue_rollouts(
        environment, instance.agents, rollouts, 0, stop_round=3, progress=first.progress
    )
    # rounds 0-2: three turns an episode, less those of episodes over by round 2
    assert first.expected()[0] == 3 * len(EPISODES)
    done_early = int(rollouts["done"][:, 0].sum())
    assert (
        first.total("expect")
        == first.total("advance")
        == (3 * len(EPISODES) - 2 * done_early)
    )
    continue_rollouts(
        environment, instance.agents, rollouts, 3, progress=second.progress
    )
    # from round 3 on: 4 rounds of each episode still going
    going = int((~rollouts["done"][:, 2]).sum())
    assert second.expected()[0] == 4 * going
    assert (
        second.total("expect")
        == second.total("advance")
        == (int(rollouts["agents.active"][:, 3:].sum()))
    )
    first.check_bound()
    second.check_bound()


def test_a_plain_callable_hears_the_turns_played_only(build):
    instance = build("nip", batched=False)
    counts = []
    rollouts = sample_rollouts(
        instance.train_environment, instance.agents, EPISODES, progress=counts.append
    )
    assert counts == [1] * int(rollouts["agents.active"].sum())
