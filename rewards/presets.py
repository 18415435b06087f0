"""Preset reward schemes (composites) that studies contrast.

- ``speed_only`` = speed: pays for finishing fast; the empty completion wins it (the exploit a
  study wants to expose).
- ``task_only`` = bleu: task quality with partial credit. On a task that names its own reward
  (``Task.task_reward``: a reasoning-gym task's ``reasoning_gym``, its dataset's scorer),
  ``task_only`` pays that reward instead, still under the name ``task_only``: environments and
  evaluations resolve it for their task with :func:`task_only_for`.
- ``balanced`` = 0.25·completion + 0.6·fidelity + 0.15·speed: finishing and fidelity to the
  reference dominate, a small speed term breaks ties towards shorter answers. Fidelity is MiniLM
  similarity on English references and chrF elsewhere (MiniLM reads only English). On
  translate-like data the reference beats every canned exploit (empty, first half of the
  reference, prompt copied, random words): the speed term can add at most 0.15, while the
  fidelity term of an exploit loses far more than that.

Weights are configurable: ``make_reward("balanced", speed=0.2)``.

Example:
    >>> from rewardgym.rewards import make_reward
    >>> make_reward("balanced").component_names
    ['completion', 'fidelity', 'speed']
"""

from __future__ import annotations

from dataclasses import replace

from rewardgym.errors import ConfigError
from rewardgym.rewards.base import Reward, Term
from rewardgym.rewards.registry import make_reward, register_composite

PRESETS: dict[str, dict[str, float]] = {
    "speed_only": {"speed": 1.0},
    "task_only": {"bleu": 1.0},
    "balanced": {"completion": 0.25, "fidelity": 0.6, "speed": 0.15},
}

_DOCS = {
    "speed_only": "speed alone: finish fast (the empty completion wins)",
    "task_only": "bleu alone: task quality with partial credit",
    "balanced": "finish + fidelity (MiniLM on English, chrF elsewhere), with a small speed term",
}

for _name, _weights in PRESETS.items():
    register_composite(_name, _weights, doc=_DOCS[_name])


def is_generic_task_only(reward: object) -> bool:
    """Whether ``reward`` is the ``task_only`` preset as registered (its one component
    ``bleu``), not yet resolved for a task.

    Example:
        >>> is_generic_task_only(make_reward("task_only"))
        True
        >>> is_generic_task_only(make_reward({"composite": {"bleu": 1.0}}))  # not the preset
        False
    """
    return (
        isinstance(reward, Reward)
        and reward.name == "task_only"
        and reward.component_names == list(PRESETS["task_only"])
    )


def task_only_for(reward: Reward, task_reward: str | None) -> Reward:
    """``reward`` with the ``task_only`` preset in it (itself, or a composite's component)
    paying ``task_reward``, the task's own reward; ``reward`` itself when there is nothing to
    change (``task_reward`` None, or no ``task_only`` in it).

    The component keeps its weight and schedule and takes the task reward's name, so metrics
    log what was paid (``reward/reasoning_gym``, not ``reward/bleu``).

    Example:
        >>> task_only_for(make_reward("task_only"), "exact_match").component_names
        ['exact_match']
        >>> mix = make_reward({"composite": {"task_only": 0.8, "speed": 0.2}})
        >>> task_only_for(mix, "exact_match").terms[0].fn.component_names
        ['exact_match']
    """
    if task_reward is None:
        return reward
    if is_generic_task_only(reward):
        (term,) = reward.terms
        own = make_reward(task_reward, on_error=reward.on_error)
        fn = own.terms[0].fn if len(own.terms) == 1 else own
        return Reward(
            "task_only",
            [Term(task_reward, fn, term.weight, term.schedule)],
            on_error=reward.on_error,
            needs_references=own.needs_references,
        )
    terms = [
        replace(t, fn=task_only_for(t.fn, task_reward)) if isinstance(t.fn, Reward) else t
        for t in reward.terms
    ]
    if all(new.fn is old.fn for new, old in zip(terms, reward.terms)):
        return reward
    return Reward(
        reward.name,
        terms,
        on_error=reward.on_error,
        needs_references=reward.needs_references,
        formula=reward.formula,
    )


def check_task_only(reward: Reward, task_name: str, task_reward: str | None) -> None:
    """Refuse the generic ``task_only`` on a task whose own reward is another: it was built
    without its task, and would pay BLEU where the task means ``task_reward``.

    Raises:
        ConfigError: names the task, its reward and the fix.

    Example:
        >>> check_task_only(make_reward("task_only"), "translate", None)  # nothing to resolve
    """
    if task_reward is None or task_reward in PRESETS["task_only"]:
        return
    if is_generic_task_only(reward) or any(
        is_generic_task_only(t.fn) for t in reward.terms if isinstance(t.fn, Reward)
    ):
        raise ConfigError(
            f"reward 'task_only' was built without its task, so it pays bleu, but on task "
            f"{task_name!r} task_only pays {task_reward!r}: resolve it for the task "
            f"(rewardgym.envs.scoring.resolve_reward(spec, task=task)), or name the reward "
            f"{task_reward!r} itself"
        )
