"""The trainer on a tiny random model: every algorithm trains, runs are reproducible and
resumable, faults are skipped, callbacks can stop a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import small_train_config

from rewardgym.agents import train
from rewardgym.agents.callbacks import Callback
from rewardgym.agents.checkpoint import latest_checkpoint
from rewardgym.agents.runlog import read_metrics
from rewardgym.errors import ConfigError
from rewardgym.rewards import register_reward

TIMING = ("time/", "generation_s")


def _untimed(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if not k.startswith(TIMING)} for m in metrics]


@pytest.mark.parametrize("algo", ["reinforce", "grpo", "ppo"])
def test_each_algorithm_changes_every_parameter(random_model_dir, algo) -> None:
    from rewardgym.agents.registry import load_policy

    before = {k: v.clone() for k, v in load_policy(random_model_dir).model.state_dict().items()}
    result = train(small_train_config(random_model_dir, algo=algo, kl_coef=0.05, entropy_coef=0.01))
    after = result.policy.model.state_dict()
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in result.metrics)
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert unchanged == []
    last = result.metrics[-1]
    for key in (
        "reward/mean",
        "reward/speed/mean",
        "entropy_bits",
        "kl",
        "grad_norm",
        "grad/nu",
        "lr",
        "tokens_generated",
        "completion_length/mean",
        "finished/share",
        "flops/total",
        "compute_waste_pct",
        "time/update_s",
    ):
        assert key in last, key


def test_same_seed_gives_identical_metrics(random_model_dir) -> None:
    first = train(small_train_config(random_model_dir, updates=3, seed=5))
    second = train(small_train_config(random_model_dir, updates=3, seed=5))
    assert _untimed(first.metrics) == _untimed(second.metrics)
    other = train(small_train_config(random_model_dir, updates=3, seed=6))
    assert _untimed(other.metrics) != _untimed(first.metrics)


def test_resume_equals_an_uninterrupted_run(random_model_dir, tmp_path) -> None:
    full = train(small_train_config(random_model_dir, updates=4, out=str(tmp_path / "full")))
    train(small_train_config(random_model_dir, updates=2, out=str(tmp_path / "split")))
    # a torn checkpoint (no COMPLETE marker) must be ignored on resume
    (tmp_path / "split" / "checkpoints" / "step-000099").mkdir()
    resumed = train(
        small_train_config(random_model_dir, updates=4, out=str(tmp_path / "split")), resume=True
    )

    for key, value in full.policy.model.state_dict().items():
        torch.testing.assert_close(resumed.policy.model.state_dict()[key], value, rtol=0, atol=0)
    assert _untimed(resumed.metrics) == _untimed(full.metrics)
    assert [m["update"] for m in read_metrics(tmp_path / "split" / "metrics.jsonl")] == [0, 1, 2, 3]
    assert latest_checkpoint(tmp_path / "split").name == "step-000004"
    full_opt = torch.load(latest_checkpoint(tmp_path / "full") / "optimizer.pt", weights_only=True)
    split_opt = torch.load(
        latest_checkpoint(tmp_path / "split") / "optimizer.pt", weights_only=True
    )
    for a, b in zip(
        full_opt["optimizer"]["state"].values(), split_opt["optimizer"]["state"].values()
    ):
        torch.testing.assert_close(a["exp_avg"], b["exp_avg"], rtol=0, atol=0)


def test_run_directory_is_complete(random_model_dir, tmp_path) -> None:
    out = tmp_path / "run"
    train(small_train_config(random_model_dir, updates=2, eval_every=1, out=str(out)))
    assert json.loads((out / "config.json").read_text())["updates"] == 2
    summary = json.loads((out / "run.json").read_text())
    assert summary["updates_done"] == 2 and "final/bleu" in summary["final_eval"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    first = read_metrics(out / "metrics.jsonl")[0]
    assert "eval/bleu" in first and first["eval/quality"] == first["eval/bleu"]  # translate: BLEU
    with pytest.raises(ConfigError, match="already holds a run; pass resume=True"):
        train(small_train_config(random_model_dir, updates=2, out=str(out)))
    with pytest.raises(ConfigError, match=r"different config: \['lr'\]"):
        train(
            small_train_config(random_model_dir, updates=3, lr=0.5, eval_every=1, out=str(out)),
            resume=True,
        )


@register_reward("_test_overflowing")
def _overflowing(prompts, completions, **kwargs):
    return [1e308 if i % 2 else -1e308 for i in range(len(completions))]


def test_non_finite_updates_are_skipped_then_rolled_back(random_model_dir, tmp_path) -> None:
    result = train(
        small_train_config(
            random_model_dir,
            algo="reinforce",
            reward="_test_overflowing",
            updates=3,
            max_faults=2,
            checkpoint_every=1,
            out=str(tmp_path / "run"),
        ),
    )
    actions = [m["step_action"] for m in result.metrics]
    assert actions == ["skip", "rollback", "skip"]
    assert result.metrics[-1]["skipped_updates"] == 3
    assert result.metrics[-1]["flops/wasted"] > 0
    alerts = [a for m in result.metrics for a in m.get("alerts", [])]
    assert [a["monitor"] for a in alerts] == ["numerical_fault"] * 3


class StopAfter(Callback):
    def __init__(self, n: int) -> None:
        self.n, self.seen = n, []

    def on_update_end(self, ctx, metrics):
        self.seen.append(metrics["update"])
        return len(self.seen) < self.n


def test_a_callback_can_stop_training(random_model_dir, tmp_path) -> None:
    stopper = StopAfter(2)
    result = train(
        small_train_config(random_model_dir, updates=10, out=str(tmp_path / "run")),
        callbacks=[stopper],
    )
    assert result.stopped_early and result.updates_done == 2 and stopper.seen == [0, 1]
    assert latest_checkpoint(tmp_path / "run").name == "step-000002"


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_nucleus_sampled_rollouts_are_rescored_under_the_nucleus(random_model_dir, algo) -> None:
    """With top_p < 1 the rollout's log-probs are nucleus-renormalised; the trainer's must be
    too, or the first epoch's ratio starts below 1 and the clip silences negative advantages."""
    result = train(
        small_train_config(random_model_dir, algo=algo, top_p=0.8, temperature=1.0, updates=3)
    )
    for record in result.metrics:
        assert record["ppo/ratio_first_epoch"] < 1e-4
        assert 0.0 <= record["ppo/clip_fraction"] <= 1.0
    if algo == "grpo":  # one epoch on fresh samples: nothing to clip
        assert all(r["ppo/clip_fraction"] == 0.0 for r in result.metrics)


def test_the_trainer_takes_advantages_from_the_registered_algorithm(
    random_model_dir, monkeypatch
) -> None:
    """An algorithm that pays nothing leaves every weight as it was: the trainer reads the
    registry."""
    from rewardgym.agents import algorithms
    from rewardgym.agents.registry import load_policy

    monkeypatch.setattr(algorithms, "_REGISTRY", dict(algorithms._REGISTRY))
    algorithms.register_algorithm("no_signal", lambda r, g, b: np.zeros_like(r))
    before = load_policy(random_model_dir).model.state_dict()
    result = train(small_train_config(random_model_dir, algo="no_signal", updates=1))
    after = result.policy.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert result.metrics[-1]["zero_advantage/share"] == 1.0


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "bnpo"])
def test_every_loss_type_trains(random_model_dir, loss_type) -> None:
    result = train(
        small_train_config(
            random_model_dir, loss_type=loss_type, epsilon_high=0.28, scale_rewards="batch"
        )
    )
    assert all(np.isfinite(m["loss"]) for m in result.metrics)


def test_masked_truncated_completions_teach_nothing(random_model_dir, monkeypatch) -> None:
    """With every completion cut off at max_new_tokens, masking them leaves no loss at all."""
    import dataclasses

    from rewardgym.agents.policy import LMPolicy
    from rewardgym.agents.registry import load_policy

    generate = LMPolicy.generate

    def cut_off(self, *args, **kwargs):  # every completion hit the limit, on any CPU
        gen = generate(self, *args, **kwargs)
        return dataclasses.replace(gen, finished=[False] * len(gen.finished))

    monkeypatch.setattr(LMPolicy, "generate", cut_off)
    before = load_policy(random_model_dir).model.state_dict()
    config = small_train_config(random_model_dir, mask_truncated_completions=True, updates=1)
    result = train(config)
    assert result.metrics[0]["finished/share"] == 0.0
    after = result.policy.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
