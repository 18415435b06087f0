"""Reward audit: can a canned exploit beat the reference before any training happens?

Each canned policy answers every validation prompt without a model: the reference itself (the
oracle), the empty string, the first half of the reference, the prompt copied back, and random
words from the task's vocabulary. A reward under which an exploit scores at least as much as the
oracle will be gamed by an optimiser; the audit says so before compute is spent.

Example:
    >>> result = audit_reward("translate", "speed_only")
    >>> result.exploits
    ['empty', ...]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rewardgym.envs.scoring import resolve_reward, resolve_task, score_completions
from rewardgym.envs.spaces import Action
from rewardgym.envs.tasks import Example, Task
from rewardgym.errors import ConfigError

ORACLE = "oracle"


def _oracle(example: Example, rng: np.random.Generator, vocab: list[str]) -> str:
    return example.reference


def _empty(example: Example, rng: np.random.Generator, vocab: list[str]) -> str:
    return ""


def _truncated(example: Example, rng: np.random.Generator, vocab: list[str]) -> str:
    words = example.reference.split()
    return " ".join(words[: len(words) // 2])


def _prompt_copy(example: Example, rng: np.random.Generator, vocab: list[str]) -> str:
    return example.prompt


def _random_words(example: Example, rng: np.random.Generator, vocab: list[str]) -> str:
    n_words = max(1, len(example.reference.split()))
    return " ".join(rng.choice(vocab, size=n_words))


# name -> how that policy answers an example (the oracle first: the bar to beat)
CANNED_POLICIES: dict[str, Callable[[Example, np.random.Generator, list[str]], str]] = {
    ORACLE: _oracle,
    "empty": _empty,
    "truncated": _truncated,
    "prompt_copy": _prompt_copy,
    "random_words": _random_words,
}


@dataclass(frozen=True)
class PolicyScore:
    """Mean reward (and each component's mean) of one canned policy."""

    policy: str
    mean: float
    std: float
    components: dict[str, float]


@dataclass
class AuditResult:
    """The audit of one reward on one task."""

    task: str
    reward: str
    n_examples: int
    scores: list[PolicyScore] = field(default_factory=list)

    @property
    def oracle(self) -> PolicyScore:
        return next(s for s in self.scores if s.policy == ORACLE)

    @property
    def exploits(self) -> list[str]:
        """Canned policies that score at least as much as the oracle, best first."""
        bar = self.oracle.mean
        winners = [s for s in self.scores if s.policy != ORACLE and s.mean >= bar]
        return [s.policy for s in sorted(winners, key=lambda s: -s.mean)]

    @property
    def verdict(self) -> str:
        if not self.exploits:
            return "OK: the reference beats every canned exploit"
        return f"EXPLOITABLE: {', '.join(self.exploits)} score(s) at least as high as the reference"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "reward": self.reward,
            "n_examples": self.n_examples,
            "scores": [vars(s) for s in self.scores],
            "exploits": self.exploits,
            "verdict": self.verdict,
        }


def audit_reward(
    task: str | Task,
    reward: Any,
    *,
    n_examples: int = 200,
    split: str = "validation",
    seed: int = 0,
    task_seed: int = 0,
) -> AuditResult:
    """Score every canned policy on ``n_examples`` examples of ``split`` under ``reward``.

    Args:
        task: a task name or :class:`Task`.
        reward: any reward spec ``make_reward`` accepts.
        n_examples: how many examples (the first ones of the split) to score.
        split: the split to draw from; validation by default, so test stays untouched.
        seed: seed of the random-words policy.
        task_seed: seed of the generated task.

    Returns:
        An :class:`AuditResult`; ``result.exploits`` lists the policies that tie or beat the oracle.
    """
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise ConfigError(f"n_examples must be a positive int, got {n_examples!r}")
    task_obj = resolve_task(task, task_seed)
    reward_obj = resolve_reward(reward, task=task_obj)
    examples = list(task_obj.split(split))[:n_examples]
    vocab = list(task_obj.words()) or ["word"]
    result = AuditResult(task_obj.name, _spec_name(reward), len(examples))
    for name, policy in CANNED_POLICIES.items():
        rng = np.random.default_rng(seed)
        actions = [Action(text=policy(ex, rng, vocab), finished=True) for ex in examples]
        output = score_completions(
            reward_obj, task_obj, examples, [ex.prompt for ex in examples], actions
        )
        components = {k: float(np.nanmean(v)) for k, v in output.components.items()}
        result.scores.append(
            PolicyScore(name, float(output.total.mean()), float(output.total.std()), components)
        )
    return result


def format_audit(result: AuditResult) -> str:
    """A plain-text table of one audit, with its verdict.

    Example:
        >>> print(format_audit(audit_reward("arithmetic", "balanced", n_examples=20)))
    """
    names = sorted({k for s in result.scores for k in s.components})
    header = ["policy", "total", "std", *names]
    rows = [
        [s.policy, f"{s.mean:.3f}", f"{s.std:.3f}", *(f"{s.components[k]:.3f}" for k in names)]
        for s in result.scores
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join

    def fmt(row: list[str]) -> str:
        return line(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()

    title = f"reward {result.reward!r} on task {result.task!r} ({result.n_examples} examples)"
    body = [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]
    return "\n".join([title, *body, result.verdict])


def _spec_name(reward: Any) -> str:
    if isinstance(reward, str):
        return reward
    return getattr(reward, "name", None) or getattr(reward, "__name__", None) or repr(reward)
