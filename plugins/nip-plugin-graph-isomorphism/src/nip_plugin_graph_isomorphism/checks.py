"""What stops a graph isomorphism run that only the dataset tells, found before
anything runs (``ScenarioSpec.config_problems``). Imports without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nip_core.errors import ConfigProblem
from nip_core.parameters.hyper_parameters import is_path_like_dataset

__all__ = ["agent_problems", "config_problems"]

SHIPPED_SPLITS: tuple[str, ...] = ("test",)
"""The splits besides ``train`` the named datasets have (``eru10000``, ``test``,
and those ``nip datasets generate`` writes)."""


def config_problems(hyper_params: Any) -> list[ConfigProblem]:
    """What the agents' settings and the dataset tell before anything runs: agent
    options the scenario does not have (:func:`agent_problems`), and
    ``test_dataset_split: validation`` on a dataset without that split."""
    return agent_problems(hyper_params) + _split_problems(hyper_params)


def agent_problems(hyper_params: Any) -> list[ConfigProblem]:
    """Per agent given (``_default`` included; random agents have no network):
    ``normalize_message_history``, which the scenario does not offer, and the
    manual architecture under a protocol other than ``nip``, the only one it
    exists for. The agent parts refuse them again when built."""
    agents = getattr(hyper_params, "agents", None) or {}
    protocol = str(getattr(hyper_params, "interaction_protocol", "nip"))
    problems = []
    for name, params in agents.items():
        if getattr(params, "is_random", False):
            continue
        if getattr(params, "normalize_message_history", False):
            problems.append(
                ConfigProblem(
                    f"agents.{name}.normalize_message_history",
                    "is not available in the graph isomorphism scenario",
                    True,
                )
            )
        if getattr(params, "use_manual_architecture", False) and protocol != "nip":
            problems.append(
                ConfigProblem(
                    f"agents.{name}.use_manual_architecture",
                    "the manual graph isomorphism architecture exists for the nip "
                    f"protocol only, not {protocol!r}",
                    True,
                )
            )
    return problems


def _split_problems(hyper_params: Any) -> list[ConfigProblem]:
    """``test_dataset_split: validation`` on a dataset without that split: the
    named ones have a train and a test split only; a path to one's own data may
    hold ``validation.npz`` (or the original library's ``raw/validation/``)."""
    if getattr(hyper_params, "test_dataset_split", "test") != "validation":
        return []
    name = getattr(hyper_params, "dataset", None)
    if not isinstance(name, str):
        return []
    if is_path_like_dataset(name):
        source = Path(name).expanduser()
        if (source / "validation.npz").is_file() or (
            source / "raw" / "validation" / "data.pt"
        ).is_file():
            return []
        where = f"{source} has no validation.npz"
    else:
        where = "the named and generated datasets have a train and a test split"
    return [
        ConfigProblem(
            "test_dataset_split",
            f"graph isomorphism dataset {name!r} has no validation split ({where})",
            "validation",
            SHIPPED_SPLITS,
        )
    ]
