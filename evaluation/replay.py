"""Counterfactual replay: what would another reward have said about a run's training samples?

Every run saves what each update trained on (``RUN/samples.jsonl``: example index, completion,
token count, finished, the run's reward and its components). :func:`replay_run` re-scores those
samples under another reward, with no model loaded, and compares the two rewards update by update:
their means, how well they agree on the order of the samples within each group (mean Kendall
τ-b over groups where both rewards vary), and the share of a group's pairs the two order
oppositely. Replayed under the task's own gold metric, a proxy reward rising while the gold one
falls is reward hacking, seen in the samples themselves.

Example:
    >>> replay = replay_run("runs/speed", "exact_match")  # runs/speed/replay/exact_match.json
    >>> replay["updates"][-1]["replayed_mean"]
    0.0
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewardgym.agents.runlog import SAMPLES_FILE as SAMPLES
from rewardgym.agents.runlog import read_metrics
from rewardgym.agents.runs import read_run_config
from rewardgym.envs.scoring import resolve_reward, score_completions
from rewardgym.envs.spaces import Action
from rewardgym.envs.tasks import Task, make_task
from rewardgym.errors import ConfigError, RunDataError
from rewardgym.fileio import write_json_atomic

__all__ = ["GOLD", "REPLAY_DIR", "gold_reward", "kendall_tau", "replay_gold", "replay_run"]

REPLAY_DIR = "replay"
GOLD = "gold"  # RUN/replay/gold.json: the samples re-scored by the task's primary metric
# the reward that pays a task's primary metric, per sample
# primary metric -> the reward that pays it per sample (reasoning-gym's metric is the mean of its
# reward, score_answer, times 100)
_GOLD = {
    "bleu": "bleu",
    "chrf": "chrf",
    "exact_match": "exact_match",
    "reasoning_gym": "reasoning_gym",
}


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float]:
    """``(τ-b, share of pairs ordered oppositely)`` of two scorings of the same samples.

    τ-b is None when either scoring gives every sample the same value (no order to agree on).

    Example:
        >>> kendall_tau([1, 2, 3], [1, 3, 2])
        (0.3333333333333333, 0.3333333333333333)
    """
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            ties_a += da == 0
            ties_b += db == 0
            concordant += da * db > 0
            discordant += da * db < 0
    pairs = n * (n - 1) // 2
    opposite = discordant / pairs if pairs else 0.0
    denominator = np.sqrt(float(pairs - ties_a) * float(pairs - ties_b))
    tau = (concordant - discordant) / denominator if denominator > 0 else None
    return (None if tau is None else float(tau)), float(opposite)


def gold_reward(task: Task) -> str:
    """The reward name that pays ``task``'s primary metric per sample.

    Raises:
        ConfigError: the task's metric is a user's corpus metric with no per-sample reward.
    """
    if task.primary_metric not in _GOLD:
        raise ConfigError(
            f"task {task.name!r} is scored by {task.primary_metric!r}, a corpus metric with no "
            "per-sample reward; replay it under a reward you name instead"
        )
    return _GOLD[task.primary_metric]


def replay_gold(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's samples re-scored by its task's primary metric (``RUN/replay/gold.json``);
    None when that metric is a user's corpus metric with no per-sample reward."""
    config = read_run_config(Path(run_dir))
    task = make_task(config.task, seed=config.task_seed, **config.task_kwargs)
    if task.primary_metric not in _GOLD:
        return None
    return replay_run(run_dir, gold_reward(task), name=GOLD)


def replay_run(
    run_dir: str | os.PathLike[str], reward: Any, name: str | None = None
) -> dict[str, Any]:
    """Re-score a run's training samples under ``reward``; write ``RUN/replay/<name>.json``.

    Args:
        run_dir: a training run's folder.
        reward: any reward spec (a name, ``module:function``, a composite mapping).
        name: the file's name (default: the reward's name).

    Raises:
        RunDataError: the run has no ``samples.jsonl`` (trained before runs saved them) or no
            readable ``config.json``.
    """
    run = Path(run_dir)
    config = read_run_config(run)
    samples = run / SAMPLES
    if not samples.exists():
        raise RunDataError(
            f"run {str(run)!r} has no {SAMPLES}: runs save their training samples since "
            "rewardgym 0.1.0's counterfactual replay; train the run again to replay it"
        )
    task = make_task(config.task, seed=config.task_seed, **config.task_kwargs)
    scorer = resolve_reward(reward, task=task)
    examples = task.split("train")
    updates = [_replay_update(line, examples, task, scorer) for line in read_metrics(samples)]
    result = {
        "run_dir": str(run),
        "reward": reward if isinstance(reward, (str, dict)) else scorer.name,
        "run_reward": config.reward,
        "updates": updates,
    }
    write_json_atomic(run / REPLAY_DIR / f"{name or scorer.name}.json", result)
    return result


def _replay_update(line: dict, examples: list, task: Task, scorer) -> dict[str, Any]:
    picked = [examples[i] for i in line["index"]]
    actions = [
        Action(text=text, n_tokens=n, finished=done)
        for text, n, done in zip(
            line["completion"], line["n_tokens"], line["finished"], strict=True
        )
    ]
    replayed = score_completions(scorer, task, picked, [ex.prompt for ex in picked], actions).total
    own = np.asarray([np.nan if r is None else r for r in line["reward"]], dtype=np.float64)
    taus, opposite = [], []
    g = int(line["group_size"])
    for start in range(0, len(own), g):
        tau, share = kendall_tau(own[start : start + g], replayed[start : start + g])
        opposite.append(share)
        if tau is not None:
            taus.append(tau)
    return {
        "update": int(line["update"]),
        "own_mean": float(np.nanmean(own)),
        "replayed_mean": float(np.mean(replayed)),
        "kendall_tau": float(np.mean(taus)) if taus else None,
        "groups_with_order": len(taus),
        "opposite_share": float(np.mean(opposite)) if opposite else 0.0,
    }
