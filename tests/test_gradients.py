"""Gradient noise: direct formula, running-sum accumulator, closed-form expectation, properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardgym.agents.meters.gradients import (
    GradNoiseAccumulator,
    GradStats,
    gradient_noise,
    normalised_variance,
)
from rewardgym.errors import ConfigError


def _rel_close(a: float, b: float, rel: float = 1e-5) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def test_hand_computed_example() -> None:
    grads = [torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0]), torch.tensor([2.0, 3.0])]
    # mean = (2, 1): ‖ḡ‖² = 5; deviations (-1,-1), (1,-1), (0,2): Σ‖·‖² = 2 + 2 + 4 = 8
    stats = gradient_noise(grads)
    assert stats == GradStats(k=3, mean_sq_norm=5.0, sigma2=4.0, nu=0.8)


def test_rejects_fewer_than_two_gradients() -> None:
    with pytest.raises(ConfigError, match=r"at least 2 micro-batch gradients, got K=1"):
        gradient_noise([torch.ones(3)])


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ConfigError, match=r"gradient 1 has shape \(4,\), but gradient 0 has"):
        gradient_noise([torch.ones(3), torch.ones(4)])


def test_zero_mean_gradient_conventions() -> None:
    assert normalised_variance(0.0, 0.0) == 0.0
    assert normalised_variance(1.0, 0.0) == math.inf
    assert gradient_noise([torch.ones(2), -torch.ones(2)]).nu == math.inf
    assert gradient_noise([torch.zeros(2), torch.zeros(2)]).nu == 0.0


def test_non_finite_gradients_give_nan() -> None:
    stats = gradient_noise([torch.tensor([math.nan]), torch.zeros(1)])
    assert math.isnan(stats.sigma2) and math.isnan(stats.nu)


@pytest.mark.parametrize("k", [2, 4, 7])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (1000,)])
@pytest.mark.parametrize("scale", [1.0, "1/k", 3.5])
def test_accumulator_matches_direct_computation(k: int, shape: tuple, scale) -> None:
    gen = torch.Generator().manual_seed(k * 31 + len(shape))
    grads = [torch.randn(shape, generator=gen) + 0.5 for _ in range(k)]
    s = 1.0 / k if scale == "1/k" else scale
    acc = GradNoiseAccumulator(scale=s)
    for g in grads:
        acc.observe_flat(s * g)
    got, want = acc.finish(), gradient_noise(grads)
    assert got.k == want.k == k
    assert _rel_close(got.mean_sq_norm, want.mean_sq_norm)
    assert _rel_close(got.sigma2, want.sigma2)
    assert _rel_close(got.nu, want.nu)


def test_observe_params_during_gradient_accumulation_matches_direct() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    k, x, y = 4, torch.randn(32, 6), torch.randn(32, 1)
    micro = list(zip(x.chunk(k), y.chunk(k), strict=True))

    direct = []
    for xb, yb in micro:
        model.zero_grad()
        torch.nn.functional.mse_loss(model(xb), yb).backward()
        direct.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone())

    model.zero_grad(set_to_none=True)
    acc = GradNoiseAccumulator(scale=1.0 / k)
    for xb, yb in micro:
        (torch.nn.functional.mse_loss(model(xb), yb) / k).backward()
        acc.observe(model.parameters())
    got, want = acc.finish(), gradient_noise(direct)
    assert _rel_close(got.mean_sq_norm, want.mean_sq_norm)
    assert _rel_close(got.sigma2, want.sigma2)
    assert _rel_close(got.nu, want.nu)
    # the accumulated gradient the optimizer sees is untouched: mean of the micro gradients
    total = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(total, torch.stack(direct).mean(0), rtol=1e-5, atol=1e-7)


def test_accumulator_reuses_buffer_across_updates_and_resets() -> None:
    acc = GradNoiseAccumulator()
    acc.add(torch.tensor([1.0, 0.0]))
    acc.add(torch.tensor([3.0, 0.0]))
    first = acc.finish()
    assert acc.k == 0
    acc.add(torch.tensor([1.0, 0.0]))
    acc.add(torch.tensor([3.0, 0.0]))
    assert acc.finish() == first == GradStats(2, 4.0, 2.0, 0.5)


def test_accumulator_errors() -> None:
    with pytest.raises(ConfigError, match=r"scale must be a finite non-zero number, got 0.0"):
        GradNoiseAccumulator(scale=0.0)
    acc = GradNoiseAccumulator()
    acc.observe_flat(torch.ones(3))
    with pytest.raises(ConfigError, match=r"at least 2 micro-batch gradients, got K=1"):
        acc.finish()
    with pytest.raises(ConfigError, match=r"micro-batch 1 has 4 gradient values but earlier"):
        acc.observe_flat(torch.ones(4))


def test_scale_invariance_of_nu() -> None:
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(50, generator=gen, dtype=torch.float64) + 0.2 for _ in range(5)]
    base = gradient_noise(grads)
    for c in (1e-3, 2.0, -7.0, 1e4):
        scaled = gradient_noise([c * g for g in grads])
        assert _rel_close(scaled.nu, base.nu, 1e-9)
        assert _rel_close(scaled.sigma2, c * c * base.sigma2, 1e-9)


def test_expected_sigma2_matches_closed_form_for_linear_regression() -> None:
    """y = w·x + ε, x ~ N(0, I_d), ε ~ N(0, s²), loss ½(w'·x − y)², δ = w' − w.

    The per-sample gradient (δ·x − ε) x has mean δ and covariance (‖δ‖² + s²) I + δδᵀ (Isserlis),
    so a micro-batch of B samples has covariance trace (d(‖δ‖² + s²) + ‖δ‖²) / B and σ² is an
    unbiased estimator of it: E[σ²] = that trace, E[ḡ] = δ.
    """
    d, k, b, draws, s = 5, 4, 8, 3000, 0.7
    gen = torch.Generator().manual_seed(0)
    w_true = torch.randn(d, generator=gen, dtype=torch.float64)
    delta = torch.tensor([0.5, -0.3, 0.2, 0.0, 0.4], dtype=torch.float64)
    # one independent copy of w' per draw, so one backward per micro-batch serves all draws
    w = torch.nn.Parameter((w_true + delta).expand(draws, d).clone())
    x = torch.randn(draws, k, b, d, generator=gen, dtype=torch.float64)
    y = torch.einsum("nkbd,d->nkb", x, w_true) + s * torch.randn(draws, k, b, generator=gen)

    micro_grads = []
    for j in range(k):
        pred = torch.einsum("nbd,nd->nb", x[:, j], w)
        loss = 0.5 * (pred - y[:, j]).pow(2).mean(dim=1).sum()
        (grad,) = torch.autograd.grad(loss, w)
        micro_grads.append(grad)
    sigma2 = [gradient_noise([g[n] for g in micro_grads]).sigma2 for n in range(draws)]
    mean_sigma2 = sum(sigma2) / draws

    dd = float(delta.dot(delta))
    expected = (d * (dd + s * s) + dd) / b
    assert abs(mean_sigma2 - expected) / expected < 0.05
    mean_grad = torch.stack(micro_grads).mean(dim=(0, 1))
    torch.testing.assert_close(mean_grad, delta, atol=0.03, rtol=0)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=2, max_value=6).flatmap(
        lambda k: st.integers(min_value=1, max_value=8).flatmap(
            lambda n: st.lists(st.lists(finite, min_size=n, max_size=n), min_size=k, max_size=k)
        )
    )
)
def test_sigma2_and_nu_are_non_negative(rows: list[list[float]]) -> None:
    grads = [torch.tensor(r, dtype=torch.float64) for r in rows]
    direct = gradient_noise(grads)
    assert direct.sigma2 >= 0.0 and direct.nu >= 0.0 and direct.mean_sq_norm >= 0.0
    acc = GradNoiseAccumulator()
    for g in grads:
        acc.observe_flat(g)
    running = acc.finish()
    assert running.sigma2 >= 0.0 and running.nu >= 0.0
