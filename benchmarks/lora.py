"""LoRA against full fine-tuning: the GRPO update's speed and memory, each in its own process.

Both arms run the training benchmark's GRPO configuration (:func:`benchmarks.training.grpo_config`)
in the real trainer, one arm per child process so each one's peak resident memory is its own
(``ru_maxrss`` only grows within a process). Per arm it reports the median optimisation phase of
an update (update time minus rollout time, the first update left out as a warm-up), the median
rollout time, the trainable parameters, the bytes of AdamW state they imply (two float32 moments
per trainable parameter) and the process's peak RSS.

Example:
    $ .venv/bin/python -m benchmarks.run_all --only lora
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
from dataclasses import replace
from typing import Any

from benchmarks.roofline import figure
from benchmarks.training import grpo_config, per_update

#: the adapter both figures are for: rank 16 on every linear layer but the output projection
LORA_OPTIONS = {"lora_r": 16, "lora_alpha": 32.0, "lora_target_modules": "all-linear"}
ADAM_MOMENT_BYTES = 2 * 4  # exp_avg and exp_avg_sq, float32


def measure_arm(model: str, quick: bool, lora: bool, device: str = "cpu") -> dict[str, Any]:
    """Train one arm in this process and return its timings, sizes and peak RSS."""
    from rewardgym.agents.trainer import train

    config = grpo_config(model, quick, updates=3 if quick else 5, device=device)
    if lora:
        config = replace(config, **LORA_OPTIONS)
    result = train(config)
    rows = per_update(result.metrics)
    params = list(result.policy.model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return {
        "arm": "lora" if lora else "full",
        "options": LORA_OPTIONS if lora else {},
        "batch": config.batch_size,
        "max_new_tokens": config.max_new_tokens,
        "updates_timed": len(rows),
        "optimise_s": statistics.median(r["update_s"] - r["generation_s"] for r in rows),
        "generation_s": statistics.median(r["generation_s"] for r in rows),
        "trainable_params": trainable,
        "total_params": sum(p.numel() for p in params),
        "adam_state_mb": trainable * ADAM_MOMENT_BYTES / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _arm_in_child(model: str, quick: bool, lora: bool, device: str) -> dict[str, Any]:
    code = (
        "import json, sys; from benchmarks.lora import measure_arm; "
        f"print(json.dumps(measure_arm({model!r}, {quick!r}, {lora!r}, {device!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"the {'lora' if lora else 'full'} arm failed:\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False, model: str = "smollm2-135m", device: str = "cpu", **_: Any) -> dict:
    """Benchmark entry: both arms, then their ratios as figures."""
    full, lora = (_arm_in_child(model, quick, arm, device) for arm in (False, True))
    speedup = full["optimise_s"] / lora["optimise_s"]
    return {
        "benchmark": "lora",
        "model": model,
        "device": device,
        "arms": [full, lora],
        "update_speedup": speedup,
        "figures": [
            figure(
                f"GRPO update, full fine-tuning ({full['batch']} samples)",
                full["optimise_s"],
                "s",
            ),
            figure(
                f"GRPO update, LoRA r={LORA_OPTIONS['lora_r']} all-linear",
                lora["optimise_s"],
                f"s ({speedup:.2f}x full)",
            ),
            figure(
                "rollout, full / LoRA", full["generation_s"], f"s / {lora['generation_s']:.2f} s"
            ),
            figure(
                "trainable parameters, full / LoRA",
                full["trainable_params"],
                f"/ {lora['trainable_params']:,}",
            ),
            figure(
                "AdamW state, full / LoRA",
                full["adam_state_mb"],
                f"MB / {lora['adam_state_mb']:.1f} MB",
            ),
            figure(
                "peak RSS, full / LoRA",
                full["peak_rss_mb"],
                f"MB / {lora['peak_rss_mb']:.0f} MB",
            ),
        ],
    }
