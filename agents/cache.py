"""Where built models are cached: ``$REWARDGYM_CACHE``, else ``~/.cache/rewardgym``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$REWARDGYM_CACHE``, else ``~/.cache/rewardgym``.

    Example:
        >>> cache_root("/tmp/cache")
        PosixPath('/tmp/cache')
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("REWARDGYM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rewardgym"
