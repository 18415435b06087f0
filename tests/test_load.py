"""Load: a study of 40 tiny runs on the local executor and on local Ray completes with every
result present, leaves no worker processes behind, and the driver's peak memory does not grow
with the number of runs (peak RSS after 10 runs vs after 40, ``resource.getrusage``)."""

from __future__ import annotations

import resource
import sys
import time

import psutil
import pytest

from rewardgym.evaluation.study import run_study

N_RUNS = 40
# a driver that kept something per run (a model, an optimizer, a rollout) would grow by several
# MB per run; the allocator's noise on a plateau stays well below this
MAX_GROWTH_MB = 60.0


def _config(model_dir: str) -> dict:
    return {
        "name": "load",
        "tasks": ["arithmetic"],
        "model": model_dir,
        "seeds": list(range(N_RUNS // 2)),
        "baseline": "task_only",
        "schemes": {"task_only": "task_only", "speed_only": "speed_only"},
        "monitors": "none",
        "train": {
            "updates": 2,
            "prompts_per_update": 4,
            "group_size": 2,
            "max_new_tokens": 4,
            "eval_examples": 4,
            "checkpoint_every": 0,
            "keep_checkpoints": 1,
            "tensorboard": False,
        },
        "evaluation": {
            "n_examples": 4,
            "severities": [0.1],
            "noise": ["char_drop"],
            "max_new_tokens": 4,
            "n_samples": 1,
        },
    }


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB else


def _live_children() -> list[str]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{child.pid} {child.name()} {' '.join(child.cmdline()[:3])}")
        except psutil.NoSuchProcess:
            continue
    return out


def _wait_for_no_children(timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (alive := _live_children()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return alive


class _MemoryLog:
    """The study's progress log; samples the driver's peak RSS as runs finish."""

    def __init__(self) -> None:
        self.done = 0
        self.peak_at: dict[int, float] = {}

    def __call__(self, line: str) -> None:
        if " done in " in line:
            self.done += 1
            self.peak_at[self.done] = _peak_rss_mb()


def _check_complete(result) -> None:
    runs = result.results["runs"]
    assert result.results["complete"] and len(runs) == N_RUNS
    assert len({r["key"] for r in runs}) == N_RUNS
    for record in runs:
        assert record["updates"] == 2 and record["final_bleu"] is not None
        assert (result.study_dir / record["run_dir"] / "run.json").exists()


@pytest.mark.slow
def test_local_study_of_40_runs(random_model_dir, tmp_path) -> None:
    assert _live_children() == []
    log = _MemoryLog()
    started = time.perf_counter()
    result = run_study(_config(random_model_dir), out=tmp_path / "local", log=log)
    wall = time.perf_counter() - started
    _check_complete(result)
    growth = log.peak_at[N_RUNS] - log.peak_at[10]
    print(
        f"\nlocal executor, {N_RUNS} runs in {wall:.0f} s: driver peak RSS "
        f"{log.peak_at[10]:.0f} MB after 10 runs, {log.peak_at[N_RUNS]:.0f} MB after "
        f"{N_RUNS} (+{growth:.1f} MB)"
    )
    assert growth < MAX_GROWTH_MB
    assert _wait_for_no_children() == []


@pytest.mark.slow
def test_ray_study_of_40_runs(random_model_dir, tmp_path) -> None:
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    log = _MemoryLog()
    started = time.perf_counter()
    cfg = {**_config(random_model_dir), "executor": "ray"}
    result = run_study(cfg, out=tmp_path / "ray", log=log)
    wall = time.perf_counter() - started
    _check_complete(result)
    assert not ray.is_initialized()  # the study shut down the Ray it started
    growth = log.peak_at[N_RUNS] - log.peak_at[10]
    print(
        f"\nray executor, {N_RUNS} runs in {wall:.0f} s: driver peak RSS "
        f"{log.peak_at[10]:.0f} MB after 10 runs, {log.peak_at[N_RUNS]:.0f} MB after "
        f"{N_RUNS} (+{growth:.1f} MB)"
    )
    assert growth < MAX_GROWTH_MB
    leaked = _wait_for_no_children()
    assert leaked == [], f"processes left after ray.shutdown(): {leaked}"
