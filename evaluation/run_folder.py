"""Reports on a folder of runs trained one by one: ``rewardgym report runs/``.

A researcher who trains runs with ``rewardgym train --out runs/NAME`` (or with another backend
that writes the same files: ``config.json``, ``metrics.jsonl``, ``run.json``, ``checkpoints/``)
and evaluates each with ``rewardgym evaluate RUN`` compares them the way a study's report does.
The runs are the folder's children and grandchildren that hold ``config.json`` and
``metrics.jsonl``. They are grouped into schemes by reward, and the starting policy is
evaluated once per task with the settings the runs' own ``eval/<split>.json`` record (cached in
``FOLDER/before/``). Each run is then summarised exactly as a study run is
(:func:`~rewardgym.evaluation.study.summarise_run`). The collected results go to
``FOLDER/report/runs.json``, beside the report: the folder is not made to look like a study.

Example:
    >>> paths = write_folder_report("runs", baseline="task_only")
    >>> sorted(paths)[:2]
    ['plots/compute.png', 'plots/entropy_length.png']
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardgym.agents.config import TrainConfig
from rewardgym.envs.tasks import SPLITS, task_label
from rewardgym.errors import CheckpointError, ConfigError, RunDataError, UnknownNameError
from rewardgym.evaluation.eval_config import EvalConfig
from rewardgym.evaluation.evaluate import EVAL_DIR, EvalResult, compare
from rewardgym.evaluation.study import (
    StudyResult,
    aggregate_records,
    before_summary,
    summarise_run,
)
from rewardgym.evaluation.study_config import STUDY_FORMAT_VERSION, RunUnit
from rewardgym.fileio import write_json_atomic

__all__ = [
    "RUNS_JSON",
    "assign_schemes",
    "before_identity",
    "collect_folder",
    "eval_signature",
    "evaluate_command",
    "find_runs",
    "folder_kind",
    "reward_label",
    "write_folder_report",
]

RUNS_JSON = "runs.json"  # the collected results, written beside the report files
DEFAULT_BASELINE = "task_only"
# TrainConfig fields that say where or how a run was recorded, or which run of a scheme it is:
# runs that differ only in these belong to one scheme. The task and the starting policy are
# checked per task instead (every scheme must start from the same policy on a task).
_NOT_SCHEME = (
    "reward", "seed", "out", "progress", "device", "threads", "tensorboard", "checkpoint_every",
    "keep_checkpoints", "task", "task_seed", "task_kwargs", "model", "model_options",
    "warm_start_tasks", "dtype",
)  # fmt: skip
# the evaluation options an EvalResult records in ``settings`` (evaluate._recorded_settings)
_EVAL_SETTINGS = (
    "max_new_tokens", "noise_types", "severities", "greedy", "temperature", "top_p", "seed",
    "batch_size", "noise_seed",
)  # fmt: skip


@dataclass
class FolderRun:
    """One run found in the folder: its saved config, backend, summary and evaluation."""

    path: Path  # as the user would type it: the folder given, joined with ``rel``
    rel: str  # relative to the folder, with forward slashes
    config: TrainConfig
    backend: str
    summary: dict[str, Any]  # run.json, or {} when the run has none
    splits: list[str]  # the splits with an eval/<split>.json
    after: EvalResult | None = None
    scheme: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # what makes its scheme

    @property
    def task(self) -> str:
        return task_label(self.config.task)


# -- what a folder is ---------------------------------------------------------------------------


def _is_run(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "metrics.jsonl").is_file()


def _subfolders(path: Path) -> list[Path]:
    # hidden folders are tools' own (.git, .ipynb_checkpoints), never a run
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_runs(folder: str | os.PathLike[str]) -> list[Path]:
    """The run directories among ``folder``'s children and grandchildren (a run holds
    ``config.json`` and ``metrics.jsonl``), sorted; hidden folders are skipped.

    Example:
        >>> [p.name for p in find_runs("runs")]
        ['balanced-0', 'balanced-1', 'task_only-0', 'task_only-1']
    """
    folder = Path(folder)
    found = []
    for child in _subfolders(folder):
        if _is_run(child):
            found.append(child)
            continue
        found += [grandchild for grandchild in _subfolders(child) if _is_run(grandchild)]
    return found


def folder_kind(directory: str | os.PathLike[str]) -> str:
    """``"study"`` (it holds results.json) or ``"runs"`` (a folder of run directories).

    Raises:
        RunDataError: it is neither; the message says what it is and what to pass instead.

    Example:
        >>> folder_kind("studies/svb"), folder_kind("runs")
        ('study', 'runs')
    """
    path = Path(directory)
    if (path / "results.json").is_file():
        return "study"
    if path.is_dir() and not _is_run(path) and not (path / "study.yaml").is_file():
        if find_runs(path):
            return "runs"
    raise RunDataError(_what_it_is(path))


def _what_it_is(path: Path) -> str:
    """Why ``path`` cannot be reported on, and what to pass instead."""
    if not path.exists():
        return f"{str(path)!r} does not exist; pass a study directory or a folder of runs"
    if not path.is_dir():
        return f"{str(path)!r} is a file, not a folder; pass a study directory or a folder of runs"
    if _is_run(path):
        parent = path.resolve().parent
        return (
            f"{str(path)!r} is one run directory (it holds config.json and metrics.jsonl), not a "
            f"folder of runs: pass its parent folder (`rewardgym report {parent}`) to compare it "
            f"with the runs beside it, or `rewardgym evaluate {path}` to evaluate this one run"
        )
    if (path / "study.yaml").is_file():
        return (
            f"{str(path)!r} is a study without results.json (it has not finished once): run "
            f"`rewardgym study {path / 'study.yaml'} --out {path}`, then report on it"
        )
    return (
        f"{str(path)!r} is neither a study (no results.json) nor a folder of runs (no folder "
        "with config.json and metrics.jsonl among its children or grandchildren): pass a study "
        "directory (`rewardgym study CONFIG --out DIR`) or the folder holding your "
        "`rewardgym train --out FOLDER/NAME` runs"
    )


# -- reading the runs ---------------------------------------------------------------------------


def _read_run(folder: Path, path: Path) -> FolderRun:
    from rewardgym.agents.runs import read_run_config

    summary = _read_summary(path / "run.json")
    splits = [s for s in SPLITS if (path / EVAL_DIR / f"{s}.json").is_file()]
    config = read_run_config(path)
    # run.json names the trainer; a run without one is known from its config, else native
    backend = summary.get("backend") or getattr(config, "backend", None) or "native"
    return FolderRun(
        path=path,
        rel=path.relative_to(folder).as_posix(),
        config=config,
        backend=str(backend),
        summary=summary,
        splits=splits,
    )


def _read_summary(path: Path) -> dict[str, Any]:
    """run.json, or {} without one (a run another tool trained may not write it)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDataError(f"cannot read {str(path)!r}: {exc}; restore it or delete it") from None
    return data if isinstance(data, dict) else {}


def _choose_split(runs: Sequence[FolderRun], folder: Path) -> str:
    """The split every evaluated run has: ``test`` when they all have it."""
    common = set(SPLITS)
    for run in runs:
        common &= set(run.splits)
    if common:
        return "test" if "test" in common else sorted(common)[0]
    by_split = {s: [r.rel for r in runs if s in r.splits] for s in SPLITS}
    held = "; ".join(f"{s}: {', '.join(rels)}" for s, rels in by_split.items() if rels)
    lacking = [r.rel for r in runs if "test" not in r.splits]
    raise ConfigError(
        f"the runs in {str(folder)!r} were evaluated on different splits ({held}) and no split "
        "is common to all, so they cannot be compared: evaluate them on one, e.g. "
        f"`rewardgym evaluate RUN --split test` for {', '.join(lacking)}"
    )


# -- grouping into schemes ----------------------------------------------------------------------


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def reward_label(spec: Any) -> str:
    """A short readable name for a reward spec: a name as it is, a composite as its formula.

    Example:
        >>> reward_label("task_only"), reward_label({"composite": {"bleu": 0.7, "speed": 0.3}})
        ('task_only', '0.7·bleu + 0.3·speed')
    """
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return spec["name"]
    weights = spec.get("composite") if isinstance(spec, dict) else None
    if isinstance(weights, dict) and weights:
        return " + ".join(_term(str(name), value) for name, value in weights.items())
    text = _canon(spec)
    return text if len(text) <= 40 else text[:37] + "..."


def _term(name: str, value: Any) -> str:
    if isinstance(value, dict) and "schedule" in value:
        return f"({value['schedule']} {value.get('start')}→{value.get('end')})·{name}"
    weight = value.get("weight", 1.0) if isinstance(value, dict) else value
    return f"{weight:g}·{name}" if isinstance(weight, (int, float)) else name


def _short(value: Any) -> str:
    return value if isinstance(value, str) else _canon(value)


def _scheme_options(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if k not in _NOT_SCHEME}


def assign_schemes(runs: Sequence[FolderRun]) -> dict[str, dict[str, Any]]:
    """Give every run its scheme: one per reward, named by :func:`reward_label`. Runs whose
    rewards share a label but differ, or whose training options differ, get distinct names
    (the differing options, then a short hash of the spec), never one merged scheme.

    Returns:
        ``{scheme: {"reward": spec, "train": the options that tell the schemes apart}}``, the
        shape of a study's ``schemes`` (so the report's scheme-pair tables work unchanged).
    """
    groups: dict[tuple[str, str], list[FolderRun]] = {}
    for run in runs:
        run.options = _scheme_options(run.config)
        groups.setdefault((_canon(run.config.reward), _canon(run.options)), []).append(run)
    varying = _varying([run.options for run in runs])
    names = _scheme_names(groups)
    schemes = {}
    for key, members in groups.items():
        first = members[0]
        for run in members:
            run.scheme = names[key]
        schemes[names[key]] = {
            "reward": first.config.reward,
            "train": {k: first.options.get(k) for k in varying},
        }
    return dict(sorted(schemes.items()))


def _varying(options: Sequence[dict[str, Any]]) -> list[str]:
    """The option names whose values are not the same in all of ``options``."""
    keys = sorted({k for o in options for k in o})
    return [k for k in keys if len({_canon(o.get(k)) for o in options}) > 1]


def _scheme_names(groups: dict[tuple[str, str], list[FolderRun]]) -> dict[tuple[str, str], str]:
    by_label: dict[str, list[tuple[str, str]]] = {}
    for key, members in groups.items():
        by_label.setdefault(reward_label(members[0].config.reward), []).append(key)
    names = {}
    for label, keys in by_label.items():
        if len(keys) == 1:
            names[keys[0]] = label
            continue
        # one label, several schemes: say what tells them apart
        options = _varying([groups[k][0].options for k in keys])
        rewards_differ = len({reward for reward, _ in keys}) > 1
        for key in keys:
            name = label
            if rewards_differ:
                name += f" #{hashlib.sha1(key[0].encode()).hexdigest()[:6]}"
            shown = groups[key][0].options
            if options:
                name += " [" + ", ".join(f"{k}={_short(shown.get(k))}" for k in options) + "]"
            names[key] = name
    return names


# -- what makes runs comparable -----------------------------------------------------------------


def eval_signature(result: EvalResult) -> dict[str, Any]:
    """The evaluation options that must agree for two results to be compared (the split, the
    decoding and noise settings, the retention set); the example count and the task's data are
    compared per task.

    Example:
        >>> eval_signature(EvalResult.load("runs/a/eval/test.json"))["split"]
        'test'
    """
    settings = result.settings or {}
    retention = result.retention or {}
    return {
        "split": result.split,
        **{k: settings.get(k) for k in _EVAL_SETTINGS},
        "retention_task": retention.get("task"),
        "retention_split": retention.get("split"),
    }


def before_identity(config: TrainConfig) -> dict[str, Any]:
    """What a run's "before" depends on besides the evaluation: the starting policy (model,
    its options, warm-start tasks, dtype) and the task's data (seed and options).

    Example:
        >>> before_identity(read_run_config(Path("runs/a")))["model"]
        'tiny'
    """
    return {
        "model": config.model,
        "model_options": config.model_options,
        "warm_start_tasks": config.warm_start_tasks,
        "dtype": config.dtype,
        "task_seed": config.task_seed,
        "task_kwargs": config.task_kwargs,
    }


def _differ(
    runs: Sequence[FolderRun], value: Callable[[FolderRun], dict[str, Any]]
) -> tuple[str, str] | None:
    """The first field of ``value`` on which ``runs`` disagree and, in words, which run has
    which value; None when they agree."""
    values = [value(r) for r in runs]
    for key in values[0]:
        groups: dict[str, list[str]] = {}
        for run, v in zip(runs, values, strict=True):
            groups.setdefault(_canon(v.get(key)), []).append(run.rel)
        if len(groups) > 1:
            return key, "; ".join(f"{v} in {', '.join(rels)}" for v, rels in groups.items())
    return None


def _check_evaluations(runs: Sequence[FolderRun], folder: Path) -> None:
    """Every evaluation was made with the same options, so the figures compare."""
    differ = _differ(runs, lambda r: eval_signature(r.after))
    if differ is not None:
        reference = _most_common(runs)
        raise ConfigError(
            f"the runs in {str(folder)!r} cannot be compared: their evaluations used different "
            f"{differ[0]} ({differ[1]}); evaluate them again with the same options, e.g. as "
            f"{reference.rel} was: `{evaluate_command(Path('RUN'), reference.after)}`, then "
            f"`rewardgym report {folder}`"
        )


def _most_common(runs: Sequence[FolderRun]) -> FolderRun:
    counts = Counter(_canon(eval_signature(r.after)) for r in runs)
    top = counts.most_common(1)[0][0]
    return next(r for r in runs if _canon(eval_signature(r.after)) == top)


def _check_tasks(runs: Sequence[FolderRun], folder: Path) -> None:
    """On each task, every run starts from one policy and is evaluated on the same examples."""
    for task in sorted({r.task for r in runs}):
        on_task = [r for r in runs if r.task == task]
        differ = _differ(
            on_task, lambda r: {**before_identity(r.config), "n_examples": r.after.n_examples}
        )
        if differ is None:
            continue
        key, held = differ
        fix = (
            "evaluate them again with the same --n-examples"
            if key == "n_examples"
            else "a report compares rewards from one starting policy on the same task data: put "
            "the runs that differ in a folder of their own"
        )
        raise ConfigError(
            f"the runs in {str(folder)!r} cannot be compared: the runs on {task} used different "
            f"{key} ({held}); {fix}"
        )


def _common_tasks(
    runs: Sequence[FolderRun], folder: Path
) -> tuple[list[FolderRun], list[dict[str, str]]]:
    """The runs on the tasks every scheme ran, and the others, each with why it is left out."""
    schemes = sorted({r.scheme for r in runs})
    tasks = {s: {r.task for r in runs if r.scheme == s} for s in schemes}
    common = set.intersection(*tasks.values())
    if not common:
        held = "; ".join(f"{s} on {', '.join(sorted(t))}" for s, t in tasks.items())
        raise ConfigError(
            f"the runs in {str(folder)!r} cannot be compared: the schemes share no task ({held}); "
            "a report compares schemes on a task they all ran: train the missing runs, or report "
            "each task's runs from a folder of their own"
        )
    kept = [r for r in runs if r.task in common]
    left_out = [
        {
            "run": r.rel,
            "why": f"it ran on {r.task}, which "
            f"{', '.join(s for s in schemes if r.task not in tasks[s])} has no evaluated run on; "
            f"the schemes are compared on {', '.join(sorted(common))}",
        }
        for r in runs
        if r.task not in common
    ]
    return kept, left_out


def _check_unique(runs: Sequence[FolderRun]) -> None:
    seen: dict[tuple[str, str, int], FolderRun] = {}
    for run in runs:
        key = (run.scheme, run.task, run.config.seed)
        if key in seen:
            raise RunDataError(
                f"{seen[key].path} and {run.path} are the same run to this report (scheme "
                f"{run.scheme!r}, task {run.task}, seed {run.config.seed}): a scheme's runs "
                "need different seeds; move one out of the folder, or retrain it with another "
                "--seed"
            )
        seen[key] = run


def _pick_baseline(schemes: Sequence[str], baseline: str | None) -> str:
    if baseline is None:
        return DEFAULT_BASELINE if DEFAULT_BASELINE in schemes else sorted(schemes)[0]
    if baseline not in schemes:
        raise UnknownNameError(
            "baseline scheme", baseline, schemes, hint="Pass one of them to --baseline."
        )
    return baseline


# -- commands that fix or reproduce ------------------------------------------------------------


def evaluate_command(run: Path, like: EvalResult | None) -> str:
    """The ``rewardgym evaluate`` command that evaluates ``run`` as ``like`` was evaluated
    (plain ``rewardgym evaluate RUN`` without one). Options the command line cannot set are
    named in a trailing comment.

    Example:
        >>> evaluate_command(Path("runs/c"), EvalResult.load("runs/a/eval/test.json"))
        'rewardgym evaluate runs/c --split test --n-examples 4 --noise none --max-new-tokens 6'
    """
    words = ["rewardgym", "evaluate", str(run)]
    if like is None:
        return shlex.join(words)
    s = eval_signature(like)
    words += ["--split", s["split"], "--n-examples", str(like.n_examples)]
    noise = s["noise_types"] or []
    words += ["--noise", *noise] if noise else ["--noise", "none"]
    if noise:
        words += ["--severity", *(f"{v:g}" for v in s["severities"] or [])]
    if s["max_new_tokens"] is not None:
        words += ["--max-new-tokens", str(s["max_new_tokens"])]
    if s["greedy"] is False:
        words += ["--sample", "--seed", str(s["seed"])]
    if s["batch_size"] not in (None, 64):
        words += ["--batch-size", str(s["batch_size"])]
    if s["retention_task"]:
        words += ["--retention-task", str(s["retention_task"])]
    return shlex.join(words) + _python_only(s)


def _python_only(s: dict[str, Any]) -> str:
    """The options a result used that ``rewardgym evaluate`` has no flag for, as a comment."""
    extra = {k: s[k] for k in ("temperature", "top_p") if s["greedy"] is False and s[k] != 1.0}
    if s["noise_seed"] not in (None, 0):
        extra["noise_seed"] = s["noise_seed"]
    if s["retention_split"] not in (None, s["split"]):
        extra["retention_split"] = s["retention_split"]
    if not extra:
        return ""
    shown = ", ".join(f"{k}={v!r}" for k, v in extra.items())
    return f"  # and {shown}: set them in Python, evaluate_run(RUN, EvalConfig(...))"


def _train_command(run: FolderRun) -> str:
    return shlex.join(
        ["rewardgym", "train", "--config", str(run.path / "config.json"), "--out", str(run.path)]
    )


def _eval_config(result: EvalResult) -> EvalConfig:
    """The EvalConfig that repeats ``result``'s evaluation on another policy."""
    s = eval_signature(result)
    return EvalConfig(
        split=result.split,
        n_examples=result.n_examples,
        noise=list(s["noise_types"] or []),
        severities=list(s["severities"] or []) or EvalConfig().severities,
        max_new_tokens=s["max_new_tokens"],
        greedy=bool(s["greedy"]) if s["greedy"] is not None else True,
        temperature=s["temperature"] if s["temperature"] is not None else 1.0,
        top_p=s["top_p"] if s["top_p"] is not None else 1.0,
        seed=s["seed"] or 0,
        batch_size=s["batch_size"] or 64,
        noise_seed=s["noise_seed"] or 0,
        retention_task=s["retention_task"],
        retention_split=s["retention_split"],
    )


# -- the starting policy ------------------------------------------------------------------------


def _before(folder: Path, runs: Sequence[FolderRun], log: Callable[[str], None]) -> EvalResult:
    """The starting policy of ``runs`` (one task) evaluated as they were, from the cache in
    ``FOLDER/before/<task>/<split>.json`` when it was made with the same settings."""
    first = runs[0]
    path = folder / "before" / first.task / f"{first.after.split}.json"
    cached = _cached_before(path, first)
    if cached is not None:
        return cached
    from rewardgym.locks import exclusive_lock

    # a second report on the same folder waits here, then finds the result written
    with exclusive_lock(path.parent / ".lock"):
        cached = _cached_before(path, first)
        if cached is not None:
            return cached
        why = "it is not cached yet" if not path.exists() else "the cached one used other settings"
        config = _eval_config(first.after)
        conditions = len(config.noise) * len(config.severities)
        log(
            f"evaluating the starting policy of {len(runs)} run(s) on {first.task} "
            f"({first.config.model}, no checkpoint), as the runs were evaluated: "
            f"{first.after.n_examples} {config.split} examples, clean and under {conditions} "
            f"noise condition(s). Every answer is generated anew, so this takes about as long "
            f"as one `rewardgym evaluate RUN` ({why}); it is saved to {path} for later reports"
        )
        return _evaluate_start(first, config, path.parent)


def _cached_before(path: Path, run: FolderRun) -> EvalResult | None:
    if not path.is_file():
        return None
    try:
        cached = EvalResult.load(path)
    except RunDataError:
        return None  # unreadable: evaluate again and replace it
    start = (cached.settings or {}).get("starting_policy")
    fits = (
        eval_signature(cached) == eval_signature(run.after)
        and cached.n_examples == run.after.n_examples
        and start == _json_copy(before_identity(run.config))
    )
    return cached if fits else None


def _json_copy(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparing with a file."""
    return json.loads(json.dumps(value, default=str))


def _evaluate_start(run: FolderRun, config: EvalConfig, out_dir: Path) -> EvalResult:
    from rewardgym.agents.runs import policy_for_config
    from rewardgym.envs.scoring import resolve_task
    from rewardgym.evaluation.evaluate import evaluate
    from rewardgym.machine import torch_threads

    train = run.config
    with torch_threads(train.threads):
        policy = policy_for_config(train)  # the model the runs started from: no checkpoint
        task = resolve_task(train.task, train.task_seed, train.task_kwargs)
        settings = {"starting_policy": _json_copy(before_identity(train))}
        return evaluate(policy, task, config, out_dir=out_dir, settings=settings)


# -- records and results ------------------------------------------------------------------------


def _monitors(run: FolderRun, metrics: list[dict]) -> list[str]:
    """The monitors the run had: those its latest checkpoint saved a state for, and those that
    raised an alert (a run's config does not record them)."""
    from rewardgym.agents.checkpoint import latest_checkpoint, load_callbacks_state

    names = {str(a.get("monitor")) for m in metrics for a in m.get("alerts", [])}
    checkpoint = latest_checkpoint(run.path) if (run.path / "checkpoints").is_dir() else None
    if checkpoint is not None:
        try:
            names |= {key.rsplit(":", 1)[0] for key in load_callbacks_state(checkpoint)}
        except CheckpointError:
            pass  # the alerts still name the monitors that fired
    return sorted(names)


def _record(run: FolderRun, before: EvalResult) -> dict[str, Any]:
    from rewardgym.agents.runlog import read_metrics

    metrics = read_metrics(run.path / "metrics.jsonl")
    unit = RunUnit(run.scheme, run.config.reward, run.config.task, run.config.seed)
    change = compare(before, run.after)
    record = summarise_run(unit, metrics, before, run.after, change, _monitors(run, metrics))
    record.update(run_dir=run.rel, backend=run.backend, wall_s=run.summary.get("wall_s"))
    return record


def _environment(runs: Sequence[FolderRun]) -> tuple[dict[str, Any], list[str]]:
    """The machine the runs trained on (their run.json), and a note when they differ."""
    machines = [(r, r.summary.get("machine")) for r in runs]
    machines = [(r, m) for r, m in machines if isinstance(m, dict)]
    if not machines:
        return {}, ["no run has a run.json that records its machine: the environment is unknown"]
    first, machine = machines[0]
    env = {**machine, "torch_threads": first.summary.get("torch_threads")}
    cpus = sorted({str(m.get("cpu_model")) for _, m in machines})
    if len(cpus) == 1:
        return env, []
    return env, [
        f"the runs trained on different CPUs ({'; '.join(cpus)}); the environment shown is "
        f"{first.rel}'s. A model trained on another CPU produces other tokens"
    ]


def _common_options(runs: Sequence[FolderRun]) -> dict[str, Any]:
    """The training options every run shares (the report's config section)."""
    dicts = [r.config.to_dict() for r in runs]
    differ = set(_varying(dicts)) | {"out", "seed", "progress"}
    return {k: v for k, v in dicts[0].items() if k not in differ}


@dataclass
class _Collected:
    runs: list[FolderRun]  # evaluated and comparable: the report's runs
    missing: list[FolderRun]  # no eval JSON at all
    left_out: list[dict[str, str]]
    schemes: dict[str, dict[str, Any]]
    baseline: str


def _collect(folder: Path, baseline: str | None) -> _Collected:
    """Read and check every run; raises before anything is written when they cannot compare."""
    found = [_read_run(folder, path) for path in find_runs(folder)]
    if not found:
        raise RunDataError(_what_it_is(folder))
    evaluated = [r for r in found if r.splits]
    missing = [r for r in found if not r.splits]
    if not evaluated:
        commands = "; ".join(f"`{evaluate_command(r.path, None)}`" for r in missing)
        raise RunDataError(
            f"no run in {str(folder)!r} has been evaluated (no RUN/{EVAL_DIR}/<split>.json): run "
            f"{commands}, then `rewardgym report {folder}`"
        )
    split = _choose_split(evaluated, folder)
    for run in evaluated:
        run.after = EvalResult.load(run.path / EVAL_DIR / f"{split}.json")
    _check_evaluations(evaluated, folder)
    schemes = assign_schemes(evaluated)  # a run not yet evaluated names no scheme
    kept, left_out = _common_tasks(evaluated, folder)
    _check_tasks(kept, folder)
    _check_unique(kept)
    names = sorted({r.scheme for r in kept})
    used = {name: schemes[name] for name in names}
    return _Collected(kept, missing, left_out, used, _pick_baseline(names, baseline))


def _folder_section(
    folder: Path, found: _Collected, results_file: str, notes: list[str]
) -> dict[str, Any]:
    """What the report says about the folder: each run, what is missing and left out."""
    like = found.runs[0].after
    return {
        "folder": str(folder),
        "results_file": results_file,
        "runs": [
            {
                "path": r.rel,
                "backend": r.backend,
                "scheme": r.scheme,
                "task": r.task,
                "seed": r.config.seed,
                "train_command": _train_command(r),
                "evaluate_command": evaluate_command(r.path, like),
            }
            for r in found.runs
        ],
        "missing": [
            {"run": r.rel, "command": evaluate_command(r.path, _like(found.runs, r))}
            for r in found.missing
        ],
        "left_out": found.left_out,
        "notes": notes,
    }


def _like(runs: Sequence[FolderRun], run: FolderRun) -> EvalResult:
    """The evaluation a missing run should repeat: one of a run on its task, else any."""
    same_task = [r for r in runs if r.task == run.task]
    return (same_task or list(runs))[0].after


def collect_folder(
    folder: str | os.PathLike[str],
    *,
    baseline: str | None = None,
    results_file: str = f"report/{RUNS_JSON}",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Collect a folder of runs into a study-shaped results dict (nothing written but the
    starting policy's cached evaluation).

    Args:
        folder: the folder holding the runs (children or grandchildren).
        baseline: the baseline scheme (None: ``task_only`` if present, else the first name).
        results_file: where the results will be written, relative to ``folder`` (the report
            names it).
        log: where progress lines go (default: stderr).

    Raises:
        RunDataError: no run, no evaluated run, a corrupt file, or two runs that are the same
            scheme, task and seed.
        ConfigError: runs that cannot be compared (no common task, different evaluation
            split or settings, different starting policies on a task).
        UnknownNameError: ``baseline`` is not a scheme ("did you mean").

    Example:
        >>> results = collect_folder("runs")
        >>> results["schemes"], results["baseline"]
        (['speed_only', 'task_only'], 'task_only')
    """
    folder = Path(folder)
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    found = _collect(folder, baseline)
    section = _folder_section(folder, found, results_file, [])
    split = found.runs[0].after.split
    for missing in section["missing"]:
        log(
            f"{missing['run']} has no {EVAL_DIR}/{split}.json, so it is left out: run "
            f"`{missing['command']}`"
        )
    befores = {}
    for task in sorted({r.task for r in found.runs}):
        befores[task] = _before(folder, [r for r in found.runs if r.task == task], log)
    ordered = sorted(found.runs, key=lambda r: (r.scheme, r.task, r.config.seed, r.rel))
    records = [_record(r, befores[r.task]) for r in ordered]
    schemes = list(found.schemes)
    environment, section["notes"] = _environment(found.runs)
    like = found.runs[0]
    return {
        "format_version": STUDY_FORMAT_VERSION,
        "study": folder.resolve().name,
        "baseline": found.baseline,
        "schemes": schemes,
        "tasks": sorted(befores),
        "seeds": sorted({r.config.seed for r in found.runs}),
        "complete": not found.missing,
        "runs": records,
        **aggregate_records(records, schemes, found.baseline),
        "before": before_summary(folder, sorted(befores), like.after.split),
        "environment": environment,
        "wall_s": None,
        "config": {
            **_starting_model(found.runs),
            "schemes": found.schemes,
            "evaluation": _eval_config(like.after).to_dict(),
            "train": _common_options(found.runs),
        },
        "run_folder": section,
    }


def _starting_model(runs: Sequence[FolderRun]) -> dict[str, Any]:
    """``model`` and ``model_options`` when every run starts from the same model, else {}."""
    models = {_canon([r.config.model, r.config.model_options]) for r in runs}
    if len(models) > 1:
        return {}
    return {"model": runs[0].config.model, "model_options": runs[0].config.model_options}


def write_folder_report(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    baseline: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Collect a folder of runs and write its report: ``runs.json`` (the collected results,
    atomically), ``report.md``, ``report.html`` and ``plots/`` into ``out``.

    Args:
        folder: the folder holding the runs.
        out: where the report goes (default ``FOLDER/report``).
        baseline: the baseline scheme (None: ``task_only`` if present, else the first name).
        log: where progress lines go (default: stderr).

    Returns:
        ``{"runs.json": path, "report.md": path, "report.html": path, "plots/<name>": path}``.

    Raises:
        As :func:`collect_folder`; nothing is written into ``out`` then.

    Example:
        >>> paths = write_folder_report("runs", baseline="task_only")
        >>> paths["runs.json"]
        PosixPath('runs/report/runs.json')
    """
    from rewardgym.evaluation.report import write_report

    folder = Path(folder)
    out = Path(out) if out is not None else folder / "report"
    target = out / RUNS_JSON
    shown = target.relative_to(folder).as_posix() if target.is_relative_to(folder) else str(target)
    results = collect_folder(folder, baseline=baseline, results_file=shown, log=log)
    paths = {RUNS_JSON: write_json_atomic(target, results)}
    paths.update(write_report(StudyResult(folder, results), out))
    return paths
