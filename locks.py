"""File locks: one writer per run directory, one builder per cache entry.

Both use ``flock`` on a file that stays in place, so the kernel releases a lock the moment its
process dies, even by ``kill -9``: a lock never goes stale. The run lock also records its
owner (pid, host, start time) in the file, so a refusal can name who holds the run, and a
process that takes over a run whose owner died without releasing it says so.

Example:
    >>> with hold_run_dir("runs/a"):           # raises RunLockedError while another holds it
    ...     train_the_run()
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from rewardgym.errors import RunDataError, RunLockedError

RUN_LOCK = ".lock"
# Runs this process holds: holding one again (a study's run calls train() on it) is a no-op,
# since a second flock from the same process would refuse it.
_held: dict[Path, dict[str, Any]] = {}


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing), waiting while another holds it.

    Example:
        >>> with exclusive_lock(cache / "entry.lock"):
        ...     build_once()
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def hold_run_dir(
    run_dir: str | os.PathLike[str], notice: Callable[[str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Hold ``run_dir`` for writing; yields the owner record written into its lock file.

    The folder is created if missing, and removed again on exit if the holder left nothing in
    it but the lock (a run that failed its set-up leaves nothing behind). Holding a run this
    process already holds yields the same record and releases nothing on exit.

    Args:
        run_dir: the run directory.
        notice: where the line about taking over from a dead owner goes (default: ignored).

    Raises:
        RunLockedError: another process holds the run; names its pid and host.
        RunDataError: the folder cannot be created or locked.
    """
    path = Path(run_dir)
    key = path.resolve()
    if key in _held:
        yield _held[key]
        return
    created = not path.exists()
    handle = _open_lock(path)
    try:
        previous = _take(handle, path)
        if previous and notice is not None:
            notice(
                f"taking over {str(path)!r}: its previous writer (pid {previous.get('pid')} "
                f"on {previous.get('host')}) ended without releasing it"
            )
        owner = _held[key] = _owner()
        _write_owner(handle, owner)
        try:
            yield owner
        finally:
            del _held[key]
            _write_owner(handle, None)
            if created:
                _remove_if_only_the_lock(path)
    finally:
        handle.close()


def run_owner(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The owner record of a run held now, or None when nobody holds it."""
    lock = Path(run_dir) / RUN_LOCK
    if not lock.exists():
        return None
    with open(lock, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(handle) or {}
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def describe_owner(owner: dict[str, Any]) -> str:
    """``pid 123 on host-a since 2026-12-01T21:00:00Z`` (parts the record lacks are left out)."""
    parts = [f"pid {owner['pid']}" if "pid" in owner else "another process"]
    if owner.get("host"):
        parts.append(f"on {owner['host']}")
    if owner.get("since"):
        parts.append(f"since {owner['since']}")
    return " ".join(parts)


def _open_lock(path: Path) -> TextIO:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        return os.fdopen(fd, "r+")
    except OSError as exc:
        raise RunDataError(
            f"cannot lock run directory {str(path)!r}: {exc.strerror or exc}; choose a writable "
            "--out"
        ) from exc


def _take(handle: TextIO, path: Path) -> dict[str, Any] | None:
    """Lock without waiting; return the owner record a dead previous holder left, if any."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(handle) or {}
        raise RunLockedError(
            f"run directory {str(path)!r} is being written by {describe_owner(owner)}; wait for "
            "it to finish (or stop it), or choose another --out"
        ) from None
    except OSError as exc:
        hint = "; the file system may not support locks" if exc.errno == errno.ENOLCK else ""
        raise RunDataError(f"cannot lock run directory {str(path)!r}: {exc}{hint}") from exc
    return _read_owner(handle)


def _owner() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _read_owner(handle: TextIO) -> dict[str, Any] | None:
    handle.seek(0)
    text = handle.read().strip()
    try:
        owner = json.loads(text) if text else None
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else None


def _write_owner(handle: TextIO, owner: dict[str, Any] | None) -> None:
    """Rewrite the lock file's record in place; an empty file means "released cleanly"."""
    handle.seek(0)
    handle.truncate()
    if owner is not None:
        handle.write(json.dumps(owner))
    handle.flush()


def _remove_if_only_the_lock(path: Path) -> None:
    if [p.name for p in path.iterdir()] == [RUN_LOCK]:
        shutil.rmtree(path, ignore_errors=True)
