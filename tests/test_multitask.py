"""The multi-task warm start: the tiny model trained on two tasks at once trains on both tasks'
examples, measures itself on each, and is cached under its own key.

These test the mechanism on a few-step model. How well a two-task warm start scores on each
task against single-task ones is what training achieves on a given CPU: ``benchmarks/learning.py``
measures it.
"""

from __future__ import annotations

import pytest
from conftest import SMALL_TINY

from rewardgym.agents import tiny
from rewardgym.agents.tiny import TinyConfig, load_tiny, tiny_cache_dir
from rewardgym.envs.tasks import make_task

TASKS = ("translate", "arithmetic")


@pytest.fixture(scope="module")
def two_task(tmp_path_factory: pytest.TempPathFactory):
    """The two-task warm start on the small config, and the demonstrations it trained on."""
    root = tmp_path_factory.mktemp("cache")
    seen = []
    real = tiny.train_sft

    def recording(policy, demos, *args, **kwargs):
        seen.append(list(demos))
        return real(policy, demos, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiny, "train_sft", recording)
        policy = load_tiny(TASKS, cache_dir=root, device="cpu", **SMALL_TINY)
    return root, policy, seen


def test_it_trains_on_the_union_of_both_train_splits(two_task) -> None:
    _, _, seen = two_task
    (demos,) = seen
    expected = [ex for name in TASKS for ex in make_task(name).split("train")]
    assert [(d.prompt, d.reference) for d in demos] == [(e.prompt, e.reference) for e in expected]


def test_it_measures_itself_on_each_task(two_task) -> None:
    _, policy, _ = two_task
    log = policy.info["train_log"]
    assert set(log["bleu"]) == set(TASKS)
    assert log["key"]["tasks"] == list(TASKS)


def test_its_cache_key_differs_from_each_single_task_warm_start(two_task) -> None:
    root, policy, _ = two_task
    config = TinyConfig.from_overrides(**SMALL_TINY)
    assert policy.info["cache_dir"] == str(tiny_cache_dir(config, TASKS, cache_dir=root))
    singles = {str(tiny_cache_dir(config, (name,), cache_dir=root)) for name in TASKS}
    assert policy.info["cache_dir"] not in singles
    again = load_tiny(TASKS, cache_dir=root, device="cpu", **SMALL_TINY)
    assert again.info["cached"] is True
