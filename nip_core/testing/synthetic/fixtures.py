"""pytest fixtures of the synthetic scenario.

Load them in a test suite's ``conftest.py``::

    pytest_plugins = ["nip_core.testing.synthetic.fixtures"]

``synthetic_scenario``
    Registers :data:`~nip_core.testing.synthetic.SYNTHETIC_PLUGIN` (as
    ``"synthetic"``) into the test's isolated plugin manager (the ``register_plugin``
    fixture of :mod:`nip_core.testing.pytest_plugin`) and returns a
    :class:`SyntheticScenario`, which makes small hyper-parameters, settings under
    the test's temporary directory, and built components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nip_core.testing.synthetic.plugin import SYNTHETIC_PLUGIN

__all__ = ["SyntheticScenario", "synthetic_scenario"]


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class SyntheticScenario:
    """Helpers for tests of the synthetic scenario.

    Parameters
    ----------
    root : Path
        A temporary directory for data, caches and runs.
    """

    name = "synthetic"

    def __init__(self, root: Path):
        self.root = Path(root)

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
        trainer: str = "reinforce",
        zero_knowledge: bool = False,
        **overrides: Any,
    ) -> dict[str, Any]:
        """The keyword arguments of :meth:`hyper_params` as a dict.

        Defaults: tiny agents (widths 4), 4 rollouts per iteration, 3 rounds for
        nip, debate and mnip, 6-bit vectors, 16 train and 8 test datapoints.
        ``overrides`` are merged into them section by section.
        """
        base: dict[str, Any] = {
            "scenario": "synthetic",
            "trainer": trainer,
            "dataset": "tiny",
            "interaction_protocol": interaction_protocol,
            "d_representation": 4,
            "agents": {"_default": {"d_hidden": 4}},
            "rl": {"frames_per_batch": None, "rollouts_per_iteration": 4},
            "nip_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
            "debate_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
            "mnip_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
            "synthetic": {"num_bits": 6, "train_size": 16, "test_size": 8},
        }
        if zero_knowledge:
            base["protocol_common"] = {"zero_knowledge": True}
        return _merge(base, overrides)

    def hyper_params(
        self,
        interaction_protocol: str = "nip",
        *,
        trainer: str = "reinforce",
        zero_knowledge: bool = False,
        **overrides: Any,
    ) -> Any:
        """Small :class:`~nip_core.parameters.HyperParameters` of the scenario."""
        from nip_core.parameters import HyperParameters

        values = self.hyper_params_dict(
            interaction_protocol,
            trainer=trainer,
            zero_knowledge=zero_knowledge,
            **overrides,
        )
        return HyperParameters(**values)

    @staticmethod
    def short_rl(**overrides: Any) -> dict[str, Any]:
        """An ``rl`` section for a run that only has to go through the motions: 2
        iterations of 1 epoch, minibatch 6, 1 test iteration, no observation
        normalisation; ``overrides`` replace any of these."""
        values: dict[str, Any] = {
            "num_iterations": 2,
            "num_epochs": 1,
            "minibatch_size": 6,
            "num_test_iterations": 1,
            "normalize_observations": False,
        }
        values.update(overrides)
        return values

    def build(
        self,
        hyper_params: Any = None,
        settings: Any = None,
        *,
        roles: tuple[str, ...] = ("body", "policy_head", "value_head", "solo_head"),
    ) -> Any:
        """Build every component (a :class:`~nip_core.scenario.ScenarioInstance`)."""
        from nip_core.testing.contracts.scenario import build_scenario_components

        return build_scenario_components(
            hyper_params if hyper_params is not None else self.hyper_params(),
            settings if settings is not None else self.settings(),
            roles=roles,
        )


@pytest.fixture
def synthetic_scenario(register_plugin: Any, tmp_path: Path) -> SyntheticScenario:
    """Register the synthetic scenario for this test and return its helpers."""
    register_plugin(SYNTHETIC_PLUGIN, name="synthetic")
    return SyntheticScenario(tmp_path)
