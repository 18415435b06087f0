"""Monitors run over a finished run's ``metrics.jsonl``: which updates they would have alerted at.

The signals the per-update and evaluation monitors read are all in the log, so a detector can be
tried at many thresholds on runs trained once (the hacking benchmark calibrates this way).
Monitors that read the weights (``weights.py``) need the model and cannot run offline.

Example:
    >>> alerts_in_log(LengthDriftMonitor(threshold=0.3), read_metrics("runs/a/metrics.jsonl"))
    [12, 13, 14]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from rewardgym.agents.callbacks import TrainContext
from rewardgym.evaluation.monitors.base import Monitor

__all__ = ["alerts_in_log"]


def alerts_in_log(
    monitor: Monitor, records: Sequence[Mapping[str, Any]], updates: int | None = None
) -> list[int]:
    """The updates at which ``monitor`` alerts, fed ``records`` as training would feed it.

    Each record goes to the pre-step check (its gradient statistics), the update check, and,
    when it holds ``eval/`` keys, the evaluation check. Actions are not taken: the log is what
    happened. ``updates`` is the run's length (default: the number of records).
    """
    config = SimpleNamespace(updates=updates or len(records), kl_coef=0.0, measure_kl=True)
    ctx = TrainContext(model=None, config=config, run_dir=None)  # type: ignore[arg-type]
    monitor.on_train_start(ctx)
    fired = []
    for record in records:
        ctx.update = int(record["update"])
        findings = [
            *monitor.check_step(ctx, record),
            *monitor.check_update(ctx, record),
        ]
        if any(key.startswith("eval/") for key in record):
            findings += monitor.check_eval(ctx, record)
        if findings:
            fired.append(ctx.update)
    return fired
