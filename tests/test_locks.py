"""One writer per run directory: the lock refuses a second holder, names the owner, dies with
its process (a dead owner's record is taken over with a notice), and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
from conftest import hold_run_in_subprocess

from rewardgym.errors import RunLockedError
from rewardgym.locks import RUN_LOCK, describe_owner, hold_run_dir, run_owner


def test_a_held_run_records_its_owner_and_is_released_cleanly(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with hold_run_dir(run) as owner:
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert run_owner(run) == owner
        with hold_run_dir(run) as again:  # the same process: re-entrant
            assert again == owner
        assert run_owner(run) == owner
        (run / "config.json").write_text("{}")
    assert run_owner(run) is None
    assert (run / RUN_LOCK).read_text() == ""  # released cleanly: no owner left on record
    with hold_run_dir(run):  # free again
        pass


def test_a_run_that_wrote_nothing_leaves_no_folder(tmp_path: Path) -> None:
    run = tmp_path / "never" / "used"
    with pytest.raises(RuntimeError):
        with hold_run_dir(run):
            raise RuntimeError("set-up failed")
    assert not run.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with hold_run_dir(existing):
        pass
    assert existing.is_dir()  # a folder the user made stays


def test_a_held_run_refuses_another_process_and_the_lock_dies_with_its_owner(
    tmp_path: Path,
) -> None:
    run, ready = tmp_path / "run", tmp_path / "ready"
    proc = hold_run_in_subprocess(run, ready)
    try:
        owner = run_owner(run)
        assert owner is not None and owner["pid"] == proc.pid
        with pytest.raises(RunLockedError, match=rf"being written by pid {proc.pid} on "):
            with hold_run_dir(run):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert json.loads((run / RUN_LOCK).read_text())["pid"] == proc.pid  # left on record
    notices: list[str] = []
    with hold_run_dir(run, notice=notices.append) as owner:
        assert owner["pid"] == os.getpid()
    assert len(notices) == 1 and f"pid {proc.pid}" in notices[0] and "taking over" in notices[0]


def test_describe_owner() -> None:
    owner = {"pid": 7, "host": "node-a", "since": "2026-01-01T00:00:00Z"}
    assert describe_owner(owner) == "pid 7 on node-a since 2026-01-01T00:00:00Z"
    assert describe_owner({}) == "another process"
