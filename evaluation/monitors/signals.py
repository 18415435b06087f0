"""Pre-step monitors: signals of the update about to be applied (gradient norm, entropy)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from rewardgym.agents.callbacks import TrainContext
from rewardgym.errors import ConfigError
from rewardgym.evaluation.monitors.base import (
    ACTIONS,
    Finding,
    Monitor,
    _check_float,
    _check_int,
    _median,
    register_monitor,
)

# -- pre-step monitors -----------------------------------------------------------------------


@register_monitor
class GradientSpikeMonitor(Monitor):
    """Alerts when the global gradient norm exceeds ``factor`` × the median of earlier updates.

    Args:
        factor: multiple of the running median that counts as a spike (default 2.0, chosen by
            the hacking benchmark: 1.5, the ``source`` preset, alerted on 75 % of healthy runs).
        window: how many earlier updates the median covers.
        min_history: updates seen before the first alert is possible (updates with a zero
            norm, e.g. all advantages zero, are not counted).
        key: the statistic read from ``on_before_step``'s stats.
        action, every: see :class:`Monitor`; all four actions apply. A norm whose step was
            skipped or rolled back stays out of the median.

    Example:
        >>> monitor = GradientSpikeMonitor(factor=2.0, action="skip")
    """

    name = "gradient_spike"
    supported_actions = ACTIONS

    def __init__(
        self,
        factor: float = 2.0,
        window: int = 20,
        min_history: int = 5,
        key: str = "grad_norm",
        *,
        action: str = "log",
        every: int = 1,
    ) -> None:
        super().__init__(action=action, every=every)
        self.factor = _check_float(self.name, "factor", factor, minimum=1.0)
        self.window = _check_int(self.name, "window", window, minimum=1)
        self.min_history = _check_int(self.name, "min_history", min_history, minimum=1)
        if self.min_history > self.window:
            raise ConfigError(
                f"{self.name}: min_history ({min_history}) cannot exceed window ({window})"
            )
        self.key = key
        self._history: deque[float] = deque(maxlen=self.window)

    def start(self, ctx: TrainContext) -> None:
        self._history.clear()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "history": list(self._history)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._history = deque((float(v) for v in state["history"]), maxlen=self.window)

    def check_step(self, ctx: TrainContext, stats: Mapping[str, Any]) -> list[Finding]:
        if not self.due(ctx) or self.key not in stats:
            return []
        value = float(stats[self.key])
        if not math.isfinite(value) or value <= 0.0:
            return []  # non-finite: the trainer's fault check; 0: no signal (zero advantages)
        findings = []
        if len(self._history) >= self.min_history:
            threshold = self.factor * _median(self._history)
            if value > threshold:
                findings.append(
                    Finding(
                        value,
                        threshold,
                        f"gradient norm {value:.4g} > {self.factor:g} × "
                        f"median {threshold / self.factor:.4g} of the last "
                        f"{len(self._history)} updates",
                    )
                )
        if not findings or self.action in ("log", "pause"):
            self._history.append(value)
        return findings


@register_monitor
class EntropyMonitor(Monitor):
    """Alerts when per-token entropy rises above ``max_bits`` or collapses below ``floor_bits``.

    The entropy is the rollout's mean per-token ``entropy_bits`` (or ``entropy_bits_train``), read
    from ``on_before_step``'s stats when the trainer passes it there (then all four actions
    work), else from the update's metrics in ``on_update_end`` (then ``skip`` cannot apply and a
    ``rollback`` happens before the next step).

    Args:
        max_bits: instability threshold (default 4.3 bits).
        floor_bits: collapse threshold (default 0.05 bits); ``None`` turns it off.
        action, every: see :class:`Monitor`.

    Example:
        >>> monitor = EntropyMonitor(max_bits=4.3, floor_bits=0.1, action="pause")
    """

    name = "entropy"
    supported_actions = ACTIONS
    step_keys = ("entropy_bits", "entropy_bits_train")
    update_key = "entropy_bits"

    def __init__(
        self,
        max_bits: float = 4.3,
        floor_bits: float | None = 0.05,
        *,
        action: str = "log",
        every: int = 1,
    ) -> None:
        super().__init__(action=action, every=every)
        self.max_bits = _check_float(self.name, "max_bits", max_bits, minimum=0.0)
        self.floor_bits = (
            None
            if floor_bits is None
            else _check_float(self.name, "floor_bits", floor_bits, minimum=0.0)
        )
        if self.floor_bits is not None and self.floor_bits >= self.max_bits:
            raise ConfigError(
                f"{self.name}: floor_bits ({floor_bits}) must be below max_bits ({max_bits})"
            )
        self._checked_before_step = False

    def start(self, ctx: TrainContext) -> None:
        self._checked_before_step = False

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "checked_before_step": self._checked_before_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._checked_before_step = bool(state["checked_before_step"])

    def check_step(self, ctx: TrainContext, stats: Mapping[str, Any]) -> list[Finding]:
        key = next((k for k in self.step_keys if k in stats), None)
        if key is None:
            return []
        self._checked_before_step = True
        return self._judge(float(stats[key])) if self.due(ctx) else []

    def check_update(self, ctx: TrainContext, metrics: Mapping[str, Any]) -> list[Finding]:
        if self._checked_before_step or self.update_key not in metrics or not self.due(ctx):
            return []
        return self._judge(float(metrics[self.update_key]))

    def _judge(self, bits: float) -> list[Finding]:
        if bits > self.max_bits:
            return [
                Finding(
                    bits,
                    self.max_bits,
                    f"entropy {bits:.3g} bits/token > {self.max_bits:g}: instability",
                )
            ]
        if self.floor_bits is not None and bits < self.floor_bits:
            return [
                Finding(
                    bits,
                    self.floor_bits,
                    f"entropy {bits:.3g} bits/token < floor {self.floor_bits:g}: collapse",
                )
            ]
        return []
