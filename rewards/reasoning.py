"""reasoning-gym's own scorers as a reward: ``reasoning_gym`` pays ``score_answer(answer, entry)``.

reasoning-gym generates procedural reasoning datasets; each entry is a dict with ``question``,
``answer`` and ``metadata``, and each dataset scores an answer against an entry with its own
``score_answer`` (0 to 1: exact, partial or checked by a solver). The task adapter
(:mod:`rewardgym.envs.tasks.reasoning`) keeps every example's entry in its ``meta`` under
:data:`META_KEY`, with the dataset's name and config; the reward below and the tasks' quality
metric read it from there, so a reasoning-gym task is scored exactly as the package scores it.

reasoning-gym is imported only when a dataset is built or scored: ``import rewardgym`` stays
fast, and a machine without the package gets a :class:`~rewardgym.errors.ConfigError` naming the
install command.

Example:
    >>> info = {"dataset": "leg_counting", "config": {},
    ...         "entry": {"question": "...", "answer": "8", "metadata": {}}}
    >>> reasoning_gym(["p", "p"], ["8", "7"], meta=[{META_KEY: info}, {META_KEY: info}])
    [1.0, 0.0]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from types import ModuleType
from typing import Any

from rewardgym.errors import ConfigError, TaskDataError
from rewardgym.rewards.base import as_text
from rewardgym.rewards.registry import register_reward

#: where an example's ``meta`` keeps its reasoning-gym entry
META_KEY = "reasoning_gym"
#: the pin pyproject.toml installs: the splits are the generators' output, so one version
#: keeps a seed's examples the same on every machine
REQUIREMENT = "reasoning-gym==0.1.23"


def require_reasoning_gym() -> ModuleType:
    """The ``reasoning_gym.factory`` module, imported on first use.

    Raises:
        ConfigError: the package is not installed; names the install command.

    Example:
        >>> "leg_counting" in require_reasoning_gym().DATASETS
        True
    """
    try:
        from reasoning_gym import factory
    except ImportError as exc:
        raise ConfigError(
            f"reasoning-gym tasks need the reasoning-gym package, which is not importable "
            f"({exc}); install it with: pip install '{REQUIREMENT}' (make setup installs it)"
        ) from None
    return factory


def config_key(config: Mapping[str, Any]) -> str:
    """A dataset config as sorted JSON: the key its scorer is cached under.

    Example:
        >>> config_key({"b": 1, "a": [2]})
        '{"a": [2], "b": 1}'
    """
    return json.dumps(dict(config), sort_keys=True)


@lru_cache(maxsize=64)
def _scorer(dataset: str, key: str) -> Any:
    """The ``score_answer`` of ``dataset`` built with the config ``key`` (JSON), built once:
    some datasets load word lists or puzzle banks when they are built."""
    factory = require_reasoning_gym()
    return factory.create_dataset(dataset, **json.loads(key)).score_answer


def entry_info(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The reasoning-gym part of one example's ``meta``, or None when it has none.

    Raises:
        TaskDataError: a ``meta[META_KEY]`` without a dataset name, a config and an entry
            holding ``answer``.

    Example:
        >>> entry_info({"input": "2 + 2"}) is None
        True
    """
    info = meta.get(META_KEY) if isinstance(meta, Mapping) else None
    if info is None:
        return None
    ok = (
        isinstance(info, Mapping)
        and isinstance(info.get("dataset"), str)
        and isinstance(info.get("config", {}), Mapping)
        and isinstance(info.get("entry"), Mapping)
        and "answer" in info["entry"]
    )
    if not ok:
        raise TaskDataError(
            f"meta[{META_KEY!r}] must be {{'dataset': NAME, 'config': {{...}}, 'entry': "
            f"{{'question': ..., 'answer': ..., 'metadata': {{...}}}}}}, got {info!r:.120}"
        )
    return info


def score_entry(answer: str | None, info: Mapping[str, Any]) -> float:
    """The dataset's own ``score_answer(answer, entry)``, 0 to 1.

    A ``score_answer`` that raises on a malformed answer (some parse it as a number, a grid or
    JSON) scores it 0.0, as a wrong answer: a model's text must not stop a run.

    Example:
        >>> info = {"dataset": "spell_backward", "config": {},
        ...         "entry": {"question": "...", "answer": "olleh", "metadata": {}}}
        >>> score_entry("olleh", info), score_entry("xxxxx", info)
        (1.0, 0.0)
    """
    score_answer = _scorer(info["dataset"], config_key(info.get("config", {})))
    try:
        value = float(score_answer(answer, dict(info["entry"])))
    except Exception:  # the dataset's parser rejected the answer: it earns nothing
        return 0.0
    return min(1.0, max(0.0, value))  # the documented range, whatever a dataset's float error


@register_reward("reasoning_gym", needs_references=False)
def reasoning_gym(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
    """reasoning_gym = score_answer(answer, entry): the reasoning-gym dataset's own scorer.

    Range [0, 1]. Reads each sample's entry from ``meta["reasoning_gym"]`` (reasoning-gym
    tasks put it there); ``None`` ("does not apply") for a sample without one.

    Example:
        >>> info = {"dataset": "leg_counting", "config": {},
        ...         "entry": {"question": "...", "answer": "8", "metadata": {}}}
        >>> reasoning_gym(["p", "q"], ["8", "8"], meta=[{"reasoning_gym": info}, {}])
        [1.0, None]
    """
    metas = kwargs.get("meta") or [{}] * len(completions)
    out: list[float | None] = []
    for completion, meta in zip(completions, metas, strict=True):
        info = entry_info(meta)
        out.append(None if info is None else score_entry(as_text(completion), info))
    return out
