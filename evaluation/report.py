"""Study reports: ``report.md`` and a self-contained ``report.html`` from a study directory.

The report reads ``results.json`` and the run files beside it (``metrics.jsonl``,
``eval/<split>.json``), so every cell can be checked against a file a reader can open. The HTML
is rendered by jinja2 with autoescaping on and a Content-Security-Policy that allows no scripts;
plots are PNGs embedded as data URIs. Model output (sample completions, prompts) is only ever
escaped text, in both formats.

Example:
    >>> paths = write_report("studies/svb")
    >>> print(report_summary(paths))
    report: studies/svb/report/report.md, studies/svb/report/report.html (7 plots)
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from rewardgym.errors import RunDataError
from rewardgym.evaluation.definitions import DEFINITIONS, SOURCES
from rewardgym.evaluation.stats import defined
from rewardgym.fileio import write_bytes_atomic

__all__ = ["CSP", "md_escape", "report_summary", "write_report"]

REPORT_FORMAT = "rewardgym study report"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STUDY_FORMAT_VERSION = 1  # the results.json layout this module reads
_SWEEP = re.compile(r"^(?P<base>.+)@(?P<component>[^=@]+)=(?P<weight>[^=@]+)$")
_DASH = "—"


# -- what the headline table shows ---------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One headline row: results.json key, label, and how its numbers are printed."""

    key: str
    label: str
    fmt: Callable[[float], str]


def _fixed(digits: int, sign: bool = False) -> Callable[[float], str]:
    def fmt(value: float) -> str:
        text = f"{value:{'+' if sign else ''}.{digits}f}"
        # "-0.0" reads as a sign error in a table
        return text.replace("-0." + "0" * digits, "0." + "0" * digits).replace(
            "+0." + "0" * digits, "0." + "0" * digits
        )

    return fmt


def _sci(value: float) -> str:
    return f"{value:.3g}"


HEADLINE: tuple[Metric, ...] = (
    Metric("bleu_improvement_pct", "BLEU improvement (%)", _fixed(1, sign=True)),
    Metric("robustness_change_pct", "Robustness change (%)", _fixed(1, sign=True)),
    Metric("grad_variance_change_pct", "Gradient variance change vs baseline (%)", _fixed(1, True)),
    Metric("compute_waste_pct", "Compute waste (%)", _fixed(1)),
    Metric("final_bleu", "Final BLEU", _fixed(2)),
    Metric("final_chrf", "Final chrF", _fixed(2)),
    Metric("completion_length", "Mean completion length (tokens)", _fixed(1)),
    Metric("entropy_bits", "Entropy (bits)", _fixed(2)),
    Metric("monitor_alerts", "Monitor alerts", _fixed(1)),
    Metric("forgetting_pct", "Forgetting (%)", _fixed(1, sign=True)),
    Metric("flops_per_bleu_point", "FLOPs per BLEU point gained", _sci),
    Metric("train_reward_last", "Training reward (last fifth)", _fixed(3)),
)
_LABELS = {m.key: m.label for m in HEADLINE}


PROBABILITY_NOTE = (
    "P(beats baseline): the share of (scheme seed, baseline seed) pairs in which the scheme is "
    "better, ties counting half; better means higher for BLEU improvement, robustness change, "
    "final BLEU and chrF, and lower for gradient variance change, compute waste, alerts, "
    "forgetting and FLOPs per BLEU point. 0.5 is a coin flip."
)


# -- reading a study -----------------------------------------------------------------------------


@dataclass
class RunFiles:
    """One run's record (from results.json) and the files it was computed from."""

    record: dict[str, Any]
    path: str  # relative to the study directory
    metrics: list[dict[str, Any]]
    evaluation: dict[str, Any] | None


@dataclass
class StudyFiles:
    """A study directory, read: results.json, every run's files, and what was missing."""

    study_dir: Path
    results: dict[str, Any]
    split: str
    runs: list[RunFiles]
    before: dict[str, dict[str, Any]]
    missing: list[str] = field(default_factory=list)

    @property
    def schemes(self) -> list[str]:
        return list(self.results.get("schemes") or self.results.get("summary", {}))

    @property
    def baseline(self) -> str:
        return str(self.results.get("baseline", ""))

    def runs_of(self, scheme: str) -> list[RunFiles]:
        return [r for r in self.runs if r.record.get("scheme") == scheme]


def load_study(study_dir: str | os.PathLike[str], results: dict | None = None) -> StudyFiles:
    """Read a study directory: ``results.json`` plus each run's metrics and evaluation.

    Missing run files are recorded in ``missing`` (the report lists them) rather than raised:
    a report of a partly finished study is still worth reading.

    Raises:
        RunDataError: no readable ``results.json``, or one from a newer format version.

    Example:
        >>> study = load_study("studies/svb")
        >>> [r.path for r in study.runs][:1]
        ['runs/task_only/translate/0']
    """
    study_dir = Path(study_dir)
    results = results if results is not None else _read_results(study_dir)
    split = str((results.get("config") or {}).get("evaluation", {}).get("split", "test"))
    missing: list[str] = []
    runs = [_read_run(study_dir, record, split, missing) for record in results.get("runs", [])]
    before = {}
    for task in results.get("tasks", []):
        rel = f"before/{task}/{split}.json"
        data = _read_json(study_dir / rel, missing, rel)
        if data is not None:
            before[task] = data
    return StudyFiles(study_dir, results, split, runs, before, missing)


def _read_results(study_dir: Path) -> dict[str, Any]:
    path = study_dir / "results.json"
    if not path.exists():
        raise RunDataError(
            f"no results.json in {str(study_dir)!r}; run `rewardgym study CONFIG --out "
            f"{study_dir}` first (it writes results.json), then `rewardgym report {study_dir}`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDataError(f"cannot read {str(path)!r}: {exc}; rerun the study") from None
    if not isinstance(data, dict):
        raise RunDataError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if not isinstance(version, int) or version > _STUDY_FORMAT_VERSION:
        raise RunDataError(
            f"{str(path)!r} has format_version {version!r}; this rewardgym reads "
            f"format_version {_STUDY_FORMAT_VERSION}: upgrade rewardgym to report on it"
        )
    return data


def _read_run(study_dir: Path, record: dict, split: str, missing: list[str]) -> RunFiles:
    from rewardgym.agents.runlog import read_metrics

    rel = record.get("run_dir") or "/".join(
        ["runs", str(record.get("scheme")), str(record.get("task")), str(record.get("seed"))]
    )
    folder = study_dir / rel
    metrics_path = folder / "metrics.jsonl"
    metrics = read_metrics(metrics_path) if metrics_path.exists() else []
    if not metrics_path.exists():
        missing.append(f"{rel}/metrics.jsonl")
    evaluation = _read_json(folder / "eval" / f"{split}.json", missing, f"{rel}/eval/{split}.json")
    return RunFiles(record, rel, metrics, evaluation)


def _read_json(path: Path, missing: list[str], rel: str) -> dict[str, Any] | None:
    if not path.exists():
        missing.append(rel)
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        missing.append(f"{rel} (unreadable)")
        return None
    return data if isinstance(data, dict) else None


# -- cells ---------------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _notes_about(runs: Sequence[RunFiles], words: str) -> list[str]:
    found = []
    for run in runs:
        for note in run.record.get("notes") or []:
            if words.lower() in str(note).lower() and note not in found:
                found.append(str(note))
    return found


def undefined_reason(metric: str, runs: Sequence[RunFiles], baseline: bool = False) -> str:
    """Why ``metric`` has no value for some run of a scheme, in the words a report cell uses.

    Example:
        >>> undefined_reason("bleu_improvement_pct", runs_with_bleu_before_0)
        'BLEU before = 0: improvement undefined'
    """
    recs = [r.record for r in runs]
    if metric == "bleu_improvement_pct":
        if any(_finite(r.get("before_bleu")) == 0 for r in recs):
            return "BLEU before = 0: improvement undefined"
        if any(r.get("before_bleu") is None for r in recs):
            return "BLEU before missing: improvement undefined"
    if metric == "robustness_change_pct":
        if any(_finite(r.get("robustness_before")) == 0 for r in recs):
            return "R before = 0: robustness change undefined"
        notes = _notes_about(runs, "robustness")
        if notes:
            return "; ".join(notes)
        return "no noise sweep (R missing): robustness change undefined"
    if metric == "grad_variance_change_pct":
        if baseline:
            return "baseline against itself"
        return "no ν for this seed or its baseline seed, or baseline ν = 0: change undefined"
    if metric == "forgetting_pct":
        notes = _notes_about(runs, "forgetting")
        return "; ".join(notes) if notes else "no retention task in the study: not measured"
    if metric == "flops_per_bleu_point":
        return "no BLEU gained: FLOPs per point undefined"
    if metric == "entropy_bits":
        return "no entropy logged (greedy decoding or no tokens)"
    notes = _notes_about(runs, _LABELS.get(metric, metric).split(" (")[0])
    return "; ".join(notes) if notes else "no seed has a value"


def headline_cell(
    metric: Metric, entry: dict[str, Any] | None, runs: Sequence[RunFiles], is_baseline: bool
) -> str:
    """One headline cell: ``mean [ci_low, ci_high]`` (IQM with ≥ 5 seeds), or why it has none.

    Example:
        >>> headline_cell(HEADLINE[4], {"n": 3, "mean": 20.0, "ci_low": 18.5, "ci_high": 21.0,
        ...                             "iqm": None, "values": [18.5, 20.5, 21.0]}, runs, False)
        '20.00 [18.50, 21.00]'
    """
    if is_baseline and metric.key == "grad_variance_change_pct":
        return _DASH
    entry = entry or {}
    n = int(entry.get("n") or 0)
    mean = _finite(entry.get("mean"))
    if n == 0 or mean is None:
        return f"n/a ({undefined_reason(metric.key, runs)})"
    low, high = _finite(entry.get("ci_low")), _finite(entry.get("ci_high"))
    text = metric.fmt(mean)
    if low is not None and high is not None:
        text += f" [{metric.fmt(low)}, {metric.fmt(high)}]"
    middle = _finite(entry.get("iqm"))
    if middle is not None:
        text += f", IQM {metric.fmt(middle)}"
    total = len(entry.get("values") or runs)
    if n < total:
        text += f" (n={n} of {total}; {total - n} n/a: {undefined_reason(metric.key, runs)})"
    return text


def probability_cell(value: Any, is_baseline: bool) -> str:
    """A P(beats baseline) cell: two decimals, "—" for the baseline, or why it is missing.

    Example:
        >>> probability_cell(0.875, False)
        '0.88'
    """
    if is_baseline:
        return _DASH
    value = _finite(value)
    return "n/a (no seed pair with values on both sides)" if value is None else f"{value:.2f}"


@dataclass(frozen=True)
class Table:
    """A table of plain (unescaped) strings; each format escapes it its own way."""

    columns: list[str]
    rows: list[list[str]]


def headline_table(study: StudyFiles) -> Table:
    """Rows = headline metrics (+ n seeds), columns = schemes."""
    summary = study.results.get("summary") or {}
    rows = [["seeds (runs)"] + [str(len(study.runs_of(s))) for s in study.schemes]]
    for metric in HEADLINE:
        row = [metric.label]
        for scheme in study.schemes:
            entry = (summary.get(scheme) or {}).get(metric.key)
            row.append(
                headline_cell(metric, entry, study.runs_of(scheme), scheme == study.baseline)
            )
        rows.append(row)
    return Table(["metric"] + study.schemes, rows)


def probability_table(study: StudyFiles) -> Table:
    """P(scheme beats baseline) per directed metric (the share of seed pairs, ties half)."""
    beats = study.results.get("p_beats_baseline") or {}
    keys: list[str] = []
    for scheme in study.schemes:
        keys += [k for k in beats.get(scheme, {}) if k not in keys]
    ordered = [m.key for m in HEADLINE if m.key in keys] + [k for k in keys if k not in _LABELS]
    rows = []
    for key in ordered:
        row = [f"P(beats baseline): {_LABELS.get(key, key)}"]
        for scheme in study.schemes:
            row.append(
                probability_cell((beats.get(scheme) or {}).get(key), scheme == study.baseline)
            )
        rows.append(row)
    return Table(["metric"] + study.schemes, rows)


def _num(value: Any, digits: int = 2, sign: bool = False) -> str:
    value = _finite(value)
    return "n/a" if value is None else _fixed(digits, sign)(value)


def per_run_table(study: StudyFiles) -> Table:
    """Every run's own figures: the values the means and intervals are computed from."""
    cols = [
        "run (under runs/)",
        "BLEU before",
        "BLEU after",
        "BLEU impr. %",
        "R before",
        "R after",
        "robust. chg %",
        "median ν",
        "ν chg %",
        "waste %",
        "chrF",
        "length",
        "entropy",
        "alerts",
        "forgetting %",
    ]
    rows = []
    for run in study.runs:
        r = run.record
        rows.append(
            [
                run.path.removeprefix("runs/"),
                _num(r.get("before_bleu")),
                _num(r.get("final_bleu")),
                _num(r.get("bleu_improvement_pct"), 1, True),
                _num(r.get("robustness_before"), 3),
                _num(r.get("robustness_after"), 3),
                _num(r.get("robustness_change_pct"), 1, True),
                _num(r.get("nu_median"), 3),
                _num(r.get("grad_variance_change_pct"), 1, True),
                _num(r.get("compute_waste_pct"), 1),
                _num(r.get("final_chrf")),
                _num(r.get("completion_length"), 1),
                _num(r.get("entropy_bits")),
                str(r.get("monitor_alerts", "n/a")),
                _num(r.get("forgetting_pct"), 1, True),
            ]
        )
    return Table(cols, rows)


def before_table(study: StudyFiles) -> Table:
    """The starting policy, per task: the *before* of every change figure."""
    rows = []
    for task in study.results.get("tasks", []):
        data = study.before.get(task) or (study.results.get("before") or {}).get(task) or {}
        rows.append(
            [
                task,
                _num(data.get("bleu")),
                _num(data.get("chrf")),
                _num(data.get("robustness"), 3),
                _num(data.get("completion_tokens"), 1),
                f"before/{task}/{study.split}.json",
            ]
        )
    return Table(["task", "BLEU", "chrF", "R", "completion length", "file"], rows)


def alert_table(study: StudyFiles) -> Table:
    """Every monitor alert, run by run in update order (the timeline)."""
    rows = []
    for run in study.runs:
        alerts = sorted(
            run.record.get("alerts") or [],
            key=lambda a: (a.get("update", 0), str(a.get("monitor"))),
        )
        for a in alerts:
            rows.append(
                [
                    run.path.removeprefix("runs/"),
                    str(a.get("update", "")),
                    str(a.get("monitor", "")),
                    _num(a.get("value"), 4),
                    _num(a.get("threshold"), 4),
                    str(a.get("action", "")),
                    str(a.get("message", "")),
                ]
            )
    return Table(["run", "update", "monitor", "value", "threshold", "action", "message"], rows)


def sample_tables(study: StudyFiles, per_scheme: int = 3) -> list[tuple[str, Table]]:
    """Sample outputs: the starting policy's, then each scheme's first run with samples."""
    out = []
    for task, data in study.before.items():
        rows = _sample_rows(data, per_scheme)
        if rows:
            out.append((f"starting policy (before/{task}/{study.split}.json)", rows))
    for scheme in study.schemes:
        for run in study.runs_of(scheme):
            rows = _sample_rows(run.evaluation or {}, per_scheme)
            if rows:
                out.append((f"{scheme} ({run.path}/eval/{study.split}.json)", rows))
                break
    return [(title, Table(["prompt", "reference", "completion"], rows)) for title, rows in out]


def _sample_rows(data: dict, n: int) -> list[list[str]]:
    return [
        [
            str(s.get("prompt", "")),
            str(s.get("reference", "")),
            # the empty answer is the classic speed-reward exploit: make it visible
            str(s.get("completion", "")) or "(empty completion)",
        ]
        for s in (data.get("samples") or [])[:n]
        if isinstance(s, dict)
    ]


def source_lines(study: StudyFiles) -> list[str]:
    """Per headline row: the file and field to open to check it."""
    lines = []
    for metric in HEADLINE:
        src = SOURCES.get(metric.key)
        if src is None:
            continue
        where = src.file.replace("SPLIT", study.split)
        line = f"{metric.label}: {where}, field {src.field}"
        if src.recompute:
            line += f"; recompute: {src.recompute.replace('SPLIT', study.split)}"
        lines.append(line)
    lines.append(
        "RUN = runs/<scheme>/<task>/<seed>; the per-run values are under results.json "
        '"runs" (same keys as the rows), and each column\'s n, mean, ci_low, ci_high, iqm and '
        'values under "summary" → <scheme> → <key>; P(beats baseline) under "p_beats_baseline".'
    )
    return lines


# -- plots ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plot:
    """A rendered figure: file name, caption, PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _colours(schemes: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(schemes)}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # no Software/date metadata: the same study gives byte-identical plots
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    fig.clear()
    return buf.getvalue()


def _series(runs: Iterable[RunFiles], key: str) -> tuple[list[float], list[float]]:
    """Mean over runs of ``key`` at each update where any run logged a finite value."""
    by_update: dict[int, list[float]] = {}
    for run in runs:
        for i, m in enumerate(run.metrics):
            value = _finite(m.get(key))
            if value is not None:
                by_update.setdefault(int(m.get("update", i)), []).append(value)
    xs = sorted(by_update)
    return [float(x) for x in xs], [float(np.mean(by_update[x])) for x in xs]


def _line_panels(
    study: StudyFiles, panels: Sequence[tuple[str, str]], log_y: Sequence[bool] = ()
) -> Figure | None:
    colours = _colours(study.schemes)
    fig = Figure(figsize=(5.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    drawn = False
    for i, (ax, (key, label)) in enumerate(zip(axes, panels, strict=True)):
        for scheme in study.schemes:
            xs, ys = _series(study.runs_of(scheme), key)
            if xs:
                ax.plot(
                    xs,
                    ys,
                    marker="." if len(xs) < 30 else None,
                    label=scheme,
                    color=colours[scheme],
                )
                drawn = True
        if (
            i < len(log_y)
            and log_y[i]
            and all(y > 0 for line in ax.get_lines() for y in line.get_ydata())
            and ax.get_lines()
        ):
            ax.set_yscale("log")
        ax.set_xlabel("update")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if not drawn:
        return None
    axes[0].legend(fontsize="small")
    return fig


def plot_reward_vs_bleu(study: StudyFiles) -> Plot | None:
    fig = _line_panels(
        study,
        [("reward/mean", "training reward (proxy)"), ("eval/bleu", "held-out BLEU (gold)")],
    )
    if fig is None:
        return None
    return Plot(
        "reward_vs_bleu.png",
        "Training reward vs held-out BLEU",
        'Mean over each scheme\'s runs of metrics.jsonl "reward/mean" (left) and "eval/bleu" '
        "on validation examples every eval_every updates (right). Reward rising while BLEU "
        "falls is reward hacking.",
        _png(fig),
    )


def plot_grad_variance(study: StudyFiles) -> Plot | None:
    fig = _line_panels(study, [("grad/nu", "normalised gradient variance ν")], log_y=[True])
    if fig is None:
        return None
    return Plot(
        "grad_variance.png",
        "Gradient variance ν over updates",
        'Mean over runs of metrics.jsonl "grad/nu" (σ² / ‖ḡ‖² over K micro-batches).',
        _png(fig),
    )


def plot_entropy_length(study: StudyFiles) -> Plot | None:
    fig = _line_panels(
        study,
        [("entropy_bits", "entropy (bits/token)"), ("completion_length/mean", "completion tokens")],
    )
    if fig is None:
        return None
    return Plot(
        "entropy_length.png",
        "Entropy and completion length over updates",
        'Mean over runs of metrics.jsonl "entropy_bits" and "completion_length/mean" '
        "(training samples).",
        _png(fig),
    )


def _noise_curve(data: dict | None, kind: str) -> dict[float, float]:
    if not data:
        return {}
    curve = {}
    clean = _finite(data.get("bleu"))
    if clean is not None:
        curve[0.0] = clean
    for sev, bleu in ((data.get("noise") or {}).get(kind) or {}).items():
        s, b = _finite(sev), _finite(bleu)
        if s is not None and b is not None:
            curve[s] = b
    return curve


def plot_noise(study: StudyFiles) -> Plot | None:
    kinds: list[str] = []
    for data in [r.evaluation for r in study.runs] + list(study.before.values()):
        for kind in (data or {}).get("noise") or {}:
            if kind not in kinds:
                kinds.append(kind)
    if not kinds:
        return None
    colours = _colours(study.schemes)
    fig = Figure(figsize=(3.6 * len(kinds), 3.4), layout="constrained")
    axes = fig.subplots(1, len(kinds), squeeze=False, sharey=True)[0]
    for ax, kind in zip(axes, kinds, strict=True):
        for scheme in study.schemes:
            points: dict[float, list[float]] = {}
            for run in study.runs_of(scheme):
                for s, b in _noise_curve(run.evaluation, kind).items():
                    points.setdefault(s, []).append(b)
            xs = sorted(points)
            ax.plot(
                xs,
                [np.mean(points[x]) for x in xs],
                marker="o",
                label=scheme,
                color=colours[scheme],
            )
        for task, data in study.before.items():
            curve = _noise_curve(data, kind)
            xs = sorted(curve)
            ax.plot(xs, [curve[x] for x in xs], "k--", marker="x", label=f"before ({task})")
        ax.set_title(kind)
        ax.set_xlabel("noise severity")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("BLEU")
    axes[0].legend(fontsize="small")
    return Plot(
        "noise.png",
        "BLEU vs noise severity",
        'eval/<split>.json "noise" → type → severity (B(n,s)), severity 0 = clean "bleu"; '
        "mean over each scheme's runs; dashed: the starting policy.",
        _png(fig),
    )


def plot_compute(study: StudyFiles) -> Plot | None:
    schemes = [s for s in study.schemes if study.runs_of(s)]
    cats: list[str] = []
    for run in study.runs:
        for k in run.record.get("flops_by_category") or {}:
            if k not in ("total", "wasted") and k not in cats:
                cats.append(k)
    if not cats or not schemes:
        return None
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    fig = Figure(figsize=(max(5.0, 1.3 * len(schemes) + 3), 3.8), layout="constrained")
    ax = fig.subplots()
    bottom = np.zeros(len(schemes))
    for i, cat in enumerate(cats):
        heights = np.array(
            [
                np.mean(
                    [
                        _finite((r.record.get("flops_by_category") or {}).get(cat)) or 0.0
                        for r in study.runs_of(s)
                    ]
                )
                for s in schemes
            ]
        )
        ax.bar(schemes, heights, bottom=bottom, label=cat, color=cmap(i % 20))
        bottom += heights
    wasted = [
        np.mean(
            [
                _finite((r.record.get("flops_by_category") or {}).get("wasted")) or 0.0
                for r in study.runs_of(s)
            ]
        )
        for s in schemes
    ]
    ax.scatter(schemes, wasted, marker="_", s=600, color="k", label="wasted", zorder=3)
    ax.set_ylabel("FLOPs per run")
    ax.tick_params(axis="x", labelrotation=20)
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return Plot(
        "compute.png",
        "Compute by category",
        'Mean over runs of the last metrics.jsonl record\'s "flops/<category>" (stacked); the '
        'black mark is "flops/wasted".',
        _png(fig),
    )


def sweep_points(study: StudyFiles) -> dict[tuple[str, str], list[tuple[float, str]]]:
    """Schemes named ``<base>@<component>=<weight>``, grouped by (base, component), sorted.

    Example:
        >>> sweep_points(study)
        {('balanced', 'speed'): [(0.0, 'balanced@speed=0'), (0.5, 'balanced@speed=0.5')]}
    """
    groups: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for scheme in study.schemes:
        match = _SWEEP.match(scheme)
        weight = _finite(match.group("weight")) if match else None
        if match and weight is not None:
            groups.setdefault((match["base"], match["component"]), []).append((weight, scheme))
    return {k: sorted(v) for k, v in groups.items()}


def plot_sweep(study: StudyFiles) -> Plot | None:
    groups = sweep_points(study)
    if not groups:
        return None
    summary = study.results.get("summary") or {}
    fig = Figure(figsize=(10.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    panels = (("final_bleu", "final BLEU"), ("completion_length", "completion length (tokens)"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for (base, component), points in groups.items():
            xs, ys, lo, hi = [], [], [], []
            for weight, scheme in points:
                entry = (summary.get(scheme) or {}).get(key) or {}
                mean = _finite(entry.get("mean"))
                if mean is None:
                    continue
                xs.append(weight)
                ys.append(mean)
                lo.append(mean - (_finite(entry.get("ci_low")) or mean))
                hi.append((_finite(entry.get("ci_high")) or mean) - mean)
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=f"{base}: {component}")
        ax.set_xlabel(f"weight of {'/'.join(sorted({c for _, c in groups}))}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return Plot(
        "sweep.png",
        "Sweep trade-off",
        "Schemes named <base>@<component>=<weight>: results.json summary mean and 95 % CI of "
        '"final_bleu" and "completion_length" against the weight.',
        _png(fig),
    )


def plot_alerts(study: StudyFiles) -> Plot | None:
    runs = [r for r in study.runs if r.record.get("alerts")]
    if not runs:
        return None
    monitors = sorted({str(a.get("monitor")) for r in runs for a in r.record["alerts"]})
    colours = _colours(monitors)
    fig = Figure(figsize=(8.0, 1.2 + 0.35 * len(runs)), layout="constrained")
    ax = fig.subplots()
    for monitor in monitors:
        xs, ys = [], []
        for i, run in enumerate(runs):
            for a in run.record["alerts"]:
                if str(a.get("monitor")) == monitor:
                    xs.append(_finite(a.get("update")) or 0.0)
                    ys.append(i)
        ax.scatter(xs, ys, label=monitor, color=colours[monitor], marker="|", s=200)
    ax.set_yticks(range(len(runs)), [r.path.removeprefix("runs/") for r in runs], fontsize=7)
    ax.set_ylim(len(runs) - 0.5, -0.5)  # first run on top, as in the table
    n_updates = max(int(_finite(r.record.get("updates")) or 0) for r in runs)
    if n_updates:
        ax.set_xlim(-0.5, n_updates - 0.5)
    ax.set_xlabel("update")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="x", alpha=0.3)
    return Plot(
        "alerts.png",
        "Monitor alerts timeline",
        'Each mark is one entry of metrics.jsonl "alerts" (update, monitor).',
        _png(fig),
    )


PLOTTERS: tuple[Callable[[StudyFiles], Plot | None], ...] = (
    plot_reward_vs_bleu,
    plot_noise,
    plot_grad_variance,
    plot_entropy_length,
    plot_compute,
    plot_sweep,
    plot_alerts,
)


def make_plots(study: StudyFiles) -> list[Plot]:
    """Every plot the study has data for (the sweep plot only for a sweep study)."""
    return [p for p in (plotter(study) for plotter in PLOTTERS) if p is not None]


# -- the report's content, format-neutral ---------------------------------------------------------


@dataclass
class ReportContent:
    """Everything both formats render, as plain strings and tables (nothing escaped yet)."""

    title: str
    facts: list[str]
    caveats: list[str]
    headline: Table
    probabilities: Table
    sources: list[str]
    before: Table
    plots: list[Plot]
    alerts: Table
    per_run: Table
    samples: list[tuple[str, Table]]
    definitions: list[tuple[str, str]]
    commands: list[str]
    config_yaml: str
    environment: Table
    wall: list[str]


def build_content(study: StudyFiles) -> ReportContent:
    """Turn a read study into the report's sections."""
    res = study.results
    name = str(res.get("study", study.study_dir.name))
    facts = [
        f"study: {name}",
        f"schemes: {', '.join(study.schemes)} (baseline: {study.baseline})",
        f"tasks: {', '.join(map(str, res.get('tasks', [])))}; "
        f"seeds: {', '.join(map(str, res.get('seeds', [])))}; "
        f"evaluation split: {study.split}",
        f"runs: {len(study.runs)}",
    ]
    config = res.get("config") or {}
    if config.get("model"):
        options = config.get("model_options") or {}
        shown = ", ".join(f"{k}={v}" for k, v in options.items())
        facts.append(f"starting policy: {config['model']}" + (f" ({shown})" if shown else ""))
    if config.get("description"):
        facts.append(f"design: {config['description']}")
    caveats = []
    if not res.get("complete", True):
        caveats.append(
            "The study is not complete: some runs have not finished. Rerun the study command to "
            "finish it; the figures below cover the finished runs only."
        )
    caveats += [f"missing file: {m}" for m in study.missing]
    return ReportContent(
        title=f"rewardgym study report: {name}",
        facts=facts,
        caveats=caveats,
        headline=headline_table(study),
        probabilities=probability_table(study),
        sources=source_lines(study),
        before=before_table(study),
        plots=make_plots(study),
        alerts=alert_table(study),
        per_run=per_run_table(study),
        samples=sample_tables(study),
        definitions=[(d.term, d.text) for d in DEFINITIONS],
        commands=_commands(study),
        config_yaml=yaml.safe_dump(res.get("config") or {}, sort_keys=False, allow_unicode=True),
        environment=_environment_table(res.get("environment") or {}),
        wall=_wall_lines(study),
    )


def _commands(study: StudyFiles) -> list[str]:
    d = study.study_dir
    return [
        f"rewardgym study {d / 'study.yaml'} --out {d}",
        f"rewardgym report {d}",
        f"sacrebleu {d}/RUN/eval/{study.split}.refs.txt -i {d}/RUN/eval/{study.split}.hyps.txt "
        "-b   # one run's final BLEU (RUN = runs/<scheme>/<task>/<seed>)",
    ]


def _environment_table(env: dict[str, Any]) -> Table:
    rows = [
        [k, str(env.get(k))]
        for k in (
            "python",
            "platform",
            "cpu_model",
            "processor",
            "cpu_count",
            "torch_threads",
            "device",
        )
        if k in env
    ]
    for pkg, version in (env.get("versions") or {}).items():
        rows.append([pkg, "not installed" if version is None else str(version)])
    return Table(["item", "value"], rows)


def _wall_lines(study: StudyFiles) -> list[str]:
    wall = _finite(study.results.get("wall_s"))
    per_run = defined(r.record.get("wall_s") for r in study.runs)
    lines = [
        "study wall time (this invocation): "
        + ("n/a (not recorded)" if wall is None else f"{wall:.1f} s")
    ]
    if per_run:
        lines.append(
            f"sum of run wall times: {sum(per_run):.1f} s over {len(per_run)} runs "
            f"(results.json runs[].wall_s)"
        )
    return lines


# -- Markdown ------------------------------------------------------------------------------------

# emphasis, code, cell breaks, headings, strike-through; "_" only where it can open or close
# emphasis (not inside a word, e.g. "task_only"); "]" only where it would close a link or image
_MD_SPECIAL = re.compile(r"([\\`*|#~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|\[(?=[^\]]*\][(\[:]))")


def md_escape(text: Any) -> str:
    """Escape text for one Markdown table cell: no HTML, no formatting, no cell breaks.

    Example:
        >>> md_escape("a|b <script> [x](y)")
        'a\\\\|b &lt;script&gt; \\\\[x](y)'
    """
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def _md_table(table: Table) -> list[str]:
    lines = [
        "| " + " | ".join(md_escape(c) for c in table.columns) + " |",
        "|" + "|".join(" --- " for _ in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in table.rows]
    return lines


def _fence(text: str, lang: str = "") -> list[str]:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, text.rstrip("\n"), fence]


def render_markdown(content: ReportContent) -> str:
    """The Markdown report; every table cell and free text from data is escaped."""
    out = [f"# {md_escape(content.title)}", ""]
    out += [f"- {md_escape(f)}" for f in content.facts] + [""]
    if content.caveats:
        out += ["> **Caveats**", ">"] + [f"> - {md_escape(c)}" for c in content.caveats] + [""]
    out += ["## Headline", "", "Mean over seeds [95 % bootstrap CI]; see Definitions.", ""]
    out += _md_table(content.headline) + [""]
    out += [md_escape(PROBABILITY_NOTE), ""] + _md_table(content.probabilities) + [""]
    out += ["### Where each number comes from", ""]
    out += [f"- {md_escape(s)}" for s in content.sources] + [""]
    out += ["## Starting policy (before training)", ""] + _md_table(content.before) + [""]
    out += ["## Plots", ""]
    for plot in content.plots:
        out += [
            f"### {md_escape(plot.title)}",
            "",
            f"![{md_escape(plot.title)}](plots/{plot.name})",
        ]
        out += ["", md_escape(plot.caption), ""]
    out += ["## Monitor alerts", ""]
    out += _md_table(content.alerts) if content.alerts.rows else ["No monitor raised an alert."]
    out += ["", "## Per-run figures", ""] + _md_table(content.per_run) + [""]
    out += ["## Sample outputs", ""]
    for title, table in content.samples:
        out += [f"### {md_escape(title)}", ""] + _md_table(table) + [""]
    if not content.samples:
        out += ["No samples were saved.", ""]
    out += ["## Definitions", ""]
    out += [f"- **{md_escape(term)}** — {md_escape(text)}" for term, text in content.definitions]
    out += ["", "## Reproduce", ""] + _fence("\n".join(content.commands), "sh") + [""]
    out += ["### Config", ""] + _fence(content.config_yaml, "yaml") + [""]
    out += ["### Environment", ""] + _md_table(content.environment) + [""]
    out += [f"- {md_escape(w)}" for w in content.wall] + [""]
    return "\n".join(out)


# -- HTML ----------------------------------------------------------------------------------------


def _jinja_env():
    import jinja2

    folder = Path(__file__).resolve().parent / "templates"
    # autoescape everything this environment renders; StrictUndefined: a typo fails loudly
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_html(content: ReportContent) -> str:
    """The self-contained HTML report (jinja2, autoescaped, plots as data URIs, strict CSP)."""
    template = _jinja_env().get_template("report.html.j2")
    return template.render(c=content, probability_note=PROBABILITY_NOTE)


# -- writing -------------------------------------------------------------------------------------


def write_report(
    study_result_or_dir: Any, out_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` for a study.

    Args:
        study_result_or_dir: a study directory (holding ``results.json``) or the
            :class:`~rewardgym.evaluation.study.StudyResult` that :func:`run_study` returned.
        out_dir: where the report goes (default ``STUDY_DIR/report``).

    Returns:
        ``{"report.md": path, "report.html": path, "plots/<name>.png": path, ...}``.

    Raises:
        RunDataError: the study directory has no readable ``results.json``.

    Example:
        >>> paths = write_report("studies/svb")
        >>> sorted(paths)[:2]
        ['plots/compute.png', 'plots/entropy_length.png']
    """
    results = None
    if hasattr(study_result_or_dir, "study_dir"):
        study_dir = Path(study_result_or_dir.study_dir)
        results = getattr(study_result_or_dir, "results", None)
    else:
        study_dir = Path(study_result_or_dir)
    out = Path(out_dir) if out_dir is not None else study_dir / "report"
    study = load_study(study_dir, results)
    content = build_content(study)
    paths: dict[str, Path] = {}
    for plot in content.plots:
        paths[f"plots/{plot.name}"] = write_bytes_atomic(out / "plots" / plot.name, plot.png)
    paths["report.md"] = write_bytes_atomic(out / "report.md", render_markdown(content).encode())
    paths["report.html"] = write_bytes_atomic(out / "report.html", render_html(content).encode())
    return paths


def report_summary(paths: dict[str, Path]) -> str:
    """One line for the command line: where the report went.

    Example:
        >>> report_summary({"report.md": Path("r/report.md"), "report.html": Path("r/report.html")})
        'report: r/report.md, r/report.html (0 plots)'
    """
    n_plots = sum(1 for k in paths if k.startswith("plots/"))
    return (
        f"report: {paths.get('report.md')}, {paths.get('report.html')} "
        f"({n_plots} plot{'' if n_plots == 1 else 's'})"
    )
