"""Reading a study directory for its report: results.json and every run's files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rewardgym.envs.tasks import quality_label
from rewardgym.errors import RunDataError
from rewardgym.evaluation.report.metrics import HEADLINE, Metric

_STUDY_FORMAT_VERSION = 1  # the results.json layout this module reads


# -- reading a study -----------------------------------------------------------------------------


@dataclass
class RunFiles:
    """One run's record (from results.json) and the files it was computed from."""

    record: dict[str, Any]
    path: str  # relative to the study directory
    metrics: list[dict[str, Any]]
    evaluation: dict[str, Any] | None
    gold_replay: dict[str, Any] | None = None  # RUN/replay/gold.json, when the run has one


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

    @property
    def folder(self) -> dict[str, Any] | None:
        """How a folder of runs trained one by one was collected (its runs, their backends,
        what was missing or left out); None for a study."""
        folder = self.results.get("run_folder")
        return folder if isinstance(folder, dict) else None

    @property
    def run_root(self) -> str:
        """What every run's path starts with: ``runs/`` in a study, nothing in a folder of runs
        (the paths are the runs' own folders under it)."""
        return "" if self.folder is not None else "runs/"

    @property
    def results_file(self) -> str:
        """The file, relative to the directory, that holds the per-run and per-scheme values."""
        return str((self.folder or {}).get("results_file") or "results.json")

    def run_label(self, run: RunFiles) -> str:
        """A run's name in tables and plots: its path under :attr:`run_root`."""
        return run.path.removeprefix(self.run_root)

    def runs_of(self, scheme: str) -> list[RunFiles]:
        return [r for r in self.runs if r.record.get("scheme") == scheme]

    @property
    def metric(self) -> str:
        """The tasks' primary quality metric ("bleu" for studies recorded before it existed)."""
        metrics = {str(r.get("metric", "bleu")) for r in self.results.get("runs", [])}
        return metrics.pop() if len(metrics) == 1 else "bleu"

    def metrics(self) -> list[Metric]:
        """The headline rows of this study, labels naming its primary metric."""
        rows = [m for m in HEADLINE if not (m.repeats_bleu_row and self.metric == "bleu")]
        label = quality_label(self.metric)
        return [replace(m, label=m.label.format(metric=label)) for m in rows]


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
            f"{study_dir}` first (it writes results.json), then `rewardgym report {study_dir}` "
            "(for a folder of runs trained one by one, `rewardgym report FOLDER` collects them)"
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
    gold = folder / "replay" / "gold.json"
    replay = _read_json(gold, missing, f"{rel}/replay/gold.json") if gold.exists() else None
    return RunFiles(record, rel, metrics, evaluation, replay)


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
