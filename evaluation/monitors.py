"""Collapse early-warning monitors: trainer callbacks that watch for the signs of a failing run.

Each monitor is an :class:`~rewardgym.agents.callbacks.Callback` with a configurable threshold and
an ``action`` taken when it fires (docs/usage.md, "Monitors"):

============================  ======================  ============================================
monitor (``name``)            signal, when measured   default alert
============================  ======================  ============================================
``gradient_spike``            global grad norm,       > 1.5 × running median of earlier updates
                              before the step
``entropy``                   per-token entropy of    > 4.3 bits (instability) or < 0.05 bits
                              the batch, before step  (collapse)
``norm_drift``                per-matrix weight norm  > 10 % vs the start, or > 15 % within 10
                                                      updates
``attention_reversal``        centred attention on a  > 20 % of the scores changed sign since the
                              fixed probe batch       start
``spectral_spread``           top-10 singular values  ratio σ1/σ10 > 1.5 × its start value, or > 10
                              of every weight matrix
``saturation``                share of near-zero      < 2 % in some matrix
                              weights
``reward_hacking``            held-out evaluations    proxy reward up and BLEU down beyond margins
                                                      over the last 3 evaluations
============================  ======================  ============================================

Every alert goes through ``ctx.alert`` (update index, value, threshold, message, action), so the
trainer writes it to ``metrics.jsonl`` with the update's record.

Actions and when they apply:

* ``log``: record the alert only.
* ``skip``: do not apply this update's optimizer step. Only pre-step signals (gradient spike,
  entropy) can skip; the others see the weights after steps already taken, so for them ``skip``
  is rejected with a :class:`~rewardgym.errors.ConfigError`.
* ``pause``: stop the run cleanly (the trainer checkpoints and returns). When the alert fires
  before the step, the step is skipped too, so the checkpoint holds the weights that raised it.
* ``rollback``: restore the last checkpoint. Pre-step monitors return ``"rollback"`` at once;
  an alert raised after the step (an evaluation) asks for it at the next ``on_before_step``.
  The trainer counts the update's training compute as waste.

Weight-state monitors (norm drift, attention, spectra, saturation) measure the weights entering
update ``u`` (after ``u`` optimizer steps) in ``on_before_step``, so their alerts land in update
``u``'s record and a rollback needs no deferral. The costly ones run every ``every`` updates.

Every monitor's memory (alert count, histories, reference state from the start of the run)
comes out of ``state_dict`` and goes back in with ``load_state_dict``; the trainer keeps it in
each checkpoint, so a resumed run compares against the run's real start, not the resumed weights.

Example:
    >>> from rewardgym.agents.trainer import train
    >>> monitors = make_monitors({"gradient_spike": {"action": "skip"}, "entropy": {}})
    >>> result = train(config, callbacks=monitors)
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rewardgym.agents.callbacks import Callback, StepAction, TrainContext
from rewardgym.errors import CheckpointError, ConfigError, UnknownNameError, did_you_mean

__all__ = [
    "ACTIONS",
    "MONITORS",
    "AttentionReversalMonitor",
    "EntropyMonitor",
    "Finding",
    "GradientSpikeMonitor",
    "Monitor",
    "NormDriftMonitor",
    "RewardHackingMonitor",
    "SaturationMonitor",
    "SpectralSpreadMonitor",
    "default_monitors",
    "make_monitors",
]

ACTIONS = ("log", "skip", "pause", "rollback")
_EPS = 1e-12


@dataclass(frozen=True)
class Finding:
    """One threshold crossing: the measured value, the threshold it crossed, and why it matters."""

    value: float
    threshold: float
    message: str


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
            ctx.alert(self.name, finding.value, finding.threshold, finding.message, self.action)
        self.n_alerts += len(findings)
        return bool(findings)

    def _defer(self, fired: bool) -> None:
        """After the step: pause at this update's end, roll back before the next step."""
        if fired and self.action == "pause":
            self._pause = True
        elif fired and self.action == "rollback":
            self._rollback_pending = True


# -- pre-step monitors -----------------------------------------------------------------------


class GradientSpikeMonitor(Monitor):
    """Alerts when the global gradient norm exceeds ``factor`` × the median of earlier updates.

    Args:
        factor: multiple of the running median that counts as a spike (default 1.5).
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
        factor: float = 1.5,
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


# -- weight-state monitors -------------------------------------------------------------------


class _WeightMonitor(Monitor):
    """Shared parts of the monitors that read the weights: which tensors, when."""

    def __init__(self, *, min_ndim: int = 2, action: str = "log", every: int = 1) -> None:
        super().__init__(action=action, every=every)
        self.min_ndim = _check_int(self.name, "min_ndim", min_ndim, minimum=1)
        self._names: list[str] = []
        self._params: list[torch.Tensor] = []

    def _select(self, model: torch.nn.Module) -> None:
        """The trainable tensors with at least ``min_ndim`` dims (tied weights counted once)."""
        seen: set[int] = set()
        self._names, self._params = [], []
        for name, param in model.named_parameters():
            if param.requires_grad and param.ndim >= self.min_ndim and id(param) not in seen:
                seen.add(id(param))
                self._names.append(name)
                self._params.append(param)
        if not self._params:
            raise ConfigError(
                f"{self.name}: the model has no trainable tensor with >= {self.min_ndim} dims; "
                "lower min_ndim or drop this monitor"
            )

    def check_step(self, ctx: TrainContext, stats: Mapping[str, Any]) -> list[Finding]:
        if not self.due(ctx):
            return []
        with torch.no_grad():
            return self.measure(ctx)

    def measure(self, ctx: TrainContext) -> list[Finding]:
        """Findings on the current weights (called under ``torch.no_grad``)."""
        raise NotImplementedError


class NormDriftMonitor(_WeightMonitor):
    """Alerts when a weight matrix's norm moves too far from its start or within a short window.

    One vector norm per tensor per check (no copies of the weights).

    Args:
        max_drift: relative change vs the start that alerts (default 0.10).
        max_window_drift: relative change within ``window`` updates that alerts (default 0.15).
        window: updates the short-term change spans.
        min_ndim: tensors with fewer dims (biases, norm gains) are left out.
        action, every: see :class:`Monitor` (log, pause, rollback).

    Example:
        >>> monitor = NormDriftMonitor(max_drift=0.2, action="rollback")
    """

    name = "norm_drift"

    def __init__(
        self,
        max_drift: float = 0.10,
        max_window_drift: float = 0.15,
        window: int = 10,
        *,
        min_ndim: int = 2,
        action: str = "log",
        every: int = 1,
    ) -> None:
        super().__init__(min_ndim=min_ndim, action=action, every=every)
        self.max_drift = _check_float(self.name, "max_drift", max_drift, minimum=0.0)
        self.max_window_drift = _check_float(
            self.name, "max_window_drift", max_window_drift, minimum=0.0
        )
        self.window = _check_int(self.name, "window", window, minimum=1)
        self._start: torch.Tensor | None = None
        self._recent: deque[tuple[int, torch.Tensor]] = deque()

    def start(self, ctx: TrainContext) -> None:
        self._select(ctx.model)
        self._start = self._norms()
        self._recent = deque([(ctx.update, self._start)])

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "start": self._start,
            "recent_updates": [update for update, _ in self._recent],
            "recent_norms": [norms for _, norms in self._recent],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        current = self._start
        self._start = self._restored(state["start"], current, "start norms")
        norms = [self._restored(n, current, "recent norms") for n in state["recent_norms"]]
        self._recent = deque(zip((int(u) for u in state["recent_updates"]), norms, strict=True))

    def _norms(self) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([torch.linalg.vector_norm(p.detach()) for p in self._params]).float()

    def measure(self, ctx: TrainContext) -> list[Finding]:
        norms = self._norms()
        while self._recent and self._recent[0][0] < ctx.update - self.window:
            self._recent.popleft()
        findings = []
        drift = _relative_change(norms, self._start)
        if drift is not None and drift[0] > self.max_drift:
            findings.append(
                Finding(drift[0], self.max_drift, self._describe(drift, norms, "start"))
            )
        if self._recent:
            then, old = self._recent[0]
            change = _relative_change(norms, old)
            if change is not None and change[0] > self.max_window_drift:
                findings.append(
                    Finding(
                        change[0],
                        self.max_window_drift,
                        self._describe(change, norms, f"update {then}"),
                    )
                )
        self._recent.append((ctx.update, norms))
        return findings

    def _describe(self, drift: tuple[float, int], norms: torch.Tensor, since: str) -> str:
        value, index = drift
        return (
            f"weight norm of {self._names[index]} moved {value:.1%} since {since} "
            f"(now {float(norms[index]):.4g})"
        )


class SpectralSpreadMonitor(_WeightMonitor):
    """Alerts when a weight matrix's top singular values spread apart.

    For every 2-D weight the ratio σ1/σk of its largest to its k-th largest singular value
    (k = ``top_k`` or the smaller side) is compared with its start value; the singular values
    come from the eigenvalues of the smaller Gram matrix, which is cheap even for an embedding.

    Args:
        factor: ratio growth vs the start that alerts (default 1.5).
        max_ratio: absolute ratio that alerts (default 10), for matrices that started below it.
        top_k: how many top singular values span the ratio.
        action, every: see :class:`Monitor` (log, pause, rollback); checks every 10 updates.

    Example:
        >>> monitor = SpectralSpreadMonitor(every=5)
    """

    name = "spectral_spread"

    def __init__(
        self,
        factor: float = 1.5,
        max_ratio: float = 10.0,
        top_k: int = 10,
        *,
        action: str = "log",
        every: int = 10,
    ) -> None:
        super().__init__(min_ndim=2, action=action, every=every)
        self.factor = _check_float(self.name, "factor", factor, minimum=1.0)
        self.max_ratio = _check_float(self.name, "max_ratio", max_ratio, minimum=1.0)
        self.top_k = _check_int(self.name, "top_k", top_k, minimum=2)
        self._start: torch.Tensor | None = None

    def _select(self, model: torch.nn.Module) -> None:
        super()._select(model)
        keep = [i for i, p in enumerate(self._params) if p.ndim == 2 and min(p.shape) >= 2]
        self._names = [self._names[i] for i in keep]
        self._params = [self._params[i] for i in keep]
        if not self._params:
            raise ConfigError(f"{self.name}: the model has no trainable 2-D weight matrix")

    def start(self, ctx: TrainContext) -> None:
        self._select(ctx.model)
        with torch.no_grad():
            self._start = self._ratios()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "start": self._start}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._start = self._restored(state["start"], self._start, "start ratios")

    def _ratios(self) -> torch.Tensor:
        return torch.stack([top_singular_ratio(p.detach(), self.top_k) for p in self._params])

    def measure(self, ctx: TrainContext) -> list[Finding]:
        ratios = self._ratios()
        findings = []
        growth = ratios / self._start.clamp(min=_EPS)
        i = int(torch.argmax(growth))
        if float(growth[i]) > self.factor:
            findings.append(
                Finding(
                    float(ratios[i]),
                    self.factor * float(self._start[i]),
                    f"σ1/σ{self.top_k} of {self._names[i]} grew {float(growth[i]):.2f}× since the "
                    f"start ({float(self._start[i]):.3g} -> {float(ratios[i]):.3g})",
                )
            )
        crossed = torch.where(self._start <= self.max_ratio, ratios, torch.zeros_like(ratios))
        j = int(torch.argmax(crossed))
        if float(crossed[j]) > self.max_ratio:
            findings.append(
                Finding(
                    float(ratios[j]),
                    self.max_ratio,
                    f"σ1/σ{self.top_k} of {self._names[j]} is {float(ratios[j]):.3g} "
                    f"> {self.max_ratio:g}",
                )
            )
        return findings


def top_singular_ratio(weight: torch.Tensor, top_k: int = 10) -> torch.Tensor:
    """σ1/σk of a matrix, k = min(top_k, smaller side), via the smaller Gram matrix's eigenvalues.

    Example:
        >>> float(top_singular_ratio(torch.diag(torch.tensor([4.0, 2.0, 1.0])), top_k=3))
        4.0
    """
    w = weight.float()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    eig = torch.linalg.eigvalsh(gram.double())  # ascending; float64 keeps small σk honest
    k = min(top_k, eig.numel())
    top, kth = eig[-1].clamp(min=0).sqrt(), eig[-k].clamp(min=0).sqrt()
    return (top / kth).float() if float(kth) > 0 else torch.tensor(math.inf)


class SaturationMonitor(_WeightMonitor):
    """Alerts when a weight matrix's share of near-zero weights falls below ``min_share``.

    A weight is near zero when ``|w| < rel_tol × rms`` with the matrix's RMS at the start, so
    weights pushed away from zero (saturating) lower the share. Matrices that started below
    ``min_share`` are left out. ``max_share`` optionally alerts on the opposite failure: a matrix
    going dead (most weights near zero).

    Args:
        min_share: share of near-zero weights below which the matrix counts as saturated (0.02).
        rel_tol: "near zero" as a fraction of the matrix's start RMS (0.1).
        max_share: share above which the matrix counts as dead; ``None`` (default) turns it off.
        min_ndim: tensors with fewer dims are left out.
        action, every: see :class:`Monitor` (log, pause, rollback); checks every 5 updates.

    Example:
        >>> monitor = SaturationMonitor(min_share=0.01, max_share=0.9)
    """

    name = "saturation"

    def __init__(
        self,
        min_share: float = 0.02,
        rel_tol: float = 0.1,
        max_share: float | None = None,
        *,
        min_ndim: int = 2,
        action: str = "log",
        every: int = 5,
    ) -> None:
        super().__init__(min_ndim=min_ndim, action=action, every=every)
        self.min_share = _check_float(self.name, "min_share", min_share, minimum=0.0, maximum=1.0)
        self.rel_tol = _check_float(self.name, "rel_tol", rel_tol, minimum=0.0)
        self.max_share = (
            None
            if max_share is None
            else _check_float(self.name, "max_share", max_share, minimum=0.0, maximum=1.0)
        )
        if self.max_share is not None and self.max_share <= self.min_share:
            raise ConfigError(
                f"{self.name}: max_share ({max_share}) must be above min_share ({min_share})"
            )
        self._tols: list[float] = []
        self._watched: torch.Tensor | None = None

    def start(self, ctx: TrainContext) -> None:
        self._select(ctx.model)
        with torch.no_grad():
            self._tols = [
                self.rel_tol * float(p.detach().float().pow(2).mean().sqrt()) for p in self._params
            ]
            self._watched = self._shares() >= self.min_share

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "tols": list(self._tols), "watched": self._watched}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._watched = self._restored(state["watched"], self._watched, "watched mask")
        tols = [float(t) for t in state["tols"]]
        if self._params and len(tols) != len(self._params):
            raise CheckpointError(
                f"{self.name}: the checkpoint has tolerances for {len(tols)} tensors but this "
                f"run watches {len(self._params)}; resume with the model and monitor options of "
                "the run that saved the checkpoint"
            )
        self._tols = tols

    def _shares(self) -> torch.Tensor:
        return torch.stack(
            [
                (p.detach().abs() < tol).float().mean()
                for p, tol in zip(self._params, self._tols, strict=True)
            ]
        )

    def measure(self, ctx: TrainContext) -> list[Finding]:
        shares = self._shares()
        findings = []
        watched = torch.where(self._watched, shares, torch.ones_like(shares))
        i = int(torch.argmin(watched))
        if float(watched[i]) < self.min_share:
            findings.append(
                Finding(
                    float(shares[i]),
                    self.min_share,
                    f"only {float(shares[i]):.2%} of {self._names[i]} is near "
                    f"zero (|w| < {self._tols[i]:.3g}): saturating",
                )
            )
        j = int(torch.argmax(shares))
        if self.max_share is not None and float(shares[j]) > self.max_share:
            findings.append(
                Finding(
                    float(shares[j]),
                    self.max_share,
                    f"{float(shares[j]):.2%} of {self._names[j]} is near zero: dead weights",
                )
            )
        return findings


class AttentionReversalMonitor(Monitor):
    """Alerts when attention on a fixed probe batch reverses: scores flip sign once centred.

    At the start the model runs on a probe batch (``probe_ids``, or ``n_probe`` × ``probe_len``
    token ids drawn with ``probe_seed`` from its vocabulary) and keeps, for every layer, head and
    query row, the sign of each causal attention weight minus its row mean. Later checks count the
    share of those signs that flipped, over entries whose start magnitude was at least
    ``min_margin`` × the row's RMS (near-ties flip by noise). The probe runs with eager attention
    (sdpa returns no weights in transformers 5); the model's setting is restored afterwards.

    Args:
        max_flip_share: share of flipped signs that alerts (default 0.20).
        probe_ids: a fixed batch of token ids (list of equal-length rows), or ``None``.
        n_probe, probe_len, probe_seed: size and seed of the drawn probe batch.
        min_margin: entries closer to the row mean than this × the row RMS are not counted.
        action, every: see :class:`Monitor` (log, pause, rollback); checks every 10 updates.

    Raises:
        ConfigError: at the start, when the model returns no attention weights.

    Example:
        >>> monitor = AttentionReversalMonitor(probe_ids=[[5, 17, 9, 2, 44, 3]], every=5)
    """

    name = "attention_reversal"

    def __init__(
        self,
        max_flip_share: float = 0.20,
        probe_ids: Sequence[Sequence[int]] | None = None,
        n_probe: int = 4,
        probe_len: int = 16,
        probe_seed: int = 0,
        min_margin: float = 0.1,
        *,
        action: str = "log",
        every: int = 10,
    ) -> None:
        super().__init__(action=action, every=every)
        self.max_flip_share = _check_float(
            self.name, "max_flip_share", max_flip_share, minimum=0.0, maximum=1.0
        )
        self.probe_ids = None if probe_ids is None else _check_probe(self.name, probe_ids)
        self.n_probe = _check_int(self.name, "n_probe", n_probe, minimum=1)
        self.probe_len = _check_int(self.name, "probe_len", probe_len, minimum=2)
        self.probe_seed = int(probe_seed)
        self.min_margin = _check_float(self.name, "min_margin", min_margin, minimum=0.0)
        self._probe: torch.Tensor | None = None
        self._signs: torch.Tensor | None = None
        self._counted: torch.Tensor | None = None

    def start(self, ctx: TrainContext) -> None:
        self._probe = self._probe_batch(ctx.model)
        centred, valid = self._centred(ctx.model)
        rms = (centred.pow(2) * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp(
            min=1
        )
        self._counted = valid & (centred.abs() >= self.min_margin * rms.sqrt()) & (centred != 0)
        self._signs = centred > 0

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "probe": self._probe,
            "signs": self._signs,
            "counted": self._counted,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._probe = self._restored(state["probe"], self._probe, "probe batch")
        self._signs = self._restored(state["signs"], self._signs, "attention signs")
        self._counted = self._restored(state["counted"], self._counted, "counted mask")

    def check_step(self, ctx: TrainContext, stats: Mapping[str, Any]) -> list[Finding]:
        if not self.due(ctx):
            return []
        share = self.flip_share(ctx.model)
        if share > self.max_flip_share:
            return [
                Finding(
                    share,
                    self.max_flip_share,
                    f"{share:.1%} of the probe batch's centred attention scores changed "
                    "sign since the start",
                )
            ]
        return []

    def flip_share(self, model: torch.nn.Module) -> float:
        """Share of counted probe attention scores whose centred sign differs from the start."""
        centred, _ = self._centred(model)
        flipped = ((centred > 0) != self._signs) & self._counted
        return float(flipped.sum()) / max(int(self._counted.sum()), 1)

    def _probe_batch(self, model: torch.nn.Module) -> torch.Tensor:
        device = next(model.parameters()).device
        if self.probe_ids is not None:
            return torch.tensor(self.probe_ids, dtype=torch.long, device=device)
        vocab = int(model.get_input_embeddings().num_embeddings)
        gen = torch.Generator().manual_seed(self.probe_seed)
        ids = torch.randint(0, vocab, (self.n_probe, self.probe_len), generator=gen)
        return ids.to(device)

    def _centred(self, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention weights minus their causal row mean, and the mask of causal entries."""
        attn = torch.stack([a.float() for a in _probe_attentions(model, self._probe)])
        length = attn.shape[-1]
        valid = torch.ones(length, length, dtype=torch.bool, device=attn.device).tril()
        valid[0] = False  # the first query attends to one key: nothing to centre
        mean = (attn * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp(min=1)
        return (attn - mean) * valid, valid.expand_as(attn)


def _probe_attentions(model: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The model's attention weights on ``ids`` (eager attention, eval mode, no grad)."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    was_training = model.training
    try:
        if before not in (None, "eager"):
            model.set_attn_implementation("eager")
        model.eval()
        with torch.no_grad():
            out = model(input_ids=ids, output_attentions=True, use_cache=False)
    finally:
        if before not in (None, "eager"):
            model.set_attn_implementation(before)
        model.train(was_training)
    attentions = getattr(out, "attentions", None)
    if not attentions or any(a is None for a in attentions):
        raise ConfigError(
            f"attention_reversal: {type(model).__name__} returned no attention weights with "
            "output_attentions=True and eager attention; drop this monitor for this model"
        )
    return attentions


# -- evaluation monitor ----------------------------------------------------------------------


class RewardHackingMonitor(Monitor):
    """Alerts when the proxy (training) reward rises while held-out quality falls.

    Over the last ``window`` evaluations (``on_eval_end``), the proxy must rise by more than
    ``proxy_margin`` while the gold metric falls by more than ``gold_margin``, first to last.
    The value is the gold drop and the threshold ``gold_margin``. Evaluations without the two
    keys (the trainer's ``final/`` evaluation) are ignored.

    Args:
        window: evaluations spanned (E, default 3).
        proxy_key: the training reward on held-out prompts (default ``"eval/reward"``).
        gold_key: the held-out quality metric (default ``"eval/bleu"``, 0-100; a semantic score
            key works too, with a margin on its scale).
        proxy_margin: minimum proxy rise (default 0.02, reward units).
        gold_margin: minimum gold drop (default 1.0, BLEU points).
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
        gold_key: str = "eval/bleu",
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


# -- building monitors from config ------------------------------------------------------------

MONITORS: dict[str, type[Monitor]] = {
    cls.name: cls
    for cls in (
        GradientSpikeMonitor,
        EntropyMonitor,
        NormDriftMonitor,
        AttentionReversalMonitor,
        SpectralSpreadMonitor,
        SaturationMonitor,
        RewardHackingMonitor,
    )
}


def make_monitor(name: str, options: Mapping[str, Any] | None = None) -> Monitor:
    """One monitor by name, its options checked by name.

    Raises:
        UnknownNameError: ``name`` is not in :data:`MONITORS`.
        ConfigError: an option the monitor does not take, or a bad value.

    Example:
        >>> make_monitor("entropy", {"max_bits": 4.0}).max_bits
        4.0
    """
    if name not in MONITORS:
        raise UnknownNameError("monitor", name, MONITORS)
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise ConfigError(
            f"options of monitor {name!r} must be a mapping of option to value, got {options!r}"
        )
    cls = MONITORS[name]
    valid = [p for p in inspect.signature(cls).parameters if p not in ("self",)]
    for key in options:
        if key not in valid:
            raise ConfigError(
                f"monitor {name!r} has no option {key!r}.{did_you_mean(str(key), valid)} "
                f"Valid options: {', '.join(valid)}."
            )
    return cls(**options)


def make_monitors(config: Mapping[str, Any] | Sequence[Any] | None) -> list[Monitor]:
    """Monitors from a config: a mapping ``{name: options}``, a list of names or one-key mappings.

    An options value of ``None``/``True``/``{}`` means the defaults; ``False`` leaves the
    monitor out. Unknown monitor names and options are rejected by name.

    Raises:
        UnknownNameError: an unknown monitor name (or action).
        ConfigError: an unknown option, a bad value or a malformed config.

    Example:
        >>> monitors = make_monitors({"gradient_spike": {"factor": 1.5, "action": "skip"},
        ...                           "entropy": None, "saturation": False})
        >>> [m.name for m in monitors]
        ['gradient_spike', 'entropy']
    """
    if config is None:
        return []
    if isinstance(config, Mapping):
        items: Iterable[tuple[Any, Any]] = config.items()
    elif isinstance(config, Sequence) and not isinstance(config, str):
        items = [_list_entry(entry) for entry in config]
    else:
        raise ConfigError(
            f"monitors config must be a mapping {{name: options}} or a list of names, "
            f"got {config!r}"
        )
    monitors = []
    for name, options in items:
        if options is False:
            continue
        monitors.append(make_monitor(name, None if options is True else options))
    return monitors


def _list_entry(entry: Any) -> tuple[Any, Any]:
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, Mapping) and len(entry) == 1:
        return next(iter(entry.items()))
    raise ConfigError(
        f"a monitors list entry must be a name or a one-key mapping {{name: options}}, "
        f"got {entry!r}"
    )


def default_monitors(action: str = "log", **overrides: Mapping[str, Any] | bool) -> list[Monitor]:
    """All seven monitors with their default thresholds (docs/usage.md, "Monitors").

    Args:
        action: the action of every monitor, unless its override says otherwise.
        **overrides: per monitor name, a mapping of options (``False`` leaves it out).

    Raises:
        UnknownNameError: an override for an unknown monitor, or an unknown action.
        ConfigError: ``action`` is one a monitor cannot take (``skip`` for post-step signals:
            give those an action in their override), or a bad option.

    Example:
        >>> monitors = default_monitors(gradient_spike={"action": "skip"}, attention_reversal=False)
        >>> len(monitors)
        6
    """
    for name in overrides:
        if name not in MONITORS:
            raise UnknownNameError("monitor", name, MONITORS)
    config: dict[str, Any] = {}
    for name in MONITORS:
        extra = overrides.get(name, {})
        if extra is False:
            continue
        if extra is True:
            extra = {}
        if not isinstance(extra, Mapping):
            raise ConfigError(f"override of monitor {name!r} must be a mapping, got {extra!r}")
        config[name] = {"action": action, **extra}
    return make_monitors(config)


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
