"""Atomic file and folder writes: a reader sees the old one or the new one, never half.

The data goes to a temporary file (or folder) beside the target (same folder, so the rename
cannot cross file systems), is fsynced, then renamed over the target with ``os.replace``. If
anything fails the temporary one is removed and the target is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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
            # mkstemp makes the file private (0600); the written file is an ordinary one
            os.chmod(tmp, 0o644)
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


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush one file's data to disk."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (renames into it) to disk; a no-op where folders cannot be
    opened for it (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike[str]) -> None:
    """fsync every file under ``folder``, then every folder, deepest first."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_dir(root)


def replace_dir(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename folder ``tmp`` to ``target``. An old ``target`` is moved aside first (a rename onto
    a non-empty folder fails) and removed after, so a crash in between loses only the old one.
    """
    tmp, target = Path(tmp), Path(target)
    aside = None
    if target.exists():
        aside = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.old-", suffix=".tmp", dir=target.parent)
        )
        os.replace(target, aside / target.name)
    os.replace(tmp, target)
    fsync_dir(target.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh temporary folder beside ``target`` to fill; on leaving the block every file in
    it is fsynced and the folder renamed over ``target``; on an error it is removed and
    ``target`` left as it was. Write a completeness marker last, inside the block.

    Example:
        >>> with atomic_dir(tmp_dir / "model") as folder:
        ...     (folder / "weights.bin").write_bytes(b"...")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the published folder is an ordinary one
    try:
        yield tmp
        fsync_tree(tmp)
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
