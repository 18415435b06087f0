"""The report of a run whose loss or gradient stayed non-finite: what went wrong, how much of the
run trained, where its last healthy weights are and what to change (the message of
:class:`~rewardgym.errors.TrainingDivergedError`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardgym.agents.checkpoint import checkpoint_step, last_healthy_checkpoint, list_checkpoints
from rewardgym.agents.config import TrainConfig

__all__ = ["Divergence", "divergence_message"]


@dataclass(frozen=True)
class Divergence:
    """Where a run stands when it stops for good.

    Attributes:
        streak: the non-finite updates in a row, each ``{"update", "loss", "grad_norm"}``
            (the values as text).
        rollbacks: rollbacks the run made.
        stepped: updates that took an optimizer step.
        updates: updates run.
        run_dir: the run's folder (None: the run writes no files).
    """

    streak: list[dict[str, Any]]
    rollbacks: int
    stepped: int
    updates: int
    run_dir: Path | None


def divergence_message(config: TrainConfig, run: Divergence) -> str:
    """What went wrong (which updates, loss or gradient, their values), how many updates
    stepped, where the last healthy weights are, and what to change.

    Example:
        >>> streak = [{"update": 3, "loss": "nan", "grad_norm": "nan"}]
        >>> divergence_message(TrainConfig(), Divergence(streak, 0, 3, 4, None))[:35]
        'training diverged: 1 updates in a r'
    """
    shown = [_fault_text(f) for f in run.streak]
    if len(shown) > 6:  # a long streak: its start and its end tell the story
        shown = [*shown[:3], f"... {len(shown) - 6} more ...", *shown[-3:]]
    rolled = f", after {run.rollbacks} rollback(s)" if run.rollbacks else ""
    return (
        f"training diverged: {len(run.streak)} updates in a row had a non-finite loss or "
        f"gradient and were skipped (max_nonfinite_updates={config.max_nonfinite_updates}"
        f"{rolled}): {'; '.join(shown)}. {run.stepped} of {run.updates} updates took an "
        f"optimizer step. {_healthy_weights(config, run.run_dir)}. To fix it: "
        f"{', '.join(_fixes(config))}; then start a new run (--resume refuses a changed lr)"
    )


def _fixes(config: TrainConfig) -> list[str]:
    fixes = [f"lower lr (now {config.lr:g})", "check the reward for NaN, inf or huge values"]
    if config.max_grad_norm == 0:
        fixes.append("turn gradient clipping on (max_grad_norm, now 0)")
    else:
        fixes.append(f"keep gradient clipping on (max_grad_norm, now {config.max_grad_norm:g})")
    if config.dtype != "float32":
        fixes.append(f"train in float32 (dtype, now {config.dtype})")
    return fixes


def _fault_text(fault: dict[str, Any]) -> str:
    """``update 3: non-finite loss and gradient (loss nan, gradient norm nan)``."""
    values = {"loss": fault["loss"], "gradient": fault["grad_norm"]}
    bad = [name for name, text in values.items() if not math.isfinite(float(text))]
    return (
        f"update {fault['update']}: non-finite {' and '.join(bad)} "
        f"(loss {values['loss']}, gradient norm {values['gradient']})"
    )


def _healthy_weights(config: TrainConfig, run_dir: Path | None) -> str:
    """Where the last healthy checkpoint is, or why there is none."""
    if run_dir is None:
        return "No checkpoint: the run writes no files (out is None)"
    checkpoint = last_healthy_checkpoint(run_dir)
    if checkpoint is not None:
        step = checkpoint_step(checkpoint)
        return (
            f"The last healthy checkpoint is {str(checkpoint)!r} (the weights after {step} "
            "updates, before these faults)"
        )
    kept = [p.name for p in list_checkpoints(run_dir)]
    if not kept:
        every = config.checkpoint_every
        when = f"the first after {every} updates" if every else "only at the end"
        return (
            f"No checkpoint: none was written before the faults (checkpoint_every={every}: {when})"
        )
    return (
        f"No healthy checkpoint: the kept ones ({', '.join(kept)}) were written after updates "
        f"with alerts (keep_checkpoints={config.keep_checkpoints})"
    )
