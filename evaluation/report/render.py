"""Rendering a report: its content, Markdown, self-contained HTML, and writing the files."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rewardgym.evaluation.definitions import DEFINITIONS
from rewardgym.evaluation.report.load import StudyFiles, load_study
from rewardgym.evaluation.report.metrics import PROBABILITY_NOTE
from rewardgym.evaluation.report.plots import Plot, make_plots
from rewardgym.evaluation.report.tables import (
    Table,
    _finite,
    alert_table,
    before_table,
    headline_table,
    per_run_table,
    probability_table,
    sample_tables,
    source_lines,
)
from rewardgym.evaluation.stats import defined
from rewardgym.fileio import write_bytes_atomic

REPORT_FORMAT = "rewardgym study report"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


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
    if table.notes:
        lines.append("")
        lines += [f"[{k}] {md_escape(note)}  " for k, note in enumerate(table.notes, start=1)]
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

    folder = Path(__file__).resolve().parents[1] / "templates"
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
