"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The data goes to a temporary file beside the target (same folder, so the rename cannot cross
file systems), is fsynced, then renamed over the target with ``os.replace``. If anything fails
the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating the parent folder.

    Example:
        >>> write_bytes_atomic(tmp_dir / "a.bin", b"x")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (newlines kept as ``\\n``)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any, **dumps: Any) -> Path:
    """Write ``data`` as indented JSON atomically; ``dumps`` go to ``json.dumps``."""
    options = {"indent": 2, **dumps}
    return write_text_atomic(path, json.dumps(data, **options) + "\n")
