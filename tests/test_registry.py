"""Registry: sorting, lookup, unknown-key suggestions, duplicate refusal."""

from __future__ import annotations

import pytest

from nip_core.errors import DuplicateKeyError, NipError, UnknownKeyError
from nip_core.records import AgentPartSpec, LoggerSpec, ScenarioSpec
from nip_core.registry import Registry, closest_key


def logger(name: str, plugin: str = "p", version: str | None = "1.0") -> LoggerSpec:
    return LoggerSpec(
        name=name, logger_class=f"m:{name}", plugin=plugin, plugin_version=version
    )


@pytest.fixture
def loggers() -> Registry[LoggerSpec]:
    return Registry(
        "logger", [logger("wandb"), logger("jsonl"), logger("csv"), logger("tb")]
    )


def test_sorted_by_key_whatever_the_registration_order(loggers):
    assert list(loggers) == ["csv", "jsonl", "tb", "wandb"]
    assert list(loggers.keys()) == ["csv", "jsonl", "tb", "wandb"]
    assert [r.name for r in loggers.values()] == ["csv", "jsonl", "tb", "wandb"]
    assert [k for k, _ in loggers.items()] == ["csv", "jsonl", "tb", "wandb"]
    assert len(loggers) == 4


def test_lookup_returns_the_record(loggers):
    assert loggers["jsonl"].logger_class == "m:jsonl"
    assert loggers.get("csv").logger_class == "m:csv"
    assert "tb" in loggers
    assert "tensorboard" not in loggers
    assert 3 not in loggers


def test_unknown_key_suggests_the_closest_and_lists_known(loggers):
    with pytest.raises(UnknownKeyError) as info:
        loggers["jsnol"]
    error = info.value
    assert isinstance(error, KeyError) and isinstance(error, NipError)
    assert str(error).startswith("unknown logger 'jsnol'; did you mean 'jsonl'?")
    assert "Known loggers: csv, jsonl, tb, wandb." in str(error)
    assert error.key == "jsnol"
    assert error.known == ("csv", "jsonl", "tb", "wandb")


def test_unknown_key_case_difference_is_suggested(loggers):
    with pytest.raises(UnknownKeyError, match="did you mean 'wandb'"):
        loggers["WANDB"]


def test_unknown_key_without_close_match_has_no_suggestion(loggers):
    with pytest.raises(UnknownKeyError) as info:
        loggers["zzzzzzzz"]
    assert "did you mean" not in str(info.value)
    assert "csv, jsonl, tb, wandb" in str(info.value)


def test_get_raises_without_default_and_returns_default_with_one(loggers):
    with pytest.raises(UnknownKeyError, match="did you mean 'csv'"):
        loggers.get("cvs")
    assert loggers.get("cvs", None) is None
    sentinel = object()
    assert loggers.get("cvs", sentinel) is sentinel


def test_empty_registry_says_nothing_is_registered():
    empty: Registry[ScenarioSpec] = Registry("scenario", [])
    with pytest.raises(UnknownKeyError) as info:
        empty["graph_isomorphism"]
    assert "no scenarios are registered" in str(info.value)
    assert info.value.known == ()


def test_duplicate_key_names_both_plugins_and_versions():
    registry = Registry(
        "logger",
        [
            logger("csv", "nip-core.loggers", "0.1.0"),
            logger("csv", "fancy", "2.3"),
            logger("jsonl", "nip-core.loggers", "0.1.0"),
        ],
    )
    # only the clashing key is unusable
    assert list(registry) == ["jsonl"]
    assert "csv" not in registry
    assert registry["jsonl"].plugin == "nip-core.loggers"
    with pytest.raises(DuplicateKeyError) as info:
        registry["csv"]
    message = str(info.value)
    assert "the logger 'csv' is registered by 2 plugins" in message
    assert "plugin 'nip-core.loggers' (version 0.1.0)" in message
    assert "plugin 'fancy' (version 2.3)" in message
    assert "NIP_DISABLED_PLUGINS=fancy" in message
    assert [r.plugin for r in registry.conflicts["csv"]] == [
        "nip-core.loggers",
        "fancy",
    ]
    assert registry.conflict_error("jsonl") is None
    assert registry.get("csv", None) is None


def test_duplicate_key_within_one_plugin():
    registry = Registry("logger", [logger("csv"), logger("csv")])
    with pytest.raises(
        DuplicateKeyError, match="plugin 'p' .*registered the logger 'csv' 2 times"
    ):
        registry["csv"]


def test_composite_keys_and_where():
    parts = Registry(
        "agent_part",
        [
            AgentPartSpec(scenario="gi", part="body", part_class="a:B", plugin="x"),
            AgentPartSpec(scenario="ic", part="body", part_class="a:C", plugin="y"),
            AgentPartSpec(
                scenario="gi", part="value_head", part_class="a:V", plugin="x"
            ),
        ],
    )
    assert list(parts) == ["gi/body", "gi/value_head", "ic/body"]
    assert [p.part for p in parts.where(scenario="gi")] == ["body", "value_head"]
    assert [p.key for p in parts.where(lambda p: p.part == "body")] == [
        "gi/body",
        "ic/body",
    ]
    assert parts.where(scenario="gi", part="policy_head") == []
    assert parts.by_plugin() == {"x": ["gi/body", "gi/value_head"], "y": ["ic/body"]}


def test_registry_is_read_only(loggers):
    with pytest.raises(TypeError):
        loggers["new"] = logger("new")  # type: ignore[index]
    assert not hasattr(loggers, "__dict__")


def test_equality_and_repr(loggers):
    same = Registry(
        "logger", [logger("tb"), logger("csv"), logger("jsonl"), logger("wandb")]
    )
    assert same == loggers
    assert Registry("logger", [logger("csv")]) != loggers
    assert repr(Registry("logger", [logger("b"), logger("a")])) == (
        "Registry('logger', keys=['a', 'b'])"
    )


def test_closest_key():
    assert (
        closest_key("vanila_ppo", ["vanilla_ppo", "spg", "reinforce"]) == "vanilla_ppo"
    )
    assert closest_key("qqq", ["vanilla_ppo", "spg"]) is None
    assert closest_key("NIP", ["nip", "adp"]) == "nip"
