"""Roofline: the machine's measured matrix-product peak, and the shared benchmark helpers.

A model with ``N`` parameters costs about ``2N`` FLOPs per generated token and ``6N`` per trained
token, so the fastest any implementation could go on this machine is ``peak / 2N`` tokens per
second for generation and ``peak / 6N`` for training. The peak is measured here (a large square
``matmul``, fastest of several repeats) rather than taken from a data sheet, in the same process
as the benchmarks that are compared with it.

Example:
    >>> peaks = measure_peaks(quick=True)
    >>> peaks["float32"] > 0
    True
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from rewardgym.machine import cpu_model

DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def wall_times(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of each of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls.

    Example:
        >>> len(wall_times(lambda: sum(range(1000)), repeats=3))
        3
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls.

    Example:
        >>> median_time(lambda: sum(range(1000)), repeats=3) > 0
        True
    """
    return statistics.median(wall_times(fn, repeats, warmup))


def figure(
    name: str, value: float | None, unit: str = "", target: str = "", met: bool | None = None
) -> dict[str, Any]:
    """One row of the results table: what was measured, its target and whether it was met.

    ``met`` is None where the figure has no target (or the target could not be checked).

    Example:
        >>> figure("peak fp32", 1.2e11, "FLOP/s")["met"] is None
        True
    """
    return {"figure": name, "value": value, "unit": unit, "target": target, "met": met}


def machine() -> dict[str, Any]:
    """The machine the figures belong to: CPU model, cores, threads, torch version, GPU.

    Example:
        >>> machine()["threads"] >= 1
        True
    """
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": gpu,
    }


def matmul_flops(dtype: torch.dtype, size: int, repeats: int, device: str = "cpu") -> float:
    """FLOP/s of a ``size × size`` matrix product in ``dtype`` (fastest of ``repeats``).

    The fastest, not the median: a peak is what the machine can do, and on a shared machine
    slower repeats measure the neighbours, not the hardware.

    Example:
        >>> matmul_flops(torch.float32, 256, repeats=2) > 0
        True
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run() -> None:
        torch.mm(a, b)
        sync()

    seconds = min(wall_times(run, repeats=repeats, warmup=2))
    return 2.0 * size**3 / seconds


def measure_peaks(quick: bool = False, device: str = "cpu") -> dict[str, float]:
    """The matmul peak in FLOP/s per dtype name (``float32``, ``bfloat16``) on ``device``.

    Example:
        >>> sorted(measure_peaks(quick=True))
        ['bfloat16', 'float32']
    """
    size = 1024 if quick else 2048
    repeats = 5 if quick else 9
    return {name: matmul_flops(dtype, size, repeats, device) for name, dtype in DTYPE_NAMES.items()}


def token_limit(peak_flops: float, n_params: int, train: bool = False) -> float:
    """Roofline token rate: ``peak / 2N`` for generation, ``peak / 6N`` for training.

    Example:
        >>> token_limit(6e9, 1_000_000, train=True)
        1000.0
    """
    return peak_flops / ((6.0 if train else 2.0) * n_params)


def run(quick: bool = False, peaks: dict[str, float] | None = None, **_: Any) -> dict[str, Any]:
    """Benchmark entry: the measured peaks (CPU, and CUDA when present).

    ``peaks`` (already measured in this run, as ``run_all`` does) are reported, not re-measured.

    Example:
        >>> run(quick=True)["peaks"]["float32"] > 0
        True
    """
    peaks = peaks or measure_peaks(quick)
    result: dict[str, Any] = {
        "benchmark": "roofline",
        "peaks": peaks,
        "figures": [
            figure(f"matmul peak {name} (cpu)", value / 1e9, "GFLOP/s")
            for name, value in peaks.items()
        ],
    }
    if torch.cuda.is_available():
        cuda = measure_peaks(quick, device="cuda")
        result["peaks_cuda"] = cuda
        result["figures"] += [
            figure(f"matmul peak {name} (cuda)", value / 1e9, "GFLOP/s")
            for name, value in cuda.items()
        ]
    return result
