"""Settings of one experiment run that do not affect its results.

:class:`~nip_core.parameters.HyperParameters` is the experiment: a run is reproducible
from it alone. :class:`ExperimentSettings` holds everything else: where the run writes,
which device it uses, which loggers it feeds, how often it checkpoints. Two runs with
the same hyper-parameters and different settings train the same agents.

Secrets (``WANDB_API_KEY`` and the like) are read from the environment when needed and
are never stored on the settings object, so :meth:`ExperimentSettings.to_dict` (saved
as ``settings.json`` in the run directory) cannot leak them.

This module imports without torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from nip_core.errors import ConfigProblem, NipConfigError

KNOWN_LOGGERS: tuple[str, ...] = ("jsonl", "wandb", "csv", "tensorboard")
"""Loggers the core registers; plugins may register more (see ``register_loggers``)."""

WANDB_MODES: tuple[str, ...] = ("online", "offline", "disabled")

SECRET_ENV_VARS: tuple[str, ...] = ("WANDB_API_KEY", "OPENAI_API_KEY", "HF_TOKEN")
"""Environment variables that hold credentials; never copied into saved settings."""

ENV_DATA_DIR = "NIP_DATA_DIR"
"""Environment variable naming the data directory when the settings give none."""

DATA_DIR_RULE = "$NIP_DATA_DIR, else $XDG_CACHE_HOME/nip/data (~/.cache/nip/data)"
"""The rule of :func:`default_data_dir` in words, for help texts and messages."""


# --------------------------------------------------------------------------------------
# Default directories


def default_cache_dir() -> Path:
    """The cache directory used when the settings name none.

    ``$XDG_CACHE_HOME/nip``, with ``XDG_CACHE_HOME`` defaulting to ``~/.cache``
    (unset or empty).
    """
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache_home, "nip").expanduser()


def default_data_dir() -> Path:
    """The data directory used when the settings (or ``--data-dir``) name none.

    ``$NIP_DATA_DIR`` if set and not empty, else ``data`` in the
    :func:`default_cache_dir` (``~/.cache/nip/data``).
    """
    from_env = os.environ.get(ENV_DATA_DIR)
    if from_env:
        return Path(from_env).expanduser()
    return default_cache_dir() / "data"


def data_dir_or_default(data_dir: str | os.PathLike[str] | None) -> Path:
    """``data_dir`` with ``~`` expanded, or :func:`default_data_dir` when it is
    ``None`` or empty (``settings.data_dir``, a ``--data-dir`` flag)."""
    if data_dir:
        return Path(data_dir).expanduser()
    return default_data_dir()


def cache_dir_or_default(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir`` with ``~`` expanded, or :func:`default_cache_dir` when it is
    ``None`` or empty (``settings.cache_dir``)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    return default_cache_dir()


def _tuple_of_str(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _positive_or_none(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(
            f"{attribute.name} must be a positive integer or None, got {value!r}"
        )


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, int) or value < 0:
        raise ValueError(
            f"{attribute.name} must be a non-negative integer, got {value!r}"
        )


def _wandb_mode(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value not in WANDB_MODES:
        raise ValueError(
            f"wandb_mode must be one of {', '.join(WANDB_MODES)} or None, got {value!r}"
        )


@attrs.define(kw_only=True)
class ExperimentSettings:
    """Settings of a run that are not part of its reproducibility.

    Parameters
    ----------
    device : str
        The torch device to train on (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    run_id : str | None
        The run's id, which names its directory ``<runs_dir>/<run_id>/``. ``None``
        makes a fresh id from the time and a random suffix when the run starts.
    runs_dir : str
        The directory holding run directories.
    data_dir : str | None
        Where datasets are read from and generated into; ``None`` means
        :func:`default_data_dir` (``$NIP_DATA_DIR``, else ``~/.cache/nip/data``).
    cache_dir : str | None
        Where pre-trained bodies and embeddings are cached; ``None`` means
        :func:`default_cache_dir` (``~/.cache/nip``).
    loggers : tuple[str, ...]
        Metric loggers (keys of the logger registry). ``"jsonl"`` is always on;
        ``"wandb"`` is added when W&B is configured (see :meth:`active_loggers`).
    wandb_project, wandb_entity : str | None
        The W&B project and entity. Giving a project turns W&B on.
    wandb_mode : str | None
        ``"online"``, ``"offline"`` or ``"disabled"``. ``None`` reads ``WANDB_MODE``
        from the environment, and falls back to offline when no credentials are
        found, so a run never fails for want of a network.
    wandb_tags : tuple[str, ...]
        Tags of the W&B run.
    checkpoint_period : int | None
        Save a checkpoint every this many training iterations, and always at the end
        (``None``: only at the end).
    rollout_sample_period : int | None
        Save a few rollouts (JSONL, and a W&B artifact when W&B is on) every this many
        iterations; ``None`` saves none.
    num_rollout_samples : int
        How many episodes each rollout sample holds.
    show_progress : bool
        Show tqdm progress bars (with ETA) on long loops.
    ignore_cache : bool
        Rebuild cached datasets, embeddings and pre-trained bodies.
    test_run : bool
        Shrink everything (one iteration, one minibatch, a handful of datapoints) to
        check that a configuration runs end to end.
    num_dataset_threads : int
        Worker threads for dataset generation and loading (0 = in the main thread).
    enable_efficient_attention : bool
        Allow PyTorch's memory-efficient attention kernel on GPU (off by default, as
        it is not deterministic).
    """

    device: str = "cpu"
    run_id: str | None = None
    runs_dir: str = "runs"
    data_dir: str | None = None
    cache_dir: str | None = None
    loggers: tuple[str, ...] = attrs.field(default=("jsonl",), converter=_tuple_of_str)
    wandb_project: str | None = None
    wandb_entity: str | None = None
    wandb_mode: str | None = attrs.field(default=None, validator=_wandb_mode)
    wandb_tags: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    checkpoint_period: int | None = attrs.field(default=10, validator=_positive_or_none)
    rollout_sample_period: int | None = attrs.field(
        default=None, validator=_positive_or_none
    )
    num_rollout_samples: int = attrs.field(default=4, validator=_non_negative)
    show_progress: bool = True
    ignore_cache: bool = False
    test_run: bool = False
    num_dataset_threads: int = attrs.field(default=0, validator=_non_negative)
    enable_efficient_attention: bool = False

    # ------------------------------------------------------------------------------
    # W&B

    def wandb_configured(self) -> bool:
        """Whether W&B should be on: a project is named or ``wandb`` is listed."""
        if self.resolved_wandb_mode() == "disabled":
            return False
        return self.wandb_project is not None or "wandb" in self.loggers

    def resolved_wandb_mode(self) -> str:
        """The W&B mode to use: the setting, else ``WANDB_MODE``, else by credentials.

        With no mode given anywhere, W&B runs online only when credentials are found
        (``WANDB_API_KEY`` or a ``~/.netrc`` entry for api.wandb.ai), and offline
        otherwise.
        """
        if self.wandb_mode is not None:
            return self.wandb_mode
        env_mode = os.environ.get("WANDB_MODE")
        if env_mode:
            # W&B also knows "dryrun" (an old name for offline) and "run" (online)
            return {"dryrun": "offline", "run": "online"}.get(env_mode, env_mode)
        return "online" if _wandb_credentials_present() else "offline"

    def active_loggers(self) -> tuple[str, ...]:
        """The loggers a run feeds: ``jsonl`` first, ``wandb`` when configured."""
        names = ["jsonl"]
        for name in self.loggers:
            if name == "wandb" and not self.wandb_configured():
                continue
            if name not in names:
                names.append(name)
        if self.wandb_configured() and "wandb" not in names:
            names.append("wandb")
        return tuple(names)

    # ------------------------------------------------------------------------------
    # Conversion

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (no secrets: none are held)."""
        data = attrs.asdict(self, recurse=False)
        data["loggers"] = list(self.loggers)
        data["wandb_tags"] = list(self.wandb_tags)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ExperimentSettings:
        """Build settings from a dict (the ``run:`` key of a composed config).

        Raises
        ------
        NipConfigError
            Listing every unknown key (with the valid ones) and every invalid value.
        """
        if data is None:
            return cls()
        fields = {f.name for f in attrs.fields(cls)}
        problems: list[ConfigProblem] = []
        for key in data:
            if key not in fields:
                problems.append(
                    ConfigProblem(
                        path=f"run.{key}",
                        message="unknown run setting",
                        choices=tuple(sorted(fields)),
                    )
                )
        kwargs = {k: v for k, v in data.items() if k in fields}
        for key in list(kwargs):
            try:
                cls(**{key: kwargs[key]})
            except (TypeError, ValueError) as error:
                problems.append(
                    ConfigProblem(
                        path=f"run.{key}", message=str(error), value=data[key]
                    )
                )
                del kwargs[key]
        if problems:
            raise NipConfigError(problems)
        return cls(**kwargs)

    def shrunk(self) -> ExperimentSettings:
        """A copy with ``test_run`` on."""
        return attrs.evolve(self, test_run=True)


def _wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = os.path.expanduser(os.environ.get("NETRC", "~/.netrc"))
    try:
        with open(netrc_path) as f:
            return "api.wandb.ai" in f.read()
    except OSError:
        return False
