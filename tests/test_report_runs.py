"""``rewardgym report FOLDER`` on runs trained one by one: collected into study-shaped records,
grouped into schemes by reward, compared with the starting policy evaluated as the runs were.

Most tests write synthetic run folders (config.json, metrics.jsonl, run.json, eval/<split>.json
and the cached starting-policy evaluation), so they need no model; one slow test trains and
evaluates tiny runs for real. Every expectation comes from the files the test writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import small_train_config

from rewardgym.agents.config import TrainConfig
from rewardgym.errors import ConfigError, RunDataError, UnknownNameError
from rewardgym.evaluation.evaluate import EvalConfig, EvalResult, compare, evaluate_run
from rewardgym.evaluation.run_folder import (
    FolderRun,
    assign_schemes,
    before_identity,
    evaluate_command,
    find_runs,
    folder_kind,
    reward_label,
    write_folder_report,
)

MIX = {"composite": {"exact_match": 0.5, "speed": 0.5}}
# what evaluate() records in EvalResult.settings for EvalConfig(n_examples=4, noise=["word_drop"],
# severities=[0.1], max_new_tokens=6)
SETTINGS = {
    "max_new_tokens": 6,
    "noise_types": ["word_drop"],
    "severities": [0.1],
    "greedy": True,
    "temperature": 1.0,
    "top_p": 1.0,
    "seed": 0,
    "batch_size": 64,
    "noise_seed": 0,
    "task_seed": 0,
}
# (run folder under the folder, reward, seed, quality after training): children and grandchildren
RUNS = [
    ("task_only/s0", "task_only", 0, 50.0),
    ("task_only/s1", "task_only", 1, 75.0),
    ("mix-0", MIX, 0, 30.0),
    ("mix-1", MIX, 1, 20.0),
]
BEFORE_QUALITY = 25.0
IMPROVEMENTS = ("quality_improvement_pct", "bleu_improvement_pct", "robustness_change_pct")


def _eval(
    quality: float, *, split: str = "test", task: str = "arithmetic", **settings
) -> EvalResult:
    return EvalResult(
        task=task,
        split=split,
        n_examples=4,
        bleu=quality / 2,
        chrf=quality,
        exact_match=quality / 100,
        completion_tokens=2.0 + quality / 50,
        completion_chars=5.0,
        finished_share=1.0,
        tokens_per_sample=3.0,
        latency_s_per_sample=0.01,
        metric="exact_match",
        quality=quality,
        noise={"word_drop": {"0.1": quality / 4}},
        noise_chrf={"word_drop": {"0.1": quality / 2}},
        noise_quality={"word_drop": {"0.1": quality * 0.8}},
        robustness=0.8 if quality else None,
        samples=[{"prompt": "3 + 4 =", "reference": "7", "completion": f"{quality:g}"}],
        settings={**SETTINGS, **settings},
    )


def _config(run: Path, reward, seed: int, **options) -> TrainConfig:
    base = dict(task="arithmetic", model="tiny", updates=3, progress=False)
    return TrainConfig(**{**base, **options, "reward": reward, "seed": seed, "out": str(run)})


def write_run(
    folder: Path,
    name: str,
    reward,
    seed: int,
    quality: float | None,
    *,
    split: str = "test",
    backend: str | None = None,
    eval_settings: dict | None = None,
    **options,
) -> Path:
    """A run folder as `rewardgym train` + `rewardgym evaluate` leave it (no checkpoints);
    ``quality`` None: never evaluated."""
    run = folder / name
    run.mkdir(parents=True)
    config = _config(run, reward, seed, **options)
    (run / "config.json").write_text(json.dumps(config.to_dict()), encoding="utf-8")
    metrics = [
        {
            "update": u,
            "reward/mean": 0.1 * u + seed,
            "entropy_bits": 2.0 - 0.1 * u,
            "grad/nu": 1.0 + 0.5 * seed + 0.1 * u + 0.01 * len(name),
            "flops/total": 1e9 * (u + 1),
            "compute_waste_pct": 10.0 + seed,
            **({"alerts": [{"update": u, "monitor": "gradient_spike", "value": 3.0}]} if u else {}),
        }
        for u in range(3)
    ]
    lines = "".join(json.dumps(m) + "\n" for m in metrics)
    (run / "metrics.jsonl").write_text(lines, encoding="utf-8")
    summary = {"wall_s": 2.0 + seed, "torch_threads": 1, "machine": {"cpu_model": "Test CPU"}}
    if backend is not None:
        summary["backend"] = backend
    (run / "run.json").write_text(json.dumps(summary), encoding="utf-8")
    if quality is not None:
        _eval(
            quality, split=split, task=options.get("task", "arithmetic"), **(eval_settings or {})
        ).save(run / "eval" / f"{split}.json")
    return run


def write_before(folder: Path, **options) -> Path:
    """The starting policy's cached evaluation, recorded as the report records it."""
    identity = json.loads(json.dumps(before_identity(_config(folder, "task_only", 0, **options))))
    task = options.get("task", "arithmetic")
    before = _eval(BEFORE_QUALITY, task=task, starting_policy=identity)
    return before.save(folder / "before" / task / "test.json")


def make_folder(root: Path) -> Path:
    folder = root / "runs"
    for name, reward, seed, quality in RUNS:
        write_run(folder, name, reward, seed, quality, backend="trl" if name == "mix-1" else None)
    write_before(folder)
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _results(paths: dict[str, Path]) -> dict:
    return json.loads(paths["runs.json"].read_text(encoding="utf-8"))


# -- a folder of runs, reported ------------------------------------------------------------------


def test_records_are_what_compare_gives_on_the_run_files(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    write_run(folder / ".hidden", "copy", "speed_only", 0, 10.0)  # hidden: never a run
    logged: list[str] = []
    paths = write_folder_report(folder, log=logged.append)
    results = _results(paths)
    assert paths["runs.json"] == folder / "report" / "runs.json"
    assert not (folder / "results.json").exists()  # the folder is not made to look like a study
    assert not any("starting policy" in line for line in logged)  # the cache was used
    before = EvalResult.load(folder / "before" / "arithmetic" / "test.json")
    assert len(results["runs"]) == len(RUNS)
    for record in results["runs"]:
        after = EvalResult.load(folder / record["run_dir"] / "eval" / "test.json")
        change = compare(before, after)
        for key in IMPROVEMENTS:
            assert record[key] == change[key], key
        assert record["final_quality"] == after.quality
        assert record["grad_norm_spikes"] == 2  # alerts name the monitors a run had


def test_runs_are_grouped_into_schemes_by_reward_with_seeds_from_their_configs(
    tmp_path: Path,
) -> None:
    folder = make_folder(tmp_path)
    results = _results(write_folder_report(folder, log=lambda line: None))
    expected = {}
    for name, reward, _, _ in RUNS:
        expected.setdefault(reward_label(reward), []).append(name)
    by_scheme = {
        s: sorted(r["run_dir"] for r in results["runs"] if r["scheme"] == s)
        for s in results["schemes"]
    }
    assert by_scheme == {label: sorted(names) for label, names in expected.items()}
    assert reward_label(MIX) == "0.5·exact_match + 0.5·speed"
    assert results["seeds"] == sorted({seed for _, _, seed, _ in RUNS})
    assert results["tasks"] == ["arithmetic"]
    assert results["baseline"] == "task_only"
    for scheme in results["schemes"]:
        values = [r["final_quality"] for r in results["runs"] if r["scheme"] == scheme]
        summary = results["summary"][scheme]["final_quality"]
        assert summary["mean"] == pytest.approx(sum(values) / len(values))


def test_the_report_says_it_was_built_from_a_folder_and_how_to_reproduce_each_run(
    tmp_path: Path,
) -> None:
    folder = make_folder(tmp_path)
    paths = write_folder_report(folder, log=lambda line: None)
    md = paths["report.md"].read_text(encoding="utf-8")
    html = paths["report.html"].read_text(encoding="utf-8")
    assert "built from a folder of runs trained one by one" in md
    assert "mix-1 (trl)" in md and "mix-0 (native)" in md  # backend from run.json, or native
    assert "rewardgym study" not in md
    for name, *_ in RUNS:
        run = folder / name
        assert f"rewardgym train --config {run / 'config.json'} --out {run}" in md
        like = EvalResult.load(run / "eval" / "test.json")
        assert evaluate_command(run, like) in md
    assert f"rewardgym report {folder}\n" in md
    assert "report/runs.json" in md and "built from a folder of runs" in html


def test_the_evaluate_command_repeats_the_recorded_settings(tmp_path: Path) -> None:
    like = _eval(10.0)
    assert evaluate_command(Path("runs/c"), like) == (
        "rewardgym evaluate runs/c --split test --n-examples 4 --noise word_drop --severity 0.1 "
        "--max-new-tokens 6"
    )
    assert evaluate_command(Path("runs/c"), None) == "rewardgym evaluate runs/c"


def test_baseline_option_default_and_did_you_mean(tmp_path: Path, capsys) -> None:
    from rewardgym.cli import main

    folder = make_folder(tmp_path)
    label = reward_label(MIX)
    results = _results(write_folder_report(folder, baseline=label, log=lambda line: None))
    assert results["baseline"] == label
    base = {r["seed"]: r["nu_median"] for r in results["runs"] if r["scheme"] == label}
    for record in results["runs"]:  # ν change is against the baseline's run of the same seed
        expected = (record["nu_median"] / base[record["seed"]] - 1) * 100
        assert record["grad_variance_change_pct"] == pytest.approx(expected)
    with pytest.raises(UnknownNameError, match="did you mean 'task_only'"):
        write_folder_report(folder, baseline="task_onyl", log=lambda line: None)
    capsys.readouterr()
    assert main(["report", str(folder), "--baseline", "task_onyl"]) == 2
    assert "did you mean 'task_only'" in capsys.readouterr().err

    no_task_only = tmp_path / "other"
    for name, reward in (("a", "speed_only"), ("b", MIX)):
        write_run(no_task_only, name, reward, 0, 40.0)
    write_before(no_task_only)
    results = _results(write_folder_report(no_task_only, log=lambda line: None))
    assert results["baseline"] == sorted(results["schemes"])[0]


def test_a_run_without_an_evaluation_is_listed_with_the_command_that_fixes_it(
    tmp_path: Path,
) -> None:
    folder = make_folder(tmp_path)
    unevaluated = write_run(folder, "task_only/s2", "task_only", 2, None)
    other_task = write_run(folder, "translate-0", "task_only", 0, 40.0, task="translate")
    logged: list[str] = []
    paths = write_folder_report(folder, log=logged.append)
    results = _results(paths)
    command = evaluate_command(unevaluated, EvalResult.load(folder / RUNS[0][0] / "eval/test.json"))
    assert results["run_folder"]["missing"] == [{"run": "task_only/s2", "command": command}]
    assert results["complete"] is False
    assert len(results["runs"]) == len(RUNS)  # neither unusable run is in a figure
    assert any(command in line for line in logged)  # said on stderr too
    md = paths["report.md"].read_text(encoding="utf-8")
    assert command in md
    left_out = results["run_folder"]["left_out"]
    assert [entry["run"] for entry in left_out] == [other_task.relative_to(folder).as_posix()]
    assert "translate-0 is left out" in md
    assert not (folder / "before" / "translate").exists()  # nothing evaluated for it


def test_distinct_reward_specs_and_training_options_are_never_merged(tmp_path: Path) -> None:
    def run(name: str, reward, **options) -> FolderRun:
        path = tmp_path / name
        return FolderRun(path, name, _config(path, reward, 0, **options), "native", {}, [])

    same_label = [
        run("a", {"composite": {"bleu": 0.5}}),
        run("b", {"composite": {"bleu": {"weight": 0.5, "note": 1}}}),
    ]
    names = sorted(assign_schemes(same_label))
    assert len(names) == 2 and all(n.startswith("0.5·bleu #") for n in names)
    by_lr = [run("c", "task_only", lr=1e-3), run("d", "task_only", lr=5e-4)]
    schemes = assign_schemes(by_lr)
    assert sorted(schemes) == ["task_only [lr=0.0005]", "task_only [lr=0.001]"]
    assert schemes["task_only [lr=0.001]"] == {"reward": "task_only", "train": {"lr": 1e-3}}


def test_finding_runs_among_children_and_grandchildren(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "notes").mkdir()
    found = [p.relative_to(folder).as_posix() for p in find_runs(folder)]
    assert found == sorted(name for name, *_ in RUNS)
    assert folder_kind(folder) == "runs"


# -- bad input: a typed error naming the runs and the fix, and nothing written ----------------


def _settings_differ(folder: Path) -> None:
    write_run(folder, "long", "task_only", 7, 60.0, eval_settings={"max_new_tokens": 8})


def _split_differs(folder: Path) -> None:
    write_run(folder, "val", "task_only", 7, 60.0, split="validation")


def _no_common_task(folder: Path) -> None:
    for name, reward, seed, _ in RUNS:
        if reward == MIX:
            (folder / name / "config.json").write_text(
                json.dumps(_config(folder / name, MIX, seed, task="translate").to_dict())
            )


def _same_seed_twice(folder: Path) -> None:
    write_run(folder, "again", "task_only", 0, 60.0)


def _other_start(folder: Path) -> None:
    write_run(folder, "bigger", "task_only", 7, 60.0, model_options={"n_layers": 3})


BAD_FOLDERS = [
    (_settings_differ, ConfigError, r"different max_new_tokens \(8 in long; 6 in mix-0, "),
    (_split_differs, ConfigError, r"different splits .*--split test` for val"),
    (_no_common_task, ConfigError, r"share no task \(.* on translate; task_only on arithmetic\)"),
    (_same_seed_twice, RunDataError, r"again and .*task_only/s0 are the same run|s0 and .*again"),
    (_other_start, ConfigError, r"different model_options .*bigger"),
]


@pytest.mark.parametrize(("spoil", "error", "message"), BAD_FOLDERS)
def test_runs_that_cannot_be_compared_are_refused_before_anything_is_written(
    tmp_path: Path, spoil, error, message
) -> None:
    folder = make_folder(tmp_path)
    spoil(folder)
    files = _files(folder)
    with pytest.raises(error, match=message):
        write_folder_report(folder, log=lambda line: None)
    assert _files(folder) == files
    assert not (folder / "report").exists()


def test_a_folder_whose_runs_are_all_unevaluated_names_each_command(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    runs = [write_run(folder, f"r{seed}", "task_only", seed, None) for seed in (0, 1)]
    with pytest.raises(RunDataError, match="no run in .* has been evaluated") as caught:
        write_folder_report(folder, log=lambda line: None)
    for run in runs:
        assert f"`rewardgym evaluate {run}`" in str(caught.value)
    assert sorted(p.name for p in folder.iterdir()) == ["r0", "r1"]


def test_what_is_neither_a_study_nor_a_folder_of_runs_is_named(tmp_path: Path, capsys) -> None:
    from rewardgym.cli import main

    folder = make_folder(tmp_path)
    run = folder / "mix-0"
    cases = {
        run: "is one run directory .* pass its parent folder .*`rewardgym evaluate ",
        tmp_path / "empty": "neither a study .* nor a folder of runs",
        tmp_path / "nowhere": "does not exist",
    }
    (tmp_path / "empty").mkdir()
    for path, message in cases.items():
        with pytest.raises(RunDataError, match=message):
            folder_kind(path)
        capsys.readouterr()
        assert main(["report", str(path)]) == 2
        assert "rewardgym report: error:" in capsys.readouterr().err
    assert not (run / "report").exists()


def test_baseline_is_refused_for_a_study(tmp_path: Path, capsys) -> None:
    from rewardgym.cli import main

    (tmp_path / "results.json").write_text(json.dumps({"format_version": 1}), encoding="utf-8")
    assert main(["report", str(tmp_path), "--baseline", "task_only"]) == 2
    assert "--baseline is for a folder of runs" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


# -- real runs, trained and evaluated one by one --------------------------------------------------


@pytest.mark.slow
def test_tiny_runs_trained_one_by_one_are_compared(tmp_path: Path, random_model_dir, capsys):
    from rewardgym.agents.trainer import train
    from rewardgym.cli import main
    from rewardgym.evaluation.monitors import make_monitors

    folder = tmp_path / "runs"
    evaluation = EvalConfig(n_examples=4, noise=["word_drop"], severities=[0.1])
    for reward in ("task_only", MIX):
        for seed in (0, 1):
            run = folder / ("task_only" if reward == "task_only" else "mix") / str(seed)
            config = small_train_config(random_model_dir, reward=reward, seed=seed, out=str(run))
            # one run has the gradient_spike monitor: its checkpoint says so, not its config
            monitors = make_monitors({"gradient_spike": {}}) if seed == 1 else []
            train(config, callbacks=monitors)
            evaluate_run(run, evaluation)
    capsys.readouterr()
    assert main(["report", str(folder)]) == 0
    assert "evaluating the starting policy" in capsys.readouterr().err
    before_path = folder / "before" / "arithmetic" / "test.json"
    before = EvalResult.load(before_path)
    assert "checkpoint" not in before.settings  # the starting model, no checkpoint
    results = json.loads((folder / "report" / "runs.json").read_text(encoding="utf-8"))
    assert sorted(results["schemes"]) == sorted(["task_only", reward_label(MIX)])
    assert results["baseline"] == "task_only"
    for record in results["runs"]:
        after = EvalResult.load(folder / record["run_dir"] / "eval" / "test.json")
        change = compare(before, after)
        for key in IMPROVEMENTS:
            assert record[key] == change[key], key
        assert record["seed"] == int(Path(record["run_dir"]).name)
        assert (record["grad_norm_spikes"] is None) == (record["seed"] == 0)
    written = before_path.stat().st_mtime_ns
    assert main(["report", str(folder), "--baseline", reward_label(MIX)]) == 0
    assert "evaluating the starting policy" not in capsys.readouterr().err  # cached
    assert before_path.stat().st_mtime_ns == written
    again = json.loads((folder / "report" / "runs.json").read_text(encoding="utf-8"))
    assert again["baseline"] == reward_label(MIX)
