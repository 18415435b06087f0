"""Study runner: every (scheme × task × seed) run trained, evaluated and recorded.

The flow: the starting policy is evaluated once per task (``before/``), each run trains and is
evaluated after training (``runs/<scheme>/<task>/<seed>/``), and its record is written to
``records/`` the moment it finishes. ``results.json`` is rebuilt from the records, so a rerun
skips finished runs, resumes interrupted ones from their checkpoints, and ends with the same
results as an uninterrupted study.

Example:
    >>> result = run_study("speed_vs_balanced", out="studies/svb")
    >>> result.results_path
    PosixPath('studies/svb/results.json')
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rewardgym.agents.callbacks import Callback
from rewardgym.envs.tasks import quality_label, task_label
from rewardgym.errors import ConfigError, RunDataError, RunLockedError
from rewardgym.evaluation.replay import replay_gold
from rewardgym.evaluation.report.metrics import HEADLINE as HEADLINE_METRICS
from rewardgym.evaluation.stats import prob_beats, summarise
from rewardgym.evaluation.study_config import (
    STUDY_FORMAT_VERSION,
    RunUnit,
    StudyConfig,
    expand_units,
    load_study_config,
)
from rewardgym.fileio import write_json_atomic, write_text_atomic
from rewardgym.locks import describe_owner, exclusive_lock, hold_run_dir, run_owner
from rewardgym.machine import machine_record, torch_threads
from rewardgym.storage import Storage

# headline metrics: key -> is higher better (None: neither, reported without "beats")
HEADLINE = {m.key: m.higher_is_better for m in HEADLINE_METRICS}


@dataclass
class StudyResult:
    """What :func:`run_study` returns: the study directory and its aggregated results."""

    study_dir: Path
    results: dict[str, Any]
    interrupted: bool = False

    @property
    def results_path(self) -> Path:
        return self.study_dir / "results.json"


def run_study(
    config_or_path: StudyConfig | str | Path | dict,
    out: str | Path | None = None,
    executor: str | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run (or finish) a study and write ``results.json``.

    Args:
        config_or_path: a :class:`StudyConfig`, a YAML path, a shipped study's name or a mapping.
        out: the study directory (default ``studies/<name>``).
        executor: ``"local"`` or ``"ray"``; overrides the config's.
        log: where progress lines go (default: stderr).

    Returns:
        A :class:`StudyResult`; ``interrupted`` is True when Ctrl-C stopped it (rerun to resume).
    """
    config = (
        config_or_path
        if isinstance(config_or_path, StudyConfig)
        else load_study_config(config_or_path, executor=executor)
    )
    if executor is not None and executor != config.executor:
        config = load_study_config(config.to_dict(), executor=executor)
    study_dir = Path(out) if out is not None else Path("studies") / config.name
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    _prepare_study_dir(study_dir, config)
    storage = _study_storage(config)
    if config.executor == "ray" and config.ray_address:
        _check_reachable(config.ray_address)
    started = time.perf_counter()
    units = expand_units(config)
    for task in config.tasks:
        _evaluate_before(config, task, study_dir, log)
    if storage is not None:
        _publish_before(storage, study_dir)
        for unit in units:  # runs an earlier driver left in storage
            if not record_path(study_dir, unit).exists():
                _bring_home(storage, study_dir, unit)
    pending = [u for u in units if not record_path(study_dir, u).exists()]
    log(f"study {config.name!r}: {len(units)} runs, {len(units) - len(pending)} already done")
    interrupted = False
    if pending:
        interrupted = _run_units(config, study_dir, pending, len(units), log)
    results = collect_results(config, study_dir, wall_s=time.perf_counter() - started)
    write_json_atomic(study_dir / "results.json", results)
    if interrupted:
        log("study interrupted: rerun the same command to resume where it stopped")
    return StudyResult(study_dir, results, interrupted)


# -- directories and records -------------------------------------------------------------------


def run_dir(study_dir: Path, unit: RunUnit) -> Path:
    """Where one run's files live: ``runs/<scheme>/<task>/<seed>``."""
    return study_dir / "runs" / unit.scheme / task_label(unit.task) / str(unit.seed)


def record_path(study_dir: Path, unit: RunUnit) -> Path:
    return study_dir / "records" / f"{unit.scheme}__{task_label(unit.task)}__{unit.seed}.json"


# options that say where a study runs, not what it computes: a rerun may change them
WHERE_IT_RUNS = ("executor", "workers", "ray_address", "ray_resources", "storage")


def _prepare_study_dir(study_dir: Path, config: StudyConfig) -> None:
    saved = study_dir / "study.yaml"
    resolved = config.to_dict()
    comparable = {k: v for k, v in resolved.items() if k not in WHERE_IT_RUNS}
    if saved.exists():
        previous = load_study_config(saved).to_dict()
        prev_cmp = {k: v for k, v in previous.items() if k not in WHERE_IT_RUNS}
        if prev_cmp != comparable:
            changed = sorted(k for k in comparable if comparable[k] != prev_cmp.get(k))
            raise RunDataError(
                f"study directory {str(study_dir)!r} holds a study with a different config "
                f"({changed} differ); use another --out or the same config to resume"
            )
    study_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    write_text_atomic(saved, yaml.safe_dump(resolved, sort_keys=False))


def _evaluate_before(config: StudyConfig, task: str, study_dir: Path, log) -> None:
    """Evaluate the starting policy once per task; every run's "before" is this result."""
    path = study_dir / "before" / task_label(task) / f"{config.evaluation.split}.json"
    if path.exists():
        return
    from rewardgym.agents.runs import policy_for_config

    # another process on the same study waits here, then finds the result written
    with exclusive_lock(path.parent / ".lock"), torch_threads(config.threads):
        if path.exists():
            return
        log(f"evaluating the starting policy on {task!r} (before training)")
        # the runs' own starting policy: model, options and warm-start tasks
        policy = policy_for_config(config.train_config(task, None, 0, None))
        _evaluate(policy, config, task, path.parent, reward=None)


def _evaluate(policy, config: StudyConfig, task: str, out_dir: Path, reward: Any):
    from rewardgym.envs.scoring import resolve_task
    from rewardgym.evaluation.evaluate import evaluate

    shared = config.train_config(task, None, 0, None)  # the task data the runs train on
    task_obj = resolve_task(task, shared.task_seed, shared.task_kwargs)
    return evaluate(policy, task_obj, config.evaluation, reward=reward, out_dir=out_dir)


# -- one run (runs in worker processes too: module-level and picklable) ------------------------


def execute_unit(
    config_dict: dict,
    study_dir: str,
    unit: RunUnit,
    label: str = "",
    on_checkpoint: Callable[[], None] | None = None,
) -> dict:
    """Train one run (resuming if it started before), evaluate it, write its record.

    The run directory is held for the whole unit, so another process on the same study skips
    it: the result is ``{"held_by": owner}`` then, ``{"interrupted": True}`` after Ctrl-C, and
    the record with ``"by"`` set when another process finished the run first.
    ``on_checkpoint`` is called after each checkpoint the run writes.
    """
    config = load_study_config(config_dict)
    study = Path(study_dir)
    try:
        with hold_run_dir(run_dir(study, unit), notice=_notice), torch_threads(config.threads):
            if record_path(study, unit).exists():  # another process finished it meanwhile
                return {
                    **json.loads(record_path(study, unit).read_text(encoding="utf-8")),
                    "by": "another process",
                }
            return _train_and_record(config, study, unit, label, on_checkpoint)
    except RunLockedError:
        return {"held_by": run_owner(run_dir(study, unit)) or {}, "key": unit.key}


def _train_and_record(
    config: StudyConfig,
    study: Path,
    unit: RunUnit,
    label: str,
    on_checkpoint: Callable[[], None] | None = None,
) -> dict:
    from rewardgym.agents.trainer import train

    out = run_dir(study, unit)
    started = time.perf_counter()
    train_config = config.train_config(
        unit.task, unit.reward, unit.seed, str(out), progress=bool(label), overrides=unit.train
    )
    resume = (out / "config.json").exists()
    callbacks = study_monitors(config)
    if on_checkpoint is not None:
        callbacks.append(_AfterCheckpoint(on_checkpoint))
    # the run's folder is the study's: it may already hold the study's own files (placements)
    result = train(
        train_config, callbacks=callbacks, resume=resume, label=label, into_existing=True
    )
    if result.interrupted:
        return {"interrupted": True, "key": unit.key}
    after = _evaluate(result.policy, config, unit.task, out / "eval", reward=unit.reward)
    replay_gold(out)  # the training samples under the gold metric, for the report
    record = _record(config, study, unit, result.metrics, after)
    record["wall_s"] = time.perf_counter() - started
    write_json_atomic(record_path(study, unit), record)
    return record


def _record(config: StudyConfig, study: Path, unit: RunUnit, metrics: list[dict], after) -> dict:
    from rewardgym.evaluation.evaluate import EvalResult, compare

    split = config.evaluation.split
    before = EvalResult.load(study / "before" / task_label(unit.task) / f"{split}.json")
    monitors = [m.name for m in study_monitors(config)]
    record = summarise_run(unit, metrics, before, after, compare(before, after), monitors)
    record["run_dir"] = str(run_dir(study, unit).relative_to(study))
    return record


def refresh_records(study_dir: str | os.PathLike[str]) -> StudyResult:
    """Recompute every finished run's record, then ``results.json``, from the run files on disk.

    For a study recorded by an older rewardgym whose report now has other rows: no run trains
    or evaluates again; each record is summarised anew from the run's ``metrics.jsonl`` and
    evaluations (its ``wall_s`` kept), and the study's wall time is kept. Run it while no
    process is running the study.

    Raises:
        RunDataError: ``study_dir`` holds no study (no ``study.yaml``) or a run file is bad.
    """
    from rewardgym.agents.runlog import read_metrics
    from rewardgym.evaluation.evaluate import EVAL_DIR, EvalResult

    study = Path(study_dir)
    if not (study / "study.yaml").exists():
        raise RunDataError(f"{str(study)!r} is not a study directory: it has no study.yaml")
    config = load_study_config(study / "study.yaml")
    for unit in expand_units(config):
        path = record_path(study, unit)
        if not path.exists():
            continue
        old = json.loads(path.read_text(encoding="utf-8"))
        out = run_dir(study, unit)
        after = EvalResult.load(out / EVAL_DIR / f"{config.evaluation.split}.json")
        record = _record(config, study, unit, read_metrics(out / "metrics.jsonl"), after)
        write_json_atomic(path, {**record, "wall_s": old.get("wall_s")})
    previous = json.loads((study / "results.json").read_text(encoding="utf-8"))
    results = collect_results(config, study, wall_s=previous.get("wall_s"))
    write_json_atomic(study / "results.json", results)
    return StudyResult(study, results, False)


# -- one run through storage (nodes that share no disk) ----------------------------------------


def execute_unit_in_storage(
    config_dict: dict, storage_uri: str, unit: RunUnit, label: str = ""
) -> dict:
    """:func:`execute_unit` in node-local scratch, its run kept in the study's storage.

    The run's folder comes from storage when an earlier attempt left one (the run resumes
    from its last checkpoint, on whichever node), goes back at every checkpoint and at the end,
    and the record is written there last. ``RUN/placements.jsonl`` gains one line per attempt:
    the node, its Ray node id, and the checkpoint it resumed from.
    """
    storage = Storage(storage_uri)
    record_rel = _rel(record_path, unit)
    if storage.exists(record_rel):  # an earlier attempt finished it
        return {**json.loads(storage.read_text(record_rel)), "by": "another process"}
    run_rel = _rel(run_dir, unit)
    with tempfile.TemporaryDirectory(prefix="rewardgym-run-") as scratch:
        study = Path(scratch)
        before_rel = f"before/{task_label(unit.task)}"
        storage.pull(before_rel, study / before_rel)
        local = study / run_rel
        storage.pull(run_rel, local)
        _log_placement(local)
        record = execute_unit(
            config_dict, scratch, unit, label, on_checkpoint=lambda: storage.push(local, run_rel)
        )
        storage.push(local, run_rel)
        if "key" in record and "held_by" not in record and not record.get("interrupted"):
            storage.write_text(record_rel, json.dumps(record, indent=2))
    return record


def _rel(path_of: Callable[[Path, RunUnit], Path], unit: RunUnit) -> str:
    """A run's folder or record relative to the study directory, as storage names it."""
    return path_of(Path("."), unit).as_posix()


def _log_placement(run: Path) -> None:
    from rewardgym.agents.checkpoint import checkpoint_step, latest_checkpoint

    checkpoint = latest_checkpoint(run) if run.is_dir() else None
    line = {
        "node": platform.node(),
        "pid": os.getpid(),
        "ray_node_id": _ray_node_id(),
        "resumed_from_update": checkpoint_step(checkpoint) if checkpoint else None,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    run.mkdir(parents=True, exist_ok=True)
    with open(run / PLACEMENTS, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


PLACEMENTS = "placements.jsonl"


def _ray_node_id() -> str | None:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


class _AfterCheckpoint(Callback):
    """Calls ``fn`` after each checkpoint (to copy the run to storage)."""

    name = "after_checkpoint"

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def on_checkpoint(self, ctx, path: Path) -> None:
        self.fn()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at a
    ``host:port`` (or ``ray://host:port``) Ray address; other forms (``auto``) go to Ray."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach Ray at ray_address {address!r}: {exc.strerror or exc}; start the "
            "head there (`ray start --head`), or leave ray_address unset for a local Ray"
        ) from None


def _study_storage(config: StudyConfig) -> Storage | None:
    """The study's storage, checked writable now (before any run starts), or None."""
    if config.storage is None:
        return None
    storage = Storage(config.storage)
    storage.check_writable()
    return storage


def _publish_before(storage: Storage, study_dir: Path) -> None:
    """The starting policy's evaluations, where every run reads them to write its record."""
    for folder in sorted((study_dir / "before").iterdir()):
        if folder.is_dir():
            storage.push(folder, f"before/{folder.name}")


def _bring_home(storage: Storage, study_dir: Path, unit: RunUnit) -> dict | None:
    """Copy a run finished in storage (its folder and record) into the study directory."""
    record_rel = _rel(record_path, unit)
    if not storage.exists(record_rel):
        return None
    storage.pull(_rel(run_dir, unit), run_dir(study_dir, unit))
    record = json.loads(storage.read_text(record_rel))
    write_json_atomic(record_path(study_dir, unit), record)
    return record


def _notice(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def study_monitors(config: StudyConfig) -> list:
    """The monitors (trainer callbacks) every run of the study gets."""
    from rewardgym.evaluation.monitors import default_monitors, make_monitors

    if config.monitors in (None, False, "none"):
        return []
    if config.monitors in ("all", True):
        return default_monitors()
    if config.monitors == "source":
        return default_monitors(preset="source")
    return make_monitors(config.monitors)


def summarise_run(
    unit: RunUnit,
    metrics: list[dict],
    before,
    after,
    change: dict,
    monitors: Sequence[str] = (),
) -> dict:
    """The numbers one run contributes to the report, each traceable to a run file
    (``monitors``: the names of the monitors the run had)."""
    nus = [m["grad/nu"] for m in metrics if "grad/nu" in m and m.get("grad/mean_sq_norm") != 0]
    if len(nus) < len(metrics) / 2:  # a collapsed run: most updates had no gradient at all
        nus = []
    last = metrics[-1] if metrics else {}
    tail = metrics[-max(1, len(metrics) // 5) :]
    before_quality, after_quality = change.get("quality_before"), change.get("quality_after")
    gain = None if None in (before_quality, after_quality) else after_quality - before_quality
    flops_total = last.get("flops/total")
    return {
        "key": unit.key,
        "scheme": unit.scheme,
        "task": unit.task,
        "seed": unit.seed,
        "reward": unit.reward,
        "updates": len(metrics),
        "metric": change.get("metric", "bleu"),
        "final_quality": change.get("quality_after"),
        "before_quality": change.get("quality_before"),
        "quality_improvement_pct": change.get("quality_improvement_pct"),
        "final_bleu": after.bleu,
        "final_chrf": after.chrf,
        "before_bleu": before.bleu,
        "bleu_improvement_pct": change.get("bleu_improvement_pct"),
        "robustness_before": change.get("robustness_before"),
        "robustness_after": change.get("robustness_after"),
        "robustness_change_pct": change.get("robustness_change_pct"),
        "forgetting_pct": change.get("forgetting_pct"),
        "retention_before": change.get("retention_before"),
        "retention_after": change.get("retention_after"),
        "retention_nll_change": change.get("retention_nll_change"),
        "mitigation_flops_pct": _mitigation_share(last),
        "grad_norm_spikes": _grad_norm_spikes(metrics, monitors),
        "notes": change.get("notes", []),
        "nu_median": float(np.median(nus)) if nus else None,
        "compute_waste_pct": last.get("compute_waste_pct"),
        "flops_total": flops_total,
        "flops_by_category": {k[6:]: v for k, v in last.items() if k.startswith("flops/")},
        "flops_per_quality_point": (flops_total / gain)
        if flops_total and gain and gain > 0
        else None,
        "completion_length": after.completion_tokens,
        "entropy_bits": _mean_of(tail, "entropy_bits"),
        "train_reward_first": _mean_of(metrics[: len(tail)], "reward/mean"),
        "train_reward_last": _mean_of(tail, "reward/mean"),
        "monitor_alerts": sum(len(m.get("alerts", [])) for m in metrics),
        "alerts": [a for m in metrics for a in m.get("alerts", [])],
        "eval_reward": (after.reward or {}).get("total"),
    }


def _mean_of(records: list[dict], key: str) -> float | None:
    """The mean of ``key`` over the updates that logged it; None when none did (a run trained
    by another backend may not log every key the native trainer does)."""
    values = [m[key] for m in records if m.get(key) is not None]
    return float(np.mean(values)) if values else None


def _mitigation_share(last: dict) -> float | None:
    """Share (%) of the run's FLOPs spent on replay and on the KL reference's forward passes."""
    total = last.get("flops/total")
    if not total:
        return None
    return (last.get("flops/replay", 0.0) + last.get("flops/reference", 0.0)) / total * 100


def _grad_norm_spikes(metrics: list[dict], monitors: Sequence[str]) -> int | None:
    """The run's gradient_spike alerts; None when that monitor was not on."""
    if "gradient_spike" not in monitors:
        return None
    return sum(a.get("monitor") == "gradient_spike" for m in metrics for a in m.get("alerts", []))


# -- executors ---------------------------------------------------------------------------------
#
# Each executor runs a batch of units and yields their results as they finish. Units held by
# another process on the same study come back ``held_by``; they are tried again once released
# (finished by that process, or left to be resumed here if it died).

HELD_POLL_S = 1.0


def _run_units(
    config: StudyConfig, study_dir: Path, pending: list[RunUnit], total: int, log
) -> bool:
    """Run every pending unit on the configured executor; True when Ctrl-C interrupted it."""
    by_key = {u.key: u for u in pending}
    done, started, n = total - len(pending), time.perf_counter(), 0
    queue = list(pending)
    storage = Storage(config.storage) if config.storage is not None else None
    with _executor(config, len(pending)) as run_batch:
        while queue:
            held = []
            for record in run_batch(config, study_dir, queue, (done, total)):
                if record.get("interrupted"):
                    return True
                if "held_by" in record:
                    held.append(by_key[record["key"]])
                    continue
                if storage is not None:
                    _bring_home(storage, study_dir, by_key[record["key"]])
                done, n = done + 1, n + 1
                _log_progress(log, record, done, total, n, len(pending), started)
            queue = held
            if queue:
                try:
                    _wait_for_release(study_dir, queue, log)
                except KeyboardInterrupt:
                    return True
    return False


@contextlib.contextmanager
def _executor(config: StudyConfig, units: int):
    """The function that runs a batch of units: in this process, in a pool, or on Ray."""
    if config.executor == "ray":
        with _ray_session(config) as ray:
            yield functools.partial(_ray_batch, ray)
    elif (workers := config.worker_count(units)) > 1:
        yield functools.partial(_pool_batch, workers=workers)
    else:
        yield _local_batch


def _wait_for_release(study_dir: Path, units: list[RunUnit], log) -> None:
    owners = {u.key: run_owner(run_dir(study_dir, u)) for u in units}
    busy = {k: o for k, o in owners.items() if o is not None}
    if not busy:
        return
    key, owner = next(iter(busy.items()))
    log(
        f"{len(busy)} run(s) are being trained by another process ({key}: "
        f"{describe_owner(owner)}); waiting for them"
    )
    while all(run_owner(run_dir(study_dir, u)) is not None for u in units):
        time.sleep(HELD_POLL_S)


def _unit_runner(config: StudyConfig, study_dir: Path) -> tuple[Callable[..., dict], str]:
    """What runs one unit and where it writes: the study directory, or the study's storage
    (node-local scratch, synced) when ``storage`` is set."""
    if config.storage is None:
        return execute_unit, str(study_dir.resolve())
    return execute_unit_in_storage, Storage(config.storage).uri


def _local_batch(config: StudyConfig, study_dir: Path, units: list[RunUnit], progress):
    """In this process, one unit after another, each with a progress bar."""
    done, total = progress
    run_one, where = _unit_runner(config, study_dir)
    for i, unit in enumerate(units):
        label = f"[{done + i + 1}/{total}] {unit.key}"
        yield run_one(config.to_dict(), where, unit, label=label)


def _pool_batch(
    config: StudyConfig, study_dir: Path, units: list[RunUnit], progress, *, workers: int
):
    """``workers`` spawned processes; each unit sets its own thread count."""
    import concurrent.futures as cf
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    run_one, where = _unit_runner(config, study_dir)
    with cf.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(run_one, config.to_dict(), where, u) for u in units]
        for future in cf.as_completed(futures):
            yield future.result()


@contextlib.contextmanager
def _ray_session(config: StudyConfig):
    """Ray, started here (without a dashboard) unless the caller already connected."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "executor 'ray' needs Ray: pip install 'rewardgym[ray]' (or use executor: local)"
        ) from exc
    started_here = not ray.is_initialized()
    if started_here:
        # the dashboard is an HTTP server that can run jobs: never start one implicitly
        try:
            ray.init(
                address=config.ray_address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, TimeoutError) as exc:  # say where and why
            raise ConfigError(
                f"cannot connect to Ray at ray_address {config.ray_address!r}: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}; start the head "
                "with `ray start --head` there, or leave ray_address unset for a local Ray"
            ) from None
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def _ray_batch(ray, config: StudyConfig, study_dir: Path, units: list[RunUnit], progress):
    """One Ray task per unit, results in the order they finish."""
    num_cpus = config.threads if config.ray_num_cpus is None else config.ray_num_cpus
    run_one, where = _unit_runner(config, study_dir)
    options = {"num_cpus": num_cpus, "num_gpus": config.ray_num_gpus}
    if config.ray_resources:
        options["resources"] = dict(config.ray_resources)
    remote = ray.remote(**options)(run_one)
    refs = [remote.remote(config.to_dict(), where, u) for u in units]
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        yield ray.get(ready[0])


def _log_progress(
    log, record: dict, done: int, total: int, n: int, n_pending: int, started: float
) -> None:
    elapsed = time.perf_counter() - started
    left = elapsed / n * (n_pending - n)
    quality = record.get("final_quality", record.get("final_bleu"))
    label = quality_label(record.get("metric", "bleu"))
    by = f" by {record['by']}" if "by" in record else ""
    log(
        f"[{done}/{total}] {record['key']} done{by} in {record.get('wall_s', 0):.0f} s: "
        f"{label} {quality if quality is None else round(quality, 1)}, "
        f"train reward {record.get('train_reward_last', float('nan')):.3f}; "
        f"about {left / 60:.1f} min left"
    )


# -- aggregation -------------------------------------------------------------------------------


def collect_results(config: StudyConfig, study_dir: Path, wall_s: float | None = None) -> dict:
    """results.json from the records on disk: per-run figures, per-scheme statistics."""
    units = expand_units(config)
    records = []
    for unit in units:
        path = record_path(study_dir, unit)
        if path.exists():
            records.append(json.loads(path.read_text(encoding="utf-8")))
    schemes = list(dict.fromkeys(u.scheme for u in units))
    return {
        "format_version": STUDY_FORMAT_VERSION,
        "study": config.name,
        "baseline": config.baseline,
        "schemes": schemes,
        "tasks": config.tasks,
        "seeds": config.seeds,
        "complete": len(records) == len(units),
        "runs": records,
        **aggregate_records(records, schemes, config.baseline),
        "before": before_summary(study_dir, config.tasks, config.evaluation.split),
        "environment": {**environment(), "torch_threads": config.threads},  # what runs used
        "wall_s": wall_s,
        "config": config.to_dict(),
    }


def aggregate_records(records: list[dict], schemes: Sequence[str], baseline: str) -> dict:
    """The per-scheme statistics of results.json from the runs' records: ``summary`` (each
    headline metric's mean, CI and values over seeds) and ``p_beats_baseline``. Each record
    gains ``grad_variance_change_pct`` (against the baseline's run of the same task and seed).

    Example:
        >>> sorted(aggregate_records(records, ["task_only", "speed_only"], "task_only"))
        ['p_beats_baseline', 'summary']
    """
    _add_grad_variance_change(records, baseline)
    summary, beats = {}, {}
    base_runs = [r for r in records if r["scheme"] == baseline]
    for scheme in schemes:
        runs = [r for r in records if r["scheme"] == scheme]
        summary[scheme] = {m: summarise([r.get(m) for r in runs]).to_dict() for m in HEADLINE}
        beats[scheme] = {
            m: _prob(runs, base_runs, m, better)
            for m, better in HEADLINE.items()
            if better is not None
        }
    return {"summary": summary, "p_beats_baseline": beats}


def _add_grad_variance_change(records: list[dict], baseline: str) -> None:
    """(ν_scheme / ν_baseline − 1) × 100, seed by seed against the same task's baseline."""
    base = {(r["task"], r["seed"]): r.get("nu_median") for r in records if r["scheme"] == baseline}
    for r in records:
        ref = base.get((r["task"], r["seed"]))
        nu = r.get("nu_median")
        r["grad_variance_change_pct"] = (
            (nu / ref - 1) * 100 if nu is not None and ref not in (None, 0) else None
        )


def _prob(runs: list[dict], base_runs: list[dict], metric: str, higher: bool) -> float | None:
    from rewardgym.evaluation.stats import defined

    a = defined(r.get(metric) for r in runs)
    b = defined(r.get(metric) for r in base_runs)
    return prob_beats(a, b, higher) if a and b else None


def before_summary(study_dir: Path, tasks: Sequence[str], split: str) -> dict:
    """The starting policy's headline figures per task, from ``before/<task>/<split>.json``."""
    out = {}
    for task in tasks:
        path = study_dir / "before" / task_label(task) / f"{split}.json"
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            out[task] = {
                k: data.get(k) for k in ("bleu", "chrf", "robustness", "completion_tokens")
            }
    return out


def environment() -> dict[str, Any]:
    """Library versions and hardware, CPU model included, for the report's environment section.

    The same record warm starts and runs log: :func:`rewardgym.machine.machine_record`.
    """
    return machine_record()
