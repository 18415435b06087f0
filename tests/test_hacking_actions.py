"""Detector actions that prevent, not just log: the sample-quality detector rolling back restores
the checkpoint its evidence vouches for, and pausing stops the run with a checkpoint.

These test the mechanism, not what training happens to achieve: the sample quality the detector
reads is scripted (a callback ahead of the detector sets it), so every expectation follows from
the script. Whether rollback keeps a hacking run's held-out quality is a measured result of
``benchmarks/hacking.py`` (its action table), which depends on the CPU that trained.
"""

from __future__ import annotations

import torch
from conftest import small_train_config, weights_after_each_update
from safetensors.torch import load_file

from rewardgym.agents.callbacks import Callback
from rewardgym.agents.checkpoint import checkpoint_step, latest_checkpoint
from rewardgym.agents.trainer import train
from rewardgym.evaluation.monitors import SampleQualityDropMonitor

# Quality holds for three updates, then halves: with the detector's defaults (baseline = the
# first 2 updates, a window of 3, alert above a 20 % fall) the window [1, 0.5, 0.5] at update 4
# is the first to fall far enough (33 %; [1, 1, 0.5] at update 3 is a 17 % fall).
QUALITY = [1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 1.0]
ALERT = 4  # the update whose end raises the first alert
VOUCHED = 1  # the last baseline update: the detector vouches for the weights entering it


class _ScriptedQuality(Callback):
    """Sets each update's ``sample/quality`` from the script before the detector reads it."""

    def on_update_end(self, ctx, metrics):
        metrics["sample/quality"] = QUALITY[metrics["update"]]


def _run(model_dir: str, tmp_path, action: str, weights=None):
    config = small_train_config(
        model_dir,
        updates=len(QUALITY),
        checkpoint_every=1,
        keep_checkpoints=len(QUALITY) + 1,
        out=str(tmp_path / action),
    )
    callbacks = [_ScriptedQuality(), SampleQualityDropMonitor(action=action)]
    return train(config, callbacks=callbacks + ([weights] if weights else []))


def _alerts(result) -> list[dict]:
    return [a for m in result.metrics for a in m.get("alerts", [])]


def test_rollback_restores_the_checkpoint_the_alert_vouches_for(random_model_dir, tmp_path):
    weights = weights_after_each_update()
    result = _run(random_model_dir, tmp_path, "rollback", weights)

    first = _alerts(result)[0]
    assert first["monitor"] == "sample_quality_drop" and first["update"] == ALERT
    assert first["since"] == VOUCHED and first["action"] == "rollback"
    actions = [m["step_action"] for m in result.metrics]
    assert actions[: ALERT + 1] == ["step"] * (ALERT + 1)
    assert actions[ALERT + 1] == "rollback"  # the update after the alert, instead of its step
    # checkpoint step-VOUCHED holds the weights entering update VOUCHED; after the rollback
    # the model holds exactly them, and before it it did not
    checkpoint = tmp_path / "rollback" / "checkpoints" / f"step-{VOUCHED:06d}"
    saved = load_file(str(checkpoint / "model.safetensors"))
    restored, before = weights.after[ALERT + 1], weights.after[ALERT]
    for name, value in saved.items():
        torch.testing.assert_close(restored[name], value, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(before[name], value) for name, value in saved.items())
    assert result.metrics[-1]["rollbacks"] == actions.count("rollback")
    # the useful compute of the updates undone (VOUCHED to ALERT) is waste now
    useful = [m["flops/total"] - m["flops/wasted"] for m in result.metrics]
    wasted_now = result.metrics[ALERT + 1]["flops/wasted"] - result.metrics[ALERT]["flops/wasted"]
    assert wasted_now >= useful[ALERT] - useful[VOUCHED - 1] > 0


def test_the_same_run_logging_only_never_rolls_back(random_model_dir, tmp_path):
    result = _run(random_model_dir, tmp_path, "log")
    assert _alerts(result)[0]["update"] == ALERT  # the same evidence, the same alert
    assert {m["step_action"] for m in result.metrics} == {"step"}
    assert result.metrics[-1]["rollbacks"] == 0 and result.updates_done == len(QUALITY)


def test_pause_stops_the_run_with_a_checkpoint(random_model_dir, tmp_path) -> None:
    paused = _run(random_model_dir, tmp_path, "pause")
    assert paused.stopped_early and paused.updates_done == ALERT + 1
    alert = _alerts(paused)[0]
    checkpoint = latest_checkpoint(tmp_path / "pause")
    assert checkpoint_step(checkpoint) == paused.updates_done == alert["update"] + 1
