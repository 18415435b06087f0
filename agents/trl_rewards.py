"""A rewardgym reward as TRL reward functions that also keep every training sample.

TRL's ``GRPOTrainer`` calls each of its ``reward_funcs`` on the same generation batch. Here the
first call scores the batch once through the task's environment scoring
(:func:`~rewardgym.envs.scoring.score_completions`, exactly what rewardgym's own trainer pays),
each function returns its component's column, and the batch waits in
:attr:`BatchScorer.pending` until the run's callback writes it to ``samples.jsonl``.

Example:
    >>> scorer = BatchScorer(task, make_reward("balanced"), eos_ids={2})
    >>> funcs, weights = scorer.reward_funcs(), scorer.reward_weights()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rewardgym.envs.scoring import score_completions
from rewardgym.envs.spaces import Action
from rewardgym.envs.tasks import Task
from rewardgym.errors import ConfigError, RunDataError
from rewardgym.rewards import Reward

__all__ = ["BatchScorer", "ScoredBatch", "completion_text"]


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversation whose last turn is the answer."""
    if isinstance(completion, str):
        return completion.strip()
    return str(completion[-1]["content"]).strip()


class ScoredBatch:
    """One generation batch as rewardgym scored it: what ``samples.jsonl`` keeps of it."""

    def __init__(self, step: int, index, completions, n_tokens, finished, output) -> None:
        self.step = step
        self.index = [int(i) for i in index]
        self.completions = list(completions)
        self.n_tokens = [int(n) for n in n_tokens]
        self.finished = [bool(f) for f in finished]
        self.total = np.asarray(output.total, dtype=np.float64)
        self.components = {k: np.asarray(v, dtype=np.float64) for k, v in output.components.items()}


class BatchScorer:
    """Scores each TRL generation batch once and hands TRL one function per reward component.

    Args:
        task: the task whose train split the dataset's ``index`` column points into.
        reward: the reward; its weights must be fixed (TRL's ``reward_weights`` are).
        eos_ids: token ids that end a completion (a completion ending in one finished).

    Raises:
        ConfigError: a component's weight follows a schedule.
    """

    def __init__(self, task: Task, reward: Reward, eos_ids: set[int]) -> None:
        scheduled = [t.name for t in reward.terms if t.schedule is not None]
        if scheduled:
            raise ConfigError(
                f"components {scheduled} of reward {reward.name!r} follow a weight schedule; "
                "TRL's reward_weights are fixed, so give them a number (or use backend: native)"
            )
        self.task, self.reward, self.eos_ids = task, reward, set(eos_ids)
        self.train_examples = task.split("train")
        self._key: tuple[int, int] | None = None
        self._held: Any = None  # the scored completions list: its id stays unique while held
        self.pending: list[ScoredBatch] = []

    @property
    def names(self) -> list[str]:
        return [term.name for term in self.reward.terms]

    def reward_weights(self) -> list[float]:
        """TRL's ``reward_weights``, in the order of :meth:`reward_funcs`."""
        return [float(term.weight) for term in self.reward.terms]

    def reward_funcs(self) -> list[Callable[..., list[float | None]]]:
        """One function per component, named after it (TRL logs ``rewards/<name>``)."""
        return [self._component(name) for name in self.names]

    def _component(self, name: str) -> Callable[..., list[float | None]]:
        def reward_func(prompts, completions, completion_ids=None, **columns) -> list:
            batch = self.score(completions, completion_ids, columns)
            return [None if np.isnan(v) else float(v) for v in batch.components[name]]

        reward_func.__name__ = name
        return reward_func

    def score(self, completions: Sequence[Any], completion_ids, columns: dict) -> ScoredBatch:
        """The batch's scores, computed on the first component's call and reused by the rest."""
        state = columns.get("trainer_state")
        step = int(getattr(state, "global_step", 0))
        key = (step, id(completions))
        if key == self._key and self.pending:
            return self.pending[-1]
        index = columns.get("index")
        if index is None or completion_ids is None:
            raise RunDataError(
                "the TRL dataset has no 'index' column, so rewardgym cannot find each "
                "prompt's example and reference; pass train_dataset=kit.train_dataset()"
            )
        batch = self._score(step, list(index), completions, completion_ids)
        self._key, self._held = key, completions
        self.pending.append(batch)
        return batch

    def _score(self, step: int, index: list[int], completions, completion_ids) -> ScoredBatch:
        examples = [self.train_examples[i] for i in index]
        texts = [completion_text(c) for c in completions]
        finished = [bool(ids) and int(ids[-1]) in self.eos_ids for ids in completion_ids]
        actions = [
            Action(text=t, n_tokens=len(ids), finished=done, completion_ids=tuple(ids))
            for t, ids, done in zip(texts, completion_ids, finished)
        ]
        prompts = [ex.prompt for ex in examples]
        output = score_completions(self.reward, self.task, examples, prompts, actions)
        n_tokens = [len(ids) for ids in completion_ids]
        return ScoredBatch(step, index, texts, n_tokens, finished, output)

    def take(self) -> list[ScoredBatch]:
        """The batches scored since the last call (the callback writes them)."""
        batches, self.pending = self.pending, []
        self._key = self._held = None
        return batches
