"""Training update: rewardgym's GRPO update (re-scoring forward, backward, AdamW step) timed
inside the real trainer, as samples per second and as a share of the ``6N`` roofline.

The trainer records, per update, its wall time (``time/update_s``), the time its rollout spent
generating (``generation_s``) and the cumulative training FLOPs (``flops/train``, ``6N`` per
computed position, padding included). The update's own time is the difference of the first two,
so the figure is the optimisation phase alone; its FLOPs over that time over the measured fp32
peak is the compute roofline share (the peak is the higher of the run's and one measured right
after the updates). The first update is a warm-up and is left out of the median. The attainable
share divides by the memory-aware bound instead (:func:`benchmarks.roofline.attainable` with the
bytes of :func:`benchmarks.roofline.update_bytes`: weights read in forward and backward of each
micro-batch, gradient accumulation, the AdamW step's 7 passes, activations and logits); an
update of this size is compute-bound, so the two shares agree unless the bandwidth is low.

Two optimisations of the update are also timed against their plain alternative, round-robin
on the same inputs (:func:`time_components`): re-scoring a micro-batch with each GRPO group's
prompt computed once, and the fused AdamW step.

Example:
    >>> result = run(quick=True, model="tiny", peaks={"float32": 1e11, "bfloat16": 1e11})
    >>> result["samples_per_s"] > 0
    True
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

import torch

from benchmarks.generation import task_prompts
from benchmarks.roofline import (
    attainable,
    figure,
    measure_peaks,
    stream_bandwidth,
    update_bytes,
    wall_times,
)
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.registry import load_policy
from rewardgym.agents.trainer import train

TARGET_SHARE = 0.35


def grpo_config(
    model: str,
    quick: bool,
    updates: int,
    device: str = "cpu",
    reward: str = "chrf",
    task: str = "translate",
) -> TrainConfig:
    """The GRPO run both the training and the TRL benchmarks time (no checkpoints, no files).

    Example:
        >>> grpo_config("tiny", quick=True, updates=3).group_size
        4
    """
    return TrainConfig(
        model=model,
        task=task,
        reward=reward,
        algo="grpo",
        updates=updates,
        prompts_per_update=2 if quick else 8,
        group_size=4,
        micro_batches=4,
        max_new_tokens=16 if quick else 48,
        out=None,
        eval_every=0,
        eval_examples=1,
        checkpoint_every=0,
        tensorboard=False,
        progress=False,
        device=device,
    )


def per_update(metrics: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Update seconds, generation seconds and training FLOPs of each update after the first.

    Example:
        >>> per_update(result.metrics)[0]["update_s"] > 0
        True
    """
    rows = []
    for before, record in zip(metrics, metrics[1:], strict=False):
        rows.append(
            {
                "update_s": record["time/update_s"],
                "generation_s": record["generation_s"],
                "train_flops": record.get("flops/train", 0.0) - before.get("flops/train", 0.0),
            }
        )
    return rows


def run(
    quick: bool = False,
    model: str = "smollm2-135m",
    peaks: dict[str, float] | None = None,
    device: str = "cpu",
    bandwidth: dict[str, Any] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Benchmark entry: GRPO update samples/s and share of the fp32 ``6N`` roofline.

    Example:
        >>> run(quick=True, model="tiny")["roofline_share"] > 0
        True
    """
    peaks = peaks or measure_peaks(quick, device=device)
    components = time_components(model, quick, device)
    config = grpo_config(model, quick, updates=3 if quick else 6, device=device)
    result = train(config)
    rows = per_update(result.metrics)
    batch = config.prompts_per_update * config.group_size
    optimise_s = statistics.median(r["update_s"] - r["generation_s"] for r in rows)
    flops = statistics.median(r["train_flops"] for r in rows)
    # Measured again after the update: the higher of the two estimates the hardware better on a
    # shared machine (one run's start-of-run fp32 peak came out at 126 against 190 usually).
    peak = max(peaks["float32"], measure_peaks(quick, device=device)["float32"])
    share = flops / optimise_s / peak
    bandwidth = bandwidth or stream_bandwidth(quick, device=device)
    policy = load_policy(model, device=device)
    # Positions from the FLOP count (6N each); logits for every completion column of the
    # padded micro-batches, at most batch x max_new_tokens (an upper estimate).
    positions = flops / (6.0 * policy.n_params)
    moved = update_bytes(
        policy.model, positions, batch * config.max_new_tokens, config.micro_batches
    )
    del policy
    bound = attainable(flops, moved["total"], peak, bandwidth["bandwidth"])
    attainable_share = flops / optimise_s / bound["flops_per_s"]
    return {
        "benchmark": "training",
        "model": model,
        "device": device,
        "dtype": config.dtype,
        "batch": batch,
        "max_new_tokens": config.max_new_tokens,
        "updates_timed": len(rows),
        "optimise_s": optimise_s,
        "samples_per_s": batch / optimise_s,
        "train_flops_per_update": flops,
        "roofline_share": share,
        "attainable_share": attainable_share,
        "attainable": {**bound, "bytes": moved, "positions": positions},
        "peak_float32": peak,
        "per_update": rows,
        "components": components,
        "figures": [
            *[
                figure(
                    f"update component: {c['name']} vs {c['plain']}",
                    c["speedup"],
                    f"x ({1e3 * c['ours_s']:.0f} vs {1e3 * c['plain_s']:.0f} ms)",
                )
                for c in components
            ],
            figure(f"GRPO update ({device}, fp32, batch {batch})", batch / optimise_s, "samples/s"),
            figure(
                f"GRPO update: share of 6N fp32 roofline (peak {peak / 1e9:.0f} GFLOP/s)",
                100 * share,
                "%",
                f">= {100 * TARGET_SHARE:.0f} %",
                share >= TARGET_SHARE,
            ),
            figure(
                "GRPO update: share of the attainable (memory-aware) roofline",
                100 * attainable_share,
                f"% of {bound['flops_per_s'] / 1e9:.0f} GFLOP/s, {bound['bound_by']}-bound "
                f"(intensity {bound['intensity']:.0f} FLOP/B at "
                f"{bandwidth['bandwidth'] / 1e9:.1f} GB/s; {moved['total'] / 1e9:.1f} GB moved: "
                f"{moved['weights'] / 1e9:.2f} weights, {moved['gradients'] / 1e9:.2f} "
                f"gradients, {moved['optimizer'] / 1e9:.2f} AdamW, "
                f"{moved['activations'] / 1e9:.2f} activations)",
            ),
        ],
    }


def time_components(model: str, quick: bool, device: str = "cpu") -> list[dict[str, Any]]:
    """Median seconds of two pieces of the update against their plain alternatives.

    On one GRPO micro-batch of the benchmark's shape (2 prompts x group of 4, completions of
    up to 16 (quick) or 48 tokens sampled by the policy): forward + backward of
    ``sequence_logprobs`` with shared prompts vs the full forward pass, and one fused AdamW
    step vs the default (foreach) one over all the model's parameters.

    Example:
        >>> [c["name"] for c in time_components("tiny", quick=True)][0]
        'shared-prompt re-scoring'
    """
    repeats = 2 if quick else 3
    policy = load_policy(model, device=device)
    config = grpo_config(model, quick, updates=1, device=device)
    prompts = [p for p in task_prompts(2) for _ in range(config.group_size)]
    gen = policy.generate(prompts, max_new_tokens=config.max_new_tokens, seed=0)
    pairs = {
        ("shared-prompt re-scoring", "full forward"): _scoring_pair(policy, gen),
        ("fused AdamW step", "foreach AdamW step"): _adamw_pair(policy),
    }
    out = []
    for (name, plain), (ours_fn, plain_fn) in pairs.items():
        times: dict[str, list[float]] = {"ours": [], "plain": []}
        for _ in range(repeats):
            times["ours"] += wall_times(ours_fn, 1, warmup=1 if not times["ours"] else 0)
            times["plain"] += wall_times(plain_fn, 1, warmup=1 if not times["plain"] else 0)
        ours_s, plain_s = statistics.median(times["ours"]), statistics.median(times["plain"])
        out.append(
            {
                "name": name,
                "plain": plain,
                "ours_s": ours_s,
                "plain_s": plain_s,
                "speedup": plain_s / ours_s,
            }
        )
    return out


def _scoring_pair(policy: LMPolicy, gen: Any) -> tuple[Any, Any]:
    def score(share: bool) -> None:
        policy.fast_path = replace(policy.fast_path, share_prompts=share)
        policy.model.zero_grad(set_to_none=True)
        out = policy.sequence_logprobs(gen.prompt_ids, gen.token_ids)
        out.logprobs.sum().backward()
        policy.fast_path = replace(policy.fast_path, share_prompts=True)

    return (lambda: score(True)), (lambda: score(False))


def _adamw_pair(policy: LMPolicy) -> tuple[Any, Any]:
    params = [p for p in policy.model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    fused = torch.optim.AdamW(params, lr=1e-6, fused=True)
    foreach = torch.optim.AdamW(params, lr=1e-6, foreach=True)
    return fused.step, foreach.step
