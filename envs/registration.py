"""Gymnasium ids for registered tasks, at both levels: ``rewardgym/<Name>-v0`` (sequence)
and ``rewardgym/<Name>-Token-v0`` (token).

:func:`rewardgym.envs.tasks.register_task` calls :func:`register_task_envs`, so every task,
built in or a user's, gets its ids when it is registered (``import rewardgym`` registers the
built-ins). Entry points are strings: registering imports no model code.

Example:
    >>> env_name("my_task")
    'MyTask'
"""

from __future__ import annotations

import re

import gymnasium as gym

TEXT_ENTRY_POINT = "rewardgym.envs.text_env:TextTaskEnv"
TOKEN_ENTRY_POINT = "rewardgym.envs.token_env:TokenTaskEnv"

_TASK_ENVS: dict[str, str] = {}  # task name -> the CamelCase part of its env ids


def env_name(task: str) -> str:
    """The CamelCase part of a task's env ids: words split at ``_``, ``-``, ``.``, ``:`` (a task
    family's ``PREFIX:NAME``) and spaces.

    Example:
        >>> env_name("reasoning_gym:leg_counting")
        'ReasoningGymLegCounting'
    """
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\-.:\s]+", task) if part)


def register_task_envs(task: str) -> list[str]:
    """Register the sequence- and token-level env ids of ``task`` (idempotent); return them."""
    camel = env_name(task)
    ids = [f"rewardgym/{camel}-v0", f"rewardgym/{camel}-Token-v0"]
    for env_id, entry_point in zip(ids, (TEXT_ENTRY_POINT, TOKEN_ENTRY_POINT), strict=True):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs={"task": task})
    _TASK_ENVS[task] = camel
    return ids


def env_ids() -> list[str]:
    """Every env id rewardgym registered, sequence level first, in registration order.

    Example:
        >>> env_ids()[0]
        'rewardgym/Translate-v0'
    """
    text = [f"rewardgym/{camel}-v0" for camel in _TASK_ENVS.values()]
    token = [f"rewardgym/{camel}-Token-v0" for camel in _TASK_ENVS.values()]
    return text + token
