"""Trainer callbacks, in the shape of stable-baselines3's ``common/callbacks.py``.

Monitors are callbacks: the trainer calls the hooks and never imports a monitor by name.
``on_update_end`` returning ``False`` stops training (cleanly, with a checkpoint);
``on_before_step`` may veto one optimizer step by returning ``"skip"`` or ask for a
``"rollback"`` to the last good checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

StepAction = Literal["step", "skip", "rollback"]


@dataclass
class TrainContext:
    """What a callback may look at (and, for monitors, act on) during training."""

    model: torch.nn.Module
    config: Any
    run_dir: Path | None
    update: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def alert(
        self, monitor: str, value: float, threshold: float, message: str, action: str
    ) -> None:
        """Record an alert; the trainer writes it to metrics.jsonl with the update's record."""
        self.alerts.append(
            {
                "update": self.update,
                "monitor": monitor,
                "value": float(value),
                "threshold": float(threshold),
                "message": message,
                "action": action,
            }
        )


class Callback:
    """Base class: override the hooks you need; each default does nothing."""

    def on_train_start(self, ctx: TrainContext) -> None:
        """Called once, after the model is loaded and before the first update."""

    def on_before_step(self, ctx: TrainContext, stats: dict[str, Any]) -> StepAction:
        """Called with the update's gradient statistics before the optimizer step."""
        return "step"

    def on_update_end(self, ctx: TrainContext, metrics: dict[str, Any]) -> bool | None:
        """Called after every update with its metrics; return ``False`` to stop training."""
        return None

    def on_eval_end(self, ctx: TrainContext, metrics: dict[str, Any]) -> None:
        """Called after every held-out evaluation during training."""

    def on_train_end(self, ctx: TrainContext) -> None:
        """Called once when training ends, however it ends."""


class CallbackList(Callback):
    """Chains callbacks: the strongest step action wins, any ``False`` stops training."""

    _STRENGTH = {"step": 0, "skip": 1, "rollback": 2}

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, ctx: TrainContext) -> None:
        for cb in self.callbacks:
            cb.on_train_start(ctx)

    def on_before_step(self, ctx: TrainContext, stats: dict[str, Any]) -> StepAction:
        actions = [cb.on_before_step(ctx, stats) or "step" for cb in self.callbacks]
        return max(actions, key=self._STRENGTH.__getitem__, default="step")

    def on_update_end(self, ctx: TrainContext, metrics: dict[str, Any]) -> bool:
        results = [cb.on_update_end(ctx, metrics) for cb in self.callbacks]
        return all(r is not False for r in results)

    def on_eval_end(self, ctx: TrainContext, metrics: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_eval_end(ctx, metrics)

    def on_train_end(self, ctx: TrainContext) -> None:
        for cb in self.callbacks:
            cb.on_train_end(ctx)
