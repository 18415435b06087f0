"""Does ``torch.compile`` pay on the decode step? Eager vs compiled step time, and compile time.

``python -m benchmarks.compile_decode [--model tiny smollm2-135m] [--dtype float32 bfloat16]
[--batch 64] [--steps 4] [--repeats 7] [--cold]`` builds two
:class:`rewardgym.agents.decoding.StaticCacheDecoder` over the same prompts (the generation
benchmark's training prompts), one eager and one with ``FastPathOptions(compile_step=True)``
(:class:`rewardgym.agents.decoding.CompiledStep`: each layer's norms, projections, rotary
embedding, residual adds and MLP as two inductor graphs; cache write and attention eager), and
prints:

* the compile cost: the first compiled decode step's wall time minus an eager step's (graphs
  made afresh in this process; ``--cold`` also bypasses inductor's on-disk caches, as a fresh
  machine or a new torch version would see it);
* the step time of each, timed **interleaved** (``--steps`` eager steps, then as many compiled
  ones, ``--repeats`` times; medians), so load from other processes hits both alike;
* the rollout time of ``LMPolicy.generate`` (``--new-tokens`` tokens, sampled, seed 0) both
  ways, interleaved likewise, and the break-even: how many such rollouts the compile cost
  takes to pay back (none if compiled is not faster).

Linear layers of the eager decoder use the measured kernel choice, as a rollout would
(``--packed on/off`` forces it); the compiled graphs run their own products (inductor calls
the same aten matrix products as the model's own layers). Not part of ``run_all``: it
answers one question, written up in docs/performance.md.

Example:
    $ .venv/bin/python -m benchmarks.compile_decode --model tiny --dtype float32 --batch 16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from benchmarks.generation import task_prompts
from rewardgym.agents import decoding
from rewardgym.agents.decoding import FastPathOptions, StaticCacheDecoder
from rewardgym.agents.registry import load_policy

PACKED = {"auto": None, "on": True, "off": False}


def _cold_inductor() -> None:
    """Bypass inductor's on-disk caches (FX graphs, compiled C++) for this process."""
    torch._inductor.config.force_disable_caches = True


def time_steps(
    model: str,
    dtype: str,
    batch: int,
    steps: int = 4,
    repeats: int = 7,
    packed: str = "auto",
) -> dict[str, Any]:
    """Compile cost and interleaved per-step medians (ms), eager and compiled.

    Example:
        >>> out = time_steps("tiny", "float32", 8, steps=2, repeats=2)
        >>> out["eager_ms"] > 0 and out["compiled_ms"] > 0
        True
    """
    policy = load_policy(model, device="cpu", dtype=dtype)
    prompt_ids = policy.encode_prompts(task_prompts(batch))
    base = FastPathOptions(packed_weights=PACKED[packed])
    room = 2 + steps * repeats + 1
    decoding.reset_compiled()
    with torch.inference_mode():
        eager = StaticCacheDecoder(policy.model, prompt_ids, room, policy.pad_id, base)
        compiled = StaticCacheDecoder(
            policy.model, prompt_ids, room, policy.pad_id, replace(base, compile_step=True)
        )
        if compiled.compiled is None:
            raise SystemExit(f"compiled step unavailable: {decoding._COMPILE['failed']}")
        tokens = eager.prefill().argmax(-1)
        compiled.prefill()
        start = time.perf_counter()
        eager.step(tokens)
        eager_first = time.perf_counter() - start
        start = time.perf_counter()
        compiled.step(tokens)
        compile_s = time.perf_counter() - start - eager_first
        eager.step(tokens), compiled.step(tokens)  # warm: a second shape-stable call each
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(repeats):
            for name, decoder in (("eager", eager), ("compiled", compiled)):
                start = time.perf_counter()
                for _ in range(steps):
                    decoder.step(tokens)
                times[name].append((time.perf_counter() - start) / steps)
    if decoding._COMPILE["failed"] is not None:
        raise SystemExit(f"compiling failed: {decoding._COMPILE['failed']}")
    eager_ms = 1e3 * statistics.median(times["eager"])
    compiled_ms = 1e3 * statistics.median(times["compiled"])
    return {
        "model": model,
        "dtype": dtype,
        "batch": batch,
        "kernel": eager.kernel_choice.describe(),
        "compile_s": compile_s,
        "eager_ms": eager_ms,
        "compiled_ms": compiled_ms,
        "speedup": eager_ms / compiled_ms,
        "samples": times,
    }


def time_rollouts(
    model: str, dtype: str, batch: int, new_tokens: int = 48, repeats: int = 3
) -> dict[str, Any]:
    """Interleaved median rollout seconds of ``generate`` eager and compiled (compiled warmed
    by one untimed rollout first), and the rollouts the compile cost takes to pay back."""
    policy = load_policy(model, device="cpu", dtype=dtype)
    prompts = task_prompts(batch)
    default = policy.fast_path
    variants = {"eager": default, "compiled": replace(default, compile_step=True)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    tokens: dict[str, int] = {}
    decoding.reset_compiled()
    try:
        for options in variants.values():  # untimed: kernel choice, compile
            policy.fast_path = options
            policy.generate(prompts, max_new_tokens=new_tokens, seed=0)
        for _ in range(repeats):
            for name, options in variants.items():
                policy.fast_path = options
                start = time.perf_counter()
                gen = policy.generate(prompts, max_new_tokens=new_tokens, seed=0)
                times[name].append(time.perf_counter() - start)
                tokens[name] = sum(gen.n_tokens)
    finally:
        policy.fast_path = default
    med = {name: statistics.median(t) for name, t in times.items()}
    return {
        "batch": batch,
        "new_tokens": new_tokens,
        "eager_s": med["eager"],
        "compiled_s": med["compiled"],
        "eager_tok_s": tokens["eager"] / med["eager"],
        "compiled_tok_s": tokens["compiled"] / med["compiled"],
        "speedup": med["eager"] / med["compiled"],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["tiny", "smollm2-135m"])
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--rollouts", type=int, default=0, help="also time N rollouts each way")
    parser.add_argument("--packed", default="auto", choices=sorted(PACKED))
    parser.add_argument("--cold", action="store_true", help="bypass inductor's disk caches")
    args = parser.parse_args(argv)
    if args.cold:
        _cold_inductor()
    print(f"C++ compiler for inductor: {'found' if decoding.compiler_available() else 'none'}")
    for model in args.model:
        for dtype in args.dtype:
            out = time_steps(model, dtype, args.batch, args.steps, args.repeats, args.packed)
            print(
                f"{model} {dtype} batch {args.batch} (eager linear: {out['kernel']}): "
                f"eager {out['eager_ms']:.2f} ms/step, compiled {out['compiled_ms']:.2f} ms/step "
                f"({out['speedup']:.2f}x); compile cost {out['compile_s']:.1f} s"
                f"{' (cold caches)' if args.cold else ''}"
            )
            if args.rollouts:
                roll = time_rollouts(model, dtype, args.batch, args.new_tokens, args.rollouts)
                saved = roll["eager_s"] - roll["compiled_s"]
                pays = f"{out['compile_s'] / saved:.0f} rollouts" if saved > 0 else "never"
                print(
                    f"  rollout of {args.new_tokens} tokens: eager {roll['eager_s']:.2f} s "
                    f"({roll['eager_tok_s']:.0f} tok/s), compiled {roll['compiled_s']:.2f} s "
                    f"({roll['compiled_tok_s']:.0f} tok/s), {roll['speedup']:.2f}x; "
                    f"compile cost paid back after {pays}"
                )


if __name__ == "__main__":
    main()
