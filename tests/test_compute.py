"""FLOP accounting: hand-computed cases, waste %, persistence, merging, parameter counting."""

from __future__ import annotations

import json

import pytest
import torch

from rewardgym.agents.meters.compute import (
    CATEGORIES,
    WASTE_REASONS,
    FlopCounter,
    count_params,
)
from rewardgym.errors import ConfigError, UnknownNameError

N = 1_000_000


def _one_update() -> FlopCounter:
    """8 samples: 20 prompt + 30 generated positions each (6 of them padding), 2 with zero
    advantage; a reference pass over prompt + completion; one old-policy pass; training."""
    c = FlopCounter(N)
    c.add_forward("generation_prompt", 8 * 20)
    c.add_forward("generation_new", 8 * 30)
    c.add_forward("reference", 8 * 50)
    c.add_forward("old_policy", 8 * 50)
    c.add_train("train", 8 * 50)
    c.add_wasted("padding", c.flops_for(8 * 6, "train"))
    c.add_wasted("zero_advantage", c.flops_for(2 * 44, "train"))
    return c


def test_hand_computed_totals() -> None:
    c = _one_update()
    forward = 2 * N * (160 + 240 + 400 + 400)  # 2.4e9
    train = 6 * N * 400  # 2.4e9
    assert c.total == forward + train == 4.8e9
    assert c.by_category() == {
        "generation_prompt": 2 * N * 160,
        "generation_new": 2 * N * 240,
        "reference": 2 * N * 400,
        "old_policy": 2 * N * 400,
        "train": 6 * N * 400,
        "replay": 0.0,
    }
    assert c.wasted_by_reason() == {
        "padding": 6 * N * 48,
        "zero_advantage": 6 * N * 88,
        "skipped_update": 0.0,
        "rolled_back": 0.0,
    }
    assert c.wasted == 6 * N * 136
    # 816e6 / 4.8e9 = 17 %
    assert c.waste_pct == pytest.approx(17.0, rel=1e-12)
    assert c.tokens("train", "train") == 400 and c.tokens("train", "forward") == 0


def test_skipped_update_counts_whole_update_as_waste() -> None:
    c = FlopCounter(10)
    c.add_forward("generation_new", 100)  # 2 000
    c.add_train("train", 100)  # 6 000
    c.add_wasted("skipped_update", 8_000)
    assert c.waste_pct == 100.0


def test_empty_counter() -> None:
    c = FlopCounter(10)
    assert c.total == 0.0 and c.wasted == 0.0 and c.waste_pct == 0.0
    assert c.flops_per_bleu_point(1.0) == 0.0


def test_flops_per_bleu_point() -> None:
    c = FlopCounter(10)
    c.add_train("train", 50)  # 3 000
    assert c.flops_per_bleu_point(4.0) == 750.0
    assert c.flops_per_bleu == c.flops_per_bleu_point
    for gain in (0.0, -1.5, float("nan")):
        assert c.flops_per_bleu_point(gain) is None


def test_snapshot_is_flat_json() -> None:
    snap = _one_update().snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["flops_total"] == 4.8e9 and snap["waste_pct"] == pytest.approx(17.0)
    assert {f"flops/{c}" for c in CATEGORIES} <= snap.keys()
    assert {f"flops_wasted/{r}" for r in WASTE_REASONS} <= snap.keys()


def test_state_dict_json_round_trip() -> None:
    c = _one_update()
    state = json.loads(json.dumps(c.state_dict()))
    restored = FlopCounter.from_state_dict(state)
    assert restored == c
    assert restored.snapshot() == c.snapshot()
    # resuming continues counting from the restored figures
    restored.add_forward("generation_new", 1)
    assert restored.total == c.total + 2 * N


def test_load_state_dict_rejects_other_model() -> None:
    with pytest.raises(ConfigError, match=r"has n_params=1000000 but this counter has 5"):
        FlopCounter(5).load_state_dict(_one_update().state_dict())
    with pytest.raises(ConfigError, match=r"state version 99 is not 1"):
        FlopCounter(N).load_state_dict({**_one_update().state_dict(), "version": 99})


def test_merge_and_add() -> None:
    a, b = _one_update(), _one_update()
    b.add_train("replay", 10)
    merged = a + b
    assert merged.total == a.total + b.total
    assert merged.wasted == a.wasted + b.wasted
    assert merged.by_category()["replay"] == 6 * N * 10
    assert a == _one_update()  # operands untouched
    with pytest.raises(ConfigError, match=r"different models \(n_params 1000000 and 7\)"):
        a.merge(FlopCounter(7))


def test_bad_inputs_are_named() -> None:
    c = FlopCounter(10)
    with pytest.raises(UnknownNameError, match=r"unknown FLOP category 'trian'; did you mean"):
        c.add_train("trian", 1)
    with pytest.raises(UnknownNameError, match=r"unknown waste reason 'pad'; did you mean"):
        c.add_wasted("pad", 1.0)
    with pytest.raises(UnknownNameError, match=r"unknown FLOP kind 'backward'"):
        c.add("train", 1, kind="backward")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"token count must be a non-negative int, got -1"):
        c.add_forward("reference", -1)
    with pytest.raises(ConfigError, match=r"token count must be a non-negative int, got 2.5"):
        c.add_forward("reference", 2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"must be finite and >= 0, got inf"):
        c.add_wasted("padding", float("inf"))
    with pytest.raises(ConfigError, match=r"n_params must be a positive int, got 0"):
        FlopCounter(0)


def test_count_params_counts_tied_embedding_once() -> None:
    class TinyLM(torch.nn.Module):
        def __init__(self, tie: bool) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(100, 16)
            self.body = torch.nn.Linear(16, 16)  # 256 + 16
            self.head = torch.nn.Linear(16, 100, bias=False)
            self.register_buffer("mask", torch.ones(5))  # buffers are not parameters
            if tie:
                self.head.weight = self.embed.weight

    assert count_params(TinyLM(tie=False)) == 1600 + 272 + 1600
    assert count_params(TinyLM(tie=True)) == 1600 + 272


def test_count_params_dedupes_parameters_sharing_memory() -> None:
    base = torch.nn.Linear(4, 4, bias=False)
    other = torch.nn.Linear(4, 4, bias=False)
    other.weight = torch.nn.Parameter(base.weight.data)  # distinct Parameter, same storage
    assert count_params(torch.nn.ModuleList([base, other])) == 16
