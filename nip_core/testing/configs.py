"""Composing configs in tests, as ``nip run`` and ``nip config show`` do.

A plugin's tests check that its Hydra configs compose and validate::

    from nip_core.testing.configs import compose_experiment

    def test_my_config_is_valid(register_plugin):
        register_plugin(my_plugin, name="my_plugin")
        hyper_params, settings = compose_experiment("my_plugin/fast", "seed=3")
        assert hyper_params.trainer == "my_trainer"

Configs are searched as the command line searches them (``./configs``, every
registered plugin's config directory, the core's), after any ``first_dirs`` given.
Every function raises :class:`~nip_core.errors.NipConfigError` for an invalid
config, as the command line reports it. The command line's own modules
(:mod:`nip_core.cli`) are not an API for tests; this module is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "compose_config",
    "compose_experiment",
    "compose_experiments",
    "compose_hydra_config",
    "config_app",
    "config_names",
    "plain_config",
]


@contextlib.contextmanager
def config_app(first_dirs: Sequence[tuple[str, Path]] = ()) -> Iterator[Any]:
    """A Hydra application over nip's config search path, for several compositions.

    Parameters
    ----------
    first_dirs : Sequence[tuple[str, Path]]
        ``(name, directory)`` pairs searched before the registered ones (a plugin's
        config directory when the plugin is not registered, say); a registered
        directory of the same name is then left out.
    """
    from nip_core.cli import compose as composer

    search = [composer.SearchDir(name, Path(path)) for name, path in first_dirs]
    names = {name for name, _ in first_dirs}
    search += [d for d in composer.config_search_dirs() if d.origin not in names]
    with composer.hydra_app(search) as app:
        yield app


def compose_hydra_config(
    name: str,
    *overrides: str,
    multirun: bool = False,
    first_dirs: Sequence[tuple[str, Path]] = (),
    app: Any = None,
) -> Any:
    """The config as Hydra composes it (a ``DictConfig``, ``hydra:`` node included:
    sweeper parameters, launcher)."""
    from nip_core.cli import compose as composer

    if app is not None:
        return composer.compose(app, name, list(overrides), multirun=multirun)
    with config_app(first_dirs) as fresh:
        return composer.compose(fresh, name, list(overrides), multirun=multirun)


def plain_config(cfg: Any) -> dict[str, Any]:
    """A composed ``DictConfig`` as a plain dict: interpolations resolved,
    ``hydra:`` left out."""
    from nip_core.cli import compose as composer

    return composer.to_plain_dict(cfg)


def compose_config(
    name: str,
    *overrides: str,
    first_dirs: Sequence[tuple[str, Path]] = (),
    app: Any = None,
) -> dict[str, Any]:
    """The composed config as a plain dict, interpolations resolved, without
    ``hydra:`` (what ``nip config show --raw`` prints)."""
    from nip_core.cli import compose as composer

    return composer.to_plain_dict(
        compose_hydra_config(name, *overrides, first_dirs=first_dirs, app=app)
    )


def compose_experiment(
    name: str,
    *overrides: str,
    first_dirs: Sequence[tuple[str, Path]] = (),
    app: Any = None,
) -> tuple[Any, Any]:
    """The validated ``(HyperParameters, ExperimentSettings)`` of a config, as
    ``nip run`` builds them."""
    from nip_core.cli import compose as composer

    config = compose_config(name, *overrides, first_dirs=first_dirs, app=app)
    return composer.build_experiment(config, config_name=name)


def compose_experiments(
    names: Iterable[str],
    *overrides: str,
    first_dirs: Sequence[tuple[str, Path]] = (),
) -> dict[str, tuple[Any, Any]]:
    """:func:`compose_experiment` for several configs, with one Hydra application."""
    with config_app(first_dirs) as app:
        return {name: compose_experiment(name, *overrides, app=app) for name in names}


def config_names(
    config_dir: Path, group: str, *, skip_suffix: str = "_base"
) -> list[str]:
    """The configs of a group in a config directory, as ``--config-name`` values
    (``"graph_isomorphism/nip_vanilla_ppo"``), sorted; names ending in
    ``skip_suffix`` (shared bases) are left out."""
    return sorted(
        f"{group}/{path.stem}"
        for path in (Path(config_dir) / group).glob("*.yaml")
        if not (skip_suffix and path.stem.endswith(skip_suffix))
    )
