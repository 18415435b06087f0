"""The allocator setting of ``agents.memory``: large freed buffers are reused, not faulted in again.

The setting is process-wide, so each check runs in a fresh interpreter and reads glibc's own
accounting (``mallinfo2``): how many bytes are held in separate ``mmap`` blocks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest

from rewardgym.agents import memory
from rewardgym.errors import ConfigError

GLIBC_MALLINFO2 = sys.platform.startswith("linux") and hasattr(
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2"
)

# Allocates 64 MB (above glibc's largest mmap threshold), frees it, allocates it again, and
# prints the bytes glibc then holds in mmap blocks and whether the setting took effect.
SCRIPT = """
import ctypes, torch
from rewardgym.agents.memory import keep_freed_memory
FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS.split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
applied = keep_freed_memory()
buffer = torch.ones(16 * 2**20)
del buffer
buffer = torch.ones(16 * 2**20)
print(applied, libc.mallinfo2().hblkhd)
"""


def _run(env_value: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != memory.ENV_VAR}
    if env_value is not None:
        env[memory.ENV_VAR] = env_value
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    applied, mmapped = done.stdout.split()
    return applied == "True", int(mmapped)


@pytest.mark.skipif(not GLIBC_MALLINFO2, reason="needs glibc >= 2.33 (mallinfo2)")
def test_large_buffers_come_from_the_heap_once_set() -> None:
    applied, mmapped = _run(None)
    assert applied
    assert mmapped < 64 * 2**20


@pytest.mark.skipif(not GLIBC_MALLINFO2, reason="needs glibc >= 2.33 (mallinfo2)")
def test_switched_off_leaves_glibc_mapping_large_buffers() -> None:
    applied, mmapped = _run("0")
    assert not applied
    assert mmapped >= 64 * 2**20


def test_bad_switch_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.ENV_VAR, "yes")
    with pytest.raises(ConfigError, match="REWARDGYM_KEEP_FREED_MEMORY must be 0 .* got 'yes'"):
        memory.keep_freed_memory()
