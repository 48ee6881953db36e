"""Atomic file writes: write a temporary file beside the target, then rename.

A run killed in the middle of a write leaves either the old file or the new one,
never a truncated one, so resume always finds a readable checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as the strings ``"nan"``, ``"inf"``,
    ``"-inf"`` (JSON has no such numbers), in dicts and lists too."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically with ``write(binary_file)``.

    The temporary file lives in the target's directory so the final ``os.replace`` is
    a same-filesystem rename (atomic on POSIX and Windows).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as error:
        _name_the_file(error, path.parent)
        raise
    try:
        # mkstemp makes the file readable by its owner only: give it the mode a
        # plain open() would (0666 less the umask), as the files written directly
        # (metrics.jsonl) have, so that a run directory shared with others reads
        # alike throughout
        with contextlib.suppress(OSError):
            os.chmod(tmp_name, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(error, OSError):
            _name_the_file(error, path)
        raise
    return path


@functools.cache
def _umask() -> int:
    """The process's umask, read once (by setting it and putting it back, the only
    way there is; once, so no later thread sees it changed)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def stale_temporary_files(directory: str | os.PathLike) -> list[Path]:
    """The temporary files :func:`atomic_write` leaves when its process is killed
    before the rename (``.<name>.<random>.tmp``), in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.glob(".*.tmp") if p.is_file() and p.name.count(".") >= 3
    )


def _name_the_file(error: OSError, path: Path) -> None:
    # a failed write() names no file; the message should
    if error.filename is None:
        error.filename = str(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (indented, keys sorted) atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` atomically.

    The object is serialised in memory first, so a full disk fails in Python's own
    ``write`` with an :class:`OSError` (``ENOSPC``) rather than deep in torch's C++
    writer.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


STORAGE_ERRNOS: dict[int, str] = {
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file is too large for the file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "the path is a directory",
    errno.ENAMETOOLONG: "the path is too long",
    errno.EIO: "an input/output error of the device",
}
"""The errors of :class:`OSError` that mean "cannot write here", in words."""


def is_storage_error(error: BaseException) -> bool:
    """Whether ``error`` is an :class:`OSError` that means "cannot write here"."""
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS


def describe_storage_error(error: OSError) -> str:
    """``"cannot write runs/x/run_info.json: the disk is full"``."""
    reason = STORAGE_ERRNOS.get(error.errno or 0) or error.strerror or str(error)
    where = error.filename
    if where is None:
        return f"cannot write: {reason}"
    return f"cannot write {where}: {reason}"
