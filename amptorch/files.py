"""Atomic file writes: a file is either its old content or its whole new content, never half.

Every checkpoint, cache file and JSON the package writes goes through
:func:`atomic_write` (a temporary file in the same directory, flushed to
disk, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fh)`` on a temporary binary file next to ``path``, fsync it and move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as indented JSON (non-JSON values as their ``str``), written atomically."""
    blob = json.dumps(obj, indent=2, default=str).encode()
    return atomic_write(path, lambda fh: fh.write(blob))


__all__ = ["atomic_write", "write_json"]
