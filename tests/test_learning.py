"""The trainer must optimise: on the warm-started tiny model, training reward rises under every
preset reward (speed_only, task_only, balanced) over about 100 updates.

The runs train on a fixed set of 16 prompts so that the reward curve measures learning on the
same prompts rather than the luck of each batch's draw; "clearly above" is a one-sided test
with a margin of two standard errors of the difference of the means.
"""

from __future__ import annotations

import numpy as np
import pytest

from rewardgym.agents import TrainConfig, train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("reward", "updates"), [("speed_only", 60), ("task_only", 80), ("balanced", 80)]
)
def test_training_reward_rises(reward: str, updates: int) -> None:
    config = TrainConfig(
        task="translate",
        model="tiny",
        reward=reward,
        algo="grpo",
        updates=updates,
        seed=0,
        task_kwargs={"n_train": 16},
        prompts_per_update=8,
        group_size=4,
        max_new_tokens=32,
        lr=3e-4,
        eval_examples=16,
        progress=False,
    )
    rewards = np.array([m["reward/mean"] for m in train(config).metrics])
    k = updates // 5
    first, last = rewards[:k], rewards[-k:]
    margin = 2 * np.sqrt(first.var(ddof=1) / k + last.var(ddof=1) / k)
    assert last.mean() - first.mean() > margin, (first.mean(), last.mean(), margin)


def test_task_reward_repairs_the_flawed_warm_start() -> None:
    """The default study's design on a small budget: its starting policy loops, and 30 GRPO
    updates under the task reward must raise greedy validation BLEU by more than 5 % and leave
    the stock phrase the task reward does not see, while the speed term of balanced drops it."""
    from rewardgym.agents.registry import load_policy
    from rewardgym.evaluation.study_config import load_study_config

    study = load_study_config("speed_vs_balanced")
    options = dict(study.model_options)
    before = load_policy("tiny", task="translate", device="cpu", **options)
    runs = {}
    for scheme in ("task_only", "balanced"):
        config = study.train_config("translate", study.schemes[scheme], 0, None)
        config.updates, config.eval_every, config.progress = 30, 0, False
        runs[scheme] = train(config)
    start = _greedy_eval(before, runs["task_only"].config)
    task_only, balanced = (runs[s].final_eval for s in ("task_only", "balanced"))
    assert task_only["final/bleu"] > 1.05 * start["bleu"], (start, task_only)
    assert balanced["final/completion_length"] < 0.85 * task_only["final/completion_length"]
    rewards = [m["reward/mean"] for m in runs["task_only"].metrics]
    assert np.mean(rewards[-6:]) > np.mean(rewards[:6])


def _greedy_eval(policy, config) -> dict:
    """BLEU of greedy answers on the validation examples the trainer's final evaluation uses."""
    from rewardgym.agents.meters.text_metrics import corpus_bleu
    from rewardgym.envs.tasks import extract_answer, make_task

    examples = make_task(config.task, seed=config.task_seed).split("validation")
    examples = examples[: config.eval_examples]
    gen = policy.generate([ex.prompt for ex in examples], config.max_new_tokens, greedy=True)
    answers = [extract_answer(c) for c in gen.completions]
    return {"bleu": corpus_bleu(answers, [ex.reference for ex in examples])}
