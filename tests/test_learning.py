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
