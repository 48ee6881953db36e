"""Agent update schedules: which iterations update, validation, exact round trips."""

from __future__ import annotations

import pytest

from nip_core.errors import NipConfigError
from nip_core.parameters import (
    AgentParameters,
    AgentUpdateSchedule,
    AlternatingPeriodicUpdateSchedule,
    ConstantUpdateSchedule,
    ContiguousPeriodicUpdateSchedule,
    structure,
    unstructure,
)


def updates(schedule: AgentUpdateSchedule, n: int = 12) -> list[int]:
    return [i for i in range(n) if schedule.is_update_iteration(i)]


def test_constant_updates_every_iteration():
    assert updates(ConstantUpdateSchedule()) == list(range(12))


def test_contiguous_updates_when_start_le_i_mod_period_lt_stop():
    schedule = ContiguousPeriodicUpdateSchedule(period=4, start=1, stop=3)
    assert updates(schedule) == [1, 2, 5, 6, 9, 10]


def test_contiguous_with_empty_stretch_never_updates():
    assert updates(ContiguousPeriodicUpdateSchedule(period=3, start=2, stop=2)) == []


def test_alternating_pair_partitions_iterations():
    first = AlternatingPeriodicUpdateSchedule(period=5, first_agent_num_rounds=2)
    second = AlternatingPeriodicUpdateSchedule(
        period=5, first_agent_num_rounds=2, first_agent=False
    )
    assert updates(first) == [0, 1, 5, 6, 10, 11]
    assert updates(second) == [2, 3, 4, 7, 8, 9]
    assert (first.start, first.stop, second.start, second.stop) == (0, 2, 2, 5)


@pytest.mark.parametrize(
    ("kwargs", "paths"),
    [
        ({"period": 0, "start": 0, "stop": 0}, {"period"}),
        ({"period": 4, "start": 3, "stop": 2}, {"start"}),
        ({"period": 4, "start": 0, "stop": 5}, {"stop"}),
        ({"period": 4, "start": -1, "stop": 9}, {"start"}),
        ({"period": "4", "start": 0.5, "stop": 1}, {"period", "start"}),
    ],
)
def test_contiguous_validation_reports_each_bad_field(kwargs, paths):
    with pytest.raises(NipConfigError) as info:
        ContiguousPeriodicUpdateSchedule(**kwargs)
    assert {p.path for p in info.value.problems} == paths


def test_alternating_first_agent_rounds_must_leave_room_for_the_second():
    with pytest.raises(NipConfigError) as info:
        AlternatingPeriodicUpdateSchedule(period=3, first_agent_num_rounds=3)
    assert [p.path for p in info.value.problems] == ["first_agent_num_rounds"]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (ConstantUpdateSchedule(), {"_type": "ConstantUpdateSchedule"}),
        (
            ContiguousPeriodicUpdateSchedule(period=6, start=2, stop=5),
            {
                "_type": "ContiguousPeriodicUpdateSchedule",
                "period": 6,
                "start": 2,
                "stop": 5,
            },
        ),
        (
            AlternatingPeriodicUpdateSchedule(
                period=4, first_agent_num_rounds=1, first_agent=False
            ),
            {
                "_type": "AlternatingPeriodicUpdateSchedule",
                "period": 4,
                "first_agent_num_rounds": 1,
                "first_agent": False,
            },
        ),
    ],
)
def test_schedules_round_trip_exactly(schedule, expected):
    as_dict = unstructure(schedule)
    assert as_dict == expected
    back = structure(as_dict, AgentUpdateSchedule)
    assert back == schedule
    assert type(back) is type(schedule)


def test_schedule_survives_agent_parameters_round_trip():
    schedule = AlternatingPeriodicUpdateSchedule(period=4, first_agent_num_rounds=3)
    agent = AgentParameters(update_schedule=schedule)
    back = AgentParameters.from_dict(agent.to_dict())
    assert back.update_schedule == schedule
    assert back == agent


def test_agent_parameters_accept_a_schedule_dict():
    agent = AgentParameters(
        update_schedule={
            "_type": "ContiguousPeriodicUpdateSchedule",
            "period": 2,
            "start": 0,
            "stop": 1,
        }
    )
    assert agent.update_schedule == ContiguousPeriodicUpdateSchedule(
        period=2, start=0, stop=1
    )


def test_unknown_schedule_type_suggests_and_lists_choices():
    with pytest.raises(NipConfigError) as info:
        structure({"_type": "ConstantUpdateSchedul"}, AgentUpdateSchedule)
    (problem,) = info.value.problems
    assert problem.path == "_type"
    assert "did you mean 'ConstantUpdateSchedule'?" in problem.message
    assert set(problem.choices) >= {
        "ConstantUpdateSchedule",
        "ContiguousPeriodicUpdateSchedule",
        "AlternatingPeriodicUpdateSchedule",
    }


def test_schedule_dict_without_type_is_rejected():
    with pytest.raises(NipConfigError) as info:
        structure({"period": 2}, AgentUpdateSchedule)
    assert [p.path for p in info.value.problems] == ["_type"]


def test_schedules_are_frozen():
    schedule = ContiguousPeriodicUpdateSchedule(period=2, start=0, stop=1)
    with pytest.raises(AttributeError):
        schedule.period = 3


def test_a_schedule_given_as_a_word_says_how_to_write_one():
    from nip_core.parameters import AgentParameters

    with pytest.raises(NipConfigError) as info:
        AgentParameters(update_schedule="foo")
    (problem,) = info.value.problems
    assert problem.path == "update_schedule"
    assert problem.message == (
        "expected a mapping naming the schedule class in '_type' (e.g. "
        "{_type: ConstantUpdateSchedule}, with the class's fields)"
    )
    assert set(problem.choices) >= {
        "AlternatingPeriodicUpdateSchedule",
        "ConstantUpdateSchedule",
        "ContiguousPeriodicUpdateSchedule",
    }
    assert list(problem.choices) == sorted(problem.choices)
