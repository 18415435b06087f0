"""Statistics over seeds, as reports give them: mean, 95 % bootstrap CI, IQM, P(A beats B).

Values that are undefined for a seed (None, NaN) are dropped before any statistic, and the
number of seeds actually used is reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

MIN_SEEDS_FOR_IQM = 5
# A bootstrap interval of two values is just their range; below this the report gives the range.
MIN_SEEDS_FOR_CI = 3


def defined(values: Iterable[float | None]) -> list[float]:
    """The values that are numbers and finite, in order."""
    out = []
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        v = float(v)
        if math.isfinite(v):
            out.append(v)
    return out


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean.

    One value gives a zero-width interval at that value (nothing to resample).

    Example:
        >>> bootstrap_ci([1.0, 2.0, 3.0])
        (1.0, 3.0)
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if data.size == 1:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = rng.choice(data, size=(n_resamples, data.size), replace=True).mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def relative_change(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float] | None:
    """``(mean(a) / mean(b) − 1) × 100`` with a percentile-bootstrap CI, resampling the seeds
    of ``a`` and of ``b`` independently; None when ``mean(b) <= 0`` (no relative change) or
    either is empty.

    Example:
        >>> relative_change([11.0, 13.0], [10.0, 10.0])[0]
        20.0
    """
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if xa.size == 0 or xb.size == 0 or xb.mean() <= 0:
        return None
    rng = np.random.default_rng(seed)
    ma = rng.choice(xa, size=(n_resamples, xa.size), replace=True).mean(axis=1)
    mb = rng.choice(xb, size=(n_resamples, xb.size), replace=True).mean(axis=1)
    keep = mb > 0
    changes = (ma[keep] / mb[keep] - 1) * 100
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(changes, [tail, 100 - tail])
    return float((xa.mean() / xb.mean() - 1) * 100), float(low), float(high)


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50 % (sorted, a quarter cut from each end).

    Example:
        >>> iqm([0, 1, 2, 3, 4, 5, 6, 100])
        3.5
    """
    data = np.sort(np.asarray(values, dtype=np.float64))
    cut = int(math.floor(data.size * 0.25))
    middle = data[cut : data.size - cut] if data.size - 2 * cut > 0 else data
    return float(middle.mean())


def prob_beats(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True) -> float:
    """Share of (seed of A, seed of B) pairs in which A beats B; ties count half.

    Example:
        >>> prob_beats([2, 3], [1, 2])
        0.875
    """
    x = np.asarray(a, dtype=np.float64)[:, None]
    y = np.asarray(b, dtype=np.float64)[None, :]
    if not higher_is_better:
        x, y = -x, -y
    return float(((x > y) + 0.5 * (x == y)).mean())


@dataclass(frozen=True)
class Summary:
    """One metric of one scheme over its seeds."""

    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    iqm: float | None
    values: list[float | None]

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(values: Sequence[float | None], seed: int = 0) -> Summary:
    """Mean, 95 % bootstrap CI (with ≥ 3 values) and IQM (with ≥ 5) of the defined values.

    Example:
        >>> summarise([1.0, None, 3.0]).mean
        2.0
    """
    data = defined(values)
    if not data:
        return Summary(0, None, None, None, None, list(values))
    low, high = bootstrap_ci(data, seed=seed) if len(data) >= MIN_SEEDS_FOR_CI else (None, None)
    middle = iqm(data) if len(data) >= MIN_SEEDS_FOR_IQM else None
    return Summary(len(data), float(np.mean(data)), low, high, middle, list(values))
