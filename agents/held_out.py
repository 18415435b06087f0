"""The held-out evaluation a run makes while it trains, whichever trainer runs it.

rewardgym's own trainer and the TRL backend call the same two functions, so ``eval/quality``
and ``sample/quality`` mean the same thing in both kinds of run: greedy answers to the first
validation examples scored by the task's primary metric, and the training batch's answers scored
against their training references.

Example:
    >>> result = evaluate_held_out(policy, task, reward, n_examples=16, max_new_tokens=32)
    >>> sorted(result)[:2]
    ['eval/bleu', 'eval/chrf']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardgym.agents.meters.text_metrics import corpus_scores
from rewardgym.envs.scoring import score_completions
from rewardgym.envs.spaces import Action
from rewardgym.envs.tasks import Example, Task

__all__ = ["batch_quality", "evaluate_held_out"]


def _greedy_on_validation(
    policy, task: Task, n_examples: int, max_new_tokens: int
) -> tuple[list[Example], list[str], Any, Any, float]:
    """Greedy answers to ``task``'s first validation examples: (examples, prompts, generation,
    answers' corpus scores, quality)."""
    examples = list(task.split("validation"))[:n_examples]
    prompts = [ex.prompt for ex in examples]
    gen = policy.generate(prompts, max_new_tokens=max_new_tokens, greedy=True)
    refs, answers = [ex.reference for ex in examples], task.answers(gen.completions)
    scores = corpus_scores(answers, refs)
    meta = [ex.meta for ex in examples]
    return examples, prompts, gen, scores, task.quality(answers, refs, scores, meta)


def evaluate_held_out(
    policy,
    task: Task,
    reward,
    *,
    n_examples: int,
    max_new_tokens: int,
    retention: Task | None = None,
    prefix: str = "eval/",
) -> dict[str, float]:
    """Greedy answers on the first validation examples: the task's primary metric
    (``quality``), BLEU, chrF and the training reward; with a retention task, its primary
    metric and BLEU too (``retention_*``: what the run keeps of a task it does not train on)."""
    examples, prompts, gen, scores, quality = _greedy_on_validation(
        policy, task, n_examples, max_new_tokens
    )
    actions = [
        Action(text=t, n_tokens=n, finished=bool(f))
        for t, n, f in zip(gen.completions, gen.n_tokens, gen.finished)
    ]
    output = score_completions(reward, task, examples, prompts, actions)
    result = {
        f"{prefix}quality": quality,
        f"{prefix}bleu": scores.bleu,
        f"{prefix}chrf": scores.chrf,
        f"{prefix}reward": float(output.total.mean()),
        f"{prefix}completion_length": float(np.mean(gen.n_tokens)),
    }
    if retention is not None:
        *_, kept_scores, kept_quality = _greedy_on_validation(
            policy, retention, n_examples, max_new_tokens
        )
        result[f"{prefix}retention_quality"] = kept_quality
        result[f"{prefix}retention_bleu"] = kept_scores.bleu
    return result


def batch_quality(task: Task, completions: Sequence[str], examples: Sequence[Example]) -> float:
    """The task's primary metric over a training batch's answers against their training
    references (and the examples' meta, for a metric that reads it): a quality signal every
    update that costs no evaluation."""
    answers = task.answers(list(completions))
    refs, meta = [ex.reference for ex in examples], [ex.meta for ex in examples]
    return float(task.quality(answers, refs, corpus_scores(answers, refs), meta))
