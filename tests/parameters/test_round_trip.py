"""``to_dict`` / ``from_dict`` round-trip exactly, over generated parameter trees."""

from __future__ import annotations

import json
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nip_core.parameters import HyperParameters

finite = {"allow_nan": False, "allow_infinity": False}
names = st.text(alphabet="abcxyz_", min_size=1, max_size=6)
lr_factors = st.fixed_dictionaries(
    {},
    optional={
        "actor": st.floats(0, 10, **finite),
        "critic": st.floats(0, 10, **finite),
    },
)


@st.composite
def schedules(draw):
    kind = draw(st.sampled_from(["constant", "contiguous", "alternating", "none"]))
    if kind == "none":
        return None
    if kind == "constant":
        return {"_type": "ConstantUpdateSchedule"}
    if kind == "contiguous":
        period = draw(st.integers(1, 20))
        stop = draw(st.integers(0, period))
        start = draw(st.integers(0, stop))
        return {
            "_type": "ContiguousPeriodicUpdateSchedule",
            "period": period,
            "start": start,
            "stop": stop,
        }
    period = draw(st.integers(2, 20))
    return {
        "_type": "AlternatingPeriodicUpdateSchedule",
        "period": period,
        "first_agent_num_rounds": draw(st.integers(1, period - 1)),
        "first_agent": draw(st.booleans()),
    }


@st.composite
def agents(draw):
    common = {
        "agent_lr_factor": lr_factors,
        "body_lr_factor": lr_factors,
        "use_manual_architecture": st.booleans(),
        "checkpoint_source": st.sampled_from(["local", "wandb"]),
        "checkpoint_run_id": st.none() | names,
        "orthogonal_initialisation_gain": st.floats(0.01, 5, **finite),
    }
    toy = {
        "d_hidden": st.integers(1, 512),
        "activation": st.sampled_from(["relu", "tanh"]),
        "dropout": st.floats(0, 0.99, **finite),
        "tags": st.lists(names, max_size=3),
    }
    is_random = draw(st.booleans())
    agent = draw(
        st.fixed_dictionaries({}, optional=common if is_random else {**common, **toy})
    )
    schedule = draw(schedules())
    if schedule is not None:
        agent["update_schedule"] = schedule
    if is_random or draw(st.booleans()):
        agent["is_random"] = is_random
    return agent


@st.composite
def configs(draw):
    zero_knowledge = draw(st.booleans())
    names_ = ["prover", "verifier"]
    if zero_knowledge:
        names_ += ["adversarial_verifier", "simulator"]
    chosen = draw(st.lists(st.sampled_from(names_), unique=True))
    agent_map = {name: draw(agents()) for name in chosen}
    if len(chosen) < len(names_) or draw(st.booleans()):
        agent_map["_default"] = draw(agents())
    config = {
        "scenario": "toy",
        "trainer": draw(st.sampled_from(["toy_trainer", "reinforce"])),
        "dataset": draw(st.sampled_from(["toy_small", "toy_large", "./mine"])),
        "interaction_protocol": draw(st.sampled_from(["toy_protocol", "nip"])),
        "seed": draw(st.integers(0, 2**40)),
        "test_size": draw(st.floats(0.01, 0.99, **finite)),
        "message_size": draw(st.integers(1, 4)),
        "test_dataset_split": draw(st.sampled_from(["validation", "test"])),
        "protocol_common": {"zero_knowledge": zero_knowledge},
        "agents": agent_map,
    }
    config["rl"] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "frames_per_batch": st.none() | st.integers(1, 10_000),
                "num_epochs": st.integers(1, 50),
                "lr": st.floats(0, 1, **finite),
                "gamma": st.floats(0, 1, **finite),
                "clip_value": st.none() | st.booleans() | st.floats(0, 10, **finite),
                "loss_critic_type": st.sampled_from(["l1", "l2", "smooth_l1"]),
                "body_lr_factor_override": st.none() | lr_factors,
            },
        )
    )
    config["toy_section"] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "rate": st.floats(0.001, 100, **finite),
                "mode": st.sampled_from(["a", "b", "c"]),
                "factors": lr_factors,
                "widths": st.lists(st.integers(1, 64), max_size=4),
            },
        )
    )
    config["toy_other"] = {"flag": draw(st.booleans()), "label": draw(names)}
    config["message_regression"] = {"agents": draw(st.none() | st.lists(names))}
    return config


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(config=configs())
def test_round_trip_is_exact(toy, config):
    hp = HyperParameters(**config)
    saved = json.loads(json.dumps(hp.to_dict()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = HyperParameters.from_dict(saved)
    assert back == hp
    assert back.to_dict() == saved
    for name, agent in dict.items(hp.agents):
        assert type(back.agents[name]) is type(agent)
        assert back.agents[name].update_schedule == agent.update_schedule


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(config=configs())
def test_dict_and_object_construction_agree(toy, config):
    hp = HyperParameters(**config)
    again = HyperParameters(
        scenario=hp.scenario,
        trainer=hp.trainer,
        dataset=hp.dataset,
        interaction_protocol=hp.interaction_protocol,
        seed=hp.seed,
        test_size=hp.test_size,
        message_size=hp.message_size,
        test_dataset_split=hp.test_dataset_split,
        agents=hp.agents,
        **hp.sections,
    )
    assert again == hp
