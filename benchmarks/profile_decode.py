"""Where a decode step's time goes: ``torch.profiler`` over a few steps of the rollout fast path.

``python -m benchmarks.profile_decode [--model smollm2-135m] [--dtype bfloat16] [--batch 64]``
prefills the task's training prompts, runs warm-up steps, then profiles ``--steps`` decode steps
of :class:`rewardgym.agents.decoding.StaticCacheDecoder` and prints the wall milliseconds per
step, the share spent in matrix products (``aten::mm``, and oneDNN's ``_linear_pointwise`` over
packed weights) and the top operators by self time.
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
from rewardgym.agents.decoding import StaticCacheDecoder
from rewardgym.agents.registry import load_policy

# Operators that run the linear layers: PyTorch's matrix product, and oneDNN over packed weights.
MATMUL_OPS = ("aten::mm", "mkldnn::_linear_pointwise")


def profile_steps(model: str, dtype: str, batch: int, steps: int) -> tuple[float, float, str]:
    """Milliseconds per decode step, the share of matrix products and the operator table.

    Example:
        >>> ms, mm_share, table = profile_steps("tiny", "float32", 8, 3)
        >>> 0 < mm_share < 1
        True
    """
    policy = load_policy(model, device="cpu", dtype=dtype)
    prompt_ids = policy.encode_prompts(task_prompts(batch))
    with torch.inference_mode():
        decoder = StaticCacheDecoder(policy.model, prompt_ids, 3 + 2 * steps, policy.pad_id)
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
    return 1e3 * wall / steps, mm / total, table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    ms, mm_share, table = profile_steps(args.model, args.dtype, args.batch, args.steps)
    print(f"{args.model} {args.dtype} batch {args.batch}: {ms:.1f} ms per decode step")
    print(
        f"matrix products ({', '.join(MATMUL_OPS)}): {100 * mm_share:.0f} % of profiled self time"
    )
    print(table)


if __name__ == "__main__":
    main()
