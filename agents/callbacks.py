"""Trainer callbacks, in the shape of stable-baselines3's ``common/callbacks.py``.

Monitors are callbacks: the trainer calls the hooks and never imports a monitor by name.
``on_update_end`` returning ``False`` stops training (cleanly, with a checkpoint);
``on_before_step`` may veto one optimizer step by returning ``"skip"`` or ask for a
``"rollback"`` to the last good checkpoint.

A callback with memory (a monitor's history, its reference weights) returns it from
``state_dict`` and takes it back in ``load_state_dict``, as torch modules do: the trainer saves it
in every checkpoint and restores it on resume, so a resumed run raises the alerts the
uninterrupted run would have.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rewardgym.errors import CheckpointError

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
    #: a monitor asking for a rollback may name the last update its evidence vouches for: the
    #: trainer then restores the newest healthy checkpoint at or before it (None: the newest)
    rollback_to: int | None = None

    def alert(
        self,
        monitor: str,
        value: float,
        threshold: float,
        message: str,
        action: str,
        since: int | None = None,
    ) -> None:
        """Record an alert; the trainer writes it to metrics.jsonl with the update's record.

        ``since``, where the monitor knows it, is the last update its evidence vouches for
        (a rollback goes back to the weights entering it); the alert carries it so a reader
        can see which checkpoint a rollback restored.
        """
        record = {
            "update": self.update,
            "monitor": monitor,
            "value": float(value),
            "threshold": float(threshold),
            "message": message,
            "action": action,
        }
        if since is not None:
            record["since"] = int(since)
        self.alerts.append(record)


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

    def on_checkpoint(self, ctx: TrainContext, path: Path) -> None:
        """Called after a checkpoint is complete on disk (``path``: its folder)."""

    def on_train_end(self, ctx: TrainContext) -> None:
        """Called once when training ends, however it ends."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to carry on where this callback was; empty when nothing.

        Values are tensors and plain containers (dict, list, tuple, str, int, float, bool,
        None), so the state travels through ``torch.save`` and ``torch.load(weights_only=True)``.
        """
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned; called after :meth:`on_train_start`."""


class CallbackList(Callback):
    """Chains callbacks: the strongest step action wins, any ``False`` stops training.

    Its state is keyed by each callback's name and its rank among callbacks of that name
    (``"gradient_spike:0"``), so a resume with a monitor added or left out still restores the
    others. A callback without saved state keeps the state ``on_train_start`` gave it; saved
    state no callback claims is dropped; both are named in one warning.
    """

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

    def on_checkpoint(self, ctx: TrainContext, path: Path) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(ctx, path)

    def on_train_end(self, ctx: TrainContext) -> None:
        for cb in self.callbacks:
            cb.on_train_end(ctx)

    def state_dict(self) -> dict[str, Any]:
        states = {key: cb.state_dict() for key, cb in zip(self._state_keys(), self.callbacks)}
        return {key: state for key, state in states.items() if state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        keys = self._state_keys()
        fresh = []
        for key, cb in zip(keys, self.callbacks):
            if key in state:
                _load_one(key, cb, state[key])
            elif cb.state_dict():
                fresh.append(key)
        unclaimed = sorted(set(state) - set(keys))
        if fresh or unclaimed:
            warnings.warn(_mismatch_message(fresh, unclaimed), stacklevel=2)

    def _state_keys(self) -> list[str]:
        """One key per callback: its name and its rank among the callbacks of that name."""
        seen: Counter[str] = Counter()
        keys = []
        for cb in self.callbacks:
            name = getattr(cb, "name", type(cb).__name__)
            keys.append(f"{name}:{seen[name]}")
            seen[name] += 1
        return keys


def _load_one(key: str, callback: Callback, state: Any) -> None:
    """Load one callback's saved state; a malformed one is a checkpoint error naming the key."""
    try:
        callback.load_state_dict(state)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"the checkpoint's state for callback {key!r} does not fit it "
            f"({type(exc).__name__}: {exc}); resume with the callbacks and options of the run "
            "that saved it"
        ) from exc


def _mismatch_message(fresh: list[str], unclaimed: list[str]) -> str:
    parts = []
    if fresh:
        parts.append(
            f"no saved state for {fresh} (the checkpoint is older or had other callbacks): "
            "they restart from the resumed weights, so their alerts may differ from an "
            "uninterrupted run's"
        )
    if unclaimed:
        parts.append(f"saved state for {unclaimed} has no callback in this run and is ignored")
    return "on resume: " + "; ".join(parts)
