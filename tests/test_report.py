"""Study reports from synthetic study directories (no training): cells, plots, escaping,
degenerate cases, sweeps, determinism.

The records are built by the study runner's own ``summarise_run`` and aggregated by its
``collect_results``, so the report is tested against exactly the results.json a study writes.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from html import unescape
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markupsafe import escape as html_escape

from rewardgym.agents.meters.text_metrics import corpus_bleu, corpus_chrf, write_hyps_refs
from rewardgym.errors import RunDataError
from rewardgym.evaluation.evaluate import EvalResult, compare
from rewardgym.evaluation.report import (
    CSP,
    HEADLINE,
    StudyFiles,
    load_study,
    md_escape,
    report_summary,
    write_report,
)
from rewardgym.evaluation.report.render import (
    _md_table,
    build_content,
    code_segments,
    md_prose,
    render_html,
)
from rewardgym.evaluation.report.tables import Table
from rewardgym.evaluation.study import (
    StudyResult,
    collect_results,
    record_path,
    run_dir,
    summarise_run,
)
from rewardgym.evaluation.study_config import expand_units, load_study_config
from rewardgym.machine import cpu_model

EVIL = "<script>alert(1)</script> a|b `code` *x*"
REFS = [
    "kato-n runa dogi-s vidi-ta kato-n",
    "the red cat sat on the mat today",
    "a dog saw it and ran away fast",
    "one two three four five six",
]
HYPS = {
    "task_only": [
        "kato-n runa dogi-s vidi-ta kato-n",
        "the red cat sat on the mat",
        "a dog saw it and ran",
        "one two three four five six",
    ],
    "speed_only": [EVIL, "", "", "one"],
}
NOISE = {"char_swap": {"0.1": 0.0, "0.2": 0.0}, "word_drop": {"0.1": 0.0, "0.2": 0.0}}
N_UPDATES = 6


def _eval(hyps, *, bleu=None, robustness=0.8, noise=True, length=3.0) -> EvalResult:
    bleu = corpus_bleu(hyps, REFS) if bleu is None else bleu
    table = {k: {s: bleu * (1 - float(s)) for s in v} for k, v in NOISE.items()} if noise else {}
    return EvalResult(
        task="translate",
        split="test",
        n_examples=len(REFS),
        bleu=bleu,
        chrf=corpus_chrf(hyps, REFS),
        exact_match=0.0,
        completion_tokens=length,
        completion_chars=10.0,
        finished_share=1.0,
        tokens_per_sample=length + 1,
        latency_s_per_sample=0.01,
        noise=table,
        robustness=robustness if noise else None,
        samples=[
            {"prompt": f"translate: {r} =>", "reference": r, "completion": h}
            for h, r in zip(hyps, REFS, strict=True)
        ][:3],
    )


def _metrics(scheme_index: int, seed: int, alerts: bool) -> list[dict]:
    out = []
    for u in range(N_UPDATES):
        m = {
            "update": u,
            "reward/mean": 0.1 * u + 0.05 * scheme_index,
            "reward/speed/mean": 0.2,
            "entropy_bits": 2.0 - 0.1 * u + 0.01 * seed,
            "completion_length/mean": 5.0 - scheme_index * u * 0.5,
            "grad/nu": 1.0 + scheme_index + 0.1 * seed + 0.01 * u,
            "flops/generation": 1e9 * (u + 1),
            "flops/train": 3e9 * (u + 1),
            "flops/total": 4e9 * (u + 1),
            "flops/wasted": 0.5e9 * (u + 1),
            "compute_waste_pct": 12.5 + scheme_index,
        }
        if (u + 1) % 2 == 0:
            m["eval/bleu"] = 20.0 - scheme_index * u
        if alerts and u == 3:
            m["alerts"] = [
                {
                    "update": u,
                    "monitor": "entropy",
                    "value": 0.5,
                    "threshold": 1.0,
                    "message": "entropy fell below the floor <collapse>",
                    "action": "log",
                }
            ]
        out.append(m)
    return out


def _config(sweep: bool) -> dict:
    cfg = {
        "name": "synthetic",
        "description": "Made-up runs <b>with</b> a stated design.",
        "model_options": {"loop_share": 0.5},
        "tasks": ["translate"],
        "seeds": [0, 1],
        "baseline": "task_only",
        "schemes": {"task_only": "task_only", "speed_only": "speed_only"},
        "evaluation": {"severities": [0.1, 0.2], "noise": ["char_swap", "word_drop"]},
    }
    if sweep:
        cfg["sweep"] = {"base": "balanced", "component": "speed", "weights": [0.0, 0.5]}
    return cfg


def make_study(root: Path, *, before_bleu: float | None = None, sweep: bool = False) -> Path:
    """A study directory as run_study leaves it, with made-up but self-consistent run files."""
    config = load_study_config(_config(sweep))
    study = root / ("sweep" if sweep else "study")
    (study / "study.yaml").parent.mkdir(parents=True, exist_ok=True)
    (study / "study.yaml").write_text(json.dumps(config.to_dict()), encoding="utf-8")
    start = [
        "kato-n runa dogi-s vidi-ta",
        "the red cat sat on",
        "a dog saw it and",
        "one two three",
    ]
    before = _eval(start, bleu=before_bleu, robustness=0.9)
    before.save(study / "before" / "translate" / "test.json")
    schemes = list(dict.fromkeys(u.scheme for u in expand_units(config)))
    for unit in expand_units(config):
        index = schemes.index(unit.scheme)
        hyps = HYPS.get(
            unit.scheme, HYPS["task_only"][: 3 - index % 2] + ["one two"] * (index % 2 + 1)
        )
        # speed_only seed 1 has no noise sweep: its robustness change is undefined
        no_noise = unit.scheme == "speed_only" and unit.seed == 1
        after = _eval(
            hyps, robustness=0.7 + 0.05 * unit.seed, noise=not no_noise, length=3 - index * 0.5
        )
        out = run_dir(study, unit)
        after.save(out / "eval" / "test.json")
        write_hyps_refs(out / "eval", hyps, REFS, stem="test")
        metrics = _metrics(index, unit.seed, alerts=unit.scheme == "speed_only")
        (out / "metrics.jsonl").write_text(
            "".join(json.dumps(m) + "\n" for m in metrics), encoding="utf-8"
        )
        record = summarise_run(unit, metrics, before, after, compare(before, after))
        record["run_dir"] = str(out.relative_to(study))
        record["wall_s"] = 1.5
        path = record_path(study, unit)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record), encoding="utf-8")
    results = collect_results(config, study, wall_s=12.5)
    (study / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return study


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return make_study(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def report(study) -> dict[str, Path]:
    return write_report(study)


def _text(paths: dict[str, Path], name: str) -> str:
    return paths[name].read_text(encoding="utf-8")


def _results(study: Path) -> dict:
    return json.loads((study / "results.json").read_text(encoding="utf-8"))


def _md_rows(md: str, first_cell: str) -> list[list[str]]:
    """Cells of the Markdown table rows whose first cell is ``first_cell`` (escaped form)."""
    rows = []
    for line in md.splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if cells[0] == first_cell:
                rows.append(cells)
    return rows


def test_report_writes_md_html_and_every_plot_into_study_report(study, report) -> None:
    expected = {
        "plots/reward_vs_bleu.png",
        "plots/noise.png",
        "plots/grad_variance.png",
        "plots/entropy_length.png",
        "plots/compute.png",
        "plots/alerts.png",
    }
    assert set(report) == expected | {"report.md", "report.html"}
    for path in report.values():
        assert path.parent in (study / "report", study / "report" / "plots")
        assert path.stat().st_size > 0
    md, html = _text(report, "report.md"), _text(report, "report.html")
    for name in expected:
        assert f"](plots/{name.split('/')[1]})" in md
        data_uri = "data:image/png;base64," + base64.b64encode(report[name].read_bytes()).decode()
        assert data_uri in html  # embedded: the HTML needs no other file
    assert "plots/sweep.png" not in report
    assert not list((study / "report").rglob("*.tmp"))


def test_every_headline_cell_is_in_both_formats(study, report) -> None:
    res = _results(study)
    md, html = _text(report, "report.md"), _text(report, "report.html")
    rows = load_study(study).metrics()
    assert [m.key for m in rows] == [m.key for m in HEADLINE if not m.repeats_bleu_row]
    assert "FLOPs per BLEU point gained" in [m.label for m in rows]  # a BLEU study's metric
    for metric in rows:
        assert md_escape(metric.label) in md
        assert metric.label.replace("&", "&amp;") in html
    final = res["summary"]["task_only"]["final_bleu"]
    assert final["ci_low"] is None  # two seeds: a range, not a confidence interval
    low, high = sorted(final["values"])
    cell = f"{final['mean']:.2f} (range {low:.2f} to {high:.2f}, 2 values)"
    row = _md_rows(md, "Final BLEU")[0]
    assert row[1] == cell
    assert f"<td>{cell}</td>" in html
    assert _md_rows(md, "seeds (runs)")[0][1:] == ["2", "2"]
    assert _md_rows(md, "metric")[0][1:] == ["task_only", "speed_only"]


def test_baseline_column_shows_a_dash_against_itself(report) -> None:
    md = _text(report, "report.md")
    grad = _md_rows(md, "Gradient variance change vs baseline (%)")[0]
    assert grad[1] == "—" and grad[2].startswith("+")
    p_bleu = _md_rows(md, "P(beats baseline): Final BLEU")[0]
    assert p_bleu[1:] == ["—", "0.00"]  # speed_only's empty answers never beat task_only
    assert "n/a" not in " ".join(_md_rows(md, "Final chrF")[0])
    improvement = _md_rows(md, "BLEU improvement (%)")[0]
    two_seeds = r"[+-]\d+\.\d \(range [+-]\d+\.\d to [+-]\d+\.\d, 2 values\)"
    assert all(re.fullmatch(two_seeds, c) for c in improvement[1:]), improvement


def _footnote(md: str, cell: str) -> str:
    """The footnote a headline cell's ``[k]`` points to (Markdown-escaped text): the first
    ``[k]`` line, since the headline table comes first and each table numbers its own."""
    (k,) = re.findall(r"\[(\d+)\]", cell)
    line = next(line for line in md.splitlines() if line.startswith(f"[{k}] "))
    return line[len(f"[{k}] ") :].rstrip()


def test_partly_undefined_cell_says_how_many_seeds_and_why(report) -> None:
    md = _text(report, "report.md")
    cell = _md_rows(md, "Robustness change (%)")[0][2]
    assert re.search(r"\(n=1 of 2; 1 n/a \[\d+\]\)$", cell), cell
    assert _footnote(md, cell).startswith("robustness change is undefined: the two results swept")
    forgetting = _md_rows(md, "Forgetting (%)")[0][1:]
    assert len(set(forgetting)) == 1 and re.fullmatch(r"n/a \[\d+\]", forgetting[0])
    assert _footnote(md, forgetting[0]) == "no retention task in the study: not measured"
    # each reason is said once, however many cells share it
    assert md.count("no retention task in the study: not measured") == 1


def test_model_output_is_escaped_in_html_with_a_strict_csp(report) -> None:
    html = _text(report, "report.html")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a|b `code` *x*" in html
    assert "entropy fell below the floor &lt;collapse&gt;" in html
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html
    assert CSP == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def test_markdown_cells_escape_pipes_and_html_and_keep_tables_whole(report) -> None:
    md = _text(report, "report.md")
    assert "<script" not in md.lower()
    assert "&lt;script>alert(1)&lt;/script> a\\|b \\`code\\` \\*x\\*" in md
    header_cells = None
    for line in md.splitlines():
        if not line.startswith("|"):
            header_cells = None
            continue
        n = len(re.findall(r"(?<!\\)\|", line))
        header_cells = header_cells or n
        assert n == header_cells, line  # an unescaped pipe would add a column


def test_md_escape_cases() -> None:
    assert md_escape("a|b") == "a\\|b"
    assert md_escape("<b>&") == "&lt;b>&"
    assert md_escape("&amp; &#123; &#x1F; AT&T") == "&amp;amp; &amp;#123; &amp;#x1F; AT&T"
    assert md_escape("line1\nline2\r\nline3") == "line1<br>line2<br>line3"
    assert md_escape("`x` _y_ [z] task_only") == "\\`x\\` \\_y\\_ [z] task_only"
    assert md_escape("![i](http://x) [a][b]") == "!\\[i](http://x) \\[a][b]"
    assert md_escape("a `b") == "a `b"  # one backtick cannot open a code span
    assert md_escape("**bold** a*b*c ~~s~~") == "\\*\\*bold\\*\\* a\\*b\\*c \\~\\~s\\~\\~"
    assert md_escape("2*3 and x_") == "2*3 and x_"  # one run alone cannot pair
    assert md_escape("#### 1") == "\\#### 1"
    assert md_escape("#hashtag C#") == "#hashtag C#"
    assert md_escape("x ##") == "x \\##"  # a heading would drop it as a closing sequence
    assert md_escape("- item") == "\\- item" and md_escape("-3.5 + 2") == "-3.5 + 2"
    assert md_escape("1. item") == "1\\. item" and md_escape("0.5") == "0.5"
    assert md_escape("> quote") == "\\> quote" and md_escape("---") == "\\---"
    assert md_escape("\\* a\\b \\") == "\\\\* a\\b \\\\"
    assert md_escape("  padded  ") == "padded"
    assert md_escape(3.5) == "3.5"


def test_md_escape_leaves_what_cannot_change_the_rendering() -> None:
    for text in ("12 * 2 = 24", "ν_scheme", "a => b", "task_only", "x_1 and y_2"):
        assert md_escape(text) == text
    assert md_escape("Sam buys 8 packs * 6 buttons = 48") == "Sam buys 8 packs * 6 buttons = 48"


MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_INLINE = r"((?:[^<]|<br>)*)"  # rendered text: no tag but a <br> we wrote ourselves
CONTEXTS = {  # how the report places an escaped text, and the HTML that must come out
    "table cell": ("| {0} |\n| --- |\n| {0} |\n", "<table>\n<thead>\n<tr>\n<th>{0}</th>\n"
                   "</tr>\n</thead>\n<tbody>\n<tr>\n<td>{0}</td>\n</tr>\n</tbody>\n</table>\n"),
    "list item": ("- {0}\n", "<ul>\n<li>{0}</li>\n</ul>\n"),
    "caveat": ("> - {0}\n", "<blockquote>\n<ul>\n<li>{0}</li>\n</ul>\n</blockquote>\n"),
    "heading": ("### {0}\n", "<h3>{0}</h3>\n"),
    "paragraph": ("{0}\n", "<p>{0}</p>\n"),
}  # fmt: skip
NASTY = [
    "12 * 2 = 24", "**bold**", "a*b*c", "_x_", "ν_scheme", "task_only", "`code`", "``a`b``",
    "#### 1", "# x #", "x ##", "- item", "-", "+ x", "* x", "1. item", "2) x", "> quote",
    "a | b", "\\|", "[a](b)", "![i](x)", "[a [b] c](d)", "[a][b]", "[a]: http://x", "<script>",
    "<http://x>", "&amp;", "&#123;", "AT&T", "~~s~~", "~x~", "~~~", "```", "\\*", "\\", "a\\",
    "=>", "a => b", "---", "--", "- -", "***", "_ _ _", "    code", "__a__", "*a **b** c*", "x_y_z",
    "snake_case_", "_a_b", "a*", "*a", "(*a*)", "\"*a*\"", "a\nb", "*a\nb*", "line\\\n>x",
    "&lt;", "a&b;c", "%_%x_", "中_文_", "é_é", "e\u0301_x_", "x\u00a0*y*\u00a0z",
]  # fmt: skip


def _assert_renders_as_text(text: str) -> None:
    """md_escape(text) renders, in every place the report puts one, as exactly this text."""
    escaped = md_escape(text)
    expected = text.replace("\r\n", "\n").strip(" \t")
    for name, (markdown, html) in CONTEXTS.items():
        rendered = MD.render(markdown.format(escaped))
        match = re.fullmatch(html.format(_INLINE), rendered)
        assert match, (name, text, escaped, rendered)  # no markup, block or extra cell
        for got in match.groups():
            assert unescape(got.replace("<br>", "\n")) == expected, (name, text, rendered)


@pytest.mark.parametrize("text", NASTY)
def test_md_escape_renders_the_literal_text(text: str) -> None:
    _assert_renders_as_text(text)


_MARKS = list("*_~`#>|-+.)[]()!<&;:\\ 1aν中")


@settings(max_examples=400, deadline=None)
@given(
    st.text(
        st.sampled_from(_MARKS) | st.characters(categories=("L", "M", "N", "P", "S", "Zs")),
        max_size=24,
    )
)
def test_md_escape_renders_any_printable_text_literally(text: str) -> None:
    text = text.strip(" \t")
    assume(text and not text[0].isspace() and not text[-1].isspace())  # Markdown trims those
    _assert_renders_as_text(text)


def test_notes_are_escaped_together_so_they_cannot_pair() -> None:
    table = Table(["h"], [["n/a [1]"]], notes=["a *b or `c", "d* e` f", "[x", "y](z)"])
    rendered = MD.render("\n".join(_md_table(table)))
    assert not re.search(r"<(em|strong|code|a)\b", rendered), rendered
    assert "[1] a *b or `c<br />\n[2] d* e` f<br />\n[3] [x<br />\n[4] y](z)</p>" in rendered


def test_prose_keeps_code_spans_and_escapes_around_them(study, report) -> None:
    assert md_prose("run `a *b* | c` then *x*") == "run `a *b* | c` then \\*x\\*"
    assert md_prose("`a` and `b`") == "`a` and `b`"
    assert md_prose("no code: 12 * 2") == "no code: 12 * 2"
    assert code_segments("a `b` c") == [(False, "a "), (True, "b"), (False, " c")]
    md, html = _text(report, "report.md"), _text(report, "report.html")
    assert "`sacrebleu refs.txt -i hyps.txt` gives the same figure" in md
    assert "<code>sacrebleu refs.txt -i hyps.txt</code> gives the same figure" in html
    assert "where 'before' means the starting policy" in md
    assert "where &#39;before&#39; means the starting policy" in html
    # the code inside a span is escaped in HTML like any other text
    content = replace(build_content(load_study(study)), definitions=[("t", "a <b> `<i>` & c")])
    assert "<dd>a &lt;b&gt; <code>&lt;i&gt;</code> &amp; c</dd>" in render_html(content)


def test_cells_can_be_checked_against_the_run_files(study, report) -> None:
    md = _text(report, "report.md")
    assert "sacrebleu RUN/eval/test.refs.txt -i RUN/eval/test.hyps.txt -b" in md
    for record in _results(study)["runs"]:
        folder = study / record["run_dir"]
        hyps = (folder / "eval" / "test.hyps.txt").read_text(encoding="utf-8").splitlines()
        refs = (folder / "eval" / "test.refs.txt").read_text(encoding="utf-8").splitlines()
        evaluation = json.loads((folder / "eval" / "test.json").read_text(encoding="utf-8"))
        rows = _md_rows(md, md_escape(record["run_dir"].removeprefix("runs/")))
        row = next(r for r in rows if len(r) == 15)  # the per-run table, not the alert timeline
        assert row[2] == f"{corpus_bleu(hyps, refs):.2f}" == f"{evaluation['bleu']:.2f}"


def test_reproduce_section_config_environment_and_definitions(study, report) -> None:
    md, html = _text(report, "report.md"), _text(report, "report.html")
    assert f"rewardgym study {study / 'study.yaml'} --out {study}" in md
    assert f"rewardgym report {study}" in md
    assert "baseline: task_only" in md  # the config, as YAML
    assert "sacrebleu" in _md_rows(md, "item")[0][0] or "| sacrebleu |" in md
    assert "study wall time (this invocation): 12.5 s" in md
    cpu = cpu_model()
    assert f"| cpu_model | {md_escape(cpu)} |" in md and str(html_escape(cpu)) in html
    for term in ("BLEU improvement (%)", "Gradient variance", "Forgetting (%)", "Statistics"):
        assert term in html
    assert "ν = σ² / ‖ḡ‖²" in md


def test_alert_timeline_and_samples_per_scheme(report) -> None:
    md = _text(report, "report.md")
    alerts = _md_rows(md, "speed_only/translate/0")
    assert any(r[1:4] == ["3", "entropy", "0.5000"] for r in alerts)
    assert "### speed_only (runs/speed_only/translate/0/eval/test.json)" in md
    assert "### task_only (runs/task_only/translate/0/eval/test.json)" in md
    assert "### starting policy (before/translate/test.json)" in md
    assert (
        "| translate: the red cat sat on the mat today => "
        "| the red cat sat on the mat today | (empty completion) |" in md
    )


def test_the_reward_vs_gold_plot_marks_every_alert_and_names_its_monitor(study) -> None:
    from matplotlib.figure import Figure

    from rewardgym.evaluation.report.load import load_study
    from rewardgym.evaluation.report.plots import _mark_alerts, plot_reward_vs_bleu

    files = load_study(study)
    plot = plot_reward_vs_bleu(files)
    assert "Each marker on the right is one monitor alert" in plot.caption
    ax = Figure().subplots()
    logged = {k for r in files.runs for m in r.metrics for k in m}
    assert _mark_alerts(files, ax, "eval/quality" if "eval/quality" in logged else "eval/bleu")
    alerts = [a for r in files.runs for a in r.record.get("alerts") or []]
    marked = sum(len(c.get_offsets()) for c in ax.collections)
    assert marked == len(alerts)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == sorted({a["monitor"] for a in alerts})


def test_bleu_zero_before_reads_n_a_never_nan(tmp_path) -> None:
    study = make_study(tmp_path, before_bleu=0.0)
    paths = write_report(study)
    md, html = _text(paths, "report.md"), _text(paths, "report.html")
    row = _md_rows(md, "BLEU improvement (%)")[0]
    assert len(set(row[1:])) == 1 and re.fullmatch(r"n/a \[\d+\]", row[1])
    assert _footnote(md, row[1]) == "BLEU before = 0: improvement undefined"
    assert "BLEU before = 0: improvement undefined" in html
    for text in (md, html):
        assert not re.search(r"\bnan\b|\binf\b", text, re.IGNORECASE)


def test_sweep_plot_only_for_sweep_studies(tmp_path, report) -> None:
    study = make_study(tmp_path, sweep=True)
    paths = write_report(study, tmp_path / "out")
    assert "plots/sweep.png" in paths
    assert paths["report.md"] == tmp_path / "out" / "report.md"
    md = _text(paths, "report.md")
    assert "](plots/sweep.png)" in md and "Sweep trade-off" in md
    assert _md_rows(md, "metric")[0][3:] == ["balanced@speed=0", "balanced@speed=0.5"]
    assert "Sweep trade-off" not in _text(report, "report.md")


def test_report_is_deterministic(study, tmp_path) -> None:
    a = write_report(study, tmp_path / "a")
    b = write_report(StudyResult(study, _results(study)), tmp_path / "b")
    assert a.keys() == b.keys()
    assert a["report.md"].read_text() == b["report.md"].read_text()
    assert a["report.html"].read_bytes() == b["report.html"].read_bytes()
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key


def test_missing_run_files_are_listed_not_fatal(tmp_path) -> None:
    study = make_study(tmp_path)
    (study / "runs" / "speed_only" / "translate" / "1" / "metrics.jsonl").unlink()
    md = _text(write_report(study), "report.md")
    assert "missing file: runs/speed_only/translate/1/metrics.jsonl" in md


def test_no_results_json_is_a_typed_error(tmp_path) -> None:
    with pytest.raises(RunDataError, match=r"no results.json in .*; run `rewardgym study CONFIG"):
        write_report(tmp_path)


def test_newer_results_format_is_refused(tmp_path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"format_version": 99}), encoding="utf-8")
    with pytest.raises(RunDataError, match="has format_version 99; this rewardgym reads"):
        write_report(tmp_path)


def test_report_summary_names_both_files_and_the_plot_count(report) -> None:
    line = report_summary(report)
    assert line == f"report: {report['report.md']}, {report['report.html']} (6 plots)"


def test_report_states_the_starting_policy_and_the_design(report) -> None:
    md, html = _text(report, "report.md"), _text(report, "report.html")
    assert "- starting policy: tiny (loop_share=0.5)" in md
    assert "- design: Made-up runs" in md and "with</b>" not in html  # escaped in HTML


def test_headline_names_a_primary_metric_other_than_bleu(tmp_path: Path) -> None:
    def study(*metrics: str) -> StudyFiles:
        runs = [{"metric": m} for m in metrics]
        return StudyFiles(tmp_path, {"runs": runs}, "test", [], {})

    labels = [m.label for m in study("exact_match", "exact_match").metrics()]
    assert labels[:3] == [
        "exact match improvement (%)",
        "Final exact match (0-100)",
        "BLEU improvement (%)",
    ]
    assert len(labels) == len(HEADLINE) and not any("{" in label for label in labels)
    # BLEU as primary metric, or tasks that disagree: the BLEU rows only, no duplicate rows
    for mixed in (study("bleu"), study("exact_match", "chrf"), study()):
        assert [m.label for m in mixed.metrics()][0] == "BLEU improvement (%)"
