"""Every field of the image classification section and agents refuses bad values
with one clear error naming its dotted path (nip-core's malformed-value cases)."""

from __future__ import annotations

from nip_core.testing.configs import config_app
from nip_core.testing.malformed import assert_refused, field_cases

import nip_plugin_image_classification.plugin as ic_plugin
from nip_plugin_image_classification.agent_parameters import (
    ImageClassificationAgentParameters,
)
from nip_plugin_image_classification.parameters import ImageClassificationParameters

CASES = [
    *field_cases(ImageClassificationParameters, "image_classification"),
    *field_cases(ImageClassificationAgentParameters, "agents._default"),
]


def test_the_sections_have_cases() -> None:
    overrides = {case.override for case in CASES}
    assert "image_classification.binarification_method=not_a_choice" in overrides
    assert "image_classification.selected_classes=[0,0,0]" in overrides
    assert len(CASES) >= 100


def test_every_bad_value_is_refused_with_its_path(ic_in_global_manager) -> None:
    with config_app([("image_classification", ic_plugin.CONFIG_DIR)]) as app:
        for case in CASES:
            assert_refused(case, "image_classification/digits_solo_agent", app=app)
