"""The batched env: one reward call per step, groups for GRPO, same-step autoreset."""

from __future__ import annotations

import numpy as np
import pytest

from rewardgym.envs.vector_env import TextTaskVectorEnv
from rewardgym.errors import ConfigError, EnvInputError
from rewardgym.rewards import make_reward


class CountingReward:
    """A TRL-style reward that counts how often it is called."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompts, completions, references, **kwargs):
        self.calls += 1
        return [float(c == r) for c, r in zip(completions, references)]


def test_one_reward_call_scores_the_whole_batch() -> None:
    counter = CountingReward()
    env = TextTaskVectorEnv("arithmetic", make_reward(counter), n_prompts=4, group_size=3)
    prompts, infos = env.reset(seed=0)
    assert len(prompts) == env.num_envs == 12
    # groups: each distinct prompt repeated group_size times in a row
    assert all(len(set(prompts[i : i + 3])) == 1 for i in range(0, 12, 3))
    answers = [ex.reference if i % 3 == 0 else "nope" for i, ex in enumerate(env.batch)]
    next_prompts, rewards, terminated, truncated, infos = env.step(answers)
    assert counter.calls == 1
    assert rewards.tolist() == [1.0, 0.0, 0.0] * 4
    assert terminated.all() and not truncated.any()
    assert list(infos["reference"][::3]) == answers[::3]
    assert len(next_prompts) == 12


def test_reset_seed_and_indices_are_deterministic() -> None:
    env = TextTaskVectorEnv("translate", "task_only", n_prompts=5)
    first, _ = env.reset(seed=11)
    assert env.reset(seed=11)[0] == first
    assert env.reset(seed=12)[0] != first
    chosen, info = env.reset(options={"indices": [0, 1, 2, 3, 4]})
    assert chosen == tuple(ex.prompt for ex in env.examples[:5])
    assert info["index"].tolist() == [0, 1, 2, 3, 4]


def test_structured_actions_reach_the_reward() -> None:
    env = TextTaskVectorEnv("translate", "speed_only", n_prompts=2)
    env.reset(seed=0)
    _, rewards, _, _, infos = env.step(
        [{"text": "a", "n_tokens": 1}, {"text": "a b c", "n_tokens": 40}]
    )
    assert rewards[0] > rewards[1]
    assert infos["n_tokens"].tolist() == [1, 40]


def test_vector_env_errors() -> None:
    with pytest.raises(ConfigError, match="group_size must be a positive int, got 0"):
        TextTaskVectorEnv("translate", "task_only", group_size=0)
    with pytest.raises(ConfigError, match="n_prompts=999999 exceeds"):
        TextTaskVectorEnv("translate", "task_only", n_prompts=999_999)
    env = TextTaskVectorEnv("translate", "task_only", n_prompts=2)
    env.reset(seed=0)
    with pytest.raises(EnvInputError, match=r"one action per sub-environment \(2\)"):
        env.step(["only one"])
    with pytest.raises(EnvInputError, match="past the last example"):
        env.reset(options={"indices": [0, 10**7]})
    assert np.isfinite(env.step(["a", "b"])[1]).all()
