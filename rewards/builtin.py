"""Built-in rewards: speed, completion, exact_match, bleu, chrf, length, env.

Each is a TRL reward function (or a small callable class, for the parameterised ``speed``) and
states its formula and range on the first line of its docstring. ``semantic`` lives in
:mod:`rewardgym.rewards.semantic`.

Example:
    >>> exact_match(["p"], [" kato vidi-ta "], references=["kato  vidi-ta"])
    [1.0]
"""

from __future__ import annotations

import math
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

from rewardgym.errors import ConfigError
from rewardgym.rewards.base import as_text
from rewardgym.rewards.registry import register_reward

# Built once: sacrebleu metric objects are reusable and costly to rebuild per call.
_BLEU = BLEU(effective_order=True)
_CHRF = CHRF()


def _unit(value: float) -> float:
    """Clip to [0, 1]: sacrebleu's float arithmetic can give 1.0000000000000004."""
    return min(1.0, max(0.0, value))


def _words(text: str) -> list[str]:
    return text.split()


@register_reward("speed", needs_references=False)
class Speed:
    """speed = clip(1[finished] − token_cost·n_tokens − time_cost·latency_s − turn_cost·(turns−1))

    clip: to [−1, 1]. Finishing pays 1; each token, second and extra turn costs. With the defaults
    (``token_cost = 1/max_tokens``) an answer that uses the whole token budget earns nothing,
    and the empty completion earns the most: exactly what a speed-only reward invites.
    Range [−1, 1]. Needs no references.

    Args:
        max_tokens: the token budget; sets the default ``token_cost = 1 / max_tokens``.
        token_cost: cost per generated token (default ``1 / max_tokens``).
        time_cost: cost per second of latency.
        turn_cost: cost per turn after the first (``turns`` kwarg; 1 when absent).

    Example:
        >>> Speed(max_tokens=10)(["p"], ["a b"], n_tokens=[2], finished=[True], latency_s=[0.0])
        [0.8]
    """

    needs_references = False

    def __init__(
        self,
        max_tokens: int = 64,
        token_cost: float | None = None,
        time_cost: float = 0.0,
        turn_cost: float = 0.1,
    ) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"speed: max_tokens={max_tokens!r}; use a positive integer")
        self.max_tokens = max_tokens
        self.token_cost = _cost(
            "token_cost", 1.0 / max_tokens if token_cost is None else token_cost
        )
        self.time_cost = _cost("time_cost", time_cost)
        self.turn_cost = _cost("turn_cost", turn_cost)
        self.__name__ = "speed"

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        n = len(completions)
        turns = kwargs.get("turns") or [1] * n
        out = []
        for n_tokens, finished, latency, turn in zip(
            kwargs["n_tokens"], kwargs["finished"], kwargs["latency_s"], turns, strict=True
        ):
            value = (
                float(bool(finished))
                - self.token_cost * n_tokens
                - self.time_cost * latency
                - self.turn_cost * max(0, turn - 1)
            )
            out.append(min(1.0, max(-1.0, value)))
        return out

    def __repr__(self) -> str:
        return (
            f"Speed(max_tokens={self.max_tokens}, token_cost={self.token_cost:g}, "
            f"time_cost={self.time_cost:g}, turn_cost={self.turn_cost:g})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Speed) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable parameters: equal, not hashable


def _cost(name: str, value: Any) -> float:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad or not math.isfinite(value) or value < 0:
        raise ConfigError(f"speed: {name}={value!r}; use a finite number >= 0")
    return float(value)


@register_reward("completion", needs_references=False)
def completion(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """completion = 1[finished]: 1.0 if generation ended (end of sequence) within the limit.

    Range {0, 1}. Needs no references.

    Example:
        >>> completion(["p", "q"], ["a", "b"], finished=[True, False])
        [1.0, 0.0]
    """
    return [1.0 if f else 0.0 for f in kwargs["finished"]]


@register_reward("exact_match")
def exact_match(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """exact_match = 1[words(completion) == words(reference)] (whitespace-normalised).

    Range {0, 1}.

    Example:
        >>> exact_match(["p"], ["4 "], references=["5"])
        [0.0]
    """
    return [
        float(_words(as_text(c)) == _words(r))
        for c, r in zip(completions, kwargs["references"], strict=True)
    ]


@register_reward("bleu")
def bleu(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """bleu = sacrebleu sentence BLEU(completion, reference, effective_order) / 100.

    Range [0, 1]; the partial-credit task score.

    Example:
        >>> bleu(["p"], ["the cat sat"], references=["the cat sat"])
        [1.0]
    """
    return [
        _unit(_BLEU.sentence_score(as_text(c), [r]).score / 100.0)
        for c, r in zip(completions, kwargs["references"], strict=True)
    ]


@register_reward("chrf")
def chrf(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """chrf = sacrebleu sentence chrF(completion, reference) / 100.

    Range [0, 1]; character n-gram F-score, kinder than BLEU to near-miss word forms.

    Example:
        >>> chrf(["p"], ["abc"], references=["abc"])
        [1.0]
    """
    return [
        _unit(_CHRF.sentence_score(as_text(c), [r]).score / 100.0)
        for c, r in zip(completions, kwargs["references"], strict=True)
    ]


@register_reward("length")
def length(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """length = 1 − min(1, |words(completion) − words(reference)| / max(1, words(reference))).

    Range [0, 1]: 1 for the reference's word count, 0 at twice that (or at zero words).

    Example:
        >>> length(["p"], ["a b c"], references=["a b c d"])
        [0.75]
    """
    out = []
    for c, r in zip(completions, kwargs["references"], strict=True):
        n_ref = len(_words(r))
        gap = abs(len(_words(as_text(c))) - n_ref) / max(1, n_ref)
        out.append(1.0 - min(1.0, gap))
    return out


@register_reward("env", needs_references=False)
def env(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
    """env = the environment's own reward for the step (kwarg ``env_reward``), passed through.

    Range: the environment's. A multi-turn game env (``rewardgym.envs.games.GameEnv``) passes
    its game's step reward as ``env_reward``, so this component composes the game's reward with
    the others (``{"composite": {"env": 1.0, "speed": 0.1}}``). ``None`` ("does not apply")
    where no env reward was passed: text tasks have none. Needs no references.

    Example:
        >>> env(["p", "q"], ["a", "b"], env_reward=[1.0, -0.1])
        [1.0, -0.1]
        >>> env(["p"], ["a"])
        [None]
    """
    values = kwargs.get("env_reward")
    if values is None:
        return [None] * len(completions)
    if isinstance(values, (str, bytes)) or len(values) != len(completions):
        raise ConfigError(
            f"env_reward= must be a list with one entry per completion ({len(completions)}), "
            f"got {values!r:.80}"
        )
    return [None if v is None else float(v) for v in values]
