"""Roofline: the machine's measured matrix-product peak, and the shared benchmark helpers.

A model with ``N`` parameters costs about ``2N`` FLOPs per generated token and ``6N`` per trained
token, so the fastest any implementation could go on this machine is ``peak / 2N`` tokens per
second for generation and ``peak / 6N`` for training. The peak is measured here (a large square
``matmul``, fastest of several repeats) rather than taken from a data sheet, in the same process
as the benchmarks that are compared with it.

It also measures memory bandwidth (STREAM's copy and triad over buffers several times the
last-level cache, fastest of repeats) and gives, for a decode step and a training update, the
**attainable** bound ``min(peak, bandwidth x arithmetic intensity)`` with the bytes each must
move counted explicitly (:func:`decode_step_bytes`, :func:`update_bytes`). A batch-64 decode
step reads every weight once for 64 tokens, so it is bounded by memory long before compute;
its share of the compute-only bound says little, its share of the attainable bound says how
close the code is to what the machine allows.

Example:
    >>> peaks = measure_peaks(quick=True)
    >>> peaks["float32"] > 0
    True
    >>> stream_bandwidth(quick=True)["bandwidth"] > 1e9
    True
"""

from __future__ import annotations

import glob
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


# ------------------------------------------------------------------ memory bandwidth

DTYPE_BYTES = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2, torch.float64: 8}


def last_level_cache_bytes() -> int:
    """The largest CPU cache the kernel reports (the last level); 32 MiB where it reports none.

    Example:
        >>> last_level_cache_bytes() > 0
        True
    """
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = open(path, encoding="ascii").read().strip()
        except OSError:
            continue
        if text and text[-1] in units and text[:-1].isdigit():
            sizes.append(int(text[:-1]) * units[text[-1]])
        elif text.isdigit():
            sizes.append(int(text))
    return max(sizes, default=32 * 2**20)


def stream_bandwidth(quick: bool = False, device: str = "cpu") -> dict[str, Any]:
    """STREAM-style bandwidth in bytes/s: ``copy`` (``b = a``) and ``triad`` (``a = b + s·c``)
    over float32 buffers each at least 4 (quick) or 8 times the last-level cache, fastest of
    repeats. Bytes are counted as STREAM counts them: 2 arrays per copy element (one read,
    one write), 3 per triad element (two reads, one write); write-allocate reads are not
    counted. ``bandwidth`` is the higher of the two, the one the attainable bound uses.

    Example:
        >>> bw = stream_bandwidth(quick=True)
        >>> bw["bandwidth"] == max(bw["copy"], bw["triad"])
        True
    """
    llc = last_level_cache_bytes()
    array_bytes = min(max((4 if quick else 8) * llc, 64 * 2**20), 1024 * 2**20)
    n = array_bytes // 4
    a = torch.ones(n, device=device)
    b = torch.full((n,), 2.0, device=device)
    c = torch.full((n,), 0.5, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def copy() -> None:
        b.copy_(a)
        sync()

    def triad() -> None:
        torch.add(b, c, alpha=3.0, out=a)
        sync()

    repeats = 5 if quick else 10
    copy_s = min(wall_times(copy, repeats, warmup=1))
    triad_s = min(wall_times(triad, repeats, warmup=1))
    rates = {"copy": 2 * 4 * n / copy_s, "triad": 3 * 4 * n / triad_s}
    return {**rates, "bandwidth": max(rates.values()), "array_bytes": 4 * n, "llc_bytes": llc}


# ------------------------------------------------------------------ bytes moved


def _shape(config: Any) -> dict[str, int]:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "intermediate": config.intermediate_size,
        "heads": heads,
        "kv_heads": getattr(config, "num_key_value_heads", None) or heads,
        "head_dim": head_dim,
        "vocab": config.vocab_size,
    }


def activation_elements(config: Any) -> int:
    """Activation elements one position reads and writes in one forward pass of a Llama model,
    op by op, as if nothing stayed in cache between ops (logits not included).

    Per layer, with ``H`` hidden, ``I`` intermediate, ``q = heads·head_dim``,
    ``k = kv_heads·head_dim``: input norm ``2H`` (read, write); q/k/v projections ``H`` read
    and ``q + 2k`` written; rotary ``2(q + k)``; attention output ``2q`` (queries read, output
    written); output projection ``q + H``; residual add ``3H``; post-attention norm ``2H``;
    gate and up projections ``2(H + I)``; activation times up ``3I``; down projection
    ``I + H``; residual add ``3H``. Then the final norm ``2H`` and the output projection's
    input ``H``. The cache's keys and values are :func:`decode_step_bytes`' KV term.

    Example:
        >>> activation_elements(load_policy("tiny").model.config) > 0
        True
    """
    d = _shape(config)
    hidden, inter = d["hidden"], d["intermediate"]
    q, k = d["heads"] * d["head_dim"], d["kv_heads"] * d["head_dim"]
    per_layer = (
        2 * hidden  # input norm
        + hidden
        + q
        + 2 * k  # q, k, v projections
        + 2 * (q + k)  # rotary on queries and keys
        + 2 * q  # attention: queries read, output written
        + q
        + hidden  # output projection
        + 3 * hidden  # residual add
        + 2 * hidden  # post-attention norm
        + 2 * (hidden + inter)  # gate and up projections
        + 3 * inter  # act(gate) * up
        + inter
        + hidden  # down projection
        + 3 * hidden  # residual add
    )
    return d["layers"] * per_layer + 2 * hidden + hidden


def _weight_split(model: Any) -> tuple[int, int, int, bool]:
    """Unique parameters outside the embedding and output projection, the output projection's
    size, the embedding's row width, and whether the two are tied (one tensor)."""
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    tied = embed.data_ptr() == head.data_ptr()
    unique = {p.data_ptr(): p.numel() for p in model.parameters()}
    other = sum(unique.values()) - head.numel() - (0 if tied else embed.numel())
    return other, head.numel(), embed.shape[1], tied


def prompt_pass_flops(model: Any, positions: int, prompts: int) -> float:
    """FLOPs of a rollout's prompt pass over ``positions`` prompt positions of ``prompts``
    distinct prompts: ``2 x`` the parameters outside the embedding and output projection per
    position, and the output projection at each prompt's last position only (the only logits a
    rollout needs from its prompts).

    Example:
        >>> prompt_pass_flops(model, positions=100, prompts=4) > 0
        True
    """
    other, head, _, _ = _weight_split(model)
    return 2.0 * (positions * other + prompts * head)


def decode_step_bytes(
    model: Any,
    batch: int,
    context: float,
    key_dtype: torch.dtype | None = torch.float32,
    shared_prefix: int = 0,
) -> dict[str, float]:
    """Bytes one decode step of ``batch`` rows moves to or from memory, by kind.

    * ``weights``: every weight read once, in the model's dtype: all layers, the final norm and
      the output projection (``vocab x hidden``); the embedding only for the ``batch`` rows
      looked up. A tied embedding is the output projection's tensor, so its table is counted
      once (as the output projection) plus the looked-up rows.
    * ``kv_cache``: keys and values of ``context`` columns per row read (``shared_prefix`` of
      them read once for all rows, as the fast path's decode attention does), and one new
      column per row written: ``layers x kv_heads x head_dim x (key bytes + value bytes) x
      (batch x (context - shared_prefix) + shared_prefix + batch)``. Keys are in ``key_dtype``
      (the fast path keeps them in float32 by default; None: the model's dtype), values in the
      model's dtype.
    * ``activations``: :func:`activation_elements` per row in the model's dtype, plus the
      logits (``vocab`` per row) written and read once.

    Example:
        >>> decode_step_bytes(model, 64, 80)["total"] > 0
        True
    """
    dtype = model.get_output_embeddings().weight.dtype
    width = DTYPE_BYTES[dtype]
    key_width = DTYPE_BYTES[key_dtype or dtype]
    d = _shape(model.config)
    other, head, hidden, _tied = _weight_split(model)
    weights = (other + head + batch * hidden) * width
    columns = batch * (context - shared_prefix) + shared_prefix + batch
    kv = d["layers"] * d["kv_heads"] * d["head_dim"] * (key_width + width) * columns
    activations = batch * (activation_elements(model.config) + 2 * d["vocab"]) * width
    total = weights + kv + activations
    return {"weights": weights, "kv_cache": kv, "activations": activations, "total": total}


def update_bytes(
    model: Any, positions: float, logit_positions: float, micro_batches: int
) -> dict[str, float]:
    """Bytes one training update (re-scoring forward, backward, fused AdamW step) moves, by kind,
    all in the parameters' dtype (float32 in training).

    * ``weights``: every unique weight read twice per micro-batch (forward, and the backward's
      input-gradient products).
    * ``gradients``: each micro-batch's weight gradients accumulated into ``.grad``: written by
      the first micro-batch, read and written by each later one (``2·micro_batches - 1``
      passes).
    * ``optimizer``: the fused AdamW step reads parameters, gradients and both moments and
      writes parameters and both moments: 7 passes over the parameters.
    * ``activations``: :func:`activation_elements` per computed position, 3 times (the forward
      writes and reads them; the backward reads each saved one and writes and reads its
      gradient, counted as two more), plus the logits of ``logit_positions`` rows: written,
      read by the log-softmax, gradient written and read (4 passes over ``vocab``).

    Example:
        >>> update_bytes(model, 3000, 1536, 4)["optimizer"] == 7 * 4 * count_params(model)
        True
    """
    width = DTYPE_BYTES[model.get_output_embeddings().weight.dtype]
    other, head, _hidden, tied = _weight_split(model)
    embed = 0 if tied else model.get_input_embeddings().weight.numel()
    n = other + head + embed
    weights = 2 * micro_batches * n * width
    gradients = (2 * micro_batches - 1) * n * width
    optimizer = 7 * n * width
    vocab = _shape(model.config)["vocab"]
    activations = (
        3 * positions * activation_elements(model.config) + 4 * logit_positions * vocab
    ) * width
    total = weights + gradients + optimizer + activations
    return {
        "weights": weights,
        "gradients": gradients,
        "optimizer": optimizer,
        "activations": activations,
        "total": total,
    }


def attainable(flops: float, bytes_moved: float, peak: float, bandwidth: float) -> dict[str, Any]:
    """The roofline bound of work that does ``flops`` and moves ``bytes_moved``: FLOP/s
    ``min(peak, bandwidth x intensity)`` with intensity ``flops / bytes_moved``, and which of
    the two binds.

    Example:
        >>> attainable(1e9, 1e9, peak=1e11, bandwidth=1e10)["flops_per_s"]
        10000000000.0
    """
    intensity = flops / bytes_moved
    memory = bandwidth * intensity
    return {
        "intensity": intensity,
        "flops_per_s": min(peak, memory),
        "compute_flops_per_s": peak,
        "memory_flops_per_s": memory,
        "bound_by": "memory" if memory < peak else "compute",
    }


def run(
    quick: bool = False,
    peaks: dict[str, float] | None = None,
    bandwidth: dict[str, Any] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Benchmark entry: the measured peaks and memory bandwidth (CPU, and CUDA when present).

    ``peaks`` and ``bandwidth`` (already measured in this run, as ``run_all`` does) are
    reported, not re-measured.

    Example:
        >>> run(quick=True)["peaks"]["float32"] > 0
        True
    """
    peaks = peaks or measure_peaks(quick)
    bandwidth = bandwidth or stream_bandwidth(quick)
    result: dict[str, Any] = {
        "benchmark": "roofline",
        "peaks": peaks,
        "bandwidth": bandwidth,
        "figures": [
            figure(f"matmul peak {name} (cpu)", value / 1e9, "GFLOP/s")
            for name, value in peaks.items()
        ]
        + _bandwidth_figures(bandwidth, "cpu"),
    }
    if torch.cuda.is_available():
        cuda = measure_peaks(quick, device="cuda")
        cuda_bw = stream_bandwidth(quick, device="cuda")
        result["peaks_cuda"] = cuda
        result["bandwidth_cuda"] = cuda_bw
        result["figures"] += [
            figure(f"matmul peak {name} (cuda)", value / 1e9, "GFLOP/s")
            for name, value in cuda.items()
        ] + _bandwidth_figures(cuda_bw, "cuda")
    return result


def _bandwidth_figures(bandwidth: dict[str, Any], device: str) -> list[dict[str, Any]]:
    size = f"{bandwidth['array_bytes'] / 2**20:.0f} MiB arrays"
    if device == "cpu":
        size += f", last-level cache {bandwidth['llc_bytes'] / 2**20:.0f} MiB"
    return [
        figure(f"STREAM {kind} bandwidth ({device}; {size})", bandwidth[kind] / 1e9, "GB/s")
        for kind in ("copy", "triad")
    ]
