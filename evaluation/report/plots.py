"""The report's plots, as PNG bytes (matplotlib's object API: no global state)."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rewardgym.envs.tasks import quality_label
from rewardgym.evaluation.report.load import RunFiles, StudyFiles
from rewardgym.evaluation.report.tables import _finite

_SWEEP = re.compile(r"^(?P<base>.+)@(?P<component>[^=@]+)=(?P<weight>[^=@]+)$")


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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # updates are whole numbers
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if not drawn:
        return None
    axes[0].legend(fontsize="small")
    return fig


def plot_reward_vs_bleu(study: StudyFiles) -> Plot | None:
    label = quality_label(study.metric)
    # runs logged before eval/quality existed have their (BLEU) gold under eval/bleu
    gold = (
        "eval/quality"
        if any("eval/quality" in m for r in study.runs for m in r.metrics)
        else ("eval/bleu")
    )
    fig = _line_panels(
        study, [("reward/mean", "training reward (proxy)"), (gold, f"held-out {label} (gold)")]
    )
    if fig is None:
        return None
    marked = _mark_alerts(study, fig.axes[1], gold)
    alerts = (
        " Each marker on the right is one monitor alert, at its update on its scheme's curve, "
        "shaped by the monitor that raised it (the legend names it)."
        if marked
        else ""
    )
    return Plot(
        "reward_vs_bleu.png",
        f"Training reward vs held-out {label}",
        f'Mean over each scheme\'s runs of metrics.jsonl "reward/mean" (left) and "{gold}" '
        f"(the task's primary metric, {label}) on validation examples every eval_every updates "
        f"(right). Reward rising while {label} falls is reward hacking.{alerts}",
        _png(fig),
    )


ALERT_MARKERS = ("v", "^", "s", "D", "P", "X", "*", "o", "<", ">", "h", "p")


def _mark_alerts(study: StudyFiles, ax: Any, gold: str) -> bool:
    """Every alert of every run, on its scheme's gold curve at its update; True if any."""
    colours = _colours(study.schemes)
    points: dict[str, list[tuple[float, float, Any]]] = {}
    for scheme in study.schemes:
        xs, ys = _series(study.runs_of(scheme), gold)
        if not xs:
            continue
        for run in study.runs_of(scheme):
            for alert in run.record.get("alerts") or []:
                update = _finite(alert.get("update"))
                if update is not None:
                    at = float(np.interp(update, xs, ys))
                    points.setdefault(str(alert.get("monitor")), []).append(
                        (update, at, colours[scheme])
                    )
    for i, monitor in enumerate(sorted(points)):
        xs, ys, cs = zip(*points[monitor])
        marker = ALERT_MARKERS[i % len(ALERT_MARKERS)]
        ax.scatter(xs, ys, c=list(cs), marker=marker, s=28, label=monitor, edgecolors="black",
                   linewidths=0.4, zorder=3)  # fmt: skip
    if points:
        ax.legend(fontsize="x-small", title="alerts", title_fontsize="x-small", loc="best")
    return bool(points)


def plot_reward_disagreement(study: StudyFiles) -> Plot | None:
    """Each scheme's training samples under its own reward and re-scored by the gold metric."""
    runs = [
        replace(run, metrics=[
            {"update": u["update"], "proxy": u["own_mean"], "gold": u["replayed_mean"],
             "tau": u["kendall_tau"]}
            for u in run.gold_replay.get("updates", [])
        ])
        for run in study.runs
        if run.gold_replay
    ]  # fmt: skip
    if not runs:
        return None
    label = quality_label(study.metric)
    panels = [("proxy", "training reward (proxy)"), ("gold", f"{label} of the same samples"),
              ("tau", "rank agreement (Kendall τ)")]  # fmt: skip
    fig = _line_panels(replace(study, runs=runs), panels)
    if fig is None:
        return None
    return Plot(
        "reward_disagreement.png",
        f"Reward disagreement: training samples re-scored by {label}",
        "Mean over each scheme's runs, per update, of RUN/replay/gold.json (rewardgym replay "
        f'under the task\'s primary metric, {label}, per sample): "own_mean", the reward the '
        'run trained on (left); "replayed_mean", the same samples scored by the gold metric '
        '(middle); "kendall_tau", how well the two order the samples within a group (right). '
        "A proxy that rises while the gold falls, or a τ near 0 or below, is reward hacking "
        "read from the training samples, with no extra evaluation.",
        _png(fig),
    )


def _done_series(runs: Iterable[RunFiles], key: str) -> tuple[list[float], list[float]]:
    """Mean over runs of ``eval/<key>`` against updates done: ``start/<key>`` (before the first
    update) at 0, an evaluation logged with update u at u + 1."""
    by_done: dict[int, list[float]] = {}
    for run in runs:
        for i, m in enumerate(run.metrics):
            update = int(m.get("update", i))
            for prefix, done in (("start/", 0), ("eval/", update + 1)):
                value = _finite(m.get(prefix + key))
                if value is not None:
                    by_done.setdefault(done, []).append(value)
    xs = sorted(by_done)
    return [float(x) for x in xs], [float(np.mean(by_done[x])) for x in xs]


def plot_forgetting(study: StudyFiles) -> Plot | None:
    """The retention task's score over updates per scheme, beside the training task's."""
    if not any("eval/retention_quality" in m for r in study.runs for m in r.metrics):
        return None
    evaluation = (study.results.get("config") or {}).get("evaluation") or {}
    retention = evaluation.get("retention_task") or "retention task"
    colours = _colours(study.schemes)
    fig = Figure(figsize=(10.4, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    panels = (("retention_quality", f"{retention}: held-out score"),
              ("quality", f"training task: held-out {quality_label(study.metric)}"))  # fmt: skip
    for ax, (key, label) in zip(axes, panels, strict=True):
        for scheme in study.schemes:
            xs, ys = _done_series(study.runs_of(scheme), key)
            if xs:
                ax.plot(xs, ys, marker=".", label=scheme, color=colours[scheme])
        ax.set_xlabel("updates done")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return Plot(
        "forgetting.png",
        f"Forgetting: {retention} over updates",
        'Mean over each scheme\'s runs of metrics.jsonl "eval/retention_quality" (left: the '
        "retention task's primary metric on its first eval_examples validation examples, "
        'greedy; "start/retention_quality" at 0 updates) and "eval/quality" (right: the task '
        "the runs train on). The retention task is never rewarded: a falling left curve is "
        "forgetting.",
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
    ax.set_yticks(range(len(runs)), [study.run_label(r) for r in runs], fontsize=7)
    ax.set_ylim(len(runs) - 0.5, -0.5)  # first run on top, as in the table
    n_updates = max(int(_finite(r.record.get("updates")) or 0) for r in runs)
    if n_updates:
        ax.set_xlim(-0.5, n_updates - 0.5)
    ax.set_xlabel("update")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
    plot_reward_disagreement,
    plot_forgetting,
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
