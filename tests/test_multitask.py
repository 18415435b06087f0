"""The multi-task warm start: the tiny model trained on two tasks at once scores on both.

Thresholds are derived in the test, never pinned: on each task the two-task model must beat the
model warm-started on the *other* task alone (which never saw this one) by a clear margin, and
reach at least half of what the model warm-started on this task alone reaches, with the same
optimizer steps per task and the same seed."""

from __future__ import annotations

import pytest

from rewardgym.agents.meters.text_metrics import corpus_scores
from rewardgym.agents.tiny import load_tiny
from rewardgym.envs.tasks import make_task

pytestmark = pytest.mark.slow

TASKS = ("translate", "arithmetic")
STEPS = 800  # the default warm start's steps per task (translate alone is cached by the suite)
N_EXAMPLES = 48


def _quality(policy, task_name: str) -> float:
    task = make_task(task_name)
    examples = task.split("validation")[:N_EXAMPLES]
    gen = policy.generate([ex.prompt for ex in examples], max_new_tokens=24, greedy=True)
    answers, refs = task.answers(gen.completions), [ex.reference for ex in examples]
    return task.quality(answers, refs, corpus_scores(answers, refs))


@pytest.fixture(scope="module")
def models():
    """Cached under the suite's $REWARDGYM_CACHE, so a checkout trains them once."""
    both = load_tiny(TASKS, device="cpu", steps=STEPS * len(TASKS))  # the same steps per task
    alone = {t: load_tiny(t, device="cpu", steps=STEPS) for t in TASKS}
    return both, alone


@pytest.mark.parametrize("task", TASKS)
def test_the_two_task_warm_start_scores_on_each_task(models, task: str) -> None:
    both, alone = models
    other = next(t for t in TASKS if t != task)
    mine, own, foreign = _quality(both, task), _quality(alone[task], task), _quality(
        alone[other], task)  # fmt: skip
    assert own > foreign  # the task is learnable at this budget, and not by the other task
    assert mine >= foreign + 0.5 * (own - foreign), (mine, own, foreign)
    assert both.info["train_log"]["key"]["tasks"] == list(TASKS)
