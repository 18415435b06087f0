"""Registers every built-in task with Gymnasium, at both levels.

``import rewardgym`` calls :func:`register_envs`, so ``gymnasium.make("rewardgym/Translate-v0")``
works right after it. Entry points are strings: registering imports no model code.
"""

from __future__ import annotations

import gymnasium as gym

# task name -> the CamelCase part of its env ids
BUILTIN_ENV_TASKS = {"translate": "Translate", "summarize": "Summarize", "arithmetic": "Arithmetic"}

TEXT_ENTRY_POINT = "rewardgym.envs.text_env:TextTaskEnv"
TOKEN_ENTRY_POINT = "rewardgym.envs.token_env:TokenTaskEnv"


def env_ids() -> list[str]:
    """Every env id rewardgym registers, sequence level first.

    Example:
        >>> env_ids()[0]
        'rewardgym/Translate-v0'
    """
    text = [f"rewardgym/{camel}-v0" for camel in BUILTIN_ENV_TASKS.values()]
    token = [f"rewardgym/{camel}-Token-v0" for camel in BUILTIN_ENV_TASKS.values()]
    return text + token


def register_envs() -> None:
    """Register the sequence- and token-level env of each built-in task (idempotent)."""
    for task, camel in BUILTIN_ENV_TASKS.items():
        for env_id, entry_point in (
            (f"rewardgym/{camel}-v0", TEXT_ENTRY_POINT),
            (f"rewardgym/{camel}-Token-v0", TOKEN_ENTRY_POINT),
        ):
            if env_id not in gym.registry:
                gym.register(id=env_id, entry_point=entry_point, kwargs={"task": task})
