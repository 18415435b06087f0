"""Advantages and losses against hand-computed values; the algorithm registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rewardgym.agents.algorithms import (
    RunningBaseline,
    batch_advantages,
    compute_advantages,
    get_algorithm,
    group_advantages,
    list_algorithms,
    register_algorithm,
)
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.losses import clipped_surrogate, kl_k3, sequence_sum
from rewardgym.errors import ConfigError, UnknownNameError


def test_group_advantages_normalise_within_each_group() -> None:
    rewards = np.array([1.0, 0.0, 3.0, 3.0, 0.0, 2.0])
    adv = group_advantages(rewards, group_size=2)
    np.testing.assert_allclose(adv, [1.0, -1.0, 0.0, 0.0, -1.0, 1.0])


def test_batch_advantages_and_constant_rewards() -> None:
    np.testing.assert_allclose(batch_advantages(np.array([1.0, 3.0])), [-1.0, 1.0])
    assert not batch_advantages(np.full(4, 0.7)).any()


def test_running_baseline_uses_first_batch_then_moves() -> None:
    base = RunningBaseline(momentum=0.5)
    np.testing.assert_allclose(base.advantages(np.array([1.0, 3.0])), [-1.0, 1.0])
    assert base.value == 2.0
    np.testing.assert_allclose(base.advantages(np.array([4.0, 4.0])), [2.0, 2.0])
    assert base.value == pytest.approx(3.0)
    assert compute_advantages("reinforce", np.array([5.0]), 1, base).tolist() == [2.0]


def test_surrogate_is_plain_policy_gradient_on_policy_and_clips_off_policy() -> None:
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0]])
    adv = torch.tensor([2.0])
    loss = clipped_surrogate(logp, logp.detach(), adv, mask, clip_eps=0.2).sum()
    loss.backward()
    np.testing.assert_allclose(logp.grad.numpy(), [[-2.0, -2.0]])  # −A·∇log π
    far = clipped_surrogate(
        torch.tensor([[0.0]]), torch.tensor([[-1.0]]), adv, torch.ones(1, 1), 0.2
    )
    assert far.item() == pytest.approx(-1.2 * 2.0)


def test_kl_k3_is_zero_at_equality_and_positive_otherwise() -> None:
    mask = torch.ones(1, 3)
    a = torch.tensor([[-1.0, -2.0, -0.5]])
    assert kl_k3(a, a, mask).abs().max().item() == 0.0
    assert (kl_k3(a, a - 0.3, mask) > 0).all()
    assert sequence_sum(torch.ones(2, 3), max_new_tokens=6).tolist() == [0.5, 0.5]


# -- the registry ------------------------------------------------------------------------------


def test_builtin_algorithms_are_registered_with_their_properties() -> None:
    assert {"reinforce", "grpo", "ppo"} <= set(list_algorithms())
    assert get_algorithm("ppo").reuses_batch and not get_algorithm("grpo").reuses_batch
    rewards = np.array([1.0, 0.0, 3.0, 3.0])
    np.testing.assert_allclose(
        compute_advantages("grpo", rewards, 2, RunningBaseline()), group_advantages(rewards, 2)
    )
    with pytest.raises(UnknownNameError, match=r"unknown algorithm 'grop'; did you mean 'grpo'"):
        get_algorithm("grop")
    with pytest.raises(ConfigError, match=r"grpo normalises advantages within groups: group_"):
        TrainConfig(task="translate", algo="grpo", group_size=1)


def test_a_registered_algorithm_is_selected_by_name(monkeypatch) -> None:
    from rewardgym.agents import algorithms

    monkeypatch.setattr(algorithms, "_REGISTRY", dict(algorithms._REGISTRY))
    spec = register_algorithm(
        "pairs_only", lambda r, g, b: r - r.mean(), min_group_size=4, needs_groups_because="x"
    )
    assert get_algorithm("pairs_only") is spec and "pairs_only" in list_algorithms()
    assert compute_advantages("pairs_only", np.array([1.0, 3.0]), 1, None).tolist() == [-1, 1]
    assert TrainConfig(task="translate", algo="pairs_only", group_size=4).algo == "pairs_only"
    with pytest.raises(ConfigError, match=r"pairs_only x: group_size must be >= 4, got 2"):
        TrainConfig(task="translate", algo="pairs_only", group_size=2)
    with pytest.raises(ConfigError, match=r"'pairs_only' is already registered; pass overwrite"):
        register_algorithm("pairs_only", lambda r, g, b: r)
    with pytest.raises(ConfigError, match=r"must be callable"):
        register_algorithm("broken", 3)


# -- loss variants (TRL's names), against hand computations ------------------------------------


def test_each_loss_type_against_its_formula() -> None:
    from rewardgym.agents.algorithms import LOSS_TYPES
    from rewardgym.agents.losses import aggregate_loss

    terms = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    # micro-batch of 2 of a batch with 8 tokens in 2 micro-batches
    got = {k: aggregate_loss(terms, mask, k, 6, 8, 2).item() for k in LOSS_TYPES}
    assert got["dr_grpo"] == pytest.approx(((1 + 2 + 3) / 6 + 4 / 6) / 2)
    assert got["grpo"] == pytest.approx((6 / 3 + 4 / 1) / 2)  # a short answer weighs more
    assert got["bnpo"] == pytest.approx(10 / 4)
    assert got["dapo"] == pytest.approx(10 * 2 / 8)  # /K in the trainer: 10 / 8 of the batch


def test_clip_higher_widens_only_the_upper_range() -> None:
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.3, 0.7]]))
    mask = torch.ones(1, 2)
    up = clipped_surrogate(new, old, torch.tensor([1.0]), mask, 0.2, clip_eps_high=0.28)
    assert up[0, 0].item() == pytest.approx(-1.28)  # clipped at 1 + ε_high, not 1.2
    down = clipped_surrogate(new, old, torch.tensor([-1.0]), mask, 0.2, clip_eps_high=0.28)
    assert down[0, 1].item() == pytest.approx(0.8)  # the lower range is still 1 − ε
    assert clipped_surrogate(new, old, torch.tensor([1.0]), mask, 0.2)[0, 0].item() == (
        pytest.approx(-1.2)
    )


def test_scale_rewards_divides_by_the_group_the_batch_or_nothing() -> None:
    rewards = np.array([1.0, 0.0, 3.0, 3.0, 0.0, 4.0])
    centred = np.array([0.5, -0.5, 0.0, 0.0, -2.0, 2.0])
    np.testing.assert_allclose(group_advantages(rewards, 2, "none"), centred)
    np.testing.assert_allclose(group_advantages(rewards, 2, "batch"), centred / rewards.std())
    np.testing.assert_allclose(group_advantages(rewards, 2), [1, -1, 0, 0, -1, 1])
    base = RunningBaseline()
    np.testing.assert_allclose(compute_advantages("grpo", rewards, 2, base, "none"), centred)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"loss_type": "dapoo"}, UnknownNameError, r"unknown loss type 'dapoo'; did you mean"),
        ({"epsilon_high": 0.1}, ConfigError, r"epsilon_high 0.1 is below clip_eps 0.2"),
        ({"scale_rewards": "batches"}, UnknownNameError, r"did you mean 'batch'"),
        (
            {"scale_rewards": "none", "algo": "reinforce", "group_size": 1},
            ConfigError,
            r"scale_rewards 'none' changes how group advantages are scaled",
        ),
        ({"mask_truncated_completions": "yes"}, ConfigError, r"must be true or false"),
    ],
)
def test_bad_loss_options(options, error, match) -> None:
    with pytest.raises(error, match=match):
        TrainConfig(task="translate", **options)
