"""The run directory: the source of truth of a run.

Layout of ``<runs_dir>/<run_id>/``::

    hyper_params.json   the resolved HyperParameters dict (``_meta`` holds the core
                        and plugin versions)
    run_info.json       status (running / finished / failed / killed), provenance
                        (git sha when available, installed nip versions), W&B run
    settings.json       the ExperimentSettings (no secrets)
    metrics.jsonl       one JSON object per logged step: {"step": i, "metric": v, ...,
                        "timing.elapsed_s": seconds since the run started}
    checkpoints/        latest.pt and numbered iter_000009.pt files
    rollouts/           rollout samples, one JSON episode per line
    plots/              figures
    wandb/              the local W&B run files, when W&B is on
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nip_core.errors import CheckpointError
from nip_core.runs.io import atomic_write_json

if TYPE_CHECKING:
    from nip_core.settings import ExperimentSettings

HYPER_PARAMS_FILE = "hyper_params.json"
SETTINGS_FILE = "settings.json"
METRICS_FILE = "metrics.jsonl"
RUN_INFO_FILE = "run_info.json"

_DAMAGED_FILES_WARNED: set[tuple[str, int, int]] = set()
"""The damaged optional records already warned about (path, modification time,
size): each is said once, however often it is read before it is replaced."""
CHECKPOINTS_DIR = "checkpoints"
ROLLOUTS_DIR = "rollouts"
PLOTS_DIR = "plots"
ELAPSED_METRIC = "timing.elapsed_s"
"""Logged with every metric record
(:meth:`nip_core.runs.context.RunContext.log_metrics`): the run's wall-clock
seconds so far, from its start to the record, the time it spent stopped (between
a kill and ``nip resume``) left out. ``nip report --x-axis minutes`` draws against
it."""


def new_run_id() -> str:
    """A fresh run id: UTC time plus a random suffix (sortable, collision-safe)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def git_sha(start: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout holding ``start`` (default: this package)."""
    start = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=start,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def installed_versions() -> dict[str, str]:
    """Versions of nip-core and every installed nip plugin distribution."""
    from importlib import metadata

    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower()
        if name == "nip-core" or name.startswith("nip-plugin-"):
            versions[name] = dist.version
    return dict(sorted(versions.items()))


def iter_metric_records(
    path: str | os.PathLike, damaged: list[int] | None = None
) -> Iterator[tuple[int, dict]]:
    """The records of a ``metrics.jsonl`` with their line numbers (from 0): blank
    lines, a line that is not valid JSON (the last line of a run killed while
    writing; a line that is not UTF-8) and lines that are not objects are passed
    over. Nothing for a
    missing file.

    ``damaged``, when given, receives the numbers (from 1) of the lines that are
    not valid JSON other than a last line a kill cut short (one without its
    newline): lines damaged after they were written."""
    if not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        lines = f.readlines()
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError:  # not JSON, or not UTF-8
            if damaged is not None and (index < len(lines) - 1 or raw.endswith(b"\n")):
                damaged.append(index + 1)
            continue
        if isinstance(record, dict):
            yield index, record


class RunDirectory:
    """A run's directory and the files in it.

    Parameters
    ----------
    path : str | os.PathLike
        The directory (``<runs_dir>/<run_id>``). It is created by :meth:`create`.
    """

    def __init__(self, path: str | os.PathLike):
        # `~` is the home directory, as in data_dir and cache_dir (a directory
        # literally named `~` is a trap)
        self.path = Path(path).expanduser()

    @classmethod
    def for_settings(cls, settings: ExperimentSettings) -> RunDirectory:
        """The run directory the settings name (``settings.run_id`` must be set)."""
        if settings.run_id is None:
            raise ValueError("settings.run_id must be set to locate the run directory")
        return cls(Path(settings.runs_dir) / settings.run_id)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def hyper_params_path(self) -> Path:
        return self.path / HYPER_PARAMS_FILE

    @property
    def settings_path(self) -> Path:
        return self.path / SETTINGS_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def run_info_path(self) -> Path:
        return self.path / RUN_INFO_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def rollouts_dir(self) -> Path:
        return self.path / ROLLOUTS_DIR

    @property
    def plots_dir(self) -> Path:
        return self.path / PLOTS_DIR

    def exists(self) -> bool:
        return self.hyper_params_path.is_file()

    def create(self) -> RunDirectory:
        """Create the directory and its sub-directories (idempotent)."""
        for sub in (self.path, self.checkpoints_dir, self.rollouts_dir, self.plots_dir):
            sub.mkdir(parents=True, exist_ok=True)
        return self

    # ------------------------------------------------------------------------------
    # Parameters and settings

    def write_hyper_params(self, params_dict: dict[str, Any]) -> None:
        """Save the hyper-parameter dict (``HyperParameters.to_dict()``, whose
        ``_meta`` holds the core and plugin versions) exactly as given, so
        ``HyperParameters.from_dict`` reads it back; record the provenance (git sha
        of the checkout, every installed nip distribution) in ``run_info.json``."""
        atomic_write_json(self.hyper_params_path, params_dict)
        provenance: dict[str, Any] = {"versions": installed_versions()}
        sha = git_sha()
        if sha is not None:
            provenance["git_sha"] = sha
        self.write_run_info(provenance=provenance)

    def read_hyper_params(self) -> dict[str, Any]:
        """The saved hyper-parameter dict (raises CheckpointError when missing)."""
        if not self.hyper_params_path.is_file():
            raise CheckpointError(
                f"no {HYPER_PARAMS_FILE} in {self.path}: is this a run directory? "
                f"Run directories live under the settings' runs_dir "
                f"(default ./runs)."
            )
        try:
            return json.loads(self.hyper_params_path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise CheckpointError(
                f"{self.hyper_params_path} is not valid JSON ({error}): the run's "
                "record of its experiment is damaged, so it cannot be resumed or "
                "compared; put a good copy back (the W&B run's config holds one "
                "when W&B was on), or start a new run"
            ) from None

    def write_settings(self, settings: ExperimentSettings) -> None:
        atomic_write_json(self.settings_path, settings.to_dict())

    def read_settings(self) -> dict[str, Any]:
        """The saved run settings; ``{}`` (the defaults) when there are none or the
        file is damaged (with a warning)."""
        return self._read_optional_json(self.settings_path, "the default settings")

    def write_run_info(self, **info: Any) -> None:
        """Merge ``info`` into ``run_info.json`` (status, W&B run path, ...)."""
        data = self.read_run_info()
        data.update(info)
        atomic_write_json(self.run_info_path, data)

    def read_run_info(self) -> dict[str, Any]:
        """``run_info.json``; ``{}`` when there is none, or when it is damaged (a
        full disk, say: with a warning; the next write replaces it)."""
        return self._read_optional_json(self.run_info_path, "a new one")

    @staticmethod
    def _read_optional_json(path: Path, instead: str) -> dict[str, Any]:
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            data = error
        if isinstance(data, dict):
            return data
        import warnings

        from nip_core.errors import CheckpointWarning

        why = data if isinstance(data, Exception) else "not a JSON object"
        # said once per damaged file: a run reads run_info.json several times
        # before its first write replaces it
        try:
            stat = path.stat()
            seen = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        except OSError:
            seen = None
        if seen is not None and seen in _DAMAGED_FILES_WARNED:
            return {}
        if seen is not None:
            _DAMAGED_FILES_WARNED.add(seen)
        # what it held (a run's provenance, its settings) is kept to be read
        kept = path.with_name(path.name + ".damaged")
        try:
            if not kept.exists():
                shutil.copy2(path, kept)
        except OSError:
            kept_note = ""
        else:
            kept_note = f"; the damaged file is kept as {kept.name}"
        warnings.warn(
            f"{path} is damaged ({why}); it is read as empty and replaced by "
            f"{instead}{kept_note}",
            CheckpointWarning,
            stacklevel=3,
        )
        return {}

    # ------------------------------------------------------------------------------
    # Metrics

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every record of ``metrics.jsonl``, in order."""
        if not self.metrics_path.is_file():
            return []
        with open(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"
