"""Forgetting and its mitigations: the retention task evaluated while a run trains, replay drawn
from the warm start's tasks, the retention NLL drift, the source's claims beside the measured
changes, and the bad input each option refuses. Random seeded models: no training needed."""

from __future__ import annotations

import pytest
import torch
from conftest import small_train_config

from rewardgym.agents.config import TrainConfig
from rewardgym.agents.registry import load_policy
from rewardgym.agents.runs import policy_for_config
from rewardgym.agents.sft import completion_nll, encode_pairs
from rewardgym.agents.trainer import _replay_examples, train
from rewardgym.envs.tasks import make_task
from rewardgym.errors import ConfigError
from rewardgym.evaluation.eval_config import EvalConfig
from rewardgym.evaluation.evaluate import EvalResult, _reference_nll, compare, evaluate
from rewardgym.evaluation.report.claims import claim_rows, claims_table
from rewardgym.evaluation.report.load import StudyFiles
from rewardgym.evaluation.report.plots import plot_forgetting
from rewardgym.evaluation.stats import relative_change
from rewardgym.evaluation.study_config import StudyConfig

# -- bad input ------------------------------------------------------------------------------------


def test_a_retention_task_equal_to_the_training_task_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"retention_task 'arithmetic' is the task the run "
                       r"trains on: .*choose another"):  # fmt: skip
        TrainConfig(task="arithmetic", retention_task="arithmetic")
    with pytest.raises(ConfigError, match=r"evaluation.retention_task 'translate' is one of the "
                       r"study's training tasks"):  # fmt: skip
        StudyConfig(
            name="s", schemes={"a": "task_only"}, baseline="a",
            evaluation=EvalConfig(retention_task="translate"),
        )  # fmt: skip


def test_evaluate_refuses_the_evaluated_task_as_its_retention_task(random_model_dir) -> None:
    policy = load_policy(random_model_dir, device="cpu")
    with pytest.raises(ConfigError, match=r"retention_task 'arithmetic' is the task being "
                       r"evaluated"):  # fmt: skip
        evaluate(policy, "arithmetic", EvalConfig(n_examples=2, retention_task="arithmetic"))


@pytest.mark.parametrize("share", [1.0, -0.1, 1.5, float("nan")])
def test_a_replay_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ConfigError, match=r"replay_share must be a finite number in \[0.0, "
                       r"1.0\) \(it is the replay loss's weight"):  # fmt: skip
        TrainConfig(replay_share=share)


def test_a_token_budget_below_one_completions_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"token_budget 31 is smaller than one completion's "
                       r"limit \(max_new_tokens 32\).*set token_budget >= 32"):  # fmt: skip
        TrainConfig(max_new_tokens=32, token_budget=31)
    assert TrainConfig(max_new_tokens=32, token_budget=32).token_budget == 32


def test_warm_start_tasks_need_a_model_warm_started_here(random_model_dir) -> None:
    config = TrainConfig(model=random_model_dir, warm_start_tasks=["translate", "arithmetic"])
    with pytest.raises(ConfigError, match=r"warm_start_tasks .* applies to models warm-started "
                       r"here \(tiny\)"):  # fmt: skip
        policy_for_config(config)
    with pytest.raises(ConfigError, match=r"replay_tasks must be a non-empty list"):
        TrainConfig(replay_tasks=[])


# -- replay and the retention curve ---------------------------------------------------------------


def test_replay_draws_from_the_warm_start_tasks_unless_told_otherwise() -> None:
    translate, arithmetic = make_task("translate"), make_task("arithmetic")
    both = TrainConfig(task="translate", warm_start_tasks=["translate", "arithmetic"],
                       replay_share=0.25)  # fmt: skip
    pool = _replay_examples(both, translate)
    assert pool == list(translate.split("train")) + list(arithmetic.split("train"))
    only = TrainConfig(task="translate", replay_share=0.25, replay_tasks=["arithmetic"])
    assert _replay_examples(only, translate) == list(arithmetic.split("train"))
    assert _replay_examples(TrainConfig(task="translate"), translate) == list(
        translate.split("train")
    )


def test_a_run_evaluates_its_retention_task_at_start_and_every_evaluation(
    random_model_dir,
) -> None:
    config = small_train_config(
        random_model_dir, updates=3, eval_every=1, retention_task="translate", replay_share=0.25,
        replay_tasks=["translate"],
    )  # fmt: skip
    result = train(config)
    first = result.metrics[0]
    assert 0 <= first["start/retention_quality"] <= 100
    assert all("eval/retention_quality" in m and "eval/retention_bleu" in m
               for m in result.metrics)  # fmt: skip
    assert all(m["flops/replay"] > 0 for m in result.metrics)  # replay's compute is counted


def test_the_retention_nll_is_the_references_token_mean_nll(random_model_dir) -> None:
    policy = load_policy(random_model_dir, device="cpu")
    examples = make_task("arithmetic").split("test")[:40]  # two batches of NLL_BATCH and a rest
    losses, counts = [], []
    with torch.no_grad():
        for ex in examples:  # one at a time: the mean over all tokens, weighted by length
            loss, n, _ = completion_nll(policy, encode_pairs(policy, [ex]))
            losses.append(float(loss) * n)
            counts.append(n)
    assert _reference_nll(policy, examples) == pytest.approx(sum(losses) / sum(counts), rel=1e-5)


def _eval(quality: float, nll: float) -> EvalResult:
    retention = {"task": "arithmetic", "split": "test", "n_examples": 10, "metric": "exact_match",
                 "quality": quality, "bleu": 0.0, "nll": nll}  # fmt: skip
    return EvalResult("translate", "test", 10, 40.0, 50.0, 0.0, 9.0, 30.0, 1.0, 10.0, 0.01,
                      retention=retention)  # fmt: skip


def test_forgetting_reads_the_retention_tasks_primary_metric_and_the_nll_change() -> None:
    out = compare(_eval(40.0, 1.5), _eval(30.0, 1.75))
    assert out["forgetting_pct"] == pytest.approx(25.0)  # exact match 40 → 30, BLEU is 0
    assert out["retention_nll_change"] == pytest.approx(0.25)
    assert (out["retention_before"], out["retention_after"]) == (40.0, 30.0)


# -- the claims and the plot ----------------------------------------------------------------------


def test_relative_change_by_hand() -> None:
    mean, low, high = relative_change([11.0, 13.0], [10.0, 10.0])
    assert mean == pytest.approx(20.0)
    assert (low, high) == pytest.approx((10.0, 30.0))  # resamples are 11,11 / 11,13 / 13,13
    assert relative_change([1.0], [0.0, -1.0]) is None  # no relative change from <= 0
    assert relative_change([], [1.0]) is None


SCHEMES = {
    "no_replay": "task_only",
    "replay_25": {"reward": "task_only", "train": {"replay_share": 0.25}},
    "replay_25_confidence": {
        "reward": "task_only",
        "train": {"replay_share": 0.25, "replay_confidence_weighting": True},
    },
}


def _study(tmp_path, values: dict[str, list[tuple[float, float]]], metrics=None) -> StudyFiles:
    runs = [
        {"scheme": s, "seed": i, "retention_after": after, "forgetting_pct": forgetting}
        for s, pairs in values.items()
        for i, (after, forgetting) in enumerate(pairs)
    ]
    config = {"schemes": SCHEMES, "evaluation": {"retention_task": "arithmetic"}}
    results = {"schemes": list(SCHEMES), "baseline": "no_replay", "runs": runs, "config": config}
    return StudyFiles(tmp_path, results, "test", metrics or [], {})


def test_the_claims_compare_the_schemes_the_study_configured(tmp_path) -> None:
    study = _study(tmp_path, {
        "no_replay": [(20.0, 40.0), (20.0, 40.0)],
        "replay_25": [(24.0, 20.0), (24.0, 20.0)],  # retention +20 %: the claimed direction
        "replay_25_confidence": [(24.0, 30.0), (24.0, 30.0)],  # forgetting +50 %: reversed
    })  # fmt: skip
    replay, weighted = claim_rows(study)
    assert (replay.scheme, replay.against, replay.claimed_pct) == ("replay_25", "no_replay", 12.0)
    assert replay.change == pytest.approx((20.0, 20.0, 20.0)) and replay.verdict == "held"
    assert (weighted.scheme, weighted.against) == ("replay_25_confidence", "replay_25")
    assert weighted.change[0] == pytest.approx(50.0) and weighted.verdict == "reversed"
    table = claims_table(study)
    assert table.rows[0][3:] == ["+12", "+20.0 [+20.0, +20.0]", "held"]


def test_no_claims_without_a_retention_task_and_undefined_drift_says_why(tmp_path) -> None:
    study = _study(
        tmp_path,
        {
            "no_replay": [(20.0, 0.0)],
            "replay_25": [(20.0, -5.0)],
            "replay_25_confidence": [(20.0, 1.0)],
        },
    )  # replay gained: no base
    weighted = claim_rows(study)[1]
    assert weighted.change is None and weighted.verdict == "not measured"
    assert "mean forgetting_pct of replay_25 is <= 0" in weighted.why
    study.results["config"]["evaluation"] = {}
    assert claim_rows(study) == []


def test_the_forgetting_plot_draws_each_schemes_retention_curve(tmp_path) -> None:
    from rewardgym.evaluation.report.load import RunFiles

    def run(scheme: str, start: float) -> RunFiles:
        metrics = [
            {"update": 0, "start/retention_quality": start, "start/quality": 30.0},
            {"update": 1, "eval/retention_quality": start - 5, "eval/quality": 35.0},
        ]
        return RunFiles({"scheme": scheme}, f"runs/{scheme}", metrics, None, None)

    study = _study(tmp_path, {})
    study.runs = [run("no_replay", 40.0), run("replay_25", 38.0)]
    plot = plot_forgetting(study)
    assert plot is not None and plot.png.startswith(b"\x89PNG")
    assert "arithmetic" in plot.title
    study.runs = [RunFiles({"scheme": "no_replay"}, "r", [{"update": 0}], None, None)]
    assert plot_forgetting(study) is None  # no retention curve logged: no plot
