"""Time tiny-model training updates with all collapse monitors on vs none (budget: +10 %).

Runs the real trainer ``repeats`` times per arm, alternating arms so machine load hits both
alike, and takes each run's median per-update wall time (differences of ``time/elapsed_s``
between consecutive updates, which include every callback hook). Rollouts are seeded and the
monitors draw no global random numbers, so both arms do identical work apart from the monitors.
Because a shared machine makes wall-time differences noisy, the monitors' own hook time is also
measured directly (mean seconds per update, the every-n checks amortised) and reported as a share
of the monitor-free update time. Prints one JSON line and writes
``benchmarks/results/monitor_overhead.json``. Not run by tests.

Example:
    $ .venv/bin/python -m benchmarks.monitor_overhead --model tiny --updates 12 --repeats 5

From Python (``benchmarks.study_bench`` does this)::

    >>> measure(parse_args(["--updates", "6", "--repeats", "2"]))["overhead_pct"]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from rewardgym.agents.callbacks import Callback, CallbackList
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.trainer import train
from rewardgym.evaluation.monitors import default_monitors

RESULTS = Path(__file__).resolve().parent / "results" / "monitor_overhead.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny' or a local model directory")
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--reward", default="chrf", help="a reward with non-zero advantages")
    parser.add_argument("--updates", type=int, default=12, help="updates per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per arm")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model=args.model,
        task=args.task,
        reward=args.reward,
        updates=args.updates,
        out=None,
        eval_every=0,
        eval_examples=4,
        checkpoint_every=0,
        tensorboard=False,
        progress=False,
    )


class _Timed(Callback):
    """Runs the monitors (as a ``CallbackList``) and adds up the seconds of their hooks."""

    def __init__(self, monitors: list[Callback]) -> None:
        self.inner, self.seconds = CallbackList(monitors), 0.0

    def _timed(self, hook: str, *args: Any) -> Any:
        start = time.perf_counter()
        result = getattr(self.inner, hook)(*args)
        self.seconds += time.perf_counter() - start
        return result

    def on_train_start(self, ctx: Any) -> None:  # one-off setup (probe, start norms): not counted
        self.inner.on_train_start(ctx)

    def on_before_step(self, ctx: Any, stats: dict[str, Any]) -> Any:
        return self._timed("on_before_step", ctx, stats)

    def on_update_end(self, ctx: Any, metrics: dict[str, Any]) -> bool:
        return self._timed("on_update_end", ctx, metrics)

    def on_eval_end(self, ctx: Any, metrics: dict[str, Any]) -> None:
        self._timed("on_eval_end", ctx, metrics)


def _per_update_s(with_monitors: bool, args: argparse.Namespace, hooks: list[float]) -> float:
    """Median wall seconds between consecutive updates of one run; hook seconds per update."""
    timed = _Timed(default_monitors() if with_monitors else [])
    result = train(_config(args), callbacks=[timed])
    hooks.append(timed.seconds / max(len(result.metrics), 1))
    elapsed = [r["time/elapsed_s"] for r in result.metrics]
    if len(elapsed) < 2:
        raise SystemExit(f"need per-update metrics of >= 2 updates, got {len(elapsed)}")
    return statistics.median(b - a for a, b in zip(elapsed, elapsed[1:], strict=False))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate the two arms ``repeats`` times; return both medians and the overhead."""
    hooks: list[float] = []
    _per_update_s(False, args, [])  # warm-up: model load, caches, allocator
    times: dict[str, list[float]] = {"none": [], "all": []}
    for _ in range(args.repeats):
        times["none"].append(_per_update_s(False, args, []))
        times["all"].append(_per_update_s(True, args, hooks))
    none, full = statistics.median(times["none"]), statistics.median(times["all"])
    hook_s = statistics.median(hooks)
    return {
        "benchmark": "monitor_overhead",
        "model": args.model,
        "task": args.task,
        "reward": args.reward,
        "updates": args.updates,
        "repeats": args.repeats,
        "monitors": [m.name for m in default_monitors()],
        "per_update_s_none": none,
        "per_update_s_all": full,
        "overhead_pct": 100.0 * (full - none) / none,
        "monitor_hooks_s_per_update": hook_s,
        "monitor_hooks_pct_of_update": 100.0 * hook_s / none,
        "runs_none_s": times["none"],
        "runs_all_s": times["all"],
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = measure(args)
    print(json.dumps(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
