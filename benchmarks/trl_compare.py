"""End to end against TRL: ``GRPOTrainer`` and rewardgym's GRPO on the same work, samples/s.

Both train the same model (loaded by rewardgym, same fp32 weights), on the same task prompts
(formatted by the policy's chat template for TRL, which then sees plain text), with the same
reward: ``rewardgym.rewards.to_trl`` splits it into TRL's ``reward_funcs`` and
``reward_weights`` (each component its own function), the task's references reaching them as
the dataset column ``references`` (this is the interop check). Batch,
group size, completion length, micro-batches (TRL's gradient accumulation) and sampling settings
match; TRL runs with ``bf16=False`` and ``gradient_checkpointing=False`` on the same cores.
A step is rollout + reward + update in both; each side's figure is the median step time after
its first step.

TRL runs twice. In this process it shares the allocator setting rewardgym's trainer makes
(:mod:`rewardgym.agents.memory`: freed memory is kept for reuse), so the two trainers differ
only in their own code: the speed-up target is judged on this run. In a fresh process it runs
as TRL ships, under glibc's default allocator, which is what a TRL user gets.

Example:
    >>> result = run(quick=True, model="tiny")
    >>> result["speedup_vs_trl"] > 0
    True
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.roofline import figure
from benchmarks.training import grpo_config, per_update
from rewardgym.agents.memory import ENV_VAR as KEEP_FREED_MEMORY
from rewardgym.agents.registry import load_policy
from rewardgym.agents.trainer import train
from rewardgym.envs.tasks import make_task
from rewardgym.rewards import to_trl

TARGET_VS_TRL = 2.0
HAVE_TRL = importlib.util.find_spec("trl") is not None
TRL_MISSING = 'TRL is not installed; run `make setup` (or `pip install -e ".[dev]"`)'


def _step_timer() -> tuple[Any, list[float]]:
    from transformers import TrainerCallback

    stamps: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            if not stamps:
                stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            stamps.append(time.perf_counter())

    return StepTimer(), stamps


def trl_step_seconds(model: str, quick: bool, steps: int, device: str = "cpu") -> dict[str, Any]:
    """Per-step seconds of TRL's ``GRPOTrainer`` on the benchmark's GRPO setting.

    Example:
        >>> trl_step_seconds("tiny", quick=True, steps=2)["step_s"][0] > 0
        True
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    config = grpo_config(model, quick, updates=steps, device=device)
    policy = load_policy(model, device=device, dtype=config.dtype)
    examples = make_task(config.task, seed=config.task_seed).split("train")[:256]
    data = Dataset.from_dict(
        {
            "prompt": [policy.format_prompt(e.prompt) for e in examples],
            "references": [e.reference for e in examples],
        }
    )
    reward_funcs, reward_weights = to_trl(config.reward)  # each component, TRL-weighted
    batch = config.prompts_per_update * config.group_size
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=batch // config.micro_batches,
            gradient_accumulation_steps=config.micro_batches,
            num_generations=config.group_size,
            max_completion_length=config.max_new_tokens,
            max_steps=steps,
            learning_rate=config.lr,
            beta=0.0,
            num_iterations=1,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=0,
            bf16=False,
            use_cpu=device == "cpu",
            gradient_checkpointing=False,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            seed=config.seed,
            disable_tqdm=True,
            reward_weights=reward_weights,
        )
        timer, stamps = _step_timer()
        trainer = GRPOTrainer(
            model=policy.model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=data,
            processing_class=policy.tokenizer,
            callbacks=[timer],
        )
        trainer.train()
        rewards = [r["reward"] for r in trainer.state.log_history if "reward" in r]
    step_s = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"step_s": step_s, "batch": batch, "rewards": rewards}


def trl_step_seconds_default_allocator(
    model: str, quick: bool, steps: int, device: str = "cpu"
) -> dict[str, Any]:
    """:func:`trl_step_seconds` in a fresh interpreter whose allocator is left as glibc sets it.

    Example:
        >>> trl_step_seconds_default_allocator("tiny", quick=True, steps=2)["batch"]
        8
    """
    call = f"trl_step_seconds({model!r}, quick={quick!r}, steps={steps!r}, device={device!r})"
    script = (
        "import json\n"
        "from benchmarks.trl_compare import trl_step_seconds\n"
        f"print('RESULT ' + json.dumps({call}))\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, KEEP_FREED_MEMORY: "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"TRL in a fresh process failed: {done.stderr.strip()[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def run(quick: bool = False, model: str = "smollm2-135m", device: str = "cpu", **_: Any) -> dict:
    """Benchmark entry: samples/s of both trainers and rewardgym's speed-up over TRL.

    Example:
        >>> run(quick=True, model="tiny")["figures"][0]["unit"]
        'samples/s'
    """
    if not HAVE_TRL:
        return {
            "benchmark": "trl_compare",
            "skipped": TRL_MISSING,
            "figures": [figure("end to end vs TRL GRPOTrainer", None, "", "", None)],
        }
    steps = 3 if quick else 5
    config = grpo_config(model, quick, updates=steps, device=device)
    ours = per_update(train(config).metrics)
    theirs = trl_step_seconds(model, quick, steps, device)
    shipped = trl_step_seconds_default_allocator(model, quick, steps, device)
    batch = theirs["batch"]
    ours_s = statistics.median(r["update_s"] for r in ours)
    theirs_s = _median_after_first(theirs["step_s"])
    shipped_s = _median_after_first(shipped["step_s"])
    speedup = theirs_s / ours_s
    return {
        "benchmark": "trl_compare",
        "model": model,
        "device": device,
        "batch": batch,
        "group_size": config.group_size,
        "max_new_tokens": config.max_new_tokens,
        "steps": steps,
        "rewardgym_step_s": ours_s,
        "trl_step_s": theirs_s,
        "rewardgym_samples_per_s": batch / ours_s,
        "trl_samples_per_s": batch / theirs_s,
        "speedup_vs_trl": speedup,
        "trl_rewards": theirs["rewards"],
        "trl_step_s_all": theirs["step_s"],
        "trl_default_allocator_step_s": shipped_s,
        "trl_default_allocator_step_s_all": shipped["step_s"],
        "speedup_vs_trl_default_allocator": shipped_s / ours_s,
        "figures": [
            figure(
                f"end to end GRPO ({device}, fp32, batch {batch}): rewardgym",
                batch / ours_s,
                f"samples/s (TRL {batch / theirs_s:.2f})",
            ),
            figure(
                "end to end: speed-up vs TRL GRPOTrainer (same process and allocator)",
                speedup,
                "x",
                f">= {TARGET_VS_TRL:.0f}x",
                speedup >= TARGET_VS_TRL,
            ),
            figure(
                "end to end: speed-up vs TRL GRPOTrainer as shipped (fresh process, glibc's "
                "default allocator)",
                shipped_s / ours_s,
                f"x ({shipped_s:.1f} s per step)",
            ),
        ],
    }


def _median_after_first(step_s: list[float]) -> float:
    """The median step time, the first (warm-up) step left out when there are others."""
    return statistics.median(step_s[1:] or step_s)
