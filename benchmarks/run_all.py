"""Run every benchmark and write JSON results plus a markdown table (``make bench``).

``python -m benchmarks.run_all [--quick] [--only NAME ...] [--out DIR] [--model NAME]`` runs the
benchmarks in order, each as a function in this process, so every comparison inside one
benchmark is side by side in the same invocation. It writes ``<out>/<name>.json`` per benchmark
and ``<out>/latest.md``: the machine description and a table of benchmark, figure, value, target
and whether the target was met. With ``--only`` the table goes to ``<out>/latest-<names>.md``
instead, so a partial run never replaces the table of a full one. The matmul peaks and the
STREAM bandwidth are measured first and shared with every benchmark, which reports its figures
against the compute-only and the attainable (memory-aware) roofline.
The allocator keeps freed memory for the whole process (:mod:`rewardgym.agents.memory`, as
training sets it), so rewardgym and the baselines it is compared with run under one setting.
On a machine with CUDA, the generation, training and TRL benchmarks run there too.

Example:
    $ .venv/bin/python -m benchmarks.run_all --quick --only roofline generation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import (
    generation,
    hacking,
    learning,
    lora,
    roofline,
    sb3_bench,
    study_bench,
    training,
    trl_compare,
)
from rewardgym.agents.memory import keep_freed_memory

BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "roofline": roofline.run,
    "generation": generation.run,
    "training": training.run,
    "trl_compare": trl_compare.run,
    "lora": lora.run,
    "hacking": hacking.run,
    "learning": learning.run,
    "study": study_bench.run,
    "sb3": sb3_bench.run,
}
CUDA_BENCHMARKS = ("generation", "training", "trl_compare")
DEFAULT_OUT = Path("benchmarks") / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument(
        "--model",
        default="smollm2-135m",
        help="model of the LM benchmarks ('tiny' for a smoke run)",
    )
    return parser.parse_args(argv)


def _format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def render_markdown(results: dict[str, dict[str, Any]], machine: dict[str, Any], args: Any) -> str:
    """The results table (benchmark, figure, value, target, met?) under the machine description.

    Example:
        >>> render_markdown({}, roofline.machine(), parse_args([])).startswith("# Benchmarks")
        True
    """
    mode = "quick" if getattr(args, "quick", False) else "full"
    lines = [
        "# Benchmarks",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, mode {mode}, "
        f"model {getattr(args, 'model', '?')}: "
        f"`python -m benchmarks.run_all{' --quick' if mode == 'quick' else ''}`.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['threads']} threads), Python {machine['python']}"
        + (f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU")
        + (", allocator keeps freed memory" if machine.get("keeps_freed_memory") else "")
        + ".",
        "",
        "| benchmark | figure | value | target | met? |",
        "|---|---|---|---|---|",
    ]
    for name, result in results.items():
        if "error" in result:
            lines.append(f"| {name} | failed: {result['error']} | — | — | — |")
            continue
        if "skipped" in result:
            lines.append(f"| {name} | skipped: {result['skipped']} | — | — | — |")
            continue
        for row in result.get("figures", []):
            met = {True: "yes", False: "**no**", None: ""}[row["met"]]
            value = f"{_format_value(row['value'])} {row['unit']}".strip()
            lines.append(f"| {name} | {row['figure']} | {value} | {row['target']} | {met} |")
    return "\n".join(lines) + "\n"


def _run_one(
    name: str, args: argparse.Namespace, peaks: dict, device: str, bandwidth: dict | None = None
) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = BENCHMARKS[name](
            quick=args.quick, model=args.model, peaks=peaks, device=device, bandwidth=bandwidth
        )
    except Exception as exc:  # one failing benchmark must not lose the others' results
        traceback.print_exc()
        result = {"benchmark": name, "error": f"{type(exc).__name__}: {exc}".replace("|", "/")}
    result["seconds"] = time.perf_counter() - started
    result["device"] = device
    return result


def run_all(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run the chosen benchmarks; write ``<name>.json`` and the table; return the results.

    Example:
        >>> results = run_all(parse_args(["--quick", "--only", "roofline", "--out", "/tmp/b"]))
        >>> sorted(results)
        ['roofline']
    """
    names = args.only or list(BENCHMARKS)
    machine = {**roofline.machine(), "keeps_freed_memory": keep_freed_memory()}
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    peaks = roofline.measure_peaks(args.quick)
    bandwidth = {"cpu": roofline.stream_bandwidth(args.quick)}
    cuda_peaks = roofline.measure_peaks(args.quick, "cuda") if torch.cuda.is_available() else {}
    if cuda_peaks:
        bandwidth["cuda"] = roofline.stream_bandwidth(args.quick, "cuda")
    runs = [(name, "cpu", peaks) for name in names]
    runs += [(name, "cuda", cuda_peaks) for name in names if cuda_peaks and name in CUDA_BENCHMARKS]
    for name, device, device_peaks in runs:
        key = name if device == "cpu" else f"{name}_{device}"
        print(f"[bench] {key} ...", file=sys.stderr, flush=True)
        results[key] = _run_one(name, args, device_peaks, device, bandwidth.get(device))
        # written as each finishes, so an interrupted run keeps what it measured
        record = {**results[key], "machine": machine, "quick": args.quick, "model": args.model}
        (args.out / f"{key}.json").write_text(
            json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8"
        )
        table_path(args).write_text(render_markdown(results, machine, args), encoding="utf-8")
    return results


def table_path(args: argparse.Namespace) -> Path:
    """``latest.md`` for a run of every benchmark, ``latest-<names>.md`` for an ``--only`` run.

    Example:
        >>> table_path(parse_args(["--only", "lora"])).name
        'latest-lora.md'
    """
    return args.out / ("latest-" + "-".join(args.only) + ".md" if args.only else "latest.md")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry; exits 1 when a benchmark failed (targets missed are not failures)."""
    args = parse_args(argv)
    results = run_all(args)
    print(table_path(args).read_text(encoding="utf-8"))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
