"""A toy task every learner should solve: copy two characters of a 4-letter alphabet.

Token-level (one action per character, ``TokenTaskEnv``), with a character tokenizer and a reward
for each reference character reproduced in place. The SB3 bridge's tests use it, and
``benchmarks/learning.py`` measures what PPO reaches on it over seeds.

Example:
    >>> env = copy_env(); env.action_space.n
    6
"""

from __future__ import annotations

import itertools

from stable_baselines3.common.env_util import make_vec_env

from rewardgym.envs.tasks import Example, Task
from rewardgym.envs.token_env import TokenTaskEnv

ALPHABET = "abcd"
MAX_NEW_TOKENS = 3


class CharTokenizer:
    """One token per character of a fixed charset, then end-of-sequence and padding."""

    def __init__(self, charset: str) -> None:
        self.chars = sorted(set(charset))
        self.vocab_size = len(self.chars) + 2
        self.eos_token_id = len(self.chars)
        self.pad_token_id = len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        return [self.chars.index(ch) for ch in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids if i < len(self.chars))


def copy_reward(prompts: list[str], completions: list[str], **kwargs) -> list[float]:
    """TRL-style reward: share of reference characters reproduced in place (extra ones cost)."""
    scores = []
    for completion, reference in zip(completions, kwargs["references"], strict=True):
        hits = sum(a == b for a, b in zip(completion, reference, strict=False))
        scores.append(hits / max(len(reference), len(completion)))
    return scores


def copy_task() -> Task:
    examples = [
        Example(f"copy: {''.join(s)} =>", "".join(s)) for s in itertools.product(ALPHABET, repeat=2)
    ]
    return Task.from_examples("copy", {"train": examples, "validation": examples, "test": examples})


def copy_env() -> TokenTaskEnv:
    task = copy_task()
    return TokenTaskEnv(
        task,
        reward=copy_reward,
        tokenizer=CharTokenizer(task.charset),
        max_new_tokens=MAX_NEW_TOKENS,
    )


def copy_vec_env(n_envs: int = 4, seed: int = 0):
    return make_vec_env(copy_env, n_envs=n_envs, seed=seed)


def greedy_score(model, env: TokenTaskEnv) -> float:
    """Mean reward of the deterministic policy over every example of the task."""
    total = 0.0
    for index in range(len(env.examples)):
        obs, _ = env.reset(options={"index": index})
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            done = terminated or truncated
        total += reward
    return total / len(env.examples)


def random_policy_score(env: TokenTaskEnv, episodes: int = 400, seed: int = 0) -> float:
    env.action_space.seed(seed)
    env.reset(seed=seed)
    total = 0.0
    for _ in range(episodes):
        env.reset()
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
        total += reward
    return total / episodes
