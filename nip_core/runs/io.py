"""Atomic file writes: write a temporary file beside the target, then rename.

A run killed in the middle of a write leaves either the old file or the new one,
never a truncated one, so resume always finds a readable checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically with ``write(binary_file)``.

    The temporary file lives in the target's directory so the final ``os.replace`` is
    a same-filesystem rename (atomic on POSIX and Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (indented, keys sorted) atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` atomically."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))
