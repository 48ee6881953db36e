"""`nip config show` counts the sections of the text backends a run's agents use as
read, at their defaults too."""

from __future__ import annotations

from typing import Any

import pytest

from nip_core.cli.config_cmd import used_sections
from nip_core.parameters import HyperParameters


@pytest.fixture
def plugins(register_plugin: Any) -> None:
    import nip_plugin_transformers.plugin
    from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN

    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    register_plugin(nip_plugin_transformers.plugin, name="transformers")


def _hyper_params(**values: Any) -> HyperParameters:
    return HyperParameters(
        scenario="synthetic_text",
        trainer="synthetic_text_sft",
        dataset="tiny",
        interaction_protocol="nip",
        **values,
    )


@pytest.mark.usefixtures("plugins")
def test_the_run_backends_sections_are_read_at_their_defaults() -> None:
    used = used_sections(_hyper_params(text_backend={"name": "transformers"}))
    assert {"text_backend", "transformers_backend"} <= used
    assert "openai_backend" not in used
    used = used_sections(_hyper_params())  # text_backend.name: openai
    assert {"text_backend", "openai_backend"} <= used
    assert "transformers_backend" not in used
    # one agent on another backend: both are read
    used = used_sections(
        _hyper_params(agents={"_default": {}, "prover": {"backend": "transformers"}})
    )
    assert {"openai_backend", "transformers_backend"} <= used


def test_a_tensor_run_reads_no_text_backend(synthetic_scenario: Any) -> None:
    used = used_sections(synthetic_scenario.hyper_params("nip"))
    assert not {"text_backend", "openai_backend"} & used
