"""The machine and library versions a result was produced with, for logs and reports.

Warm-start train logs, run records and study results all describe their environment with
:func:`machine_record`, so the three agree on what they report and how it is spelled.
Nothing here imports torch at module level; :func:`machine_record` imports it when called.

Example:
    >>> "torch" in machine_record()["versions"]
    True
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any

__all__ = [
    "REPORTED_LIBRARIES",
    "cpu_model",
    "library_versions",
    "machine_record",
    "torch_threads",
]

# The libraries a study's results.json lists, in the order the report shows them.
REPORTED_LIBRARIES = (
    "rewardgym",
    "torch",
    "transformers",
    "gymnasium",
    "stable-baselines3",
    "sacrebleu",
    "tokenizers",
    "numpy",
    "ray",
)


def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo``; elsewhere what ``platform`` knows.

    Example:
        >>> bool(cpu_model())
        True
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux, or /proc is not mounted
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, else all).

    Example:
        >>> usable_cpus() >= 1
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def library_versions(names: Iterable[str] = REPORTED_LIBRARIES) -> dict[str, str | None]:
    """The installed version of each distribution in ``names`` (None where not installed).

    Example:
        >>> library_versions(["no-such-package"])
        {'no-such-package': None}
    """
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_record() -> dict[str, Any]:
    """Python, platform, CPU model, cores, torch threads, accelerator and library versions.

    ``device`` is the first CUDA device's name, or ``"cpu"`` without one; ``torch_threads``
    is torch's intra-op thread count at the moment of the call.

    Example:
        >>> sorted(machine_record())
        ['cpu_count', 'cpu_model', 'device', 'platform', 'processor', 'python', 'torch_threads',
         'versions']
    """
    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        threads: int | None = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        device, threads = "cpu", None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "device": device,
        "versions": library_versions(),
    }


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the caller's count.

    Results depend on the count (a reduction split over two threads adds in another order),
    so every run of a study sets the same one, whichever executor runs it. ``None`` leaves
    torch's setting as it is.

    Example:
        >>> with torch_threads(1):
        ...     train_the_run()
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
