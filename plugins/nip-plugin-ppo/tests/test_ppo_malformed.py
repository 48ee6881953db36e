"""Every field of the PPO plugin's sections refuses bad values with one clear error
naming its dotted path (nip-core's malformed-value cases)."""

from __future__ import annotations

from typing import Any

import pytest

from nip_core.testing.malformed import assert_refused, field_cases
from nip_plugin_ppo.parameters import PpoParameters, SpgParameters, VanillaPpoParameters

CASES = [
    *field_cases(PpoParameters, "ppo"),
    *field_cases(SpgParameters, "spg"),
    *field_cases(VanillaPpoParameters, "vanilla_ppo"),
]


@pytest.fixture
def installed(register_plugin: Any, tmp_path: Any, monkeypatch: Any) -> None:
    gi = pytest.importorskip("nip_plugin_graph_isomorphism.plugin")
    import nip_plugin_ppo.plugin

    register_plugin(gi, name="graph_isomorphism")
    register_plugin(nip_plugin_ppo.plugin, name="ppo")
    monkeypatch.chdir(tmp_path)


def test_every_section_field_has_cases() -> None:
    assert len(CASES) >= 40
    assert {"ppo.clip_epsilon=nan", "ppo.loss_type=not_a_choice"} <= {
        case.override for case in CASES
    }


def test_every_bad_value_is_refused_with_its_path(installed: None) -> None:
    from nip_core.testing.configs import config_app

    with config_app() as app:
        for case in CASES:
            assert_refused(case, "default", app=app)
