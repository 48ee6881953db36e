"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is one ``torch.save`` file holding a dict:

``format``
    :data:`CHECKPOINT_FORMAT`, checked on load.
``iteration``
    The number of completed training iterations.
``trainer``
    The trainer's own state (models, optimizers, environment state, data order, ...;
    see :meth:`nip_core.trainers.Trainer.state_dict`).
``rng``
    Python, NumPy and torch (CPU and CUDA) random states.
``versions``
    The nip-core and plugin versions that wrote it.

Files are written atomically to ``checkpoints/iter_{iteration:06d}.pt`` and
``checkpoints/latest.pt``.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from pathlib import Path
from typing import Any

from nip_core.errors import CheckpointError, CheckpointWarning
from nip_core.runs.io import atomic_torch_save
from nip_core.seeding import seed_everything  # noqa: F401 (re-exported)

CHECKPOINT_FORMAT = 1
LATEST_NAME = "latest.pt"
_NUMBERED = re.compile(r"^iter_(\d+)\.pt$")


def capture_rng_state() -> dict[str, Any]:
    """The state of every random number generator a run uses.

    NumPy's legacy global generator is included on purpose: libraries a scenario
    uses may draw from it.
    """
    import numpy as np
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators :func:`capture_rng_state` captured."""
    import numpy as np
    import torch

    random.setstate(_to_python_rng_state(state["python"]))
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_python_rng_state(state: Any) -> tuple:
    # torch.load gives lists back where random.getstate() had tuples
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def numbered_checkpoint_path(
    checkpoints_dir: str | os.PathLike, iteration: int
) -> Path:
    return Path(checkpoints_dir) / f"iter_{iteration:06d}.pt"


def list_checkpoints(checkpoints_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Numbered checkpoints as ``(iteration, path)``, oldest first."""
    directory = Path(checkpoints_dir)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NUMBERED.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(
    checkpoints_dir: str | os.PathLike,
    iteration: int,
    trainer_state: dict[str, Any],
    *,
    keep_numbered: bool = True,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a checkpoint after ``iteration`` completed iterations.

    Returns the path of ``latest.pt``.
    """
    from nip_core.runs.run_dir import installed_versions

    payload = {
        "format": CHECKPOINT_FORMAT,
        "iteration": iteration,
        "trainer": trainer_state,
        "rng": capture_rng_state(),
        "versions": installed_versions(),
        **(extra or {}),
    }
    directory = Path(checkpoints_dir)
    if keep_numbered:
        atomic_torch_save(numbered_checkpoint_path(directory, iteration), payload)
    return atomic_torch_save(directory / LATEST_NAME, payload)


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint file, checking its format."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # a corrupt file: say which one
        lines = str(error).strip().splitlines()
        # torch's own first line says what failed; the rest are C++ frames
        reason = lines[0] if lines else type(error).__name__
        raise CheckpointError(f"could not read checkpoint {path}: {reason}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"{path} is not a nip checkpoint of format {CHECKPOINT_FORMAT} "
            f"(got format {found})"
        )
    return payload


def checkpoint_candidates(checkpoints_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint files, newest first: the newest numbered one, then ``latest.pt``
    (which repeats it, or stands alone where the numbered ones were deleted: tried
    before any older one, so an unreadable newest numbered checkpoint costs no
    iteration when its copy reads), then the older numbered ones."""
    directory = Path(checkpoints_dir)
    candidates = [path for _, path in reversed(list_checkpoints(directory))]
    latest = directory / LATEST_NAME
    if latest.is_file():
        candidates.insert(min(1, len(candidates)), latest)
    return candidates


def latest_checkpoint_path(checkpoints_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint file (see :func:`checkpoint_candidates`), or None.

    It may be unreadable; :func:`load_latest_checkpoint` falls back to older ones.
    """
    candidates = checkpoint_candidates(checkpoints_dir)
    return candidates[0] if candidates else None


def load_latest_checkpoint(
    checkpoints_dir: str | os.PathLike, map_location: Any = "cpu"
) -> dict[str, Any] | None:
    """The newest readable checkpoint in a directory, or None when there is none.

    A checkpoint that cannot be read (truncated by a full disk, a file system
    without atomic renames, bit rot) is skipped for the next older one, with a
    :class:`~nip_core.errors.CheckpointWarning` that names the files skipped, the
    checkpoint used and the iterations that will be trained again.

    Raises
    ------
    CheckpointError
        When there are checkpoints but none can be read (each is named, with why).
    """
    candidates = checkpoint_candidates(checkpoints_dir)
    if not candidates:
        return None
    skipped: list[tuple[Path, CheckpointError]] = []
    for path in candidates:
        try:
            payload = load_checkpoint(path, map_location=map_location)
        except CheckpointError as error:
            skipped.append((path, error))
            continue
        if skipped:
            _warn_skipped(skipped, path, int(payload["iteration"]))
        return payload
    reasons = "; ".join(f"{path.name}: {error}" for path, error in skipped)
    raise CheckpointError(
        f"no checkpoint in {checkpoints_dir} can be read ({reasons}); start the run "
        "afresh under another run id"
    )


def _warn_skipped(
    skipped: list[tuple[Path, CheckpointError]], used: Path, iteration: int
) -> None:
    lost = [
        int(match.group(1))
        for path, _ in skipped
        if (match := _NUMBERED.match(path.name)) is not None
    ]
    newest = max(lost, default=iteration)
    if newest > iteration:
        redone = (
            f"iteration {newest} is"
            if newest == iteration + 1
            else f"iterations {iteration + 1} to {newest} are"
        )
        lost_text = f"{redone} trained again"
    else:
        lost_text = "no iteration is lost"
    names = ", ".join(path.name for path, _ in skipped)
    reasons = "; ".join(f"{path.name}: {error}" for path, error in skipped)
    warnings.warn(
        f"unreadable checkpoint{'s' if len(skipped) > 1 else ''} {names} skipped "
        f"({reasons}); continuing from {used.name} (iteration {iteration}): "
        f"{lost_text}",
        CheckpointWarning,
        stacklevel=3,
    )
