"""Updates per second of the default study's training, on this checkout and on a git revision.

``python -m benchmarks.study_updates [--against REV] [--updates 16] [--repeats 3]
[--scheme balanced]`` trains the default study's model (``tiny``, its warm start) on its task
with its ``train`` options, thread count and monitors
(``evaluation/studies/speed_vs_balanced.yaml``), for ``--updates`` updates and without
evaluations or checkpoints, and reports the median seconds per update after the first (the
first also warms the code paths up). Each run is a fresh child process, so one run's allocator
and caches do not carry into the next.

With ``--against REV`` the same runs alternate with runs of the package as it was at ``REV``
(``git archive`` into a temporary folder, imported from there ahead of this checkout), both
under this checkout's study options, so load from elsewhere hits both alike: the question
"are the default study's updates no slower than at REV?" gets a ratio from one invocation.
Not part of ``run_all``: it compares code versions rather than measuring this one.

Example:
    $ .venv/bin/python -m benchmarks.study_updates --against 2a72d1f --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "evaluation" / "studies" / "speed_vs_balanced.yaml"
# What a study run sets that this measurement leaves out: it times updates, not evaluations.
SKIPPED = ("eval_every", "eval_examples", "checkpoint_every", "updates")

# Runs in the child process: only TrainConfig, train and study_monitors (which reads nothing but
# its argument's ``monitors``), as every version since 2a72d1f has them.
_CHILD = """
import json, sys
from types import SimpleNamespace
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.trainer import train
from rewardgym.evaluation.study import study_monitors
options = json.loads(sys.argv[1])
monitors = study_monitors(SimpleNamespace(monitors=options.pop("monitors")))
result = train(TrainConfig(**options), callbacks=monitors)
print("UPDATE_SECONDS", json.dumps([m["time/update_s"] for m in result.metrics]))
"""


def study_options(scheme: str, updates: int, study: Path = STUDY) -> dict[str, Any]:
    """The TrainConfig fields of one run of the study's ``scheme``, plus its ``monitors``.

    Example:
        >>> study_options("balanced", 4)["model"]
        'tiny'
    """
    spec = yaml.safe_load(study.read_text(encoding="utf-8"))
    train = {k: v for k, v in spec["train"].items() if k not in SKIPPED}
    return {
        **train,
        "model": spec["model"],
        "model_options": spec.get("model_options", {}),
        "task": spec["tasks"][0],
        "reward": spec["schemes"][scheme],
        "threads": spec.get("threads"),
        "updates": updates,
        "eval_every": 0,
        "eval_examples": 8,
        "checkpoint_every": 0,
        "out": None,
        "tensorboard": False,
        "progress": False,
        "monitors": spec.get("monitors"),
    }


def time_run(options: dict[str, Any], package_parent: Path | None = None) -> float:
    """Median seconds per update after the first, of one training run in a child process;
    ``package_parent`` holds a ``rewardgym`` folder imported instead of this checkout."""
    env = dict(os.environ)
    if package_parent is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(package_parent), env.get("PYTHONPATH")])
        )
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(options)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("UPDATE_SECONDS")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"training run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    seconds = json.loads(lines[-1].split(" ", 1)[1])
    return statistics.median(seconds[1:])


def export_revision(revision: str, parent: Path) -> Path:
    """The package at git ``revision``, unpacked as ``parent/rewardgym``."""
    target = parent / "rewardgym"
    target.mkdir(parents=True)
    archive = parent / "source.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), revision],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return parent


def compare(revision: str | None, options: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Seconds per update of runs with ``options`` (:func:`study_options`) on this checkout and
    on ``revision`` (None: this checkout only), ``repeats`` runs each, alternated.

    Example:
        >>> compare("HEAD", study_options("balanced", 8), repeats=3)["speedup_vs_revision"]
        1.01
    """
    runs: dict[str, list[float]] = {"this checkout": []}
    with tempfile.TemporaryDirectory() as tmp:
        parent = export_revision(revision, Path(tmp)) if revision else None
        if revision:
            runs[revision] = []
        for _ in range(repeats):
            runs["this checkout"].append(time_run(options, None))
            if revision:
                runs[revision].append(time_run(options, parent))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    out: dict[str, Any] = {
        "reward": options["reward"],
        "updates": options["updates"],
        "repeats": repeats,
        "seconds_per_update": runs,
        "median_s": medians,
        "updates_per_s": {name: 1.0 / s for name, s in medians.items()},
    }
    if revision:
        out["speedup_vs_revision"] = medians[revision] / medians["this checkout"]
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="a git revision to compare with (e.g. a commit)")
    parser.add_argument("--scheme", default="balanced", help="which of the study's schemes")
    parser.add_argument("--updates", type=int, default=16, help="updates per run (first untimed)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per code version")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    result = compare(args.against, study_options(args.scheme, args.updates), args.repeats)
    for name, seconds in result["median_s"].items():
        runs = ", ".join(f"{1e3 * s:.0f}" for s in result["seconds_per_update"][name])
        print(f"{name}: {1.0 / seconds:.2f} updates/s ({1e3 * seconds:.0f} ms; runs {runs} ms)")
    if args.against:
        print(f"this checkout vs {args.against}: {result['speedup_vs_revision']:.3f}x")


if __name__ == "__main__":
    main()
