"""Rewards: the TRL-compatible reward protocol, the registry, built-in and preset rewards.

A reward function has TRL's signature, so the same function works here and in TRL's
``GRPOTrainer``::

    fn(prompts: list[str], completions: list[str], **kwargs) -> list[float | None]

:func:`make_reward` turns a name, a ``"module:function"`` spec, a composite
``{"composite": {name: weight}}`` or a plain function into a :class:`Reward`: a reward function
checked at the boundary, with :meth:`Reward.score` giving a :class:`RewardOutput` (total and
per-component values).

Example:
    >>> from rewardgym.rewards import make_reward
    >>> reward = make_reward("speed_only")
    >>> reward(["translate: a cat =>"], [""], references=["kato"])
    [1.0]
"""

from __future__ import annotations

from rewardgym.rewards import (  # noqa: F401  (registers built-ins)
    builtin,
    hacks,
    presets,
    reasoning,
    semantic,
)
from rewardgym.rewards.base import (
    STANDARD_KWARGS,
    Reward,
    RewardFn,
    RewardOutput,
    Term,
    as_text,
    call_reward_fn,
    check_reward_values,
    estimate_tokens,
    fill_reward_kwargs,
)
from rewardgym.rewards.builtin import Speed, bleu, chrf, completion, exact_match, length
from rewardgym.rewards.interop import to_trl, to_verl
from rewardgym.rewards.presets import PRESETS
from rewardgym.rewards.registry import (
    ENTRY_POINT_GROUP,
    RewardSpec,
    describe_rewards,
    list_rewards,
    load_plugins,
    make_reward,
    parse_reward_spec,
    register_composite,
    register_reward,
    reward_spec,
)
from rewardgym.rewards.semantic import Semantic

__all__ = [
    "ENTRY_POINT_GROUP",
    "PRESETS",
    "STANDARD_KWARGS",
    "Reward",
    "RewardFn",
    "RewardOutput",
    "RewardSpec",
    "Semantic",
    "Speed",
    "Term",
    "as_text",
    "bleu",
    "call_reward_fn",
    "check_reward_values",
    "chrf",
    "completion",
    "describe_rewards",
    "estimate_tokens",
    "exact_match",
    "fill_reward_kwargs",
    "length",
    "list_rewards",
    "load_plugins",
    "make_reward",
    "parse_reward_spec",
    "register_composite",
    "register_reward",
    "reward_spec",
    "to_trl",
    "to_verl",
]
