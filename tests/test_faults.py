"""Faults that really happen: ``kill -9`` mid-run and mid-checkpoint, a study killed mid-way,
a full disk, and numerical faults injected mid-run (docs/guarantees.md).

Kill tests run the ``rewardgym`` command in a subprocess (through ``tests/fault_hooks.py`` where a
checkpoint hook or chosen monitors are needed), ``SIGKILL`` it, resume it, and compare against an
uninterrupted run with the same seed: every update index is logged exactly once, every update's
monitor alerts are the same and the final weights are equal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import small_train_config
from safetensors.torch import load_file

from rewardgym.agents import TrainConfig, train
from rewardgym.agents import checkpoint as ckpt
from rewardgym.agents.callbacks import Callback
from rewardgym.agents.checkpoint import checkpoint_step, latest_checkpoint, list_checkpoints
from rewardgym.agents.runlog import read_metrics
from rewardgym.errors import CheckpointError
from rewardgym.evaluation.monitors import GradientSpikeMonitor
from rewardgym.evaluation.study import run_study
from rewardgym.rewards import register_reward

HOOKS = str(Path(__file__).with_name("fault_hooks.py"))
UPDATES = 12
TIMING = ("time/", "generation_s")
# Thresholds the random model crosses within a few updates, so the alerts after a resume depend
# on the histories and start references that a checkpoint must carry over.
FIRING_MONITORS = {
    "gradient_spike": {"factor": 1.0, "min_history": 1},
    "norm_drift": {"max_drift": 1e-6, "max_window_drift": 1e-6, "window": 3},
    "spectral_spread": {"factor": 1.0, "every": 1},
    "saturation": {"min_share": 0.0, "max_share": 0.05, "every": 1},
    "attention_reversal": {"max_flip_share": 0.0, "every": 1},
}
# alerts that need memory of the updates before the resume: they differ when a resume forgets it
STATEFUL_ALERTS = {"gradient_spike", "norm_drift"}


def _train_args(model_dir: str, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model", model_dir,
        "--task", "translate",
        "--reward", "length",
        "--algo", "grpo",
        "--updates", str(UPDATES),
        "--seed", "3",
        "--out", str(out),
        "--set", "checkpoint_every=1",
        "--set", "keep_checkpoints=3",
        "--set", "prompts_per_update=4",
        "--set", "group_size=2",
        "--set", "max_new_tokens=6",
        "--set", "eval_examples=4",
        "--set", "tensorboard=false",
        "--set", "progress=false",
        *extra,
    ]  # fmt: skip


def _cli(args: list[str], hooks: list[str] | None = None) -> list[str]:
    if hooks is None:
        return [sys.executable, "-m", "rewardgym.cli", *args]
    return [sys.executable, HOOKS, *hooks, "--", *args]


def _monitored(model_dir: str, out: Path, *extra: str, hooks: tuple[str, ...] = ()) -> list[str]:
    """The kill tests' train command, with monitors that fire."""
    monitors = ["--monitors", json.dumps(FIRING_MONITORS)]
    return _cli(_train_args(model_dir, out, *extra), [*monitors, *hooks])


def _run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 180) -> None:
    """Poll until ``ready()``; fail if the process ends first (a kill would prove nothing)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(
                f"process ended (rc={proc.returncode}) before the kill point:\n{err[-3000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the kill point")
        time.sleep(0.02)


def _kill9(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, "the process must still be running when it is killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _n_lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def _untimed(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if not k.startswith(TIMING)} for m in metrics]


def _alerts(run_dir: Path) -> list[list[dict]]:
    """Every update's alerts, in update order."""
    return [r.get("alerts", []) for r in read_metrics(run_dir / "metrics.jsonl")]


def _assert_same_alerts(resumed: Path, reference: Path, resumed_at: int) -> None:
    expected = _alerts(reference)
    after_resume = {a["monitor"] for alerts in expected[resumed_at:] for a in alerts}
    assert STATEFUL_ALERTS <= after_resume, f"nothing to compare: {after_resume}"
    got = _alerts(resumed)
    for update, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        assert mine == theirs, f"update {update} (resumed at {resumed_at})"


def _assert_same_run(resumed: Path, reference: Path) -> None:
    records = read_metrics(resumed / "metrics.jsonl")
    assert [r["update"] for r in records] == list(range(UPDATES))  # each index exactly once
    assert _untimed(records) == _untimed(read_metrics(reference / "metrics.jsonl"))
    assert latest_checkpoint(resumed).name == f"step-{UPDATES:06d}"
    expected = _weights(reference)
    got = _weights(resumed)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    summary = json.loads((resumed / "run.json").read_text())
    assert summary["updates_done"] == UPDATES and not summary["interrupted"]


@pytest.fixture(scope="module")
def reference_run(random_model_dir, tmp_path_factory) -> Path:
    """An uninterrupted run, in a subprocess like the killed ones (same threads, same numerics)."""
    out = tmp_path_factory.mktemp("faults") / "reference"
    _run(_monitored(random_model_dir, out))
    return out


@pytest.mark.slow
def test_kill9_mid_training_then_resume_equals_uninterrupted(
    random_model_dir, reference_run, tmp_path
) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _monitored(random_model_dir, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    _wait_for(proc, lambda: _n_lines(out / "metrics.jsonl") >= 3)
    _kill9(proc)
    assert not (out / "run.json").exists()
    assert latest_checkpoint(out) is not None
    resumed_at = checkpoint_step(latest_checkpoint(out))
    _run(_monitored(random_model_dir, out, "--resume"))
    _assert_same_alerts(out, reference_run, resumed_at)
    _assert_same_run(out, reference_run)


@pytest.mark.slow
def test_kill9_during_a_checkpoint_write_keeps_the_previous_one(
    random_model_dir, reference_run, tmp_path
) -> None:
    out = tmp_path / "killed-in-write"
    marker = tmp_path / "in-commit"
    hooks = ["--block-at", ".step-000004.", "--marker", str(marker)]
    proc = subprocess.Popen(
        _monitored(random_model_dir, out, hooks=hooks), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(proc, marker.exists)
    _kill9(proc)
    # the half-published step 4 is a hidden .tmp folder: not a checkpoint, ignored by resume
    folders = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert any(name.startswith(".step-000004.") and name.endswith(".tmp") for name in folders)
    assert [p.name for p in list_checkpoints(out)] == [f"step-00000{i}" for i in (1, 2, 3)]
    previous = latest_checkpoint(out)
    assert previous.name == "step-000003"
    state = json.loads((previous / "state.json").read_text())
    assert state["state"]["update"] == 3
    _run(_monitored(random_model_dir, out, "--resume"))
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    _assert_same_alerts(out, reference_run, resumed_at=3)
    _assert_same_run(out, reference_run)


# -- a study killed mid-way --------------------------------------------------------------------


def _study_config(model_dir: str) -> dict:
    return {
        "name": "faults",
        "tasks": ["translate"],  # arithmetic answers are one number: length would not vary
        "model": model_dir,
        "seeds": [0, 1, 2],
        "baseline": "length",
        "schemes": {"length": "length"},  # rewards that differ within a group: real gradients
        "monitors": FIRING_MONITORS,
        "train": {
            "updates": 3,
            "prompts_per_update": 4,
            "group_size": 2,
            "max_new_tokens": 6,
            "eval_examples": 4,
            "checkpoint_every": 1,
            "tensorboard": False,
        },
        "evaluation": {
            "n_examples": 8,
            "severities": [0.1],
            "noise": ["char_drop"],
            "max_new_tokens": 6,
            "n_samples": 2,
        },
    }


def _comparable(value):
    """results.json without wall-clock times and absolute paths."""
    if isinstance(value, dict):
        return {
            k: _comparable(v)
            for k, v in value.items()
            if k not in ("wall_s", "environment", "generation_s") and not k.startswith("time")
        }
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


@pytest.mark.slow
def test_killed_study_resumes_to_the_uninterrupted_result(random_model_dir, tmp_path) -> None:
    import yaml

    config_path = tmp_path / "study.yaml"
    config_path.write_text(yaml.safe_dump(_study_config(random_model_dir)))
    out = tmp_path / "killed-study"
    marker = tmp_path / "in-commit"
    # seed 0 finishes, seed 1 is killed while writing its second checkpoint, seed 2 never starts
    block = ["--block-at", "/1/checkpoints/.step-000002.", "--marker", str(marker)]
    args = ["study", str(config_path), "--out", str(out), "--no-report"]
    proc = subprocess.Popen(
        _cli(args, block), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(proc, marker.exists)
    _kill9(proc)
    assert [p.name for p in (out / "records").iterdir()] == ["length__translate__0.json"]
    assert not (out / "results.json").exists()

    lines: list[str] = []
    resumed = run_study(str(config_path), out=out, log=lines.append)
    assert "3 runs, 1 already done" in lines[0]
    seed1 = out / "runs" / "length" / "translate" / "1"
    assert [r["update"] for r in read_metrics(seed1 / "metrics.jsonl")] == [0, 1, 2]

    # the same file: YAML sorts the monitors by name, and their order is the alerts' order
    clean = run_study(str(config_path), out=tmp_path / "clean", log=lambda s: None)
    assert resumed.results["complete"] and len(resumed.results["runs"]) == 3
    # seed 1 resumed from its update-1 checkpoint: its later alerts need the monitors' memory
    clean_seed1 = next(r for r in clean.results["runs"] if r["seed"] == 1)
    assert STATEFUL_ALERTS <= {a["monitor"] for a in clean_seed1["alerts"] if a["update"] >= 1}
    for got, expected in zip(resumed.results["runs"], clean.results["runs"], strict=True):
        assert got["monitor_alerts"] == expected["monitor_alerts"], got["key"]
        assert got["alerts"] == expected["alerts"], got["key"]
    assert _comparable(resumed.results["runs"]) == _comparable(clean.results["runs"])
    assert resumed.results["summary"] == clean.results["summary"]
    assert resumed.results["p_beats_baseline"] == clean.results["p_beats_baseline"]
    try:
        from rewardgym.evaluation.report import write_report
    except ImportError:
        return  # report.py not written yet: results.json equality above is the check
    a = write_report(out, tmp_path / "report-a")
    b = write_report(tmp_path / "clean", tmp_path / "report-b")
    assert len(a) == len(b)


# -- write errors ------------------------------------------------------------------------------


def _small(model_dir: str, **kw) -> TrainConfig:
    """REINFORCE with one sample per prompt, a checkpoint every update, all of them kept."""
    options = dict(algo="reinforce", group_size=1, updates=4, checkpoint_every=1)
    return small_train_config(
        model_dir, keep_checkpoints=10, tensorboard=False, **{**options, **kw}
    )


def test_full_disk_during_a_checkpoint_is_a_clear_error_and_keeps_earlier_files(
    random_model_dir, tmp_path, monkeypatch
) -> None:
    from fault_hooks import make_hook

    out = tmp_path / "run"
    monkeypatch.setattr(ckpt, "_before_commit", make_hook(fail_at=".step-000003."))
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*step-000003'.*"
                       r"No space left on device; free disk space"):  # fmt: skip
        train(_small(random_model_dir, out=str(out)))
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000001", "step-000002"]
    assert json.loads((latest_checkpoint(out) / "state.json").read_text())["step"] == 2
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert [r["update"] for r in read_metrics(out / "metrics.jsonl")] == [0, 1, 2]
    monkeypatch.setattr(ckpt, "_before_commit", None)
    resumed = train(_small(random_model_dir, out=str(out)), resume=True)
    assert resumed.updates_done == 4
    assert [r["update"] for r in read_metrics(out / "metrics.jsonl")] == [0, 1, 2, 3]


@pytest.mark.slow
def test_full_disk_on_the_command_line_is_one_error_line(random_model_dir, tmp_path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        _cli(_train_args(random_model_dir, out), ["--fail-at", ".step-000002."]),
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert errors[0].startswith("rewardgym train: error: cannot write checkpoint")
    assert [p.name for p in list_checkpoints(out)] == ["step-000001"]


@pytest.mark.slow
def test_unwritable_output_directory_is_a_clear_error(random_model_dir, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = subprocess.run(
        _cli(_train_args(random_model_dir, blocker / "run")),
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "rewardgym train: error:" in done.stderr


# -- numerical faults injected mid-run ---------------------------------------------------------

_CALLS = {"n": 0, "at": -1, "value": 0.0}


@register_reward("_faults_injected")
def _injected(prompts, completions, **kwargs):
    """Speed-like reward; on call number ``_CALLS['at']`` every sample gets ±value instead."""
    call = _CALLS["n"]
    _CALLS["n"] += 1
    if call == _CALLS["at"]:
        v = _CALLS["value"]
        return [v if i % 2 else -v for i in range(len(completions))]
    return [1.0 / (1.0 + len(c)) for c in completions]


def _inject(at: int, value: float) -> None:
    _CALLS.update(n=0, at=at, value=value)


class _Snapshot(Callback):
    def __init__(self, update: int) -> None:
        self.update, self.weights = update, None

    def on_update_end(self, ctx, metrics):
        if metrics["update"] == self.update:
            self.weights = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        return True


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_non_finite_loss_mid_run_is_skipped_counted_and_the_run_finishes(
    random_model_dir, tmp_path
) -> None:
    _inject(at=2, value=1e308)  # advantages overflow: loss and gradient are not finite
    result = train(_small(random_model_dir, updates=5, reward="_faults_injected"))
    actions = [m["step_action"] for m in result.metrics]
    assert actions == ["step", "step", "skip", "step", "step"]
    assert result.updates_done == 5 and result.metrics[-1]["skipped_updates"] == 1
    assert [a["monitor"] for m in result.metrics for a in m.get("alerts", [])] == [
        "numerical_fault"
    ]
    assert result.metrics[2]["flops/wasted"] > result.metrics[1]["flops/wasted"]
    params = result.policy.model.state_dict().values()
    assert all(torch.isfinite(p).all() for p in params)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_non_finite_loss_rolls_back_to_the_last_checkpoint_when_configured(
    random_model_dir, tmp_path
) -> None:
    _inject(at=2, value=1e308)
    out = tmp_path / "run"
    snap = _Snapshot(update=2)
    result = train(
        _small(random_model_dir, updates=4, reward="_faults_injected", max_faults=1, out=str(out)),
        callbacks=[snap],
    )
    assert [m["step_action"] for m in result.metrics] == ["step", "step", "rollback", "step"]
    assert result.metrics[-1]["rollbacks"] == 1 and result.updates_done == 4
    good = load_file(str(out / "checkpoints" / "step-000002" / "model.safetensors"))
    for name, value in good.items():
        torch.testing.assert_close(snap.weights[name], value, rtol=0, atol=0, msg=name)


def test_a_reward_spike_mid_run_is_skipped_by_the_gradient_spike_monitor(
    random_model_dir,
) -> None:
    _inject(at=5, value=1e6)  # finite, but the gradient norm explodes
    monitor = GradientSpikeMonitor(factor=1.5, min_history=3, action="skip")
    result = train(
        _small(random_model_dir, updates=7, reward="_faults_injected"), callbacks=[monitor]
    )
    actions = [m["step_action"] for m in result.metrics]
    assert actions[5] == "skip" and actions.count("skip") >= 1
    assert result.metrics[5]["grad_norm"] > 1e3 * result.metrics[4]["grad_norm"]
    assert result.updates_done == 7
    assert result.metrics[-1]["skipped_updates"] == actions.count("skip")
    spikes = [a for a in result.metrics[5].get("alerts", []) if a["monitor"] == "gradient_spike"]
    assert spikes and spikes[0]["action"] == "skip"
