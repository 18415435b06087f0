"""Study runner: every (scheme × task × seed) run trained, evaluated and recorded.

The flow: the starting policy is evaluated once per task (``before/``), each run trains and is
evaluated after training (``runs/<scheme>/<task>/<seed>/``), and its record is written to
``records/`` the moment it finishes. ``results.json`` is rebuilt from the records, so a rerun
skips finished runs, resumes interrupted ones from their checkpoints, and ends with the same
results as an uninterrupted study.

Example:
    >>> result = run_study("speed_vs_balanced", out="studies/svb")
    >>> result.results_path
    PosixPath('studies/svb/results.json')
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardgym.errors import RunDataError
from rewardgym.evaluation.stats import prob_beats, summarise
from rewardgym.evaluation.study_config import (
    STUDY_FORMAT_VERSION,
    RunUnit,
    StudyConfig,
    expand_units,
    load_study_config,
)
from rewardgym.fileio import write_json_atomic, write_text_atomic

# headline metrics: name -> is higher better (None: neither, reported without "beats")
HEADLINE = {
    "bleu_improvement_pct": True,
    "robustness_change_pct": True,
    "grad_variance_change_pct": False,
    "compute_waste_pct": False,
    "final_bleu": True,
    "final_chrf": True,
    "completion_length": None,
    "entropy_bits": None,
    "monitor_alerts": False,
    "forgetting_pct": False,
    "flops_per_bleu_point": False,
    "train_reward_last": None,
}


@dataclass
class StudyResult:
    """What :func:`run_study` returns: the study directory and its aggregated results."""

    study_dir: Path
    results: dict[str, Any]
    interrupted: bool = False

    @property
    def results_path(self) -> Path:
        return self.study_dir / "results.json"


def run_study(
    config_or_path: StudyConfig | str | Path | dict,
    out: str | Path | None = None,
    executor: str | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run (or finish) a study and write ``results.json``.

    Args:
        config_or_path: a :class:`StudyConfig`, a YAML path, a shipped study's name or a mapping.
        out: the study directory (default ``studies/<name>``).
        executor: ``"local"`` or ``"ray"``; overrides the config's.
        log: where progress lines go (default: stderr).

    Returns:
        A :class:`StudyResult`; ``interrupted`` is True when Ctrl-C stopped it (rerun to resume).
    """
    config = (
        config_or_path
        if isinstance(config_or_path, StudyConfig)
        else load_study_config(config_or_path, executor=executor)
    )
    if executor is not None and executor != config.executor:
        config = load_study_config(config.to_dict(), executor=executor)
    study_dir = Path(out) if out is not None else Path("studies") / config.name
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    _prepare_study_dir(study_dir, config)
    started = time.perf_counter()
    units = expand_units(config)
    for task in config.tasks:
        _evaluate_before(config, task, study_dir, log)
    pending = [u for u in units if not record_path(study_dir, u).exists()]
    log(f"study {config.name!r}: {len(units)} runs, {len(units) - len(pending)} already done")
    interrupted = False
    if pending:
        run_all = _run_ray if config.executor == "ray" else _run_local
        interrupted = run_all(config, study_dir, pending, len(units), log)
    results = collect_results(config, study_dir, wall_s=time.perf_counter() - started)
    write_json_atomic(study_dir / "results.json", results)
    if interrupted:
        log("study interrupted: rerun the same command to resume where it stopped")
    return StudyResult(study_dir, results, interrupted)


# -- directories and records -------------------------------------------------------------------


def run_dir(study_dir: Path, unit: RunUnit) -> Path:
    """Where one run's files live: ``runs/<scheme>/<task>/<seed>``."""
    return study_dir / "runs" / unit.scheme / unit.task / str(unit.seed)


def record_path(study_dir: Path, unit: RunUnit) -> Path:
    return study_dir / "records" / f"{unit.scheme}__{unit.task}__{unit.seed}.json"


def _prepare_study_dir(study_dir: Path, config: StudyConfig) -> None:
    saved = study_dir / "study.yaml"
    resolved = config.to_dict()
    comparable = {
        k: v for k, v in resolved.items() if k not in ("executor", "workers", "ray_address")
    }
    if saved.exists():
        previous = load_study_config(saved).to_dict()
        prev_cmp = {
            k: v for k, v in previous.items() if k not in ("executor", "workers", "ray_address")
        }
        if prev_cmp != comparable:
            changed = sorted(k for k in comparable if comparable[k] != prev_cmp.get(k))
            raise RunDataError(
                f"study directory {str(study_dir)!r} holds a study with a different config "
                f"({changed} differ); use another --out or the same config to resume"
            )
    study_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    write_text_atomic(saved, yaml.safe_dump(resolved, sort_keys=False))


def _evaluate_before(config: StudyConfig, task: str, study_dir: Path, log) -> None:
    """Evaluate the starting policy once per task; every run's "before" is this result."""
    path = study_dir / "before" / task / f"{config.evaluation.split}.json"
    if path.exists():
        return
    from rewardgym.agents.policy import load_policy

    log(f"evaluating the starting policy on {task!r} (before training)")
    policy = load_policy(config.model, task=task)
    _evaluate(policy, config, task, path.parent, reward=None)


def _evaluate(policy, config: StudyConfig, task: str, out_dir: Path, reward: Any):
    from rewardgym.evaluation.evaluate import evaluate

    ev = config.evaluation
    return evaluate(
        policy,
        task,
        split=ev.split,
        noise=ev.noise,
        severities=ev.severities,
        reward=reward,
        n_examples=ev.n_examples,
        max_new_tokens=ev.max_new_tokens,
        batch_size=ev.batch_size,
        out_dir=out_dir,
        retention_task=ev.retention_task,
        n_samples=ev.n_samples,
    )


# -- one run (runs in worker processes too: module-level and picklable) ------------------------


def execute_unit(config_dict: dict, study_dir: str, unit: RunUnit, label: str = "") -> dict:
    """Train one run (resuming if it started before), evaluate it, write its record."""
    from rewardgym.agents.trainer import train
    from rewardgym.evaluation.evaluate import EvalResult, compare

    config = load_study_config(config_dict)
    study = Path(study_dir)
    out = run_dir(study, unit)
    started = time.perf_counter()
    train_config = config.train_config(
        unit.task, unit.reward, unit.seed, str(out), progress=bool(label)
    )
    resume = (out / "config.json").exists()
    result = train(train_config, callbacks=study_monitors(config), resume=resume, label=label)
    if result.interrupted:
        return {"interrupted": True, "key": unit.key}
    after = _evaluate(result.policy, config, unit.task, out / "eval", reward=unit.reward)
    before = EvalResult.load(study / "before" / unit.task / f"{config.evaluation.split}.json")
    record = summarise_run(unit, result.metrics, before, after, compare(before, after))
    record["run_dir"] = str(out.relative_to(study))
    record["wall_s"] = time.perf_counter() - started
    write_json_atomic(record_path(study, unit), record)
    return record


def study_monitors(config: StudyConfig) -> list:
    """The monitors (trainer callbacks) every run of the study gets."""
    from rewardgym.evaluation.monitors import default_monitors, make_monitors

    if config.monitors in (None, False, "none"):
        return []
    if config.monitors in ("all", True):
        return default_monitors()
    return make_monitors(config.monitors)


def summarise_run(unit: RunUnit, metrics: list[dict], before, after, change: dict) -> dict:
    """The numbers one run contributes to the report, each traceable to a run file."""
    nus = [m["grad/nu"] for m in metrics if m.get("grad/nu") is not None]
    last = metrics[-1] if metrics else {}
    tail = metrics[-max(1, len(metrics) // 5) :]
    bleu_gain = (after.bleu - before.bleu) if after.bleu is not None else None
    flops_total = last.get("flops/total")
    return {
        "key": unit.key,
        "scheme": unit.scheme,
        "task": unit.task,
        "seed": unit.seed,
        "reward": unit.reward,
        "updates": len(metrics),
        "final_bleu": after.bleu,
        "final_chrf": after.chrf,
        "before_bleu": before.bleu,
        "bleu_improvement_pct": change.get("bleu_improvement_pct"),
        "robustness_before": change.get("robustness_before"),
        "robustness_after": change.get("robustness_after"),
        "robustness_change_pct": change.get("robustness_change_pct"),
        "forgetting_pct": change.get("forgetting_pct"),
        "notes": change.get("notes", []),
        "nu_median": float(np.median(nus)) if nus else None,
        "compute_waste_pct": last.get("compute_waste_pct"),
        "flops_total": flops_total,
        "flops_by_category": {k[6:]: v for k, v in last.items() if k.startswith("flops/")},
        "flops_per_bleu_point": (flops_total / bleu_gain)
        if flops_total and bleu_gain and bleu_gain > 0
        else None,
        "completion_length": after.completion_tokens,
        "entropy_bits": float(np.mean([m["entropy_bits"] for m in tail]))
        if tail and last
        else None,
        "train_reward_first": float(np.mean([m["reward/mean"] for m in metrics[: len(tail)]]))
        if metrics
        else None,
        "train_reward_last": float(np.mean([m["reward/mean"] for m in tail])) if metrics else None,
        "monitor_alerts": sum(len(m.get("alerts", [])) for m in metrics),
        "alerts": [a for m in metrics for a in m.get("alerts", [])],
        "eval_reward": (after.reward or {}).get("total"),
    }


# -- executors ---------------------------------------------------------------------------------


def _run_local(
    config: StudyConfig, study_dir: Path, pending: list[RunUnit], total: int, log
) -> bool:
    done = total - len(pending)
    started = time.perf_counter()
    if config.workers > 1:
        return _run_pool(config, study_dir, pending, total, log)
    for i, unit in enumerate(pending):
        label = f"[{done + 1}/{total}] {unit.key}"
        record = execute_unit(config.to_dict(), str(study_dir.resolve()), unit, label=label)
        if record.get("interrupted"):
            return True
        done += 1
        _log_progress(log, record, done, total, i + 1, len(pending), started)
    return False


def _run_pool(
    config: StudyConfig, study_dir: Path, pending: list[RunUnit], total: int, log
) -> bool:
    import concurrent.futures as cf
    import multiprocessing

    done, started = total - len(pending), time.perf_counter()
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    threads = max(1, (os.cpu_count() or 1) // config.workers)
    with cf.ProcessPoolExecutor(
        config.workers, mp_context=context, initializer=_limit_threads, initargs=(threads,)
    ) as pool:
        futures = [pool.submit(execute_unit, config.to_dict(), str(study_dir), u) for u in pending]
        for n, future in enumerate(cf.as_completed(futures), start=1):
            record = future.result()
            done += 1
            _log_progress(log, record, done, total, n, len(pending), started)
    return False


def _limit_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _run_ray(config: StudyConfig, study_dir: Path, pending: list[RunUnit], total: int, log) -> bool:
    try:
        import ray
    except ImportError as exc:
        from rewardgym.errors import ConfigError

        raise ConfigError(
            "executor 'ray' needs Ray: pip install 'rewardgym[ray]' (or use executor: local)"
        ) from exc
    started_here = not ray.is_initialized()
    if started_here:
        # the dashboard is an HTTP server that can run jobs: never start one implicitly
        ray.init(
            address=config.ray_address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        remote = ray.remote(num_cpus=config.ray_num_cpus, num_gpus=config.ray_num_gpus)(
            execute_unit
        )
        refs = [remote.remote(config.to_dict(), str(study_dir.resolve()), u) for u in pending]
        done, started, n = total - len(pending), time.perf_counter(), 0
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            record = ray.get(ready[0])
            done, n = done + 1, n + 1
            _log_progress(log, record, done, total, n, len(pending), started)
    finally:
        if started_here:
            ray.shutdown()
    return False


def _log_progress(
    log, record: dict, done: int, total: int, n: int, n_pending: int, started: float
) -> None:
    elapsed = time.perf_counter() - started
    left = elapsed / n * (n_pending - n)
    bleu = record.get("final_bleu")
    log(
        f"[{done}/{total}] {record['key']} done in {record.get('wall_s', 0):.0f} s: "
        f"BLEU {bleu if bleu is None else round(bleu, 1)}, "
        f"train reward {record.get('train_reward_last', float('nan')):.3f}; "
        f"about {left / 60:.1f} min left"
    )


# -- aggregation -------------------------------------------------------------------------------


def collect_results(config: StudyConfig, study_dir: Path, wall_s: float | None = None) -> dict:
    """results.json from the records on disk: per-run figures, per-scheme statistics."""
    units = expand_units(config)
    records = []
    for unit in units:
        path = record_path(study_dir, unit)
        if path.exists():
            records.append(json.loads(path.read_text(encoding="utf-8")))
    _add_grad_variance_change(records, config.baseline)
    schemes = list(dict.fromkeys(u.scheme for u in units))
    summary, beats = {}, {}
    base_runs = [r for r in records if r["scheme"] == config.baseline]
    for scheme in schemes:
        runs = [r for r in records if r["scheme"] == scheme]
        summary[scheme] = {m: summarise([r.get(m) for r in runs]).to_dict() for m in HEADLINE}
        beats[scheme] = {
            m: _prob(runs, base_runs, m, better)
            for m, better in HEADLINE.items()
            if better is not None
        }
    return {
        "format_version": STUDY_FORMAT_VERSION,
        "study": config.name,
        "baseline": config.baseline,
        "schemes": schemes,
        "tasks": config.tasks,
        "seeds": config.seeds,
        "complete": len(records) == len(units),
        "runs": records,
        "summary": summary,
        "p_beats_baseline": beats,
        "before": _before_summary(config, study_dir),
        "environment": environment(),
        "wall_s": wall_s,
        "config": config.to_dict(),
    }


def _add_grad_variance_change(records: list[dict], baseline: str) -> None:
    """(ν_scheme / ν_baseline − 1) × 100, seed by seed against the same task's baseline."""
    base = {(r["task"], r["seed"]): r.get("nu_median") for r in records if r["scheme"] == baseline}
    for r in records:
        ref = base.get((r["task"], r["seed"]))
        nu = r.get("nu_median")
        r["grad_variance_change_pct"] = (
            (nu / ref - 1) * 100 if nu is not None and ref not in (None, 0) else None
        )


def _prob(runs: list[dict], base_runs: list[dict], metric: str, higher: bool) -> float | None:
    from rewardgym.evaluation.stats import defined

    a = defined(r.get(metric) for r in runs)
    b = defined(r.get(metric) for r in base_runs)
    return prob_beats(a, b, higher) if a and b else None


def _before_summary(config: StudyConfig, study_dir: Path) -> dict:
    out = {}
    for task in config.tasks:
        path = study_dir / "before" / task / f"{config.evaluation.split}.json"
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            out[task] = {
                k: data.get(k) for k in ("bleu", "chrf", "robustness", "completion_tokens")
            }
    return out


def environment() -> dict[str, Any]:
    """Library versions and hardware, for the report's reproducibility section."""
    from importlib import metadata

    versions = {}
    for name in (
        "rewardgym",
        "torch",
        "transformers",
        "gymnasium",
        "stable-baselines3",
        "sacrebleu",
        "tokenizers",
        "numpy",
        "ray",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        device, threads = "cpu", None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "device": device,
        "versions": versions,
    }
