"""Every field of a graph isomorphism agent refuses bad values with one clear error
naming its dotted path (nip-core's malformed-value cases)."""

from __future__ import annotations

from nip_core.testing.configs import config_app
from nip_core.testing.malformed import assert_refused, field_cases

import nip_plugin_graph_isomorphism.plugin as gi_plugin
from nip_plugin_graph_isomorphism.agent_parameters import (
    GraphIsomorphismAgentParameters,
)

CASES = field_cases(GraphIsomorphismAgentParameters, "agents._default")


def test_every_agent_field_has_cases() -> None:
    assert len(CASES) >= 100
    overrides = {case.override for case in CASES}
    assert "agents._default.gnn_implementation=not_a_choice" in overrides
    assert "agents._default.d_gnn=99999999999999999999" in overrides


def test_every_bad_value_is_refused_with_its_path(gi_in_global_manager) -> None:
    with config_app([("graph_isomorphism", gi_plugin.CONFIG_DIR)]) as app:
        for case in CASES:
            assert_refused(case, "graph_isomorphism/solo_agent", app=app)
