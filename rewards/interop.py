"""Rewards that carry over: the same reward in TRL's GRPOTrainer and in verl.

:func:`to_trl` splits a reward into TRL's ``(reward_funcs, reward_weights)``: TRL sums
``weight · reward`` over the functions (ignoring ``None``), which is exactly how a rewardgym
composite pays, so a result found here carries over. :func:`to_verl` wraps a reward as verl's
custom ``compute_score(data_source, solution_str, ground_truth, extra_info)``.

Example:
    >>> funcs, weights = to_trl({"composite": {"bleu": 0.7, "speed": 0.3}})
    >>> [f.__name__ for f in funcs], weights
    (['bleu', 'speed'], [0.7, 0.3])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rewardgym.errors import ConfigError
from rewardgym.rewards.base import Reward, Term
from rewardgym.rewards.registry import make_reward

__all__ = ["to_trl", "to_verl"]


def to_trl(spec: Any) -> tuple[list[Reward], list[float]]:
    """TRL ``GRPOTrainer(reward_funcs=..., args=GRPOConfig(reward_weights=...))`` arguments.

    Each component becomes its own reward function (named after it, so TRL logs
    ``rewards/<name>``); the dataset must carry a ``references`` column for rewards that
    compare against one.

    Raises:
        ConfigError: a component whose weight follows a schedule (TRL's weights are fixed).
    """
    reward = make_reward(spec)
    scheduled = [t.name for t in reward.terms if t.schedule is not None]
    if scheduled:
        raise ConfigError(
            f"components {scheduled} of {reward.name!r} follow a weight schedule; TRL's "
            "reward_weights are fixed, so give them a number for TRL"
        )
    if len(reward.terms) == 1 and reward.terms[0].weight == 1.0:
        return [reward], [1.0]
    funcs = [_single(reward, term) for term in reward.terms]
    return funcs, [term.weight for term in reward.terms]


def _single(parent: Reward, term: Term) -> Reward:
    needs = term.fn.needs_references if isinstance(term.fn, Reward) else parent.needs_references
    return Reward(term.name, [Term(term.name, term.fn)], on_error=parent.on_error,
                  needs_references=needs)  # fmt: skip


def to_verl(spec: Any) -> Callable[..., float]:
    """verl's custom reward function: ``compute_score(data_source, solution_str, ground_truth,
    extra_info=None) -> float``, the reward's total for one sample (0.0 where nothing applies).

    ``extra_info`` may carry ``prompt``, ``n_tokens`` and ``finished`` (else the prompt is empty,
    tokens are estimated from the text and the answer counts as finished).

    Example:
        >>> compute_score = to_verl("exact_match")
        >>> compute_score("arith", "7", "7"), compute_score("arith", "8", "7")
        (1.0, 0.0)
    """
    reward = make_reward(spec)

    def compute_score(
        data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None
    ) -> float:
        info = dict(extra_info or {})
        kwargs: dict[str, Any] = {"references": [ground_truth], "meta": [info]}
        for key in ("n_tokens", "finished"):
            if key in info:
                kwargs[key] = [info[key]]
        (total,) = reward.score([info.get("prompt", "")], [solution_str], **kwargs).as_list()
        return 0.0 if total is None else total

    compute_score.__name__ = f"compute_score_{reward.name}"
    return compute_score
