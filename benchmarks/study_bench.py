"""Default study: wall time and peak memory of ``make study``'s study, and the monitors' cost.

The study runs as ``rewardgym study <name>`` in a child process, itself started by a small
Python wrapper, so the wrapper's ``RUSAGE_CHILDREN`` peak resident memory is the study's alone
(the largest of its processes). Quick mode runs a reduced copy of the study (one seed, a few
updates, small evaluations) to check the pipeline; its wall time is not comparable with the
15-minute budget, which only the full mode checks. The monitors' overhead (all on vs all off)
comes from :mod:`benchmarks.monitor_overhead`.

Example:
    >>> run(quick=True)["study"]["wall_s"] > 0
    True
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks import monitor_overhead
from benchmarks.roofline import figure

STUDY = "speed_vs_balanced"
BUDGET_S = 15 * 60
OVERHEAD_PCT = 10.0
QUICK_OVERRIDES = {
    "seeds": [0],
    "train": {"updates": 4, "eval_every": 2, "eval_examples": 8, "checkpoint_every": 2},
    "evaluation": {"n_examples": 16, "severities": [0.1]},
}
_WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(json.dumps({'returncode': code, 'peak_kb': peak}))\n"
)


def quick_study_file(directory: Path, name: str = STUDY) -> Path:
    """A reduced copy of the shipped study ``name`` (see ``QUICK_OVERRIDES``), written as YAML.

    Example:
        >>> quick_study_file(Path("/tmp")).suffix
        '.yaml'
    """
    from importlib.resources import files

    text = (files("rewardgym.evaluation") / "studies" / f"{name}.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    for key, value in QUICK_OVERRIDES.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    data["name"] = f"{name}_quick"
    path = directory / f"{name}_quick.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def time_study(config: str, out: Path) -> dict[str, Any]:
    """Wall seconds and peak resident memory (MiB) of ``rewardgym study config --out out``.

    Example:
        >>> time_study("speed_vs_balanced", Path("/tmp/svb"))["peak_mib"] > 0
        True
    """
    cli = [sys.executable, "-m", "rewardgym.cli", "study", config, "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *cli], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    usage = json.loads(lines[-1]) if lines else {"returncode": done.returncode, "peak_kb": 0}
    if usage["returncode"] != 0:
        raise RuntimeError(
            f"`rewardgym study {config}` failed (exit {usage['returncode']}): "
            f"{done.stderr.strip()[-2000:]}"
        )
    return {"wall_s": wall, "peak_mib": usage["peak_kb"] / 1024.0, "config": config}


def monitors(
    quick: bool, model: str = "tiny", updates: int | None = None, repeats: int | None = None
) -> dict[str, Any]:
    """The monitors' overhead on tiny-model training (all on vs all off, alternated).

    ``updates`` per run and ``repeats`` per arm default to 6 and 2 (quick) or 12 and 5 (full).

    Example:
        >>> monitors(quick=True)["overhead_pct"] < 100
        True
    """
    updates = updates or (6 if quick else 12)
    repeats = repeats or (2 if quick else 5)
    args = monitor_overhead.parse_args(
        ["--model", model, "--updates", str(updates), "--repeats", str(repeats)]
    )
    return monitor_overhead.measure(args)


def run(quick: bool = False, **_: Any) -> dict[str, Any]:
    """Benchmark entry: the study's wall time and peak memory, and the monitors' overhead.

    Example:
        >>> run(quick=True)["benchmark"]
        'study'
    """
    with tempfile.TemporaryDirectory() as tmp:
        config = str(quick_study_file(Path(tmp))) if quick else STUDY
        study = time_study(config, Path(tmp) / "study")
    overhead = monitors(quick)
    label = "reduced study (quick: budget not checked)" if quick else f"`make study` ({STUDY})"
    met = None if quick else study["wall_s"] <= BUDGET_S
    return {
        "benchmark": "study",
        "quick": quick,
        "study": study,
        "monitor_overhead": overhead,
        "figures": [
            figure(
                f"{label}: wall time", study["wall_s"], "s", "<= 900 s" if not quick else "", met
            ),
            figure(f"{label}: peak memory", study["peak_mib"], "MiB"),
            figure(
                "monitors all on vs off: overhead (wall)",
                overhead["overhead_pct"],
                "%",
                f"<= {OVERHEAD_PCT:.0f} %",
                overhead["overhead_pct"] <= OVERHEAD_PCT,
            ),
            figure(
                "monitors: own hook time per update",
                overhead["monitor_hooks_pct_of_update"],
                "% of update",
            ),
        ],
    }
