"""Weight-state monitors: norms, spectra, saturation and attention of the weights entering
an update (the costly ones run every ``every`` updates)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rewardgym.agents.callbacks import TrainContext
from rewardgym.errors import CheckpointError, ConfigError
from rewardgym.evaluation.monitors.base import (
    _EPS,
    Finding,
    Monitor,
    _check_float,
    _check_int,
    _check_probe,
    _relative_change,
    register_monitor,
)

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


@register_monitor
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


@register_monitor
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


@register_monitor
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


@register_monitor
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
