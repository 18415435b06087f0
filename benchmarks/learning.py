"""What training achieves, per CPU and over seeds: the claims the test suite must not pin.

A model trained on one processor produces other tokens on another, so these are measured
results, not tests. Three parts, each over several seeds with a 95 % bootstrap CI:

- ``warm_start``: greedy test BLEU of the default tiny warm start on translate (target: 50,
  enough for the studies to have an answer to improve or break), and the multi-task warm start
  against single-task ones on each task (quality of the two-task model, of the model
  warm-started on this task alone and of the one warm-started on the other task alone, at the
  same optimizer steps per task).
- ``reward_rises``: training reward, first fifth against last fifth of the updates, under every
  preset reward on 16 fixed translate prompts (the trainer optimises what it is paid for).
- ``sb3_copy``: SB3 PPO with the tiny transformer extractor on a 2-character copy task, greedy
  score after training against a random policy's.

Example:
    $ .venv/bin/python -m benchmarks.run_all --only learning --model tiny
    $ .venv/bin/python -m benchmarks.learning --seeds 0 1 2 3 4 --parts reward_rises
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.roofline import figure, machine
from rewardgym.evaluation.stats import summarise

PARTS = ("warm_start", "reward_rises", "sb3_copy")
SEEDS = (0, 1, 2, 3, 4)
TWO_TASKS = ("translate", "arithmetic")
WARM_START_STEPS = 800  # the default warm start's steps per task
REWARD_UPDATES = {"speed_only": 60, "task_only": 80, "balanced": 80}
SB3_TIMESTEPS = 16_384


def _quality(policy: Any, task_name: str, n_examples: int = 48) -> float:
    from rewardgym.agents.meters.text_metrics import corpus_scores
    from rewardgym.envs.tasks import make_task

    task = make_task(task_name)
    examples = task.split("validation")[:n_examples]
    gen = policy.generate([ex.prompt for ex in examples], max_new_tokens=24, greedy=True)
    answers, refs = task.answers(gen.completions), [ex.reference for ex in examples]
    meta = [ex.meta for ex in examples]
    return float(task.quality(answers, refs, corpus_scores(answers, refs), meta))


def warm_start(seeds: Sequence[int], quick: bool = False) -> dict[str, Any]:
    """Test BLEU of the default warm start and the two-task comparison, per seed.

    Example:
        >>> warm_start([0])["translate_bleu"]["n"]
        1
    """
    from rewardgym.agents.tiny import load_tiny

    steps = 100 if quick else WARM_START_STEPS
    bleu, per_task = [], {t: {"two_task": [], "own": [], "other": []} for t in TWO_TASKS}
    for seed in seeds:
        default = load_tiny("translate", seed=seed, device="cpu", progress=False)
        bleu.append(default.info["train_log"]["bleu"]["translate"])
        both = load_tiny(TWO_TASKS, seed=seed, device="cpu", steps=2 * steps, progress=False)
        alone = {
            t: load_tiny(t, seed=seed, device="cpu", steps=steps, progress=False) for t in TWO_TASKS
        }
        for task in TWO_TASKS:
            other = next(t for t in TWO_TASKS if t != task)
            per_task[task]["two_task"].append(_quality(both, task))
            per_task[task]["own"].append(_quality(alone[task], task))
            per_task[task]["other"].append(_quality(alone[other], task))
    return {
        "translate_bleu": summarise(bleu).to_dict(),
        "two_task": {
            task: {name: summarise(values).to_dict() for name, values in rows.items()}
            for task, rows in per_task.items()
        },
    }


def reward_rise(reward: str, updates: int, seed: int) -> float:
    """Mean training reward of the last fifth of the updates minus that of the first fifth."""
    from rewardgym.agents import TrainConfig, train

    config = TrainConfig(
        task="translate",
        model="tiny",
        reward=reward,
        algo="grpo",
        updates=updates,
        seed=seed,
        task_kwargs={"n_train": 16},
        prompts_per_update=8,
        group_size=4,
        max_new_tokens=32,
        lr=3e-4,
        eval_examples=16,
        progress=False,
    )
    rewards = np.array([m["reward/mean"] for m in train(config).metrics])
    k = max(1, updates // 5)
    return float(rewards[-k:].mean() - rewards[:k].mean())


def reward_rises(seeds: Sequence[int], quick: bool = False) -> dict[str, Any]:
    """Training reward's rise under each preset reward, over seeds.

    Example:
        >>> reward_rises([0], quick=True)["task_only"]["n"]
        1
    """
    out = {}
    for reward, updates in REWARD_UPDATES.items():
        rises = [reward_rise(reward, 10 if quick else updates, seed) for seed in seeds]
        out[reward] = {**summarise(rises).to_dict(), "updates": updates}
    return out


def sb3_copy(seeds: Sequence[int], quick: bool = False) -> dict[str, Any]:
    """Greedy copy-task score of SB3 PPO after training, and a random policy's, per seed.

    Example:
        >>> sb3_copy([0], quick=True)["trained"]["n"]
        1
    """
    from benchmarks.sb3_copy import copy_env, copy_vec_env, greedy_score, random_policy_score
    from rewardgym.agents.sb3 import make_sb3_agent

    trained, baseline = [], []
    for seed in seeds:
        model = make_sb3_agent(
            "ppo",
            copy_vec_env(seed=seed),
            extractor_kwargs={"n_layer": 1, "d_model": 64, "n_head": 4},
            seed=seed,
            n_steps=64,
            batch_size=64,
            n_epochs=4,
            learning_rate=1e-3,
            gamma=1.0,
            device="cpu",
        )
        model.learn(total_timesteps=1024 if quick else SB3_TIMESTEPS)
        trained.append(greedy_score(model, copy_env()))
        baseline.append(random_policy_score(copy_env(), seed=seed))
    return {"trained": summarise(trained).to_dict(), "random": summarise(baseline).to_dict()}


def _figures(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    if "warm_start" in result:
        bleu = result["warm_start"]["translate_bleu"]["mean"]
        rows.append(figure("tiny warm start: translate test BLEU (mean over seeds)", bleu, "",
                           ">= 50", bleu >= 50))  # fmt: skip
    for reward, summary in result.get("reward_rises", {}).items():
        low = summary["ci_low"]
        rows.append(figure(f"training reward rise under {reward} (95 % CI low)", low, "",
                           "> 0", None if low is None else low > 0))  # fmt: skip
    if "sb3_copy" in result:
        gap = result["sb3_copy"]["trained"]["mean"] - result["sb3_copy"]["random"]["mean"]
        rows.append(figure("SB3 PPO copy task: trained minus random score", gap, ""))
    return rows


def run(
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    parts: Sequence[str] = PARTS,
    **_: Any,
) -> dict[str, Any]:
    """Benchmark entry: the chosen parts over ``seeds`` (quick: 2 seeds, short runs)."""
    seeds = tuple(seeds) if seeds is not None else ((0, 1) if quick else SEEDS)
    measure = {"warm_start": warm_start, "reward_rises": reward_rises, "sb3_copy": sb3_copy}
    result: dict[str, Any] = {"benchmark": "learning", "seeds": list(seeds), "quick": quick}
    result["wall_s"] = {}
    for part in parts:
        started = time.perf_counter()
        result[part] = measure[part](seeds, quick=quick)
        result["wall_s"][part] = round(time.perf_counter() - started, 1)
    result["figures"] = _figures(result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = {**run(args.quick, args.seeds, args.parts), "machine": machine()}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
