"""One place where environments turn completions into reward calls.

Both the single and the vector environment score through :func:`score_completions`, so the
reward a trainer sees is exactly what ``env.step`` reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardgym.envs.spaces import Action
from rewardgym.envs.tasks import Example, Task, make_task
from rewardgym.rewards import Reward, RewardOutput, make_reward
from rewardgym.rewards.base import estimate_tokens
from rewardgym.rewards.presets import check_task_only, task_only_for


def resolve_task(task: str | Task, task_seed: int = 0, task_kwargs: dict | None = None) -> Task:
    """A :class:`Task` from a task object or a registered task name."""
    if isinstance(task, Task):
        return task
    return make_task(task, seed=task_seed, **(task_kwargs or {}))


def resolve_reward(
    reward: Any, reward_kwargs: dict | None = None, task: Task | None = None
) -> Reward:
    """A :class:`Reward` from any spec ``make_reward`` accepts; with ``task``, the ``task_only``
    preset in it pays the task's own reward (:attr:`Task.task_reward`, e.g. a reasoning-gym
    dataset's scorer; BLEU on tasks that name none).

    Example:
        >>> resolve_reward("task_only", task=make_task("translate")).component_names
        ['bleu']
    """
    if not (isinstance(reward, Reward) and not reward_kwargs):
        reward = make_reward(reward, **(reward_kwargs or {}))
    return reward if task is None else task_only_for(reward, task.task_reward)


def score_completions(
    reward: Reward,
    task: Task,
    examples: Sequence[Example],
    prompts: Sequence[str],
    actions: Sequence[Action],
    turns: Sequence[int] | None = None,
) -> RewardOutput:
    """Score a batch of parsed actions with one reward call.

    Rewards see each completion's answer as ``task`` reads it (:meth:`Task.answer`: by default
    the text after its last ``answer:``, else all of it) and the token count of the whole
    completion, working included. Fields no agent passed
    (token counts, finished flags, latency) are left out, so the reward's own defaults apply;
    when only some agents passed a field, the others get those defaults.

    Raises:
        ConfigError: ``reward`` is the generic ``task_only`` but ``task`` names its own task
            reward (build the reward with :func:`resolve_reward` and the task).
    """
    check_task_only(reward, task.name, task.task_reward)
    texts = [a.text for a in actions]
    kwargs: dict[str, Any] = {
        "references": [ex.reference for ex in examples],
        "meta": [dict(ex.meta) for ex in examples],
        "completion_ids": [list(a.completion_ids or ()) for a in actions],
    }
    passed = {
        "n_tokens": ([a.n_tokens for a in actions], [estimate_tokens(t) for t in texts]),
        "finished": ([a.finished for a in actions], [True] * len(actions)),
        "latency_s": ([a.latency_s for a in actions], [0.0] * len(actions)),
    }
    for key, (values, defaults) in passed.items():
        if any(v is not None for v in values):
            kwargs[key] = [d if v is None else v for v, d in zip(values, defaults)]
    if turns is not None:
        kwargs["turns"] = list(turns)
    return reward.score(list(prompts), task.answers(texts), **kwargs)


def component_info(output: RewardOutput, index: int) -> dict[str, float]:
    """The per-component rewards of one sample, as ``{"reward/<name>": value}``."""
    return {f"reward/{name}": float(values[index]) for name, values in output.components.items()}


def batch_component_info(output: RewardOutput) -> dict[str, np.ndarray]:
    """The per-component rewards of a batch, as ``{"reward/<name>": array}``."""
    return {f"reward/{name}": np.asarray(values) for name, values in output.components.items()}
