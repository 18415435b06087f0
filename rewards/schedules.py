"""Weight schedules: a composite component's weight that changes over the training updates.

Written in a composite spec in place of the number:

    {"composite": {"bleu": 0.8, "speed": {"schedule": "linear", "start": 0.0, "end": 0.4}}}

Kinds (``u`` = the update, counted from 0; ``T`` = the schedule's ``updates``, default the
run's): ``constant`` (``start``), ``linear`` (``start`` → ``end`` over ``T − 1`` updates),
``cosine`` (the same ends on a half cosine), ``step`` (``start`` before update ``at``, ``end``
from it on). After ``T`` updates a schedule stays at ``end``.

Example:
    >>> s = WeightSchedule.from_mapping("speed", {"schedule": "linear", "start": 0, "end": 0.4})
    >>> [round(s.value(u, 5), 2) for u in range(5)]
    [0.0, 0.1, 0.2, 0.3, 0.4]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rewardgym.errors import ConfigError, UnknownNameError

__all__ = ["SCHEDULES", "SCHEDULE_KEYS", "WeightSchedule"]

SCHEDULES = ("constant", "linear", "cosine", "step")
#: the keys of a schedule entry; any other key of the entry is a parameter of the component
SCHEDULE_KEYS = frozenset({"schedule", "start", "end", "updates", "at"})


@dataclass(frozen=True)
class WeightSchedule:
    """A component weight as a function of the update."""

    kind: str
    start: float
    end: float
    updates: int | None = None
    at: int | None = None

    @classmethod
    def from_mapping(cls, component: str, spec: Mapping[str, Any]) -> WeightSchedule:
        """Parse ``{"schedule": kind, "start": ..., "end": ..., "updates": ..., "at": ...}``.

        Raises:
            UnknownNameError: an unknown schedule kind.
            ConfigError: an unknown key, a negative or non-finite weight, or a missing ``at``.
        """
        where = f"weight schedule of {component!r}"
        unknown = sorted(set(spec) - SCHEDULE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; it takes {sorted(SCHEDULE_KEYS)}")
        kind = spec.get("schedule")
        if kind not in SCHEDULES:
            raise UnknownNameError("weight schedule", kind, SCHEDULES, hint=f"(in {where})")
        start = _weight(where, "start", spec.get("start", 0.0))
        end = _weight(where, "end", spec.get("end", start))
        updates = _count(where, "updates", spec.get("updates"), low=1)
        at = _count(where, "at", spec.get("at"), low=0)
        if kind == "step" and at is None:
            raise ConfigError(f"{where}: a step schedule needs 'at', the update it jumps at")
        return cls(kind, start, end, updates, at)

    def value(self, update: int, run_updates: int) -> float:
        """The weight at ``update`` of a run of ``run_updates`` updates."""
        if self.kind == "constant":
            return self.start
        if self.kind == "step":
            return self.end if update >= self.at else self.start
        span = max(1, (self.updates or run_updates) - 1)
        progress = min(1.0, max(0.0, update / span))
        if self.kind == "cosine":
            progress = (1 - math.cos(math.pi * progress)) / 2
        return self.start + (self.end - self.start) * progress

    def describe(self) -> str:
        """A short text for formulas: ``linear(0→0.4)``."""
        if self.kind == "constant":
            return f"{self.start:g}"
        if self.kind == "step":
            return f"step({self.start:g}→{self.end:g} at {self.at})"
        return f"{self.kind}({self.start:g}→{self.end:g})"


def _weight(where: str, key: str, value: Any) -> float:
    bad = isinstance(value, bool) or not isinstance(value, numbers.Real)
    if bad or not math.isfinite(float(value)) or float(value) < 0:
        raise ConfigError(f"{where}: {key} is {value!r}; use a finite number >= 0")
    return float(value)


def _count(where: str, key: str, value: Any, low: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where}: {key} is {value!r}; use an int >= {low}")
    return value
