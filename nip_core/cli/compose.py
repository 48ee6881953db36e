"""Hydra config composition for the ``nip`` command.

Hydra composes YAML configs; the attrs/cattrs parameter tree is the schema. This module
builds Hydra's search path from

1. ``./configs`` under the working directory (when it exists),
2. every plugin's config directory (the ``register_config_dirs`` hook), and
3. the core's own directory ``nip_core/configs/`` (last, so anything can shadow it),

composes a config with Hydra's override grammar, and turns the result into a validated
:class:`~nip_core.parameters.HyperParameters` (everything but ``run:`` and ``hydra:``)
and :class:`~nip_core.settings.ExperimentSettings` (the ``run:`` key).

Hydra is imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from nip_core.errors import ConfigProblem, NipConfigError

if TYPE_CHECKING:
    from hydra._internal.hydra import Hydra

    from nip_core.parameters import HyperParameters
    from nip_core.settings import ExperimentSettings

HYDRA_VERSION_BASE = "1.3"
"""The Hydra defaults we follow (no change of working directory per job, ...)."""

TASK_NAME = "nip"
"""Hydra's job name: names the log file of each multirun job."""

DEFAULT_CONFIG_NAME = "default"
"""The config ``nip run`` composes when no ``--config-name`` is given."""

USER_CONFIG_DIR = "configs"
"""The user's config directory, relative to the working directory; searched first."""

RUN_KEY = "run"
"""The key of the run settings (:class:`~nip_core.settings.ExperimentSettings`)."""

HYDRA_KEY = "hydra"


@attrs.frozen
class SearchDir:
    """One directory of Hydra's search path.

    Parameters
    ----------
    origin : str
        Who put it there: ``"./configs"``, a plugin's config-dir key, ``"nip-core"``.
    path : Path
        The directory.
    """

    origin: str
    path: Path


def config_search_dirs(cwd: str | os.PathLike[str] | None = None) -> list[SearchDir]:
    """The config directories, in the order Hydra searches them.

    A config name found in an earlier directory shadows the same name in a later one.

    Parameters
    ----------
    cwd : path-like | None
        The directory whose ``configs/`` comes first; the working directory by
        default.
    """
    from nip_core.builtin.configs import CORE_CONFIG_DIR
    from nip_core.plugins import get_plugin_manager

    dirs: list[SearchDir] = []
    user_dir = Path(cwd if cwd is not None else os.getcwd()) / USER_CONFIG_DIR
    if user_dir.is_dir():
        dirs.append(SearchDir(f"./{USER_CONFIG_DIR}", user_dir.resolve()))

    plugin_dirs: list[SearchDir] = []
    core_dirs: list[SearchDir] = []
    for spec in get_plugin_manager().config_dirs.values():
        path = Path(spec.path)
        if not path.is_dir():
            warnings.warn(
                f"the config directory {spec.path!r} registered by plugin "
                f"{spec.plugin!r} (as {spec.name!r}) does not exist; it is skipped",
                stacklevel=2,
            )
            continue
        entry = SearchDir(spec.name, path.resolve())
        if entry.path == CORE_CONFIG_DIR:
            core_dirs.append(entry)
        else:
            plugin_dirs.append(entry)
    return dirs + plugin_dirs + core_dirs


@contextlib.contextmanager
def hydra_app(
    search_dirs: Sequence[SearchDir] | None = None,
    *,
    first: Sequence[Path] = (),
) -> Iterator[Hydra]:
    """A Hydra application over the nip config search path.

    Parameters
    ----------
    search_dirs : Sequence[SearchDir] | None
        The directories to search; :func:`config_search_dirs` by default.
    first : Sequence[Path]
        Directories to search before all others (``nip config validate FILE`` puts
        the file's directory here).

    Yields
    ------
    hydra._internal.hydra.Hydra
        Registered as Hydra's global instance until the context ends.
    """
    from hydra import version
    from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    version.setbase(HYDRA_VERSION_BASE)
    if search_dirs is None:
        search_dirs = config_search_dirs()

    search_path = ConfigSearchPathImpl()
    search_path.append("hydra", "pkg://hydra.conf")
    for path in first:
        search_path.append("nip-cli", f"file://{Path(path).resolve()}")
    for entry in search_dirs:
        search_path.append(f"nip:{entry.origin}", f"file://{entry.path}")
    # the same extension point Hydra's own entry point honours
    for plugin_class in Plugins.instance().discover(SearchPathPlugin):
        plugin_class().manipulate_search_path(search_path)
    search_path.append("schema", "structured://")

    GlobalHydra.instance().clear()
    try:
        with hydra_errors():
            app = Hydra.create_main_hydra2(
                task_name=TASK_NAME, config_search_path=search_path
            )
        yield app
    finally:
        GlobalHydra.instance().clear()


@contextlib.contextmanager
def hydra_errors() -> Iterator[None]:
    """Turn Hydra's and OmegaConf's errors into :class:`NipConfigError`."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except (HydraException, OmegaConfBaseException) as error:
        message = _clean_message(str(error))
        cause = error.__cause__
        if isinstance(cause, OmegaConfBaseException):
            cause_message = _clean_message(str(cause))
            if cause_message not in message:
                message += f"\n{cause_message}"
        raise NipConfigError(
            ConfigProblem(path=_error_path(error), message=message)
        ) from error


_OMEGACONF_DETAIL_PREFIXES = ("full_key:", "object_type=", "reference_type=")


def _clean_message(message: str) -> str:
    """Drop OmegaConf's bookkeeping lines (the path is reported separately)."""
    lines = [
        line
        for line in message.strip().splitlines()
        if not line.strip().startswith(_OMEGACONF_DETAIL_PREFIXES)
    ]
    return "\n".join(lines).strip()


def _error_path(error: BaseException) -> str:
    full_key = getattr(error, "full_key", None)
    return str(full_key) if full_key else ""


def normalise_overrides(app: Hydra, overrides: Sequence[str]) -> list[str]:
    """Let a plain ``key=value`` override set any key, given in the YAML or not.

    Hydra refuses to change a key that the composed YAML does not hold unless it is
    written ``+key=value``. In nip the parameter classes are the schema: a section's
    default values live there, not in YAML, and validation rejects unknown keys with
    a suggestion. So ``ppo.clip_epsilon=0.1`` becomes ``++ppo.clip_epsilon=0.1``
    (set, adding it if needed). Config-group choices (``graph_isomorphism/dataset=x``,
    ``hydra/launcher=joblib``), Hydra's own settings (``hydra.*``), and overrides
    already written with ``+``, ``++`` or ``~`` are left as they are.

    Raises
    ------
    NipConfigError
        When an override does not parse, naming it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    normalised = []
    for text in overrides:
        try:
            [override] = parser.parse_overrides([text])
        except OverrideParseException as error:
            raise NipConfigError(
                ConfigProblem(
                    path="",
                    message=f"cannot parse the override {text!r}: "
                    f"{_clean_message(error.message)}",
                )
            ) from error
        key = override.key_or_group
        if (
            override.type is OverrideType.CHANGE
            and override.package is None
            and key != HYDRA_KEY
            and not key.startswith(f"{HYDRA_KEY}.")
            and "/" not in key
            and not app.config_loader.repository.group_exists(key)
        ):
            text = "++" + text.lstrip()
        normalised.append(text)
    return normalised


def display_override(text: str) -> str:
    """An override as the user wrote it (without the ``++`` nip may have added)."""
    return text[2:] if text.startswith("++") else text


def compose(
    app: Hydra,
    config_name: str,
    overrides: Sequence[str] = (),
    *,
    multirun: bool = False,
    with_log_configuration: bool = False,
) -> Any:
    """Compose ``config_name`` with ``overrides`` (Hydra's grammar).

    Returns the whole ``DictConfig``, ``hydra:`` node included.

    Raises
    ------
    NipConfigError
        When the config or a config it names is missing, or an override is invalid.
    """
    from hydra.types import RunMode

    overrides = normalise_overrides(app, overrides)
    with hydra_errors():
        return app.compose_config(
            config_name=config_name,
            overrides=overrides,
            run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN,
            with_log_configuration=with_log_configuration,
        )


def to_plain_dict(cfg: Any) -> dict[str, Any]:
    """The composed config as a plain dict: interpolations resolved, ``hydra:`` gone.

    Raises
    ------
    NipConfigError
        Listing every mandatory value left unset (``???``) by its dotted path, or an
        interpolation that cannot be resolved.
    """
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf, open_dict

    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    cfg = cfg.copy()
    if HYDRA_KEY in cfg:
        # `${hydra:...}` interpolations read Hydra's config from here
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg[HYDRA_KEY]
    with hydra_errors():
        missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise NipConfigError(
            [
                ConfigProblem(
                    path=key,
                    message="mandatory value not set (the config has ???); "
                    f"give it with an override: {key}=VALUE",
                )
                for key in missing
            ]
        )
    with hydra_errors():
        container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return {str(key): value for key, value in container.items()}


def build_experiment(
    config: Mapping[str, Any],
    *,
    config_name: str | None = None,
) -> tuple[HyperParameters, ExperimentSettings]:
    """Validate a plain config: ``run:`` becomes the settings, the rest the parameters.

    Every problem of both halves is reported together. ``config_name`` (the name it
    was composed from) lets the error point at a missing ``# @package _global_``
    header, the usual mistake in an experiment config inside a directory.

    Raises
    ------
    NipConfigError
        With one problem per mistake, each with its dotted path.
    """
    from nip_core.parameters import HyperParameters
    from nip_core.settings import ExperimentSettings

    config = dict(config)
    config.pop(HYDRA_KEY, None)
    run_config = config.pop(RUN_KEY, None)
    problems: list[ConfigProblem] = []

    hyper_params = None
    try:
        hyper_params = HyperParameters.from_dict(config)
    except NipConfigError as error:
        problems.extend(error.problems)

    settings = None
    if run_config is not None and not isinstance(run_config, Mapping):
        problems.append(
            ConfigProblem(
                path=RUN_KEY,
                message="must be a mapping of run settings",
                value=run_config,
            )
        )
    else:
        try:
            settings = ExperimentSettings.from_dict(run_config)
        except NipConfigError as error:
            problems.extend(error.problems)

    if problems:
        hint = _package_header_hint(config_name, config, problems)
        raise NipConfigError(problems + ([hint] if hint else []))
    assert hyper_params is not None and settings is not None
    return hyper_params, settings


def _package_header_hint(
    config_name: str | None, config: Mapping[str, Any], problems: list[ConfigProblem]
) -> ConfigProblem | None:
    if not config_name or "/" not in config_name:
        return None
    from nip_core.parameters import CORE_FIELD_NAMES
    from nip_core.plugins import get_plugin_manager

    group_key = config_name.split("/", 1)[0]
    if not isinstance(config.get(group_key), Mapping):
        return None
    known = {*CORE_FIELD_NAMES, *get_plugin_manager().parameter_sections}
    if group_key in known:
        return None
    return ConfigProblem(
        path=group_key,
        message=f"the content of {config_name}.yaml landed under the key "
        f"{group_key!r}: an experiment config inside a directory must start with "
        "the line `# @package _global_`",
    )


def experiment_to_dict(
    hyper_params: HyperParameters, settings: ExperimentSettings
) -> dict[str, Any]:
    """The validated config as a plain dict, in the layout of a config file."""
    data = dict(hyper_params.to_dict())
    data.pop("_meta", None)
    data[RUN_KEY] = settings.to_dict()
    return data


def first_party_plugins_missing() -> list[str]:
    """Which of the plugins the default experiment needs are not installed."""
    import importlib.metadata

    missing = []
    for distribution in DEFAULT_EXPERIMENT_PLUGINS:
        try:
            importlib.metadata.distribution(distribution)
        except importlib.metadata.PackageNotFoundError:
            missing.append(distribution)
    return missing


DEFAULT_EXPERIMENT_PLUGINS: tuple[str, ...] = (
    "nip-plugin-graph-isomorphism",
    "nip-plugin-ppo",
)
"""The first-party plugins that provide the ``default`` config and what it needs."""


def missing_plugins_message(reason: str) -> str:
    """Explain what ``nip run`` lacks and the commands that install it."""
    needed = list(DEFAULT_EXPERIMENT_PLUGINS)
    missing = first_party_plugins_missing()
    lines = [f"{reason}: nip needs a scenario plugin and a trainer plugin to run."]
    if missing:
        lines.append("Missing plugins: " + ", ".join(missing) + ".")
    else:
        lines.append(
            f"{' and '.join(needed)} are installed but registered nothing; one of "
            "them may have failed to load: see `nip plugins`."
        )
    lines += [
        f"The default experiment needs {' and '.join(needed)}. Install them with:",
        "    pip install " + " ".join(needed),
        "or, from a checkout of the nip repository:",
        "    pip install " + " ".join(f"./plugins/{name}" for name in needed),
        "Or name a config of your own with --config-name (configs are searched in "
        "./configs, then in each plugin's config directory).",
    ]
    return "\n".join(lines)
