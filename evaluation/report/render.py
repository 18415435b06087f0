"""Rendering a report: its content, Markdown, self-contained HTML, and writing the files."""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rewardgym.evaluation.definitions import DEFINITIONS
from rewardgym.evaluation.report.claims import CLAIMS_NOTE, claims_table
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
    claims: Table
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
    facts = [f"study: {name}"] if study.folder is None else _folder_facts(study)
    facts += [
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
    if study.folder is not None:
        caveats += _folder_caveats(study)
    elif not res.get("complete", True):
        caveats.append(
            "The study is not complete: some runs have not finished. Rerun the study command to "
            "finish it; the figures below cover the finished runs only."
        )
    caveats += [f"missing file: {m}" for m in study.missing]
    kind = "study report" if study.folder is None else "report on a folder of runs"
    return ReportContent(
        title=f"rewardgym {kind}: {name}",
        facts=facts,
        caveats=caveats,
        headline=headline_table(study),
        probabilities=probability_table(study),
        claims=claims_table(study),
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


def _folder_facts(study: StudyFiles) -> list[str]:
    """What a report on a folder of runs was built from: the folder, each run and its backend."""
    folder = study.folder or {}
    runs = ", ".join(f"{r['path']} ({r.get('backend', 'native')})" for r in folder.get("runs", []))
    return [
        f"built from a folder of runs trained one by one, not a study: {study.study_dir} (the "
        f"collected values: {study.results_file})",
        f"runs (training backend): {runs or 'none'}",
    ]


def _folder_caveats(study: StudyFiles) -> list[str]:
    """The runs a report on a folder could not use, each with the command that fixes it."""
    folder = study.folder or {}
    lines = [
        f"{m['run']} has no eval/{study.split}.json, so no figure includes it: run "
        f"`{m['command']}`, then `rewardgym report {study.study_dir}` again."
        for m in folder.get("missing", [])
    ]
    lines += [f"{r['run']} is left out: {r['why']}" for r in folder.get("left_out", [])]
    return lines + [str(note) for note in folder.get("notes", [])]


def _commands(study: StudyFiles) -> list[str]:
    d = study.study_dir
    if study.folder is not None:
        return _folder_commands(study)
    return [
        f"rewardgym study {d / 'study.yaml'} --out {d}",
        f"rewardgym report {d}",
        f"sacrebleu {d}/RUN/eval/{study.split}.refs.txt -i {d}/RUN/eval/{study.split}.hyps.txt "
        "-b   # one run's final BLEU (RUN = runs/<scheme>/<task>/<seed>)",
    ]


def _folder_commands(study: StudyFiles) -> list[str]:
    """Per run: train it from its saved options, evaluate it as the others were; then report."""
    d = study.study_dir
    lines = [
        "# each run, trained again from its saved config.json (train refuses a folder that "
        "already holds a run: move the old one away first), then evaluated as the report's "
        "runs were"
    ]
    for run in (study.folder or {}).get("runs", []):
        if run.get("backend", "native") != "native":
            lines.append(f"# {run['path']} was trained with the {run['backend']} backend")
        lines += [run["train_command"], run["evaluate_command"]]
    return lines + [
        f"rewardgym report {d}",
        f"sacrebleu {d}/RUN/eval/{study.split}.refs.txt -i {d}/RUN/eval/{study.split}.hyps.txt "
        "-b   # one run's final BLEU (RUN = a run's folder)",
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
    if study.folder is not None:
        lines = ["study wall time: none (the runs were trained one by one)"]
    else:
        lines = [
            "study wall time (this invocation): "
            + ("n/a (not recorded)" if wall is None else f"{wall:.1f} s")
        ]
    if per_run:
        lines.append(
            f"sum of run wall times: {sum(per_run):.1f} s over {len(per_run)} runs "
            f"({study.results_file} runs[].wall_s)"
        )
    return lines


# -- Markdown ------------------------------------------------------------------------------------

# Escape only what could change how CommonMark/GFM renders a text, so "12 * 2", "ν_scheme" and
# "a => b" read as written. Newlines become <br>, so a text is always one line of inline content.
_ALWAYS = re.compile(
    r"\|"  # a table-cell break
    r"|&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]*;)"  # would start an entity
    r"|\[(?=.*\][(\[:])"  # a later "](", "][" or "]:" could make it a link, image or definition
    r"|\\(?=[!-/:-@\[-`{-~\n\ue000]|\Z)",  # escapes what follows (\ue000: a code span's place)
    re.S,
)
# at the very start a text could open a block: heading, quote, list item, code fence, or a rule
# (two marks are enough: after the bullet of "- " a text "--" makes "- --")
_BLOCK_START = re.compile(
    r"#{1,6}(?=[ \t]|\Z)|>|[-+*](?=[ \t]|\Z)|~~~|\d{1,9}(?P<dot>[.)])(?=[ \t]|\Z)"
    r"|([-*_])(?:[ \t]*\2)+[ \t]*\Z"
)
_HEADING_END = re.compile(r"(?:^|(?<=[ \t]))#+\Z")  # a heading would drop it as closing "#"s
_EMPHASIS_RUN = re.compile(r"\*+|_+|~+")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_HOLE = "\ue000"  # stands in for a code span while the prose around it is escaped


def _is_space(ch: str) -> bool:
    return ch == "\t" or unicodedata.category(ch) == "Zs"


def _may_delimit(run: re.Match[str]) -> bool:
    """Whether a run of ``*``, ``_`` or ``~`` could open or close emphasis or strike-through:
    CommonMark's flanking rules, read cautiously. Never with white space (or the text's start
    or end) on both sides; ``_`` also never inside a word."""
    text = run.string
    before = text[run.start() - 1] if run.start() else " "
    after = text[run.end()] if run.end() < len(text) else " "
    if _is_space(before) and _is_space(after):
        return False
    return not (run.group()[0] == "_" and before.isalnum() and after.isalnum())


def _marks(text: str) -> set[int]:
    """Positions in ``text`` that need a backslash (``&`` an ``&amp;``) to stay literal."""
    marks = {m.start() for m in _ALWAYS.finditer(text)}
    if text.count("`") >= 2:  # one backtick alone cannot open a code span
        marks.update(i for i, ch in enumerate(text) if ch == "`")
    runs: dict[str, list[re.Match[str]]] = {}
    for run in filter(_may_delimit, _EMPHASIS_RUN.finditer(text)):
        runs.setdefault(run.group()[0], []).append(run)
    for same in runs.values():
        if len(same) >= 2:  # emphasis needs an opening and a closing run
            marks.update(i for run in same for i in range(*run.span()))
    start = _BLOCK_START.match(text)
    if start:
        marks.add(start.start("dot") if start.group("dot") else 0)
    end = _HEADING_END.search(text)
    if end:
        marks.add(end.start())
    return marks


def md_escape(text: Any) -> str:
    """Escape data text (model output, names, config values) for Markdown: it renders as exactly
    this text in a table cell, list item, heading or paragraph, and only what could change
    that is escaped (``|`` always, ``<`` as ``&lt;``; the rest by context). Surrounding spaces,
    which Markdown drops anyway, go; newlines become ``<br>``.

    Example:
        >>> md_escape("a|b <script> [x](y) 12 * 2 ν_scheme *x*")
        'a\\\\|b &lt;script> \\\\[x](y) 12 * 2 ν_scheme \\\\*x\\\\*'
    """
    text = str(text).replace("\r\n", "\n").replace("\r", "\n").strip(" \t")
    marks = _marks(text)
    out = []
    for i, ch in enumerate(text):
        if ch == "<":
            ch = "&lt;"
        elif i in marks:
            ch = "&amp;" if ch == "&" else "\\" + ch
        out.append(ch)
    return "".join(out).replace("\n", "<br>")


def code_segments(text: str) -> list[tuple[bool, str]]:
    """Trusted prose (definitions, probability note, captions) as ``(is_code, part)`` pairs.

    Example:
        >>> code_segments("run `rewardgym report DIR` again")
        [(False, 'run '), (True, 'rewardgym report DIR'), (False, ' again')]
    """
    parts = _CODE_SPAN.split(str(text))
    return [(i % 2 == 1, part) for i, part in enumerate(parts) if part]


def md_prose(text: str) -> str:
    """Trusted prose for Markdown: its `code spans` stay code spans (content verbatim) and the
    text around them is escaped as one, so that marks on both sides of a span cannot pair."""
    parts = _CODE_SPAN.split(str(text))
    around = md_escape(_HOLE.join(parts[::2])).split(_HOLE)
    codes = [f"`{code}`" for code in parts[1::2]] + [""]
    return "".join(a + c for a, c in zip(around, codes))


def _md_table(table: Table) -> list[str]:
    lines = [
        "| " + " | ".join(md_escape(c) for c in table.columns) + " |",
        "|" + "|".join(" --- " for _ in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in table.rows]
    if table.notes:
        # the notes are one paragraph: escape them together, so marks in two notes can't pair
        one_line = (" ".join(note.splitlines()) for note in table.notes)
        notes = md_escape("\n".join(one_line)).split("<br>")
        lines += [""] + [f"[{k}] {note}  " for k, note in enumerate(notes, start=1)]
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
    out += [md_prose(PROBABILITY_NOTE), ""] + _md_table(content.probabilities) + [""]
    if content.claims.rows:
        out += ["### The source's claims, measured", "", md_prose(CLAIMS_NOTE), ""]
        out += _md_table(content.claims) + [""]
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
        out += ["", md_prose(plot.caption), ""]
    out += ["## Monitor alerts", ""]
    out += _md_table(content.alerts) if content.alerts.rows else ["No monitor raised an alert."]
    out += ["", "## Per-run figures", ""] + _md_table(content.per_run) + [""]
    out += ["## Sample outputs", ""]
    for title, table in content.samples:
        out += [f"### {md_escape(title)}", ""] + _md_table(table) + [""]
    if not content.samples:
        out += ["No samples were saved.", ""]
    out += ["## Definitions", ""]
    out += [f"- **{md_escape(term)}** — {md_prose(text)}" for term, text in content.definitions]
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
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["code_spans"] = code_segments  # parts only; the template escapes each one
    return env


def render_html(content: ReportContent) -> str:
    """The self-contained HTML report (jinja2, autoescaped, plots as data URIs, strict CSP)."""
    template = _jinja_env().get_template("report.html.j2")
    return template.render(c=content, probability_note=PROBABILITY_NOTE, claims_note=CLAIMS_NOTE)


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
