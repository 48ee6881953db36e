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
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
from attrs import validators as v

from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.parameters.base import BaseHyperParameters, parameters_class
from nip_core.parameters.validation import (
    CHOICES,
    ValueProblem,
    closest,
    prefixed,
)

RUN_KEY = "run"
"""The key of the settings in a config file."""

SECRET_ENV_VARS: tuple[str, ...] = ("WANDB_API_KEY", "OPENAI_API_KEY", "HF_TOKEN")
"""Environment variables that hold credentials; their values never reach saved
settings (:func:`redact_secrets`). So does the value of every variable whose name
ends like a credential's (:data:`SECRET_NAME_ENDINGS`): the one
``openai_backend.api_key_env`` names (``OPENROUTER_API_KEY``, a lab's own)."""

SECRET_NAME_ENDINGS: tuple[str, ...] = (
    "API_KEY",
    "APIKEY",
    "TOKEN",
    "SECRET",
    "SECRET_KEY",
    "PASSWORD",
)
"""How the names of credential variables end (upper case)."""


_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-.:+=]{8,}")


_DECLARED_SECRET_ENV_VARS: set[str] = set()


def declare_secret_env_var(name: str) -> None:
    """Say that the environment variable ``name`` holds a credential, whatever
    its name: a parameter naming the variable its key comes from
    (``openai_backend.api_key_env: LLM_KEY``) declares it when it is built, and
    :func:`redact_secrets` hides its value from then on, in this process."""
    _DECLARED_SECRET_ENV_VARS.add(str(name))


def secret_env_vars() -> tuple[str, ...]:
    """The environment variables whose values :func:`redact_secrets` hides:
    :data:`SECRET_ENV_VARS`, those declared (:func:`declare_secret_env_var`), and
    every variable set whose name ends in one of :data:`SECRET_NAME_ENDINGS` and
    whose value looks like a key (one word of letters, digits and ``_-.:+=``: not
    a path or a URL, which settings hold legitimately)."""
    named = {
        name
        for name, value in os.environ.items()
        if name.upper().endswith(SECRET_NAME_ENDINGS) and _TOKEN_LIKE.fullmatch(value)
    }
    named |= _DECLARED_SECRET_ENV_VARS
    return (*SECRET_ENV_VARS, *sorted(named - set(SECRET_ENV_VARS)))


def secret_values() -> dict[str, str]:
    """The values :func:`redact_secrets` hides, by the name of their variable, the
    longest first: those of the variables :func:`secret_env_vars` names that are
    set and at least 8 characters long."""
    found = {
        name: value
        for name in secret_env_vars()
        if len(value := os.environ.get(name, "")) >= 8
    }
    return dict(sorted(found.items(), key=lambda item: -len(item[1])))


def redact_secrets(data: Any, *, shown_as: str = "<{name}>") -> Any:
    """``data`` with every value of a credential variable (:func:`secret_env_vars`:
    set, and at least 8 characters long) replaced by ``<NAME>``, in strings at any
    depth; the longest values first, so that one holding another is hidden whole.

    ``shown_as`` is what replaces a value, ``{name}`` standing for the variable's
    name (``"${{oc.env:{name}}}"``: an interpolation that reads it back)."""
    secrets = secret_values()
    if not secrets:
        return data

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            for name, secret in secrets.items():
                value = value.replace(secret, shown_as.format(name=name))
            return value
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(clean(item) for item in value)
        return value

    return clean(data)


ENV_DATA_DIR = "NIP_DATA_DIR"
"""Environment variable naming the data directory when the settings give none."""

OWN_DATA_DIR = "own"
"""The folder of ``<data_dir>/<scenario>`` holding what is derived from paths to
one's own data (not a dataset, and not a name a dataset can take)."""

PROCESSED_DIR = "processed"
"""The sub-directory of a dataset's directory in the data directory that holds the
processed-data caches (``<data_dir>/<scenario>/<dataset>/processed``). A directory
holding nothing else is not a dataset on disk: a run on a dataset the scenario
ships (as package data) leaves only its caches there."""


def holds_dataset(directory: Path) -> bool:
    """Whether a dataset's directory in the data directory holds a dataset: any
    entry but the processed-data caches (:data:`PROCESSED_DIR`) and hidden ones."""
    try:
        return any(
            entry.name != PROCESSED_DIR and not entry.name.startswith(".")
            for entry in directory.iterdir()
        )
    except OSError:
        return False


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


def _tuple_of_str(value: Any) -> Any:
    """One name for a list of names (``loggers: csv``); a list becomes a tuple.

    Anything else is left for the type check to report.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(value)
    return value


DEVICE_CHOICES: tuple[str, ...] = ("cpu", "cuda", "cuda:<index>", "mps")
"""The device settings nip accepts, as shown in error messages."""

_DEVICE = re.compile(r"^(?P<type>cpu|cuda|mps|xpu)(?::(?P<index>\d+))?$")


def _check_device(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    match = _DEVICE.match(value)
    if match is not None:
        return
    lowered = value.strip().lower()
    kind, _, index = lowered.partition(":")
    aliases = {"gpu": "cuda", "nvidia": "cuda", "metal": "mps", "apple": "mps"}
    kind = aliases.get(kind, kind)
    if kind not in ("cpu", "cuda", "mps", "xpu"):
        kind = closest(kind, ["cpu", "cuda", "mps"]) or ""
    suggestion = None
    if kind:
        suggestion = f"{kind}:{index}" if index.isdigit() else kind
    message = "unknown device"
    if suggestion is not None:
        message += f"; did you mean {suggestion!r}?"
    raise ValueProblem(message, DEVICE_CHOICES)


def _check_run_id(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if value in ("", ".", "..") or "/" in value or "\\" in value:
        raise ValueProblem(
            "must be a plain directory name (no path separators, not '.' or '..')"
        )


def _non_empty(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value.strip():
        raise ValueProblem("must not be empty")


def _check_loggers(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    problems = logger_problems(value)
    if problems:
        raise NipConfigError(problems)


def logger_problems(names: Any, path: str = "") -> list[ConfigProblem]:
    """Problems with logger names: unknown names, and loggers whose optional
    dependency is missing (with the command that installs it).

    Parameters
    ----------
    names : Iterable[str]
        Keys of the logger registry.
    path : str
        The dotted path to report the problems at (relative to the field).
    """
    from nip_core.plugins import get_plugin_manager

    registry = get_plugin_manager().loggers
    problems = []
    for i, name in enumerate(names):
        where = f"{path}[{i}]"
        if name not in registry:
            message = "unknown logger"
            suggestion = closest(name, list(registry))
            if suggestion is not None:
                message += f"; did you mean {suggestion!r}?"
            problems.append(ConfigProblem(where, message, name, tuple(registry)))
            continue
        missing = registry[name].missing_requirements()
        if missing:
            problems.append(
                ConfigProblem(
                    where,
                    f"the {name} logger needs {', '.join(missing)}, which "
                    f"{'is' if len(missing) == 1 else 'are'} not installed: "
                    f"{registry[name].install_hint()}",
                    name,
                )
            )
    return problems


@parameters_class
class ExperimentSettings(BaseHyperParameters):
    """Settings of a run that are not part of its reproducibility.

    Every value is checked when the settings are built (``nip config show`` and
    ``nip run`` report every problem at once, under ``run.``): types, ranges,
    device names, logger names and the packages loggers need.
    :func:`device_problems` checks, besides, that the device exists on this
    machine.

    Parameters
    ----------
    device : str
        The torch device to train on: ``"cpu"``, ``"cuda"`` (the current GPU),
        ``"cuda:1"`` (the second GPU), ``"mps"`` (Apple silicon).
    run_id : str | None
        The run's id, which names its directory ``<runs_dir>/<run_id>/`` (a plain
        directory name). ``None`` makes a fresh id from the time and a random suffix
        when the run starts.
    runs_dir : str
        The directory holding run directories (``~`` is the home directory).
    data_dir : str | None
        Where datasets are read from and generated into; ``None`` means
        :func:`default_data_dir` (``$NIP_DATA_DIR``, else ``~/.cache/nip/data``).
    cache_dir : str | None
        Where pre-trained bodies and embeddings are cached; ``None`` means
        :func:`default_cache_dir` (``~/.cache/nip``).
    loggers : tuple[str, ...]
        Metric loggers (keys of the logger registry, see ``nip plugins``).
        ``"jsonl"`` is always on; ``"wandb"`` is added when W&B is configured (see
        :meth:`active_loggers`).
    wandb_project, wandb_entity : str | None
        The W&B project and entity. Giving a project turns W&B on.
    wandb_mode : {"online", "offline", "disabled"} | None
        ``None`` reads ``WANDB_MODE`` from the environment, and falls back to
        offline when no credentials are found, so a run never fails for want of a
        network.
    wandb_tags : tuple[str, ...]
        Tags of the W&B run.
    checkpoint_period : int | None
        Save a checkpoint every this many training iterations, and always at the end
        (``None``: only at the end). An interrupted run (Ctrl-C) saves one too.
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
        check that a configuration builds and trains; a test run writes no run
        directory.
    num_dataset_threads : int
        Worker threads for dataset generation and loading (0 = in the main thread).
    enable_efficient_attention : bool
        Allow PyTorch's memory-efficient attention kernel on GPU (off by default, as
        it is not deterministic).
    compile_loss : bool
        Run the tensor-world RL trainers' loss (the agents' forward passes included)
        through ``torch.compile`` (inductor). The first minibatch compiles it (a
        minute or more); if compiling fails, the run warns once and continues
        uncompiled. It computes the same function to float tolerance, not bit for
        bit. On a 2-core CPU it measured slower for graph isomorphism at ``ppo_gi``
        (0.64-0.85× the eager loop, which runs the agents' bodies on threads); it is
        meant for GPUs, where the small networks' kernel launches
        bound the update.
    agent_threads : int | None
        CPU threads that run the agents' bodies side by side in the tensor-world RL
        trainers (:mod:`nip_core.scenario.concurrency`): each body's forward and
        backward pass on its own thread, torch's intra-op threads divided among
        them. ``1`` turns it off (one body after the other, torch's own threads).
        ``None`` (auto): on a CPU device without ``compile_loss``, as many threads
        as there are agents, at most torch's thread count (off with one thread).
        Bodies that draw random numbers while training (dropout, noise) run one
        after the other whatever this says. The result is the same as with one
        intra-op thread and no agent threads, bit for bit.
    counted_rows : bool
        In the tensor-world RL trainers' update, run each agent's policy body and
        head only on the minibatch rows where that agent's choices count (it
        speaks, or its decision counts), for losses that read the policy only
        through its action distribution
        (:func:`~nip_core.scenario.combined.counted_rows_only`). The same training
        to float rounding, not bit for bit; ``false`` computes every row, as
        runs before it did (at ``ppo_gi`` it halves the policy bodies' work).
    """

    device: str = attrs.field(
        default="cpu", validator=_check_device, metadata={CHOICES: DEVICE_CHOICES}
    )
    run_id: str | None = attrs.field(default=None, validator=_check_run_id)
    runs_dir: str = attrs.field(default="runs", validator=_non_empty)
    data_dir: str | None = None
    cache_dir: str | None = None
    loggers: tuple[str, ...] = attrs.field(
        default=("jsonl",), converter=_tuple_of_str, validator=_check_loggers
    )
    wandb_project: str | None = None
    wandb_entity: str | None = None
    wandb_mode: Literal["online", "offline", "disabled"] | None = None
    wandb_tags: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    checkpoint_period: int | None = attrs.field(
        default=10, validator=v.optional(v.ge(1))
    )
    rollout_sample_period: int | None = attrs.field(
        default=None, validator=v.optional(v.ge(1))
    )
    num_rollout_samples: int = attrs.field(default=4, validator=v.ge(0))
    show_progress: bool = True
    ignore_cache: bool = False
    test_run: bool = False
    num_dataset_threads: int = attrs.field(default=0, validator=v.ge(0))
    enable_efficient_attention: bool = False
    compile_loss: bool = False
    agent_threads: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))
    counted_rows: bool = True

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
        """Plain JSON-serialisable dict, without secrets.

        None are held; but a secret pasted into a setting by mistake (an API key as
        the W&B entity, say) is replaced by the name of the variable holding it
        (``<WANDB_API_KEY>``) before it can reach ``settings.json``.
        """
        data = attrs.asdict(self, recurse=False)
        data["loggers"] = list(self.loggers)
        data["wandb_tags"] = list(self.wandb_tags)
        return redact_secrets(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ExperimentSettings:
        """Build settings from a dict (the ``run:`` key of a composed config).

        Raises
        ------
        NipConfigError
            Listing every unknown key (with the valid ones) and every invalid value,
            each at its path under ``run.``.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise NipConfigError(
                ConfigProblem(RUN_KEY, "must be a mapping of run settings", data)
            )
        try:
            return cls(**{str(key): value for key, value in data.items()})
        except NipConfigError as error:
            raise NipConfigError(prefixed(error.problems, RUN_KEY)) from None

    def shrunk(self) -> ExperimentSettings:
        """A copy with ``test_run`` on."""
        return attrs.evolve(self, test_run=True)


def device_problems(
    device: str, path: str = f"{RUN_KEY}.device"
) -> list[ConfigProblem]:
    """Whether ``device`` exists on this machine; the problems when it does not.

    :class:`ExperimentSettings` checks the device's name wherever the config is
    read; this checks, besides, that the machine the run starts on has it (CUDA
    built into torch and a GPU with that index, or MPS), so a run is refused before
    it writes anything. Imports torch.

    Parameters
    ----------
    device : str
        A valid device name (``settings.device``).
    path : str
        The dotted path to report the problem at.
    """
    import torch

    match = _DEVICE.match(device)
    if match is None:  # the settings report it
        return []
    kind, index = match.group("type"), match.group("index")
    if kind == "cpu":
        return []
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch build has no CUDA support"
                if torch.version.cuda is None
                else "no CUDA GPU is visible (check the driver and "
                "CUDA_VISIBLE_DEVICES)"
            )
            return [
                ConfigProblem(
                    path,
                    f"CUDA is not available on this machine: {why}; use run.device=cpu",
                    device,
                    ("cpu",),
                )
            ]
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            return [
                ConfigProblem(
                    path,
                    f"this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                    f"(indices 0 to {count - 1})",
                    device,
                    ("cpu", "cuda", *(f"cuda:{i}" for i in range(count))),
                )
            ]
        return []
    if kind == "mps":
        if not torch.backends.mps.is_available():
            return [
                ConfigProblem(
                    path,
                    "MPS (Apple silicon) is not available on this machine; "
                    "use run.device=cpu",
                    device,
                    ("cpu",),
                )
            ]
        return []
    backend = getattr(torch, kind, None)
    if backend is None or not backend.is_available():
        return [
            ConfigProblem(
                path,
                f"{kind} is not available on this machine; use run.device=cpu",
                device,
                ("cpu",),
            )
        ]
    return []


def check_device(settings: ExperimentSettings) -> None:
    """Raise :class:`NipConfigError` when the settings' device is not on this
    machine (see :func:`device_problems`)."""
    problems = device_problems(settings.device)
    if problems:
        raise NipConfigError(problems)


def _wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = os.path.expanduser(os.environ.get("NETRC", "~/.netrc"))
    try:
        with open(netrc_path) as f:
            return "api.wandb.ai" in f.read()
    except OSError:
        return False
