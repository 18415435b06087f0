"""A run whose loss or gradient stays non-finite stops with TrainingDivergedError instead of
skipping (and rolling back) forever and ending as if it had trained.

The fault is one a user can cause: a reward that returns values so large (1e308) that the
advantages overflow, so the loss and the gradient are not finite.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import small_train_config
from safetensors.torch import load_file

from rewardgym import cli
from rewardgym.agents import train
from rewardgym.agents.callbacks import Callback
from rewardgym.agents.registry import load_policy
from rewardgym.agents.runlog import read_metrics
from rewardgym.errors import RewardGymError, TrainingDivergedError
from rewardgym.rewards import register_reward

HUGE = 1e308
# what numpy says while it computes advantages and correlations of such rewards
NUMPY_OVERFLOW = pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning"
)
_CALLS = {"n": 0, "huge": frozenset(), "constant_first": False}


@register_reward("_nonfinite_scheduled")
def _scheduled(prompts, completions, **kwargs):
    """Shorter is better; on the calls (one per update) in ``_CALLS['huge']`` the samples get
    ±1e308 instead. With ``constant_first`` the first call pays every sample 1.0: its
    advantages are all 0, so that update steps and leaves the weights as they were."""
    call = _CALLS["n"]
    _CALLS["n"] += 1
    if call in _CALLS["huge"]:
        return [HUGE if i % 2 else -HUGE for i in range(len(completions))]
    if call == 0 and _CALLS["constant_first"]:
        return [1.0] * len(completions)
    return [1.0 / (1.0 + len(c)) for c in completions]


def _schedule(huge, constant_first: bool = False) -> None:
    _CALLS.update(n=0, huge=frozenset(huge), constant_first=constant_first)


def _config(model_dir: str, **options):
    """REINFORCE with one sample per prompt (advantages ``r - baseline``: a huge reward
    overflows them), a checkpoint every update, all kept."""
    base = dict(
        algo="reinforce",
        group_size=1,
        reward="_nonfinite_scheduled",
        updates=10,
        checkpoint_every=1,
        keep_checkpoints=20,
        tensorboard=False,
    )
    return small_train_config(model_dir, **{**base, **options})


class _WeightsAtEnd(Callback):
    def __init__(self) -> None:
        self.weights = None

    def on_train_end(self, ctx):
        self.weights = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}


@NUMPY_OVERFLOW
def test_a_run_that_stays_non_finite_stops_with_a_clear_error(random_model_dir, tmp_path) -> None:
    _schedule(huge=range(1, 100), constant_first=True)
    out = tmp_path / "run"
    at_end = _WeightsAtEnd()
    with pytest.raises(TrainingDivergedError) as caught:
        train(_config(random_model_dir, out=str(out)), callbacks=[at_end])
    message = str(caught.value)
    assert isinstance(caught.value, RewardGymError)
    # max_faults (3) rolled back once on the way; the streak went on through the rollback
    actions = [r["step_action"] for r in read_metrics(out / "metrics.jsonl")]
    assert actions == ["step", "skip", "skip", "rollback", "skip", "skip"]
    assert "5 updates in a row had a non-finite loss or gradient" in message
    assert "max_nonfinite_updates=5, after 1 rollback(s)" in message
    for update in range(1, 6):
        assert f"update {update}: non-finite loss and gradient (loss " in message
    assert "gradient norm nan" in message or "gradient norm inf" in message
    assert "1 of 6 updates took an optimizer step" in message
    checkpoint = out / "checkpoints" / "step-000001"
    assert f"The last healthy checkpoint is {str(checkpoint)!r}" in message
    assert "lower lr (now 0.001)" in message and "check the reward for NaN" in message
    assert "max_grad_norm" in message

    summary = json.loads((out / "run.json").read_text())
    assert summary["failed"] is True
    assert summary["updates_done"] == 6 and summary["updates_stepped"] == 1
    assert summary["error"] == {"type": "TrainingDivergedError", "message": message}

    # the named checkpoint holds the starting weights (update 0 had nothing to learn), and so
    # does the model when the run stopped: skipped updates leave it alone, the rollback
    # restored it
    start = load_policy(random_model_dir, device="cpu").model.state_dict()
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert saved
    for name, value in saved.items():
        torch.testing.assert_close(value, start[name], rtol=0, atol=0, msg=name)
    for name, value in at_end.weights.items():
        torch.testing.assert_close(value, start[name], rtol=0, atol=0, msg=name)


@NUMPY_OVERFLOW
def test_a_resumed_run_carries_the_streak_and_the_steps_on(random_model_dir, tmp_path) -> None:
    _schedule(huge=range(1, 100), constant_first=True)
    out = tmp_path / "run"
    first = train(_config(random_model_dir, out=str(out), updates=3))  # 2 faults, then stops
    assert first.updates_stepped == 1
    with pytest.raises(TrainingDivergedError) as caught:
        train(_config(random_model_dir, out=str(out), updates=10), resume=True)
    # where the uninterrupted run stops, with the faults from before the resume named
    assert "update 1: non-finite" in str(caught.value)
    assert "1 of 6 updates took an optimizer step" in str(caught.value)


@NUMPY_OVERFLOW
def test_occasional_non_finite_updates_do_not_stop_the_run(random_model_dir, tmp_path) -> None:
    _schedule(huge={1, 2, 4, 5, 7})  # never 3 in a row
    out = tmp_path / "run"
    config = _config(random_model_dir, out=str(out), max_nonfinite_updates=3, max_faults=10)
    result = train(config)
    actions = [m["step_action"] for m in result.metrics]
    assert actions == [
        "step",
        "skip",
        "skip",
        "step",
        "skip",
        "skip",
        "step",
        "skip",
        "step",
        "step",
    ]
    assert result.updates_done == 10 and result.updates_stepped == 5
    summary = json.loads((out / "run.json").read_text())
    assert summary["failed"] is False and "error" not in summary
    assert summary["updates_stepped"] == 5


@NUMPY_OVERFLOW
def test_without_a_checkpoint_the_error_says_why(random_model_dir, tmp_path) -> None:
    _schedule(huge=range(100))
    with pytest.raises(TrainingDivergedError, match="No checkpoint: the run writes no files"):
        train(_config(random_model_dir, max_nonfinite_updates=2))
    _schedule(huge=range(100))
    with pytest.raises(TrainingDivergedError) as caught:
        train(_config(random_model_dir, out=str(tmp_path / "run"), max_nonfinite_updates=2,
                      checkpoint_every=0))  # fmt: skip
    assert "0 of 2 updates took an optimizer step" in str(caught.value)
    assert "none was written before the faults (checkpoint_every=0: only at the end)" in str(
        caught.value
    )


@NUMPY_OVERFLOW
def test_the_command_line_prints_one_error_line_and_the_steps_taken(
    random_model_dir, tmp_path, capsys
) -> None:
    args = [
        "train", "--model", random_model_dir, "--task", "arithmetic",
        "--reward", "_nonfinite_scheduled", "--algo", "reinforce", "--updates", "4",
        "--set", "group_size=1", "--set", "prompts_per_update=4", "--set", "max_new_tokens=6",
        "--set", "eval_examples=4", "--set", "progress=false", "--set", "tensorboard=false",
        "--set", "max_nonfinite_updates=2",
    ]  # fmt: skip
    _schedule(huge=range(1, 100))
    assert cli.main([*args, "--out", str(tmp_path / "bad")]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in captured.err
    assert errors[0].startswith("rewardgym train: error: training diverged: 2 updates in a row")

    _schedule(huge={1})
    assert cli.main([*args, "--out", str(tmp_path / "good")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["updates_done"] == 4 and summary["updates_stepped"] == 3


def test_max_nonfinite_updates_is_validated(random_model_dir) -> None:
    from rewardgym.errors import ConfigError

    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="max_nonfinite_updates must be an int >= 1"):
            _config(random_model_dir, max_nonfinite_updates=bad)
