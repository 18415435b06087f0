"""Where a decode step's time goes: ``torch.profiler`` over a few steps of the rollout fast path.

``python -m benchmarks.profile_decode [--model smollm2-135m] [--dtype bfloat16] [--batch 64]``
prefills the task's training prompts, runs warm-up steps, then profiles ``--steps`` decode steps
of :class:`rewardgym.agents.decoding.StaticCacheDecoder` and prints the wall milliseconds per
step, the share spent in matrix products (``aten::mm``, and oneDNN's ``_linear_pointwise`` over
packed weights) and the top operators by self time. It also prints the linear-layer kernel the
decoder ran with (``--packed auto``: the measured choice; ``on``/``off`` force it) and the step
against the attainable roofline (:func:`benchmarks.roofline.attainable` with the bytes of
:func:`benchmarks.roofline.decode_step_bytes` at the profiled steps' context, the shared prefix
read once; matmul peak and STREAM bandwidth measured in quick mode first).
``--kernels`` instead times the kernel choice afresh (neither reading nor writing the cached
choice): one decode step's linear layers packed and plain, fp32 and bf16, at 1, 8, 32 and 64
rows, and the choice the default would make from those timings.
Not part of ``run_all``: it explains figures rather than producing them.

Example:
    $ .venv/bin/python -m benchmarks.profile_decode --dtype bfloat16 --batch 64
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.generation import task_prompts
from benchmarks.roofline import attainable, decode_step_bytes, measure_peaks, stream_bandwidth
from rewardgym.agents import decoding
from rewardgym.agents.decoding import FastPathOptions, StaticCacheDecoder
from rewardgym.agents.registry import load_policy

# Operators that run the linear layers: PyTorch's matrix product, and oneDNN over packed weights.
MATMUL_OPS = ("aten::mm", "mkldnn::_linear_pointwise")


PACKED = {"auto": None, "on": True, "off": False}


def profile_steps(
    model: str, dtype: str, batch: int, steps: int, packed: str = "auto"
) -> tuple[float, float, str, dict]:
    """Milliseconds per decode step, the share of matrix products, the operator table, and the
    step's facts (kernel choice, context, bound).

    Example:
        >>> ms, mm_share, table, facts = profile_steps("tiny", "float32", 8, 3)
        >>> 0 < mm_share < 1
        True
    """
    policy = load_policy(model, device="cpu", dtype=dtype)
    prompt_ids = policy.encode_prompts(task_prompts(batch))
    options = FastPathOptions(packed_weights=PACKED[packed])
    with torch.inference_mode():
        decoder = StaticCacheDecoder(
            policy.model, prompt_ids, 3 + 2 * steps, policy.pad_id, options
        )
        tokens = decoder.prefill().argmax(-1)
        for _ in range(3):
            decoder.step(tokens)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                decoder.step(tokens)
            wall = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    table = events.table(sort_by="self_cpu_time_total", row_limit=12)
    # Mean context of the profiled steps: the cache columns written before each, real prompt
    # columns only (padding columns are read too, but need not be).
    padding = decoder.prompt_width - sum(map(len, prompt_ids)) / len(prompt_ids)
    context = decoder.filled - padding - (steps - 1) / 2
    key_dtype = decoder.key_dtype if decoder.key_dtype != decoder.dtype else None
    prefix = decoder.prefix_len if options.prefix_attention else 0
    moved = decode_step_bytes(policy.model, batch, context, key_dtype, shared_prefix=prefix)
    facts = {
        "kernel": decoder.kernel_choice.describe(),
        "context": context,
        "bytes": moved,
        "flops": 2.0 * policy.n_params * batch,
    }
    return 1e3 * wall / steps, mm / total, table, facts


def time_kernels(model: str, batches: Sequence[int] = (1, 8, 32, 64)) -> list[str]:
    """Lines of fresh kernel timings per dtype and rows (see the module docstring)."""
    lines = []
    for dtype in ("float32", "bfloat16"):
        policy = load_policy(model, device="cpu", dtype=dtype)
        if not decoding.PackedWeights.pays_for(policy.model):
            lines.append(f"{dtype}: packed weights unavailable for this model here")
            continue
        for rows in batches:
            seconds = decoding.time_linear_kernels(policy.model, rows)
            packed = seconds["plain"] >= decoding.PACKED_MIN_GAIN * seconds["packed"]
            lines.append(
                f"{dtype} rows {rows}: packed {1e3 * seconds['packed']:.1f} ms, plain "
                f"{1e3 * seconds['plain']:.1f} ms ({seconds['plain'] / seconds['packed']:.2f}x)"
                f" -> {'packed' if packed else 'plain'}"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--packed", default="auto", choices=sorted(PACKED))
    parser.add_argument("--kernels", action="store_true", help="time the kernel choice afresh")
    args = parser.parse_args(argv)
    if args.kernels:
        print("\n".join(time_kernels(args.model)))
        return
    ms, mm_share, table, facts = profile_steps(
        args.model, args.dtype, args.batch, args.steps, args.packed
    )
    peak = measure_peaks(quick=True)[args.dtype]
    bandwidth = stream_bandwidth(quick=True)["bandwidth"]
    bound = attainable(facts["flops"], facts["bytes"]["total"], peak, bandwidth)
    bound_ms = 1e3 * facts["flops"] / bound["flops_per_s"]
    moved = facts["bytes"]
    print(f"{args.model} {args.dtype} batch {args.batch}: {ms:.1f} ms per decode step")
    print(f"linear layers: {facts['kernel']}")
    print(
        f"attainable: {bound_ms:.1f} ms per step ({bound['bound_by']}-bound; peak "
        f"{peak / 1e9:.0f} GFLOP/s, bandwidth {bandwidth / 1e9:.1f} GB/s; "
        f"{moved['weights'] / 1e6:.0f} MB weights + {moved['kv_cache'] / 1e6:.0f} MB KV cache + "
        f"{moved['activations'] / 1e6:.0f} MB activations at context {facts['context']:.0f}); "
        f"this step reached {100 * bound_ms / ms:.1f} % of it"
    )
    print(
        f"matrix products ({', '.join(MATMUL_OPS)}): {100 * mm_share:.0f} % of profiled self time"
    )
    print(table)


if __name__ == "__main__":
    main()
