"""Studies end to end on a tiny random model: local and Ray executors, resume, sweeps, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rewardgym.agents.checkpoint import latest_checkpoint
from rewardgym.agents.trainer import train
from rewardgym.errors import ConfigError, RunDataError, UnknownNameError
from rewardgym.evaluation.eval_config import EvalConfig
from rewardgym.evaluation.study import (
    record_path,
    run_dir,
    run_study,
    study_monitors,
    summarise_run,
)
from rewardgym.evaluation.study_config import (
    SweepConfig,
    expand_units,
    load_study_config,
    sweep_schemes,
)


def _study(model_dir: str, **kw) -> dict:
    cfg = {
        "name": "small",
        "tasks": ["arithmetic"],
        "model": model_dir,
        "seeds": [0, 1],
        "baseline": "task_only",
        "schemes": {"task_only": "task_only", "speed_only": "speed_only"},
        "train": {
            "updates": 3,
            "prompts_per_update": 4,
            "group_size": 2,
            "max_new_tokens": 6,
            "eval_every": 2,
            "eval_examples": 8,
            "checkpoint_every": 1,
        },
        "evaluation": {
            "n_examples": 12,
            "severities": [0.1],
            "noise": ["char_drop", "word_drop"],
            "max_new_tokens": 6,
        },
    }
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def local_study(random_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "local"
    return run_study(_study(random_model_dir), out=out, log=lambda line: None)


def test_local_study_writes_every_run_and_the_aggregate(local_study) -> None:
    res = local_study.results
    assert res["complete"] and len(res["runs"]) == 4
    assert set(res["summary"]) == {"task_only", "speed_only"}
    for record in res["runs"]:
        folder = local_study.study_dir / record["run_dir"]
        for name in (
            "config.json",
            "metrics.jsonl",
            "run.json",
            "eval/test.json",
            "eval/test.hyps.txt",
            "eval/test.refs.txt",
        ):
            assert (folder / name).exists(), name
        assert list((folder / "checkpoints").iterdir())
        assert list((folder / "tensorboard").iterdir())
    assert (local_study.study_dir / "before" / "arithmetic" / "test.json").exists()
    baseline = res["summary"]["task_only"]["grad_variance_change_pct"]["values"]
    assert all(v in (0.0, None) for v in baseline)
    saved = json.loads(local_study.results_path.read_text())
    assert saved["summary"] == res["summary"]


def test_flops_per_point_follows_the_primary_metric(local_study) -> None:
    """On arithmetic (exact match) the cost per point is per exact-match point, not BLEU's."""
    from dataclasses import replace

    from rewardgym.agents.runlog import read_metrics
    from rewardgym.evaluation.evaluate import EvalResult, compare
    from rewardgym.evaluation.study_config import RunUnit

    for record in local_study.results["runs"]:
        assert record["metric"] == "exact_match"
        gain = record["final_quality"] - record["before_quality"]
        expected = record["flops_total"] / gain if gain > 0 else None
        assert record["flops_per_quality_point"] == expected
    record = local_study.results["runs"][0]
    before = EvalResult.load(local_study.study_dir / "before" / "arithmetic" / "test.json")
    after = replace(before, quality=before.quality + 10.0, bleu=before.bleu + 40.0)
    metrics = read_metrics(local_study.study_dir / record["run_dir"] / "metrics.jsonl")
    unit = RunUnit(record["scheme"], record["reward"], "arithmetic", record["seed"])
    summary = summarise_run(unit, metrics, before, after, compare(before, after))
    assert summary["flops_per_quality_point"] == pytest.approx(summary["flops_total"] / 10.0)


def test_rerun_skips_finished_runs(local_study, random_model_dir) -> None:
    lines = []
    again = run_study(_study(random_model_dir), out=local_study.study_dir, log=lines.append)
    assert "4 runs, 4 already done" in lines[0]
    assert _every_figure(again.results) == _every_figure(local_study.results)


def test_interrupted_study_resumes_to_the_same_results(
    local_study, random_model_dir, tmp_path
) -> None:
    cfg = load_study_config(_study(random_model_dir))
    out = tmp_path / "interrupted"
    unit = expand_units(cfg)[1]
    # a run killed after its first update: a checkpoint at step 1 and no record
    partial = cfg.train_config(unit.task, unit.reward, unit.seed, str(run_dir(out, unit)))
    partial.updates = 1
    train(partial, callbacks=study_monitors(cfg))
    assert not record_path(out, unit).exists()
    resumed = run_study(_study(random_model_dir), out=out, log=lambda line: None)
    assert _every_figure(resumed.results) == _every_figure(local_study.results)


@pytest.mark.parametrize(
    "executor",
    [
        pytest.param("pool", marks=pytest.mark.slow),
        pytest.param("auto", marks=pytest.mark.slow),
        pytest.param("ray", marks=pytest.mark.slow),
        "storage",
        pytest.param("ray+storage", marks=pytest.mark.slow),
    ],
)
def test_every_executor_gives_identical_figures(
    local_study, random_model_dir, tmp_path, executor: str
) -> None:
    """In this process (torch's own thread count), in a pool of 2, with as many workers as the
    cores hold and on Ray (1 thread a worker), every run sets the study's thread count, so every
    figure and every final weight is the same; with ``storage`` each run trains in scratch and
    its folder comes home from storage."""
    if "ray" in executor:
        pytest.importorskip("ray")
    options: dict = {"executor": "ray"} if "ray" in executor else {"workers": 2}
    if executor == "auto":
        options = {"workers": "auto"}
    if "storage" in executor:
        pytest.importorskip("pyarrow")
        options = {**options, "workers": 1, "storage": str(tmp_path / "storage")}
    out = tmp_path / executor
    result = run_study(_study(random_model_dir, **options), out=out, log=lambda line: None)
    assert _every_figure(result.results) == _every_figure(local_study.results)
    for study in (local_study, result):
        for record in study.results["runs"]:
            run = json.loads((study.study_dir / record["run_dir"] / "run.json").read_text())
            assert run["torch_threads"] == 1 == study.results["config"]["threads"]
    for record in result.results["runs"]:
        ours, sequential = (_final_weights(s.study_dir / record["run_dir"])
                            for s in (result, local_study))  # fmt: skip
        assert ours.keys() == sequential.keys()
        for name, value in ours.items():
            assert torch.equal(value, sequential[name]), (record["key"], name)
    if "storage" in executor:
        for record in result.results["runs"]:
            home = out / record["run_dir"]
            (placement,) = [json.loads(x) for x in (home / "placements.jsonl").open()]
            assert placement["resumed_from_update"] is None
            assert (tmp_path / "storage" / record["run_dir"] / "run.json").exists()
            assert sorted(p.name for p in (home / "checkpoints").iterdir()) == sorted(
                p.name for p in (tmp_path / "storage" / record["run_dir"] / "checkpoints").iterdir()
            )


def _final_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(latest_checkpoint(run) / "model.safetensors"))


def _every_figure(results: dict) -> dict:
    """Everything results.json says about the runs and schemes except wall times."""
    runs = {r["key"]: {k: v for k, v in r.items() if k != "wall_s"} for r in results["runs"]}
    return {"runs": runs, "summary": results["summary"], "beats": results["p_beats_baseline"]}


@pytest.mark.slow
def test_two_studies_on_one_directory_share_its_runs(random_model_dir, tmp_path) -> None:
    """A user who starts the same study twice: each process takes the runs nobody holds, waits
    for the rest, and every run's metrics.jsonl holds each update once."""
    import subprocess
    import sys

    import yaml

    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(_study(random_model_dir, seeds=[0, 1, 2])))
    out = tmp_path / "shared"
    argv = [sys.executable, "-m", "rewardgym.cli", "study", str(config), "--out", str(out)]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and len(results["runs"]) == 6
    updates = _study(random_model_dir)["train"]["updates"]
    for record in results["runs"]:
        metrics = (out / record["run_dir"] / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["update"] for line in metrics] == list(range(updates))


def test_sweep_expansion() -> None:
    schemes = sweep_schemes(SweepConfig("balanced", "speed", [0.0, 0.5, 1]))
    assert list(schemes) == ["balanced@speed=0", "balanced@speed=0.5", "balanced@speed=1"]
    for name, spec in schemes.items():
        weights = spec["composite"]
        assert sum(weights.values()) == pytest.approx(1.0), name  # every point on a 0-1 scale
        share = 1.0 - weights["speed"]  # what the other components of balanced keep, pro rata
        assert weights["completion"] == pytest.approx(0.25 / 0.85 * share), name
        assert weights["fidelity"] == pytest.approx(0.6 / 0.85 * share), name
    assert schemes["balanced@speed=0.5"]["composite"]["speed"] == 0.5
    with pytest.raises(ConfigError, match=r"sweep weights must be numbers from 0 to 1 \(the"):
        sweep_schemes(SweepConfig("balanced", "speed", [1.5]))
    cfg = load_study_config(
        {
            "name": "s",
            "schemes": {"b": "balanced"},
            "baseline": "b",
            "seeds": [0],
            "sweep": {"weights": [0.1, 0.2]},
        }
    )
    assert [u.scheme for u in expand_units(cfg)] == [
        "b",
        "balanced@speed=0.1",
        "balanced@speed=0.2",
    ]
    with pytest.raises(ConfigError, match="sweep base 'speed' is a class reward"):
        sweep_schemes(SweepConfig("speed", "speed", [0.1]))
    with pytest.raises(UnknownNameError, match="did you mean 'speed'"):
        sweep_schemes(SweepConfig("balanced", "sped", [0.1]))


def test_shipped_studies_load() -> None:
    cfg = load_study_config("speed_vs_balanced")
    assert cfg.baseline == "task_only" and len(expand_units(cfg)) == 9
    assert isinstance(cfg.evaluation, EvalConfig) and cfg.evaluation.max_new_tokens == 64
    with pytest.raises(UnknownNameError, match="did you mean 'speed_vs_balanced'"):
        load_study_config("speed_vs_balanc")


def test_the_forgetting_and_token_budget_studies_load() -> None:
    forgetting = load_study_config("replay_vs_forgetting")
    assert forgetting.baseline == "no_replay" and len(expand_units(forgetting)) >= 12
    retention = forgetting.evaluation.retention_task
    assert retention not in forgetting.tasks
    run = forgetting.train_config(forgetting.tasks[0], "task_only", 0, None)
    assert run.retention_task == retention  # every run logs the forgetting curve
    assert retention in run.warm_start_tasks  # the task it forgets was learned first
    budget = load_study_config("token_budget")
    budgets = {u.scheme: u.train.get("token_budget") for u in expand_units(budget)}
    assert None in budgets.values() and any(budgets.values())


def test_a_scheme_can_set_its_own_training_options(random_model_dir, tmp_path) -> None:
    from rewardgym.evaluation.study_config import scheme_parts

    schemes = {"plain": "speed_only", "grpo": {"reward": "speed_only",
                                               "train": {"loss_type": "grpo"}}}  # fmt: skip
    study = _study(random_model_dir, schemes=schemes, baseline="plain", seeds=[0])
    study["train"]["updates"] = 1
    cfg = load_study_config(study)
    units = {u.scheme: u for u in expand_units(cfg)}
    assert units["grpo"].train == {"loss_type": "grpo"} and units["plain"].train == {}
    result = run_study(cfg, out=tmp_path / "s", log=lambda line: None)
    saved = {
        r["scheme"]: json.loads((tmp_path / "s" / r["run_dir"] / "config.json").read_text())
        for r in result.results["runs"]
    }
    assert saved["grpo"]["loss_type"] == "grpo" and saved["plain"]["loss_type"] == "dr_grpo"
    with pytest.raises(ConfigError, match=r"scheme 'x': a scheme is a reward spec or"):
        scheme_parts("x", {"reward": "speed_only", "trian": {}})
    with pytest.raises(ConfigError, match=r"scheme 'x': train: \['seed'\] are set per run"):
        scheme_parts("x", {"reward": "speed_only", "train": {"seed": 1}})
    with pytest.raises(UnknownNameError, match=r"unknown loss type 'grop'"):
        load_study_config(
            {
                **study,
                "schemes": {"plain": {"reward": "speed_only", "train": {"loss_type": "grop"}}},
            }
        )


def test_study_evaluation_is_an_eval_config_with_200_examples_by_default() -> None:
    data = {"name": "s", "schemes": {"a": "speed_only"}, "baseline": "a"}
    assert load_study_config(data).evaluation == EvalConfig(n_examples=200)
    given = load_study_config({**data, "evaluation": {"greedy": False, "seed": 3}}).evaluation
    assert given == EvalConfig(n_examples=200, greedy=False, seed=3)
    assert load_study_config(load_study_config(data).to_dict()).evaluation.n_examples == 200


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"baseline": "nope"}, UnknownNameError, "unknown baseline scheme 'nope'"),
        ({"executor": "slurm"}, UnknownNameError, "unknown executor 'slurm'"),
        ({"seeds": []}, ConfigError, "seeds must be a non-empty list"),
        ({"trian": {}}, UnknownNameError, "unknown study option 'trian'; did you mean 'train'"),
        ({"train": {"updates": 0}}, ConfigError, "updates must be an int >= 1, got 0"),
        ({"train": {"seed": 3}}, ConfigError, r"train: \['seed'\] are set per run"),
        ({"format_version": 99}, RunDataError, "format_version 99 is newer"),
        ({"evaluation": {"splt": "test"}}, UnknownNameError, "section evaluation"),
        (
            {"evaluation": {"top_p": 2}},
            ConfigError,
            r"section evaluation: top_p must be a finite number in \(0.0, 1.0\], got 2",
        ),
    ],
)
def test_bad_study_configs(changes, error, message) -> None:
    data = {"name": "s", "schemes": {"a": "speed_only"}, "baseline": "a", **changes}
    with pytest.raises(error, match=message):
        load_study_config(data)


def test_a_study_dir_refuses_a_different_config(local_study, random_model_dir) -> None:
    with pytest.raises(RunDataError, match=r"holds a study with a different config \(\['seeds'\]"):
        run_study(_study(random_model_dir, seeds=[0, 1, 2]), out=local_study.study_dir)


def test_report_of_a_real_study(local_study) -> None:
    from rewardgym.evaluation.report import write_report

    paths = write_report(local_study.study_dir)
    md = paths["report.md"].read_text()
    assert "speed_only" in md and "task_only" in md
    assert paths["report.html"].read_text().count("data:image/png;base64,") >= 5
    assert "Reward disagreement: training samples re-scored by exact match" in md
    for record in local_study.results["runs"]:  # every run re-scored its samples by the gold
        run = local_study.study_dir / record["run_dir"]
        gold = json.loads((run / "replay" / "gold.json").read_text())
        assert gold["reward"] == "exact_match" and len(gold["updates"]) == record["updates"]


def test_refresh_records_rebuilds_results_from_run_files(random_model_dir, tmp_path) -> None:
    """A record from an older rewardgym (a row missing, a stale value) is rebuilt from the run's
    files; nothing trains again, and the figures equal the original study's."""
    from rewardgym.cli import main as cli_main
    from rewardgym.evaluation.study import refresh_records

    out = tmp_path / "study"
    first = run_study(_study(random_model_dir, seeds=[0]), out=out, log=lambda line: None)
    path = next((out / "records").iterdir())
    old = json.loads(path.read_text(encoding="utf-8"))
    stale = {k: v for k, v in old.items() if k != "flops_per_quality_point"}
    path.write_text(json.dumps({**stale, "final_chrf": -1.0}), encoding="utf-8")
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    refreshed = refresh_records(out)
    assert json.loads(path.read_text(encoding="utf-8")) == old
    assert refreshed.results["summary"] == first.results["summary"]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # no run file was touched
    assert cli_main(["report", str(out), "--refresh"]) == 0
    with pytest.raises(RunDataError, match=r"is not a study directory: it has no study.yaml"):
        refresh_records(tmp_path)


def test_auto_workers_fill_the_cores_with_runs_of_the_study_threads(
    random_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    cfg = load_study_config(_study(random_model_dir, workers="auto", threads=2))
    assert cfg.worker_count(units=9) == 4 and cfg.worker_count(units=3) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert cfg.worker_count(units=9) == 1  # fewer cores than threads: one run at a time
    with pytest.raises(ConfigError, match=r'workers must be an int >= 1 or "auto", got .fast.'):
        load_study_config(_study(random_model_dir, workers="fast"))
