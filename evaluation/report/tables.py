"""The report's tables and cells, format-neutral: headline, probabilities, runs, samples."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardgym.evaluation.report.load import RunFiles, StudyFiles
from rewardgym.evaluation.report.metrics import _LABELS, Metric, _fixed
from rewardgym.evaluation.stats import defined

_DASH = "—"


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


def undefined_reason(metric: Metric, runs: Sequence[RunFiles], baseline: bool = False) -> str:
    """Why ``metric`` has no value for some run of a scheme, in the words a report cell uses:
    a reason the runs' data give (a zero "before", an evaluation note), else the row's own.

    Example:
        >>> undefined_reason(BLEU_IMPROVEMENT, runs_with_bleu_before_0)
        'BLEU before = 0: improvement undefined'
    """
    if baseline and metric.key == "grad_variance_change_pct":
        return "baseline against itself"
    specific = _data_reason(metric.key, [r.record for r in runs])
    if specific is not None:
        return specific
    about = {"robustness_change_pct": "robustness", "forgetting_pct": "forgetting"}
    notes = _notes_about(runs, about.get(metric.key, metric.label.split(" (")[0]))
    return "; ".join(notes) if notes else metric.undefined


# (record field that is zero or missing, reason): a before value that makes a change undefined
_BEFORE_VALUES = {
    "bleu_improvement_pct": ("before_bleu", "BLEU before"),
    "quality_improvement_pct": ("before_quality", "before"),
    "robustness_change_pct": ("robustness_before", "R before"),
}


def _data_reason(key: str, recs: list[dict]) -> str | None:
    if key not in _BEFORE_VALUES:
        return None
    name, words = _BEFORE_VALUES[key]
    change = "robustness change" if key == "robustness_change_pct" else "improvement"
    if any(_finite(r.get(name)) == 0 for r in recs):
        return f"{words} = 0: {change} undefined"
    if key == "bleu_improvement_pct" and any(r.get(name) is None for r in recs):
        return f"{words} missing: {change} undefined"
    return None


def headline_cell(
    metric: Metric, entry: dict[str, Any] | None, runs: Sequence[RunFiles], is_baseline: bool
) -> str:
    """One headline cell: ``mean [ci_low, ci_high]`` (IQM with ≥ 5 seeds), or why it has none.

    Example:
        >>> headline_cell(HEADLINE[6], {"n": 3, "mean": 20.0, "ci_low": 18.5, "ci_high": 21.0,
        ...                             "iqm": None, "values": [18.5, 20.5, 21.0]}, runs, False)
        '20.00 [18.50, 21.00]'
    """
    if is_baseline and metric.key == "grad_variance_change_pct":
        return _DASH
    entry = entry or {}
    n = int(entry.get("n") or 0)
    mean = _finite(entry.get("mean"))
    if n == 0 or mean is None:
        return f"n/a ({undefined_reason(metric, runs)})"
    low, high = _finite(entry.get("ci_low")), _finite(entry.get("ci_high"))
    text = metric.fmt(mean)
    if low is not None and high is not None:
        text += f" [{metric.fmt(low)}, {metric.fmt(high)}]"
    elif n > 1:  # too few values for an interval: say their range instead
        values = defined(entry.get("values") or [])
        text += f" (range {metric.fmt(min(values))} to {metric.fmt(max(values))}, {n} values)"
    middle = _finite(entry.get("iqm"))
    if middle is not None:
        text += f", IQM {metric.fmt(middle)}"
    total = len(entry.get("values") or runs)
    if n < total:
        text += f" (n={n} of {total}; {total - n} n/a: {undefined_reason(metric, runs)})"
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
    """A table of plain (unescaped) strings; each format escapes it its own way. ``notes`` are
    its footnotes: why cells marked ``[k]`` have no value, each reason said once."""

    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


_FULL_NA = re.compile(r"^n/a \((?P<reason>.+)\)$")
_PART_NA = re.compile(r"^(?P<head>.+\(n=\d+ of \d+; \d+ n/a): (?P<reason>.+)\)$")


def footnoted(table: Table) -> Table:
    """The table with each n/a reason moved to a numbered footnote, said once however many
    cells share it: ``n/a (no retention task ...)`` becomes ``n/a [1]``.

    Example:
        >>> t = footnoted(Table(["m", "a", "b"], [["x", "n/a (none)", "n/a (none)"]]))
        >>> t.rows, t.notes
        ([['x', 'n/a [1]', 'n/a [1]']], ['none'])
    """
    notes: list[str] = []

    def mark(reason: str) -> str:
        if reason not in notes:
            notes.append(reason)
        return f"[{notes.index(reason) + 1}]"

    rows = []
    for row in table.rows:
        cells = [row[0]]
        for cell in row[1:]:
            full, part = _FULL_NA.match(cell), _PART_NA.match(cell)
            if full:
                cell = f"n/a {mark(full['reason'])}"
            elif part:
                cell = f"{part['head']} {mark(part['reason'])})"
            cells.append(cell)
        rows.append(cells)
    return Table(table.columns, rows, notes)


def headline_table(study: StudyFiles) -> Table:
    """Rows = headline metrics (+ n seeds), columns = schemes."""
    summary = study.results.get("summary") or {}
    rows = [["seeds (runs)"] + [str(len(study.runs_of(s))) for s in study.schemes]]
    for metric in study.metrics():
        row = [metric.label]
        for scheme in study.schemes:
            entry = (summary.get(scheme) or {}).get(metric.key)
            row.append(
                headline_cell(metric, entry, study.runs_of(scheme), scheme == study.baseline)
            )
        rows.append(row)
    return footnoted(Table(["metric"] + study.schemes, rows))


def probability_table(study: StudyFiles) -> Table:
    """P(scheme beats baseline) per directed metric (the share of seed pairs, ties half)."""
    beats = study.results.get("p_beats_baseline") or {}
    keys: list[str] = []
    for scheme in study.schemes:
        keys += [k for k in beats.get(scheme, {}) if k not in keys]
    labels = {m.key: m.label for m in study.metrics()}
    ordered = [k for k in labels if k in keys] + [k for k in keys if k not in _LABELS]
    rows = []
    for key in ordered:
        row = [f"P(beats baseline): {labels.get(key, key)}"]
        for scheme in study.schemes:
            row.append(
                probability_cell((beats.get(scheme) or {}).get(key), scheme == study.baseline)
            )
        rows.append(row)
    return footnoted(Table(["metric"] + study.schemes, rows))


def _num(value: Any, digits: int = 2, sign: bool = False) -> str:
    value = _finite(value)
    return "n/a" if value is None else _fixed(digits, sign)(value)


def per_run_table(study: StudyFiles) -> Table:
    """Every run's own figures: the values the means and intervals are computed from."""
    cols = [
        f"run (under {study.run_root})" if study.run_root else "run",
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
                study.run_label(run),
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
                    study.run_label(run),
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
    for metric in study.metrics():
        src = metric.source
        where = src.file.replace("SPLIT", study.split)
        line = f"{metric.label}: {where}, field {src.field}"
        if src.recompute:
            line += f"; recompute: {src.recompute.replace('SPLIT', study.split)}"
        lines.append(line)
    run = (
        "RUN = runs/<scheme>/<task>/<seed>"
        if study.folder is None
        else (
            "RUN = the run's own folder (see Per-run figures); before/<task>/ holds the starting "
            "policy's evaluation, made with the runs' evaluation settings"
        )
    )
    lines.append(
        f"{run}; the per-run values are under {study.results_file} "
        '"runs" (same keys as the rows), and each column\'s n, mean, ci_low, ci_high, iqm and '
        'values under "summary" → <scheme> → <key>; P(beats baseline) under "p_beats_baseline".'
    )
    return lines
