"""Study reports: ``report.md`` and a self-contained ``report.html`` from a study directory.

The report reads ``results.json`` and the run files beside it (``metrics.jsonl``,
``eval/<split>.json``), so every cell can be checked against a file a reader can open. The HTML
is rendered by jinja2 with autoescaping on and a Content-Security-Policy that allows no scripts;
plots are PNGs embedded as data URIs. Model output (sample completions, prompts) is only ever
escaped text, in both formats.

One module per job: ``metrics`` (the headline rows), ``load`` (reading a study), ``tables``
(cells and tables), ``plots`` and ``render`` (content, Markdown, HTML, writing the files).

Example:
    >>> paths = write_report("studies/svb")
    >>> print(report_summary(paths))
    report: studies/svb/report/report.md, studies/svb/report/report.html (7 plots)
"""

from rewardgym.evaluation.report.load import RunFiles, StudyFiles, load_study
from rewardgym.evaluation.report.metrics import HEADLINE, Metric
from rewardgym.evaluation.report.render import (
    CSP,
    build_content,
    md_escape,
    render_html,
    render_markdown,
    report_summary,
    write_report,
)
from rewardgym.evaluation.report.tables import headline_cell, undefined_reason

__all__ = [
    "CSP",
    "HEADLINE",
    "Metric",
    "RunFiles",
    "StudyFiles",
    "build_content",
    "headline_cell",
    "load_study",
    "md_escape",
    "render_html",
    "render_markdown",
    "report_summary",
    "undefined_reason",
    "write_report",
]
