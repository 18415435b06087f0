"""Gradient noise: the variance of micro-batch gradients within one update.

Each update's batch is split into K equal micro-batches with gradients g_1..g_K
(docs/definitions.md):

    ḡ  = mean_k g_k
    σ² = Σ_k ‖g_k − ḡ‖² / (K − 1)        (unbiased: E[σ²] = trace of the micro-batch covariance)
    ν  = σ² / ‖ḡ‖²                        (normalised, scale-free)

``gradient_noise`` computes these directly from K flat tensors. ``GradNoiseAccumulator`` gets the
same numbers from running sums while the trainer accumulates gradients: no extra backward pass,
one extra parameter-sized buffer and two float64 scalars, using

    Σ_k ‖g_k − ḡ‖² = Σ_k ‖g_k‖² − K ‖ḡ‖².

When ‖ḡ‖² is exactly 0, ν is undefined; it is reported as ``inf`` when σ² > 0 (pure noise, no
signal) and ``0.0`` when σ² is 0 too (no gradient at all). Non-finite gradients give non-finite
statistics; the trainer skips such updates anyway.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from rewardgym.errors import ConfigError

__all__ = ["GradNoiseAccumulator", "GradStats", "gradient_noise", "normalised_variance"]


@dataclass(frozen=True)
class GradStats:
    """Gradient-noise statistics of one update.

    Attributes:
        k: number of micro-batches K.
        mean_sq_norm: ‖ḡ‖², the squared norm of the mean micro-batch gradient.
        sigma2: σ² = Σ‖g_k − ḡ‖² / (K − 1).
        nu: ν = σ² / ‖ḡ‖² (``inf`` when ‖ḡ‖² = 0 < σ², ``0.0`` when both are 0).

    Example:
        >>> GradStats(k=4, mean_sq_norm=2.0, sigma2=1.0, nu=0.5).nu
        0.5
    """

    k: int
    mean_sq_norm: float
    sigma2: float
    nu: float

    def as_dict(self, prefix: str = "grad/") -> dict[str, float]:
        """Return the statistics as a flat dict for metrics.jsonl.

        Example:
            >>> GradStats(4, 2.0, 1.0, 0.5).as_dict()["grad/nu"]
            0.5
        """
        return {
            f"{prefix}k": self.k,
            f"{prefix}mean_sq_norm": self.mean_sq_norm,
            f"{prefix}sigma2": self.sigma2,
            f"{prefix}nu": self.nu,
        }


def normalised_variance(sigma2: float, mean_sq_norm: float) -> float:
    """Return ν = σ² / ‖ḡ‖², defined as ``inf`` (σ² > 0) or ``0.0`` (σ² = 0) when ‖ḡ‖² = 0.

    Example:
        >>> normalised_variance(1.0, 0.0)
        inf
    """
    if math.isnan(sigma2) or math.isnan(mean_sq_norm):
        return math.nan
    if mean_sq_norm == 0.0:
        return math.inf if sigma2 > 0.0 else 0.0
    return sigma2 / mean_sq_norm


def _check_k(k: int) -> None:
    if k < 2:
        raise ConfigError(
            f"gradient noise needs at least 2 micro-batch gradients, got K={k}; "
            "split each update into K >= 4 equal micro-batches"
        )


def gradient_noise(micro_grads: list[torch.Tensor]) -> GradStats:
    """Compute gradient-noise statistics directly from K micro-batch gradients.

    Args:
        micro_grads: K >= 2 tensors of the same shape (usually flat), one gradient per
            micro-batch. Computed in float64.

    Returns:
        The statistics of the K gradients.

    Raises:
        ConfigError: fewer than 2 gradients, or gradients of different shapes.

    Example:
        >>> g = [torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])]
        >>> gradient_noise(g)
        GradStats(k=2, mean_sq_norm=4.0, sigma2=2.0, nu=0.5)
    """
    k = len(micro_grads)
    _check_k(k)
    shape = tuple(micro_grads[0].shape)
    for i, g in enumerate(micro_grads):
        if tuple(g.shape) != shape:
            raise ConfigError(
                f"micro-batch gradient {i} has shape {tuple(g.shape)}, but gradient 0 has shape "
                f"{shape}; pass K gradients of the same parameters (flatten each with "
                "torch.cat([p.grad.reshape(-1) for p in params]))"
            )
    stacked = torch.stack([g.detach().reshape(-1).to(torch.float64) for g in micro_grads])
    mean = stacked.mean(dim=0)
    mean_sq_norm = float(mean.dot(mean))
    sigma2 = float((stacked - mean).pow(2).sum()) / (k - 1)
    return GradStats(k, mean_sq_norm, sigma2, normalised_variance(sigma2, mean_sq_norm))


_CHUNK = 1 << 18  # elements squared at a time: a 1 MB float32 scratch stays in cache


def _sq_norm64(
    t: torch.Tensor, minus: torch.Tensor | None = None, scratch: torch.Tensor | None = None
) -> float:
    """‖t − minus‖² (``minus`` None: ‖t‖²), ``_CHUNK`` elements at a time, totalled in float64.

    Each chunk is converted to ``scratch``'s dtype (float32 for float32 and narrower
    gradients, float64 for float64 ones), differenced and squared in place, then summed into a
    float64 total. Converting whole chunks to float64 first gave the same statistics to ten
    digits at 1.8x the cost (0.72 vs 0.41 s for four micro-batches over SmolLM2's parameters),
    which the GRPO update pays every micro-batch. ``scratch`` is reused: a fresh temporary per
    chunk costs page faults.
    """
    flat = t.reshape(-1)
    other = None if minus is None else minus.reshape(-1)
    if scratch is None:
        scratch = torch.empty(min(_CHUNK, flat.numel()), dtype=_scratch_dtype(t), device=t.device)
    total = 0.0
    for start in range(0, flat.numel(), _CHUNK):
        end = min(start + _CHUNK, flat.numel())
        chunk = scratch[: end - start]
        chunk.copy_(flat[start:end])
        if other is not None:
            chunk.sub_(other[start:end])
        total += float(chunk.square_().sum(dtype=torch.float64))
    return total


def _scratch_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class GradNoiseAccumulator:
    """Gradient-noise statistics from running sums during gradient accumulation.

    The trainer zeroes the gradients, then for each of the K micro-batches runs
    ``(scale * loss_k).backward()`` and calls ``observe(params)``: ``p.grad`` then holds the
    accumulated sum G_k = scale · (g_1 + … + g_k). The accumulator keeps G_{k−1} in one flat
    buffer, so the increment G_k − G_{k−1} = scale · g_k gives ‖g_k‖², summed in float64. At the
    end the buffer holds scale · Σg_k, which gives ‖ḡ‖². ``scale`` is the factor each micro loss
    was multiplied by (1/K when the trainer averages the micro losses); the reported statistics
    are those of the unscaled g_k, so they match ``gradient_noise([g_1, ..., g_K])``.

    Gradients are assumed to be zero (or ``None``) before the first micro-batch; a parameter
    whose ``grad`` is ``None`` contributes zeros. Call ``reset()`` (or ``finish()``) between
    updates.

    Args:
        scale: factor applied to each micro-batch loss before backward (must be finite, != 0).

    Example:
        >>> acc = GradNoiseAccumulator(scale=0.5)
        >>> acc.observe_flat(0.5 * torch.tensor([1.0, 0.0]))
        >>> acc.observe_flat(0.5 * torch.tensor([3.0, 0.0]))
        >>> acc.finish()
        GradStats(k=2, mean_sq_norm=4.0, sigma2=2.0, nu=0.5)
    """

    def __init__(self, scale: float = 1.0) -> None:
        if not math.isfinite(scale) or scale == 0.0:
            raise ConfigError(
                f"GradNoiseAccumulator scale must be a finite non-zero number, got {scale!r}; "
                "pass the factor each micro-batch loss is multiplied by (1/K when averaging)"
            )
        self.scale = float(scale)
        self._buffer: torch.Tensor | None = None
        self._scratch_buffer: torch.Tensor | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the current update (keeps the buffer's memory for the next one)."""
        self.k = 0
        self._sum_sq = 0.0  # Σ‖scale · g_k‖², float64 scalar
        if self._buffer is not None:
            self._buffer.zero_()

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """The reusable conversion buffer of :func:`_sq_norm64`."""
        dtype = _scratch_dtype(like)
        scratch = self._scratch_buffer
        if scratch is None or scratch.device != like.device or scratch.dtype != dtype:
            self._scratch_buffer = scratch = torch.empty(_CHUNK, dtype=dtype, device=like.device)
        return scratch

    def _ensure_buffer(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        if self._buffer is None or self._buffer.numel() != numel:
            if self.k > 0:
                raise ConfigError(
                    f"micro-batch {self.k} has {numel} gradient values but earlier ones had "
                    f"{self._buffer.numel() if self._buffer is not None else 0}; observe the same "
                    "parameters for every micro-batch of an update"
                )
            self._buffer = torch.zeros(numel, dtype=like.dtype, device=like.device)
        return self._buffer

    def observe(self, params: Iterable[torch.nn.Parameter | torch.Tensor]) -> None:
        """Record one micro-batch after its backward pass, from the accumulated ``p.grad``.

        Args:
            params: the trained parameters, in the same order at every call.

        Example:
            >>> w = torch.nn.Parameter(torch.zeros(2))
            >>> acc = GradNoiseAccumulator(scale=0.5)
            >>> (0.5 * (w * torch.tensor([1.0, 0.0])).sum()).backward(); acc.observe([w])
            >>> (0.5 * (w * torch.tensor([3.0, 0.0])).sum()).backward(); acc.observe([w])
            >>> acc.finish().sigma2
            2.0
        """
        params = [p for p in params if p.requires_grad or p.grad is not None]
        numel = sum(p.numel() for p in params)
        if numel == 0:
            raise ConfigError("observe() got no parameters; pass model.parameters()")
        first = next((p.grad for p in params if p.grad is not None), params[0])
        buffer = self._ensure_buffer(numel, first)
        sum_sq, offset = 0.0, 0
        for p in params:
            view = buffer[offset : offset + p.numel()]
            offset += p.numel()
            if p.grad is None:
                # no gradient yet: the increment is minus what the buffer holds (normally zero)
                sum_sq += _sq_norm64(view, scratch=self._scratch(view))
                view.zero_()
                continue
            grad = p.grad.detach().reshape(-1)
            sum_sq += _sq_norm64(grad, minus=view, scratch=self._scratch(grad))
            view.copy_(grad)
        self._sum_sq += sum_sq
        self.k += 1

    def observe_flat(self, grad: torch.Tensor) -> None:
        """Record one micro-batch from its own (scaled) gradient ``scale · g_k``, not the sum.

        Args:
            grad: the micro-batch's gradient increment, any shape (flattened).

        Example:
            >>> acc = GradNoiseAccumulator()
            >>> acc.observe_flat(torch.ones(3)); acc.k
            1
        """
        flat = grad.detach().reshape(-1)
        buffer = self._ensure_buffer(flat.numel(), flat)
        self._sum_sq += _sq_norm64(flat)
        buffer.add_(flat.to(buffer.dtype))
        self.k += 1

    def add(self, grad_or_params: torch.Tensor | Iterable[torch.Tensor]) -> None:
        """Record one micro-batch: a tensor goes to ``observe_flat``, parameters to ``observe``.

        Example:
            >>> acc = GradNoiseAccumulator()
            >>> acc.add(torch.ones(2)); acc.add(torch.zeros(2)); acc.finish().sigma2
            1.0
        """
        if isinstance(grad_or_params, torch.Tensor) and not isinstance(
            grad_or_params, torch.nn.Parameter
        ):
            self.observe_flat(grad_or_params)
        else:
            self.observe(grad_or_params)

    def stats(self) -> GradStats:
        """Return the statistics of the micro-batches observed so far (K >= 2 required).

        Example:
            >>> acc = GradNoiseAccumulator()
            >>> acc.observe_flat(torch.tensor([2.0])); acc.observe_flat(torch.tensor([2.0]))
            >>> acc.stats().nu
            0.0
        """
        _check_k(self.k)
        if self._buffer is None:  # unreachable once k >= 2; keeps type checkers honest
            raise ConfigError("no gradients observed")
        k, s2 = self.k, self.scale * self.scale
        mean_sq_norm = _sq_norm64(self._buffer, scratch=self._scratch(self._buffer)) / (s2 * k * k)
        sum_sq = self._sum_sq / s2
        # Σ‖g_k‖² − K‖ḡ‖² is ≥ 0 in exact arithmetic; clamp the rounding error.
        sigma2 = max(0.0, (sum_sq - k * mean_sq_norm) / (k - 1))
        if not (math.isfinite(sum_sq) and math.isfinite(mean_sq_norm)):
            sigma2 = math.nan
        return GradStats(k, mean_sq_norm, sigma2, normalised_variance(sigma2, mean_sq_norm))

    def finish(self) -> GradStats:
        """Return the update's statistics and reset for the next update.

        Example:
            >>> acc = GradNoiseAccumulator()
            >>> acc.add(torch.ones(2)); acc.add(-torch.ones(2)); acc.finish().nu
            inf
        """
        stats = self.stats()
        self.reset()
        return stats
