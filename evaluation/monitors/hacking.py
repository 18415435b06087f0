"""The reward-hacking monitor: the proxy reward rising while held-out quality falls."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from rewardgym.agents.callbacks import TrainContext
from rewardgym.errors import ConfigError
from rewardgym.evaluation.monitors.base import (
    Finding,
    Monitor,
    _check_float,
    _check_int,
    register_monitor,
)

# -- evaluation monitor ----------------------------------------------------------------------


@register_monitor
class RewardHackingMonitor(Monitor):
    """Alerts when the proxy (training) reward rises while held-out quality falls.

    Over the last ``window`` evaluations (``on_eval_end``), the proxy must rise by more than
    ``proxy_margin`` while the gold metric falls by more than ``gold_margin``, first to last.
    The value is the gold drop and the threshold ``gold_margin``. Evaluations without the two
    keys (the trainer's ``final/`` evaluation) are ignored.

    Args:
        window: evaluations spanned (E, default 3).
        proxy_key: the training reward on held-out prompts (default ``"eval/reward"``).
        gold_key: the held-out quality metric (default ``"eval/quality"``: the task's primary
            metric, 0-100; ``"eval/bleu"`` or a semantic score key work too, with a margin on
            their scale).
        proxy_margin: minimum proxy rise (default 0.02, reward units).
        gold_margin: minimum gold drop (default 1.0 points of the gold metric).
        action: see :class:`Monitor` (log, pause, rollback; rollback happens before the next
            step, since evaluations follow the step).

    Example:
        >>> monitor = RewardHackingMonitor(window=4, gold_key="eval/chrf", action="pause")
    """

    name = "reward_hacking"

    def __init__(
        self,
        window: int = 3,
        proxy_key: str = "eval/reward",
        gold_key: str = "eval/quality",
        proxy_margin: float = 0.02,
        gold_margin: float = 1.0,
        *,
        action: str = "log",
        every: int = 1,
    ) -> None:
        super().__init__(action=action, every=every)
        self.window = _check_int(self.name, "window", window, minimum=2)
        self.proxy_key, self.gold_key = proxy_key, gold_key
        self.proxy_margin = _check_float(self.name, "proxy_margin", proxy_margin, minimum=0.0)
        self.gold_margin = _check_float(self.name, "gold_margin", gold_margin, minimum=0.0)
        self._history: deque[tuple[float, float]] = deque(maxlen=self.window)

    def start(self, ctx: TrainContext) -> None:
        self._history.clear()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "history": [list(pair) for pair in self._history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        pairs = ((float(proxy), float(gold)) for proxy, gold in state["history"])
        self._history = deque(pairs, maxlen=self.window)

    def check_eval(self, ctx: TrainContext, metrics: Mapping[str, Any]) -> list[Finding]:
        present = [k for k in (self.proxy_key, self.gold_key) if k in metrics]
        if not present:
            return []
        if len(present) == 1:
            missing = ({self.proxy_key, self.gold_key} - set(present)).pop()
            raise ConfigError(
                f"{self.name}: evaluation metrics have no {missing!r}; "
                f"available: {sorted(metrics)}. Set proxy_key/gold_key to one of them"
            )
        self._history.append((float(metrics[self.proxy_key]), float(metrics[self.gold_key])))
        if len(self._history) < self.window:
            return []
        (proxy0, gold0), (proxy1, gold1) = self._history[0], self._history[-1]
        rise, drop = proxy1 - proxy0, gold0 - gold1
        if rise > self.proxy_margin and drop > self.gold_margin:
            return [
                Finding(
                    drop,
                    self.gold_margin,
                    f"over the last {self.window} evaluations {self.proxy_key} rose "
                    f"{rise:+.3g} while {self.gold_key} fell {drop:.3g}: reward hacking",
                )
            ]
        return []
