"""The monitor contract: :class:`Monitor`, its actions and findings, shared checks."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rewardgym.agents.callbacks import Callback, StepAction, TrainContext
from rewardgym.errors import CheckpointError, ConfigError, UnknownNameError

ACTIONS = ("log", "skip", "pause", "rollback")
_EPS = 1e-12


@dataclass(frozen=True)
class Finding:
    """One threshold crossing: the measured value, the threshold it crossed, and why it matters."""

    value: float
    threshold: float
    message: str
    #: for a rollback: the last update the monitor's evidence vouches for (None: no such claim)
    since: int | None = None


# -- base ------------------------------------------------------------------------------------


class Monitor(Callback):
    """A trainer callback that raises alerts and turns them into an action.

    Subclasses override :meth:`start` and one or more of :meth:`check_step` (before the optimizer
    step), :meth:`check_update` (after the update) and :meth:`check_eval` (after an evaluation),
    each returning the :class:`Finding` objects of this check (empty when all is well). A
    subclass that remembers earlier updates extends :meth:`state_dict` and
    :meth:`load_state_dict` through ``super()``, so a resumed run carries on where it stopped.

    Args:
        action: ``"log"``, ``"skip"``, ``"pause"`` or ``"rollback"`` (see the module docstring);
            must be one of the subclass's ``supported_actions``.
        every: check every n-th update (update 0, n, 2n, ...).

    Raises:
        UnknownNameError: ``action`` is not one of :data:`ACTIONS`.
        ConfigError: the action is not supported by this monitor, or ``every`` < 1.

    Example:
        >>> class Loss(Monitor):
        ...     name = "loss"
        ...     def check_step(self, ctx, stats):
        ...         high = stats["loss"] > 10
        ...         return [Finding(stats["loss"], 10.0, "loss too high")] if high else []
        >>> Loss(action="skip").action
        'skip'
    """

    name: ClassVar[str] = "monitor"
    supported_actions: ClassVar[tuple[str, ...]] = ("log", "pause", "rollback")
    #: left out of ``default_monitors`` unless named there (it needs a run option set)
    opt_in: ClassVar[bool] = False

    def __init__(self, *, action: str = "log", every: int = 1) -> None:
        if action not in ACTIONS:
            raise UnknownNameError("monitor action", action, ACTIONS)
        if action not in self.supported_actions:
            raise ConfigError(
                f"monitor {self.name!r} cannot {action!r}: its signal is measured after optimizer "
                f"steps already taken; use one of {list(self.supported_actions)}"
            )
        self.action = action
        self.every = _check_int(self.name, "every", every, minimum=1)
        self.n_alerts = 0
        self._pause = False
        self._rollback_pending = False
        self._last_checked: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(action={self.action!r}, every={self.every})"

    # -- hooks for subclasses
    def start(self, ctx: TrainContext) -> None:
        """Record the reference state (weights at the start, probe attention...)."""

    def check_step(self, ctx: TrainContext, stats: Mapping[str, Any]) -> list[Finding]:
        """Findings from the update's gradient statistics, before the optimizer step."""
        return []

    def check_update(self, ctx: TrainContext, metrics: Mapping[str, Any]) -> list[Finding]:
        """Findings from the finished update's metrics."""
        return []

    def check_eval(self, ctx: TrainContext, metrics: Mapping[str, Any]) -> list[Finding]:
        """Findings from a held-out evaluation."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """The alert count and a rollback still owed; subclasses add their own memory.

        A pause is not kept: resuming a paused run means carrying on.
        """
        return {"n_alerts": self.n_alerts, "rollback_pending": self._rollback_pending}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take back a :meth:`state_dict`; call it after ``on_train_start`` (the trainer does)."""
        self.n_alerts = int(state["n_alerts"])
        self._rollback_pending = bool(state["rollback_pending"])

    def _restored(self, saved: Any, current: torch.Tensor | None, what: str) -> torch.Tensor:
        """A saved tensor, checked against the one :meth:`start` made and moved to its device."""
        if not isinstance(saved, torch.Tensor):
            raise CheckpointError(
                f"{self.name}: {what} in the checkpoint is a {type(saved).__name__}, not a "
                "tensor; the checkpoint is not from this monitor"
            )
        if current is None:
            return saved
        if saved.shape != current.shape:
            raise CheckpointError(
                f"{self.name}: {what} of shape {tuple(saved.shape)} in the checkpoint, "
                f"{tuple(current.shape)} in this run; resume with the model and monitor options "
                "of the run that saved the checkpoint"
            )
        return saved.to(current.device)

    def due(self, ctx: TrainContext) -> bool:
        """True once per update (PPO calls ``on_before_step`` per epoch) on every n-th update."""
        if self._last_checked == ctx.update or ctx.update % self.every:
            return False
        self._last_checked = ctx.update
        return True

    # -- Callback hooks
    def on_train_start(self, ctx: TrainContext) -> None:
        self._pause = self._rollback_pending = False
        self._last_checked = None
        self.start(ctx)

    def on_before_step(self, ctx: TrainContext, stats: dict[str, Any]) -> StepAction:
        if self._report(ctx, self.check_step(ctx, stats)):
            if self.action == "pause":
                self._pause = True
            elif self.action in ("skip", "rollback"):
                self._rollback_pending = False
                return self.action  # type: ignore[return-value]
        if self._rollback_pending:
            self._rollback_pending = False
            return "rollback"
        return "skip" if self._pause else "step"

    def on_update_end(self, ctx: TrainContext, metrics: dict[str, Any]) -> bool | None:
        self._defer(self._report(ctx, self.check_update(ctx, metrics)))
        return False if self._pause else None

    def on_eval_end(self, ctx: TrainContext, metrics: dict[str, Any]) -> None:
        self._defer(self._report(ctx, self.check_eval(ctx, metrics)))

    # -- helpers
    def _report(self, ctx: TrainContext, findings: Sequence[Finding]) -> bool:
        for finding in findings:
            ctx.alert(
                self.name,
                finding.value,
                finding.threshold,
                finding.message,
                self.action,
                since=finding.since,
            )
            if self.action == "rollback" and finding.since is not None:
                earlier = [u for u in (ctx.rollback_to, finding.since) if u is not None]
                ctx.rollback_to = min(earlier)
        self.n_alerts += len(findings)
        return bool(findings)

    def _defer(self, fired: bool) -> None:
        """After the step: pause at this update's end, roll back before the next step."""
        if fired and self.action == "pause":
            self._pause = True
        elif fired and self.action == "rollback":
            self._rollback_pending = True


# -- small helpers ---------------------------------------------------------------------------


def _median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def _relative_change(now: torch.Tensor, then: torch.Tensor) -> tuple[float, int] | None:
    """Largest |now - then| / then over tensors whose reference norm is not ~0, and its index."""
    usable = then > _EPS
    if not bool(usable.any()):
        return None
    change = torch.where(usable, (now - then).abs() / then.clamp(min=_EPS), torch.zeros_like(now))
    index = int(torch.argmax(change))
    return float(change[index]), index


def _check_float(
    monitor: str, key: str, value: Any, *, minimum: float, maximum: float = math.inf
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{monitor}: {key} must be a finite number, got {value!r}")
    if not minimum <= value <= maximum:
        bounds = f">= {minimum:g}" if maximum == math.inf else f"in [{minimum:g}, {maximum:g}]"
        raise ConfigError(f"{monitor}: {key} must be {bounds}, got {value!r}")
    return float(value)


def _check_int(monitor: str, key: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{monitor}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_probe(monitor: str, probe_ids: Sequence[Sequence[int]]) -> list[list[int]]:
    rows = [list(row) for row in probe_ids]
    ok = rows and all(len(r) == len(rows[0]) for r in rows) and len(rows[0]) >= 2
    if not ok or not all(isinstance(t, int) and t >= 0 for r in rows for t in r):
        raise ConfigError(
            f"{monitor}: probe_ids must be non-empty rows of equal length >= 2 holding "
            f"non-negative token ids, got {probe_ids!r}"
        )
    return rows


# -- the registry ------------------------------------------------------------------------------

#: every registered monitor class by its ``name``, in registration order
MONITORS: dict[str, type[Monitor]] = {}


def register_monitor(cls: type[Monitor]) -> type[Monitor]:
    """Class decorator: make ``cls`` buildable by its ``name`` in monitor configs.

    Raises:
        ConfigError: ``cls`` is not a Monitor subclass with its own ``name``, or the name is
            taken by another class.

    Example:
        >>> @register_monitor
        ... class LossCeiling(Monitor):
        ...     name = "loss_ceiling"
    """
    if not (isinstance(cls, type) and issubclass(cls, Monitor)):
        raise ConfigError(f"register_monitor takes a Monitor subclass, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name.isidentifier() or name == Monitor.name:
        raise ConfigError(f"monitor class {cls.__name__} needs its own name, got {name!r}")
    if MONITORS.get(name, cls) is not cls:
        raise ConfigError(
            f"monitor {name!r} is already registered by {MONITORS[name].__qualname__}; pick "
            "another name"
        )
    MONITORS[name] = cls
    return cls
