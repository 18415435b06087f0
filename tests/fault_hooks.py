"""Fault injection for subprocess tests: run the ``rewardgym`` command with a checkpoint hook.

``agents/checkpoint.py`` calls its module-level ``_before_commit(tmp_dir)`` after a checkpoint's
files are written and fsynced, just before the rename that publishes it. This script installs a
hook there, then runs the command line in the same process, so a test can kill the process at a
known point of a checkpoint write, or make that write fail as a full disk would.

Usage:
    python tests/fault_hooks.py [--slow S] [--block-at TEXT --marker FILE] [--fail-at TEXT]
        [--monitors JSON] -- train --task arithmetic ...

- ``--slow S``: every commit sleeps S seconds (widens the window a kill can land in).
- ``--block-at TEXT --marker FILE``: the first commit whose temporary folder path contains TEXT
  touches FILE and then sleeps for ten minutes (the test kills the process meanwhile).
- ``--fail-at TEXT``: the first commit whose temporary folder path contains TEXT raises
  ``OSError(ENOSPC)``, as a full disk would.
- ``--monitors JSON``: ``train --monitors all`` gets these monitors (a ``{name: options}``
  mapping, as ``make_monitors`` takes it) instead of the defaults, so a test can choose
  thresholds that fire.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rewardgym.agents import checkpoint
from rewardgym.cli import main as cli_main
from rewardgym.evaluation import monitors


def make_hook(
    slow: float = 0.0,
    block_at: str | None = None,
    marker: str | None = None,
    fail_at: str | None = None,
) -> Callable[[Path], None]:
    """The ``_before_commit`` hook the options describe.

    Example:
        >>> hook = make_hook(fail_at=".step-000002")
        >>> hook(Path("run/checkpoints/.step-000001.x.tmp"))  # other steps pass through
    """

    def hook(tmp: Path) -> None:
        if slow:
            time.sleep(slow)
        if block_at is not None and block_at in str(tmp):
            if marker:
                Path(marker).write_text(str(tmp), encoding="utf-8")
            time.sleep(600)
        if fail_at is not None and fail_at in str(tmp):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    return hook


def main(argv: list[str] | None = None) -> int:
    """Parse the hook options, install the hook, run ``rewardgym`` with the rest."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="fault_hooks")
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--block-at")
    parser.add_argument("--marker")
    parser.add_argument("--fail-at")
    parser.add_argument("--monitors", type=json.loads)
    opts = parser.parse_args(argv[:split])
    checkpoint._before_commit = make_hook(opts.slow, opts.block_at, opts.marker, opts.fail_at)
    if opts.monitors is not None:
        # the command line builds its monitors with default_monitors when it runs
        monitors.default_monitors = lambda *args, **kwargs: monitors.make_monitors(opts.monitors)
    return cli_main(argv[split + 1 :])


if __name__ == "__main__":
    sys.exit(main())
