"""pytest fixtures of the synthetic text scenario and the local OpenAI test server.

Exposed to every test suite by nip-core's pytest plugin:

``openai_test_server``
    A started :class:`~nip_core.testing.openai_server.OpenAiTestServer` serving the
    scripted model ``scripted`` of the synthetic text scenario (stopped after the
    test).
``synthetic_text_scenario``
    Registers :data:`~nip_core.testing.synthetic_text.SYNTHETIC_TEXT_PLUGIN` into the
    test's isolated plugin manager, starts a server, and returns a
    :class:`SyntheticTextScenario` whose hyper-parameters point the ``openai``
    backend at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nip_core.testing.openai_server import OpenAiTestServer
from nip_core.testing.synthetic.fixtures import _merge
from nip_core.testing.synthetic_text.model import (
    scripted_fine_tune_effect,
    scripted_responder,
)
from nip_core.testing.synthetic_text.plugin import SYNTHETIC_TEXT_PLUGIN

__all__ = [
    "SyntheticTextScenario",
    "openai_test_server",
    "scripted_server",
    "synthetic_text_scenario",
]


def scripted_server(**options: Any) -> OpenAiTestServer:
    """A (not yet started) test server playing the synthetic text scenario's
    scripted model ``scripted``; ``options`` go to the server."""
    options.setdefault("models", ["scripted"])
    options.setdefault("responder", scripted_responder)
    options.setdefault("fine_tune_effect", scripted_fine_tune_effect)
    return OpenAiTestServer(**options)


class SyntheticTextScenario:
    """Helpers for tests of the synthetic text scenario.

    Parameters
    ----------
    root : Path
        A temporary directory for data, caches and runs.
    server : OpenAiTestServer
        The server the ``openai`` backend talks to.
    """

    name = "synthetic_text"

    def __init__(self, root: Path, server: OpenAiTestServer):
        self.root = Path(root)
        self.server = server

    def settings(self, **overrides: Any) -> Any:
        """:class:`~nip_core.settings.ExperimentSettings` writing under ``root``."""
        from nip_core.settings import ExperimentSettings

        values: dict[str, Any] = dict(
            device="cpu",
            data_dir=str(self.root / "data"),
            cache_dir=str(self.root / "cache"),
            runs_dir=str(self.root / "runs"),
            show_progress=False,
        )
        values.update(overrides)
        return ExperimentSettings(**values)

    def hyper_params_dict(
        self,
        interaction_protocol: str = "nip",
        *,
        trainer: str = "synthetic_text_sft",
        server: OpenAiTestServer | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Small parameters: 2 iterations of 4 episodes, 3 rounds, fast retries,
        the ``openai`` backend pointed at the server; ``overrides`` are merged in
        section by section."""
        server = server if server is not None else self.server
        base: dict[str, Any] = {
            "scenario": "synthetic_text",
            "trainer": trainer,
            "dataset": "tiny",
            "interaction_protocol": interaction_protocol,
            "agents": {"_default": {}},
            "text_rl": {
                "num_iterations": 2,
                "rollouts_per_iteration": 4,
                "num_test_rollouts": 4,
                "min_fine_tune_examples": 1,
            },
            "text_backend": {
                "max_concurrency": 4,
                "retry_initial_delay": 0.01,
                "retry_max_delay": 0.05,
                "request_timeout": 5.0,
                "fine_tune_poll_interval": 0.01,
            },
            "openai_backend": {"base_url": server.base_url},
            "nip_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
            "debate_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
            "mnip_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
        }
        return _merge(base, overrides)

    def hyper_params(self, interaction_protocol: str = "nip", **overrides: Any) -> Any:
        """Small :class:`~nip_core.parameters.HyperParameters` of the scenario."""
        from nip_core.parameters import HyperParameters

        return HyperParameters(
            **self.hyper_params_dict(interaction_protocol, **overrides)
        )

    def build(self, hyper_params: Any = None, settings: Any = None) -> Any:
        """Build every component (a :class:`~nip_core.scenario.ScenarioInstance`);
        close it (``instance.close()``) when done."""
        from nip_core.factory import build_scenario_instance

        return build_scenario_instance(
            hyper_params if hyper_params is not None else self.hyper_params(),
            settings if settings is not None else self.settings(),
        )


@pytest.fixture
def openai_test_server() -> Iterator[OpenAiTestServer]:
    """A started test server playing the scripted model ``scripted``."""
    with scripted_server() as server:
        yield server


@pytest.fixture
def synthetic_text_scenario(
    register_plugin: Any, tmp_path: Path, openai_test_server: OpenAiTestServer
) -> SyntheticTextScenario:
    """Register the synthetic text scenario for this test and return its helpers."""
    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    return SyntheticTextScenario(tmp_path, openai_test_server)
