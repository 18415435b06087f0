"""One study, two backends: the side-by-side table of docs/results/trl-backend.md.

Reads two finished study directories of the same design (one trained natively, one with
``backend: trl``) and prints, per scheme and backend, the held-out quality change with its CI,
answer length, robustness and gradient-variance changes, compute waste, reward-hacking catches
per seed and wall time, then checks that the default study's effects keep their direction:
``task_only``'s CI above 0, ``speed_only`` caught in every seed, ``balanced`` at least 15 %
shorter than ``task_only`` at a quality change whose CI's low end is above -3 %.

    rewardgym study speed_vs_balanced
    rewardgym study speed_vs_balanced --backend trl
    python -m benchmarks.backend_compare studies/speed_vs_balanced studies/speed_vs_balanced_trl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# (results key, label, number format: signed for changes)
ROWS = (
    ("quality_improvement_pct", "quality change (%)", "+.1f"),
    ("completion_length", "answer length (tokens)", ".1f"),
    ("robustness_change_pct", "robustness change (%)", "+.1f"),
    ("grad_variance_change_pct", "gradient variance change vs baseline (%)", "+.1f"),
    ("compute_waste_pct", "compute waste (%)", ".1f"),
)


def _stat(summary: dict, key: str, fmt: str) -> str:
    entry = summary.get(key) or {}
    if entry.get("mean") is None:
        return "—"
    if entry.get("ci_low") is None:
        return format(entry["mean"], fmt)
    low, high = format(entry["ci_low"], fmt), format(entry["ci_high"], fmt)
    return f"{format(entry['mean'], fmt)} [{low}, {high}]"


def caught(results: dict, scheme: str) -> list[int | None]:
    """Per seed, the first update a reward_hacking alert fired at (None: never)."""
    firsts = []
    for run in sorted(results["runs"], key=lambda r: r["seed"]):
        if run["scheme"] != scheme:
            continue
        updates = [a["update"] for a in run["alerts"] if a["monitor"] == "reward_hacking"]
        firsts.append(min(updates) if updates else None)
    return firsts


def _run_wall(results: dict, scheme: str) -> float:
    walls = [r["wall_s"] for r in results["runs"] if r["scheme"] == scheme and r.get("wall_s")]
    return sum(walls) / len(walls) if walls else float("nan")


def direction_checks(results: dict) -> dict[str, bool]:
    """The default study's effects, as the issue of comparing backends states them."""
    summary = results["summary"]
    task, balanced = summary["task_only"], summary["balanced"]
    shorter = 1 - balanced["completion_length"]["mean"] / task["completion_length"]["mean"]
    return {
        "task_only CI above 0": task["quality_improvement_pct"]["ci_low"] > 0,
        "speed_only caught in every seed": all(
            u is not None for u in caught(results, "speed_only")
        ),
        "balanced >= 15 % shorter than task_only": shorter >= 0.15,
        "balanced quality CI low end > -3 %": balanced["quality_improvement_pct"]["ci_low"] > -3,
    }


def table(studies: dict[str, dict]) -> str:
    """The markdown table: one column per (scheme, backend)."""
    first = next(iter(studies.values()))
    columns = [(s, b) for s in first["schemes"] for b in studies]
    lines = [
        "| | " + " | ".join(f"{s} ({b})" for s, b in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for key, label, fmt in ROWS:
        cells = [_stat(studies[b]["summary"][s], key, fmt) for s, b in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = [
        ", ".join("no" if u is None else str(u) for u in caught(studies[b], s)) for s, b in columns
    ]
    lines.append("| first reward-hacking alert per seed (update) | " + " | ".join(cells) + " |")
    cells = [f"{_run_wall(studies[b], s):.0f}" for s, b in columns]
    lines.append("| wall time per run, train + evaluate (s) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("native", help="the study directory trained natively")
    parser.add_argument("trl", help="the same study trained with --backend trl")
    args = parser.parse_args()
    studies = {
        "native": json.loads((Path(args.native) / "results.json").read_text()),
        "trl": json.loads((Path(args.trl) / "results.json").read_text()),
    }
    print(table(studies))
    for backend, results in studies.items():
        before = results["before"]
        print(f"\n{backend}: study wall {results['wall_s']:.0f} s; starting quality {before}")
        for check, ok in direction_checks(results).items():
            print(f"  {'ok  ' if ok else 'FAIL'} {check}")
    print(f"\nmachine: {studies['trl']['environment'].get('cpu_model')}")


if __name__ == "__main__":
    main()
