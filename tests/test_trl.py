"""TRL's GRPOTrainer measured by rewardgym: the run directory, its numbers and the monitors'
actions, on the seeded random model (CPU, seconds per run).

Every expectation is derived from the run's own files: the logged component means from
``samples.jsonl``, the held-out score from the checkpoint of the same step, the restored weights
from the checkpoint a rollback names. What TRL training achieves is a measured result
(docs/results/trl-backend.md), never asserted here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import small_train_config, weights_after_each_update
from safetensors.torch import load_file

from rewardgym.agents.checkpoint import checkpoint_step, latest_checkpoint, list_checkpoints
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.held_out import evaluate_held_out
from rewardgym.agents.runlog import read_metrics
from rewardgym.agents.runs import load_run_policy
from rewardgym.agents.trainer import train
from rewardgym.envs.tasks import make_task
from rewardgym.errors import ConfigError, RunDataError, UnknownNameError
from rewardgym.evaluation.monitors.base import Finding, Monitor
from rewardgym.rewards import make_reward

UPDATES = 6


def _config(model_dir, out, **options) -> TrainConfig:
    base = dict(
        backend="trl", reward="balanced", updates=UPDATES, eval_every=2, checkpoint_every=2,
        keep_checkpoints=UPDATES, threads=1, tensorboard=False, out=str(out),
    )  # fmt: skip
    return small_train_config(model_dir, **{**base, **options})


class _FireAt(Monitor):
    """Alerts at the end of one update, with the action it is given: the test scripts when."""

    name = "fire_at"

    def __init__(self, update: int, action: str) -> None:
        super().__init__(action=action)
        self.update = update

    def check_update(self, ctx, metrics):
        return [Finding(1.0, 0.0, "scripted")] if metrics["update"] == self.update else []


@pytest.fixture(scope="module")
def trl_run(random_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trl") / "run"
    return train(_config(random_model_dir, out)), out


@pytest.mark.slow
def test_a_trl_run_writes_a_native_run_directory(trl_run) -> None:
    result, out = trl_run
    summary = json.loads((out / "run.json").read_text())
    assert summary["backend"] == "trl" and summary["versions"]["trl"]
    assert summary["options"]["num_generations"] == 2 and not summary["failed"]
    assert TrainConfig.from_dict(json.loads((out / "config.json").read_text())).backend == "trl"
    records = read_metrics(out / "metrics.jsonl")
    assert (
        [r["update"] for r in records]
        == list(range(UPDATES))
        == [m["update"] for m in result.metrics]
    )
    for key in ("lr", "grad_norm", "entropy_bits", "ppo/clip_fraction", "completion_length/mean"):
        assert all(math.isfinite(r[key]) for r in records), key
    assert [r["update"] for r in records if "eval/quality" in r] == [1, 3, 5]
    assert "start/quality" in records[0] and "final/quality" in summary["final_eval"]
    assert [checkpoint_step(c) for c in list_checkpoints(out)] == [2, 4, 6]


@pytest.mark.slow
def test_logged_reward_components_are_the_samples_means(trl_run) -> None:
    _, out = trl_run
    records = read_metrics(out / "metrics.jsonl")
    samples = read_metrics(out / "samples.jsonl")
    weights = {t.name: t.weight for t in make_reward("balanced").terms}
    assert [s["update"] for s in samples] == [r["update"] for r in records]
    for record, line in zip(records, samples):
        total = np.zeros(len(line["reward"]))
        for name, values in line["components"].items():
            values = np.asarray(values, dtype=float)
            assert record[f"reward/{name}/mean"] == pytest.approx(np.nanmean(values))
            assert record[f"reward/{name}/weight"] == weights[name]
            total += np.nan_to_num(weights[name] * values)
        np.testing.assert_allclose(line["reward"], total, atol=1e-9)
        assert record["reward/mean"] == pytest.approx(np.mean(line["reward"]))
        # TRL's own reward log is the same weighted sum (float32 on its side)
        assert record["trl"]["reward"] == pytest.approx(record["reward/mean"], abs=1e-5)
        assert record["tokens_generated"] == sum(line["n_tokens"])


@pytest.mark.slow
def test_held_out_evaluation_is_the_trainers_model_at_that_step(trl_run) -> None:
    """The eval logged at update u is what the checkpoint of step u + 1 answers, greedily."""
    _, out = trl_run
    config = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    records = {r["update"]: r for r in read_metrics(out / "metrics.jsonl")}
    policy, checkpoint, step = load_run_policy(out, config, device="cpu")
    assert step == UPDATES
    again = evaluate_held_out(
        policy, make_task(config.task, seed=config.task_seed), make_reward(config.reward),
        n_examples=config.eval_examples, max_new_tokens=config.max_new_tokens, prefix="eval/",
    )  # fmt: skip
    assert again["eval/quality"] == pytest.approx(records[UPDATES - 1]["eval/quality"])
    assert again["eval/reward"] == pytest.approx(records[UPDATES - 1]["eval/reward"])


@pytest.mark.slow
def test_replay_and_evaluate_read_a_trl_run(trl_run) -> None:
    from rewardgym.evaluation.eval_config import EvalConfig
    from rewardgym.evaluation.evaluate import evaluate_run
    from rewardgym.evaluation.replay import replay_run

    _, out = trl_run
    replayed = replay_run(out, reward="speed_only")
    assert len(replayed["updates"]) == UPDATES
    result = evaluate_run(out, EvalConfig(n_examples=4, noise=[], max_new_tokens=6))
    assert (out / "eval" / "test.json").is_file() and result.n_examples == 4


@pytest.mark.slow
def test_rollback_restores_the_newest_healthy_checkpoint(random_model_dir, tmp_path) -> None:
    weights = weights_after_each_update()
    result = train(
        _config(random_model_dir, tmp_path / "r", eval_every=0),
        callbacks=[_FireAt(2, "rollback"), weights],
    )
    actions = [m["step_action"] for m in result.metrics]
    # the alert at update 2 is acted on at update 3's record: back to step-2, the newest
    # checkpoint saved before any alert
    assert actions == ["step"] * 3 + ["rollback"] + ["step"] * (UPDATES - 4)
    saved = load_file(str(tmp_path / "r" / "checkpoints" / "step-000002" / "model.safetensors"))
    for name, value in saved.items():
        torch.testing.assert_close(weights.after[3][name], value, rtol=0, atol=0, msg=name)
    assert result.metrics[-1]["rollbacks"] == 1
    assert (
        result.metrics[3]["flops/rolled_back"] if "flops/rolled_back" in result.metrics[3] else True
    )
    assert json.loads((tmp_path / "r" / "run.json").read_text())["rollbacks"] == 1


@pytest.mark.slow
def test_pause_stops_with_a_checkpoint(random_model_dir, tmp_path) -> None:
    result = train(
        _config(random_model_dir, tmp_path / "p", eval_every=0), callbacks=[_FireAt(2, "pause")]
    )
    assert result.stopped_early and result.updates_done == 3
    assert checkpoint_step(latest_checkpoint(tmp_path / "p")) == 3
    assert json.loads((tmp_path / "p" / "run.json").read_text())["stopped_early"]


# -- bad input: typed errors, nothing written ---------------------------------------------------


@pytest.mark.parametrize(
    "option", [{"token_budget": 64}, {"replay_share": 0.25}, {"algo": "reinforce", "group_size": 1}]
)
def test_options_trl_cannot_honour_are_refused_by_name(option) -> None:
    name = next(iter(option))
    with pytest.raises(ConfigError, match=rf"backend 'trl' has no counterpart for: {name}"):
        TrainConfig(backend="trl", **option)


def test_an_unknown_backend_gets_did_you_mean() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'trl'"):
        TrainConfig(backend="trll")


def _kit(model_dir, out, monitors=(), **options):
    from rewardgym.agents.registry import load_policy
    from rewardgym.integrations.trl import attach

    policy = load_policy(model_dir, device="cpu")
    return attach(
        task="arithmetic", out=str(out), model=policy, monitors=list(monitors),
        progress=False, tensorboard=False, **{"reward": "balanced", **options},
    ), policy  # fmt: skip


def test_a_scheduled_reward_or_a_skipping_monitor_is_refused(random_model_dir, tmp_path):
    scheduled = {
        "composite": {"bleu": 0.8, "speed": {"schedule": "linear", "start": 0, "end": 0.4}}
    }
    with pytest.raises(ConfigError, match="weight schedule; TRL's reward_weights are fixed"):
        _kit(random_model_dir, tmp_path / "a", reward=scheduled)
    with pytest.raises(ConfigError, match="action 'skip', but TRL takes every optimizer step"):
        _kit(random_model_dir, tmp_path / "b", monitors=[{"gradient_spike": {"action": "skip"}}])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_attaching_to_a_run_directory_is_refused(random_model_dir, tmp_path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(RunDataError, match="already holds a run"):
        _kit(random_model_dir, tmp_path / "run")


def _begin(kit, args) -> None:
    from transformers import TrainerControl, TrainerState

    kit.callbacks[0].on_train_begin(args, TrainerState(), TrainerControl(), model=None)


def test_the_kit_refuses_a_trainer_it_cannot_measure(random_model_dir, tmp_path) -> None:
    from transformers import TrainingArguments
    from trl import GRPOConfig

    kit, _ = _kit(random_model_dir, tmp_path / "run")
    with pytest.raises(ConfigError, match="arguments are a TrainingArguments; pass kit.callbacks"):
        _begin(kit, TrainingArguments(output_dir=str(tmp_path / "o"), report_to="none"))
    common = dict(output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True)
    with pytest.raises(ConfigError, match="set logging_steps=1"):
        _begin(kit, GRPOConfig(**common, logging_steps=5, reward_weights=kit.reward_weights))
    with pytest.raises(ConfigError, match="pass reward_weights=kit.reward_weights"):
        _begin(kit, GRPOConfig(**common, logging_steps=1, reward_weights=[1.0, 1.0, 1.0]))
    rolling, _ = _kit(
        random_model_dir, tmp_path / "run", monitors=[{"gradient_spike": {"action": "rollback"}}]
    )
    with pytest.raises(ConfigError, match="save_strategy 'no', so TRL keeps none"):
        _begin(
            rolling,
            GRPOConfig(
                **common, logging_steps=1, save_strategy="no", reward_weights=kit.reward_weights
            ),
        )
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_a_dataset_without_the_index_column_is_refused(random_model_dir, tmp_path) -> None:
    kit, _ = _kit(random_model_dir, tmp_path / "run")
    with pytest.raises(RunDataError, match="no 'index' column.*kit.train_dataset"):
        kit.reward_funcs[0](prompts=["1 + 1 ="], completions=["2"], completion_ids=[[5]])


def test_the_dataset_prompts_tokenize_as_rewardgym_encodes_them(random_model_dir, tmp_path):
    kit, policy = _kit(random_model_dir, tmp_path / "run")
    data = kit.train_dataset()
    train = make_task("arithmetic").split("train")
    assert data["index"][:3] == [0, 1, 2] and data["references"][0] == train[0].reference
    # what TRL does with a plain-text prompt: the tokenizer with its special tokens
    ids = policy.tokenizer(text=data["prompt"][:8])["input_ids"]
    assert ids == [policy.encode_prompt(ex.prompt) for ex in train[:8]]


def test_without_trl_the_error_says_how_to_install(monkeypatch) -> None:
    import builtins

    from rewardgym.agents.trl_options import require_trl

    real_import = builtins.__import__

    def no_trl(name, *args, **kwargs):
        if name == "trl":
            raise ImportError("No module named 'trl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_trl)
    with pytest.raises(ConfigError, match=r'pip install "torch==2.13.0" "trl'):
        require_trl()


@pytest.mark.slow
def test_the_example_script_yields_a_run_that_replays(random_model_dir, tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from rewardgym.evaluation.replay import replay_run

    script = Path(__file__).resolve().parent.parent / "examples" / "trl_grpo.py"
    out = tmp_path / "runs" / "balanced"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(out), "--model", random_model_dir,
         "--task", "arithmetic", "--steps", "2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(read_metrics(out / "metrics.jsonl")) == 2
    assert len(replay_run(out, reward="speed_only")["updates"]) == 2


def test_the_docs_option_table_names_every_option() -> None:
    from pathlib import Path

    from rewardgym.agents.trl_options import OPTION_TABLE, UNSUPPORTED

    text = (Path(__file__).resolve().parent.parent / "docs" / "trl.md").read_text()
    for option in OPTION_TABLE:
        assert f"| `{option}` |" in text, option
    for option in UNSUPPORTED:
        assert f"`{option}`" in text, option


@pytest.mark.slow
def test_report_compares_a_trl_run_with_a_native_run(random_model_dir, tmp_path) -> None:
    from rewardgym.evaluation.eval_config import EvalConfig
    from rewardgym.evaluation.evaluate import evaluate_run
    from rewardgym.evaluation.run_folder import write_folder_report

    folder = tmp_path / "runs"
    for backend in ("native", "trl"):
        out = folder / backend
        train(_config(random_model_dir, out, backend=backend, updates=2, eval_every=0))
        evaluate_run(out, EvalConfig(n_examples=4, noise=[], max_new_tokens=6))
    paths = write_folder_report(folder, log=lambda line: None)
    results = json.loads(paths["runs.json"].read_text())
    by_backend = {r["backend"]: r for r in results["runs"]}
    assert set(by_backend) == {"native", "trl"}
    assert by_backend["native"]["scheme"] != by_backend["trl"]["scheme"]  # never merged
    for backend, record in by_backend.items():
        after = json.loads((folder / backend / "eval" / "test.json").read_text())
        assert record["final_quality"] == pytest.approx(after["quality"]), backend
    assert paths["report.html"].is_file()


@pytest.mark.slow
def test_resume_continues_from_trls_checkpoint(random_model_dir, tmp_path) -> None:
    out = tmp_path / "run"
    train(_config(random_model_dir, out, updates=4, eval_every=0))
    resumed = train(_config(random_model_dir, out, updates=6, eval_every=0), resume=True)
    records = read_metrics(out / "metrics.jsonl")
    assert [r["update"] for r in records] == list(range(6))  # each update once
    assert [s["update"] for s in read_metrics(out / "samples.jsonl")] == list(range(6))
    assert resumed.updates_done == 6 and checkpoint_step(latest_checkpoint(out)) == 6
    # the counters carry on: FLOPs only grow across the resume
    totals = [r["flops/total"] for r in records]
    assert totals == sorted(totals) and totals[4] > totals[3]


def test_trl_settings_config_json_cannot_hold_are_named(tmp_path) -> None:
    from trl import GRPOConfig

    from rewardgym.agents.trl_options import options_from_grpo_args
    from rewardgym.agents.trl_records import fitting_config

    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=8, gradient_accumulation_steps=1,
        num_generations=4, loss_type="cispo", use_cpu=True, report_to="none", max_steps=10,
    )  # fmt: skip
    options = {**TrainConfig(task="arithmetic").to_dict(), **options_from_grpo_args(args)}
    config, left_out = fitting_config({**options, "backend": "trl"})
    assert left_out == ["loss_type", "micro_batches"]  # K >= 4 and TRL's own loss type
    assert (config.group_size, config.prompts_per_update, config.backend) == (4, 2, "trl")


@pytest.mark.slow
def test_the_command_line_trains_through_trl(random_model_dir, tmp_path, capsys) -> None:
    from rewardgym.cli import main

    out = tmp_path / "cli"
    options = ["backend=trl", "prompts_per_update=4", "group_size=2", "max_new_tokens=6",
               "eval_examples=4", "threads=1", "progress=false", "tensorboard=false"]  # fmt: skip
    argv = ["train", "--task", "arithmetic", "--model", random_model_dir, "--reward", "balanced",
            "--updates", "2", "--out", str(out)]  # fmt: skip
    for option in options:
        argv += ["--set", option]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["updates_done"] == 2 == len(read_metrics(out / "metrics.jsonl"))
    assert json.loads((out / "run.json").read_text())["backend"] == "trl"


@pytest.mark.slow
def test_task_only_under_trl_pays_a_reasoning_gym_tasks_own_scorer(random_model_dir, tmp_path):
    task_kwargs = {"n_train": 16, "n_validation": 4, "n_test": 4}
    out = tmp_path / "rg"
    train(
        _config(
            random_model_dir, out, task="reasoning_gym:leg_counting", task_kwargs=task_kwargs,
            reward="task_only", updates=1, eval_every=0,
        )
    )  # fmt: skip
    line = read_metrics(out / "samples.jsonl")[0]
    task = make_task("reasoning_gym:leg_counting", **task_kwargs)
    examples = [task.split("train")[i] for i in line["index"]]
    answers = task.answers(line["completion"])
    expected = [
        task.quality([a], [ex.reference], None, [ex.meta]) / 100 for a, ex in zip(answers, examples)
    ]
    np.testing.assert_allclose(line["reward"], expected)
