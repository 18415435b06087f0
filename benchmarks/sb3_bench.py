"""SB3 bridge: token-level environment steps per second, alone and under PPO with the tiny
transformer policy.

Two figures from one call: the raw ``TokenTaskEnv`` step rate (random tokens, so the env and its
reward are all that is timed) and the rate of ``model.learn`` with SB3's PPO and rewardgym's
smallest transformer extractor (rollout, reward, and PPO's updates together).

Example:
    >>> run(quick=True)["learn_steps_per_s"] > 0
    True
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks.roofline import figure
from rewardgym.agents.sb3 import make_sb3_agent
from rewardgym.envs.token_env import TokenTaskEnv

EXTRACTOR = {"n_layer": 1, "d_model": 64, "n_head": 4}


def make_env(task: str = "translate", reward: str = "chrf", max_new_tokens: int = 16):
    """The token-level env both figures use (byte-level tokenizer, chrF reward).

    Example:
        >>> make_env().action_space.n > 0
        True
    """
    return TokenTaskEnv(task, reward, max_new_tokens=max_new_tokens)


def env_steps_per_s(env: TokenTaskEnv, steps: int, seed: int = 0) -> float:
    """Steps per second of ``env`` under uniformly random actions (resets included).

    Example:
        >>> env_steps_per_s(make_env(), 50) > 0
        True
    """
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def learn_steps_per_s(total: int, n_steps: int, seed: int = 0) -> float:
    """Env steps per second of ``PPO.learn`` with the transformer extractor (after a warm-up).

    Example:
        >>> learn_steps_per_s(64, 32) > 0
        True
    """
    model = make_sb3_agent(
        "ppo",
        make_env(),
        extractor_kwargs=EXTRACTOR,
        seed=seed,
        n_steps=n_steps,
        batch_size=n_steps,
        n_epochs=1,
        device="cpu",
    )
    model.learn(total_timesteps=n_steps)  # warm-up: first rollout and update
    start = time.perf_counter()
    model.learn(total_timesteps=total, reset_num_timesteps=False)
    return total / (time.perf_counter() - start)


def run(quick: bool = False, **_: Any) -> dict[str, Any]:
    """Benchmark entry: raw env steps/s and PPO ``learn`` steps/s.

    Example:
        >>> sorted(run(quick=True))[:2]
        ['benchmark', 'env_steps_per_s']
    """
    env_rate = env_steps_per_s(make_env(), 500 if quick else 5000)
    learn_rate = learn_steps_per_s(128 if quick else 1024, 64)
    return {
        "benchmark": "sb3",
        "extractor": EXTRACTOR,
        "env_steps_per_s": env_rate,
        "learn_steps_per_s": learn_rate,
        "figures": [
            figure("SB3 bridge: token env steps (random actions)", env_rate, "steps/s"),
            figure("SB3 bridge: PPO learn with tiny transformer", learn_rate, "steps/s"),
        ],
    }
