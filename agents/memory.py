"""Keep freed memory in the process, so large buffers are reused rather than faulted in again.

glibc serves every allocation above its mmap threshold (32 MB at most) with fresh pages from
``mmap`` and hands them back to the OS on free. A training update allocates such buffers again
and again: SmolLM2's vocabulary-sized gradients (113 MB), each micro-batch's logits and their
gradients. Every fresh page costs a page fault on first touch: for the benchmark's GRPO update
(SmolLM2, 32 samples) that was 500-800 thousand faults and 2-6 s of a 13-17 s optimisation
phase (``_optimise`` timed with and without this setting in one process). With mmap switched
off and the trim threshold raised, freed blocks stay in the heap and the next allocation of that
size reuses them: no faults after the first update. Generation gains too: every decode step
allocates vocabulary-sized buffers (logits, log-probs, probabilities: 12.6 MB each for SmolLM2
at batch 64), and a batch-64 bf16 rollout spent 0.8-1.1 s outside the model's own steps
without the setting against 0.3-0.4 s with it, of about 6.4 s in all.
``train()`` and ``LMPolicy.generate()`` turn it on.

The setting is process-wide and lasts for the life of the process: memory a run freed is kept
for its next allocations rather than returned to the OS (the default study peaked at
1.39-1.45 GB over two runs, against 1.41 GB before). Set ``REWARDGYM_KEEP_FREED_MEMORY=0`` to
leave the allocator as it is. Elsewhere than glibc Linux it does nothing.

Example:
    >>> keep_freed_memory()      # True on glibc Linux
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

from rewardgym.errors import ConfigError

ENV_VAR = "REWARDGYM_KEEP_FREED_MEMORY"
# mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: free memory is trimmed past 2 GiB


def wanted() -> bool:
    """Whether ``$REWARDGYM_KEEP_FREED_MEMORY`` allows the setting (unset or ``1``: yes).

    Example:
        >>> wanted()                 # with REWARDGYM_KEEP_FREED_MEMORY=0 in the environment
        False
    """
    value = os.environ.get(ENV_VAR, "1").strip()
    if value not in ("0", "1"):
        raise ConfigError(
            f"{ENV_VAR} must be 0 (leave the allocator alone) or 1 (keep freed memory), "
            f"got {value!r}"
        )
    return value == "1"


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory for reuse; True when it took effect.

    Safe to call many times: the allocator is set up once per process.
    """
    return wanted() and _configure_glibc()


@functools.cache
def _configure_glibc() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to set
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
