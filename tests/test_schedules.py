"""Weight schedules and aggregation modes of composite rewards, by hand and in training."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import small_train_config

from rewardgym.agents import train
from rewardgym.agents.algorithms import (
    component_shares,
    decoupled_advantages,
    group_advantages,
)
from rewardgym.agents.config import TrainConfig
from rewardgym.errors import ConfigError, UnknownNameError
from rewardgym.rewards import make_reward
from rewardgym.rewards.schedules import WeightSchedule


def _schedule(**spec) -> WeightSchedule:
    return WeightSchedule.from_mapping("speed", spec)


def test_each_schedule_kind_against_its_formula() -> None:
    linear = _schedule(schedule="linear", start=0.0, end=0.4)
    assert [linear.value(u, 5) for u in range(5)] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert linear.value(9, 5) == pytest.approx(0.4)  # stays at the end
    cosine = _schedule(schedule="cosine", start=1.0, end=0.0, updates=3)
    assert [cosine.value(u, 100) for u in range(3)] == pytest.approx([1.0, 0.5, 0.0])
    assert cosine.value(1, 100) == pytest.approx((1 + math.cos(math.pi / 2)) / 2)
    step = _schedule(schedule="step", start=0.1, end=0.7, at=2)
    assert [step.value(u, 4) for u in range(4)] == [0.1, 0.1, 0.7, 0.7]
    assert _schedule(schedule="constant", start=0.3).value(7, 10) == 0.3


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ({"schedule": "linear", "start": -0.1}, ConfigError, r"start is -0.1; use a finite"),
        ({"schedule": "linear", "end": float("inf")}, ConfigError, r"end is inf"),
        ({"schedule": "lineer"}, UnknownNameError, r"did you mean 'linear'"),
        ({"schedule": "step", "start": 0.1}, ConfigError, r"a step schedule needs 'at'"),
        ({"schedule": "linear", "ends": 1}, ConfigError, r"'speed' does not accept ends"),
        ({"schedule": "linear", "updates": 0}, ConfigError, r"updates is 0; use an int >= 1"),
    ],
)
def test_bad_schedules(spec, error, match) -> None:
    with pytest.raises(error, match=match):
        make_reward({"composite": {"exact_match": 0.5, "speed": spec}})


def test_a_schedule_and_a_weight_together_is_an_error() -> None:
    spec = {"schedule": "linear", "start": 0.0, "end": 1.0, "weight": 0.5}
    with pytest.raises(ConfigError, match=r"has both a weight and a schedule"):
        make_reward({"composite": {"exact_match": 0.5, "speed": spec}})


def test_a_scheduled_reward_pays_the_weight_of_its_update() -> None:
    reward = make_reward(
        {"composite": {"exact_match": 1.0, "speed": {"schedule": "step", "end": 1.0, "at": 1}}}
    )
    kwargs = {"references": ["7"], "n_tokens": [4], "finished": [True]}
    first = reward.score(["p"], ["7"], **kwargs)
    reward.set_progress(1, 10)
    later = reward.score(["p"], ["7"], **kwargs)
    speed = later.components["speed"][0]
    assert reward.weights == {"exact_match": 1.0, "speed": 1.0}
    assert first.total[0] == pytest.approx(1.0) and later.total[0] == pytest.approx(1.0 + speed)
    assert "step(0→1 at 1)·speed" in reward.formula


def test_training_logs_weights_and_contributions_that_add_up(random_model_dir) -> None:
    reward = {"composite": {"exact_match": 0.5,
                            "speed": {"schedule": "linear", "start": 0.0, "end": 0.4}}}  # fmt: skip
    result = train(small_train_config(random_model_dir, reward=reward, updates=3))
    weights = [m["reward/speed/weight"] for m in result.metrics]
    assert weights == pytest.approx([0.0, 0.2, 0.4])
    for m in result.metrics:
        assert m["reward/exact_match/weight"] == 0.5
        paid = m["reward/exact_match/contribution"] + m["reward/speed/contribution"]
        assert abs(m["reward/mean"] - paid) < 1e-9
        assert m["reward/speed/contribution"] == pytest.approx(
            m["reward/speed/weight"] * m["reward/speed/mean"]
        )
        assert "advantage/speed/mean_abs" in m and "advantage/exact_match/mean_abs" in m


def test_gdpo_normalises_each_component_within_its_group_first() -> None:
    components = {"a": np.array([1.0, 0.0, 2.0, 2.0]), "b": np.array([0.0, 3.0, 1.0, 5.0])}
    weights = {"a": 2.0, "b": 1.0}
    adv, parts = decoupled_advantages(components, weights, group_size=2)
    np.testing.assert_allclose(parts["a"], [2.0, -2.0, 0.0, 0.0])
    np.testing.assert_allclose(parts["b"], [-1.0, 1.0, -1.0, 1.0])
    total = parts["a"] + parts["b"]  # [1, -1, -1, 1]
    np.testing.assert_allclose(adv, (total - total.mean()) / total.std())
    # sum-then-normalise differs: the group with a's spread of 0 is led by b's raw scale
    totals = 2.0 * components["a"] + components["b"]
    shares = component_shares(components, weights, totals, group_size=2)
    np.testing.assert_allclose(shares["a"] + shares["b"], group_advantages(totals, 2))


def test_normalize_then_sum_trains_and_needs_groups(random_model_dir) -> None:
    reward = {"composite": {"exact_match": 0.5, "speed": 0.5}}
    config = small_train_config(random_model_dir, reward=reward, aggregation="normalize_then_sum")
    result = train(config)
    assert all(math.isfinite(m["loss"]) for m in result.metrics)
    assert {"advantage/exact_match/mean_abs", "advantage/speed/mean_abs"} <= set(result.metrics[0])
    with pytest.raises(UnknownNameError, match=r"unknown aggregation 'sum'"):
        TrainConfig(task="translate", aggregation="sum")
    with pytest.raises(ConfigError, match=r"needs group_size >= 2 and a group algorithm"):
        TrainConfig(task="translate", algo="reinforce", group_size=1,
                    aggregation="normalize_then_sum")  # fmt: skip
