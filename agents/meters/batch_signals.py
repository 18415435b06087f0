"""Per-update signals of one batch that hacking detectors read: how reward tracks length, and
how concentrated the advantages are. Cheap: numpy over the batch's rewards and advantages.

Example:
    >>> pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]) > 0.9
    True
    >>> top_share([0.0, 0.0, 0.0, 4.0])
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["pearson", "top_share"]


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of ``x`` and ``y``; 0.0 when either is constant (no signal)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size < 2 or a.std() == 0.0 or b.std() == 0.0:
        return 0.0
    value = float(np.corrcoef(a, b)[0, 1])
    return value if math.isfinite(value) else 0.0


def top_share(values: Sequence[float], share: float = 0.25) -> float:
    """The part of the total |value| carried by the largest ``share`` of the samples.

    ``share`` when every sample carries the same weight, 1.0 when a few carry it all; 0.0 for an
    all-zero batch (no advantage at all).
    """
    magnitudes = np.sort(np.abs(np.asarray(values, dtype=float)))[::-1]
    total = magnitudes.sum()
    if magnitudes.size == 0 or total == 0.0:
        return 0.0
    k = max(1, math.ceil(share * magnitudes.size))
    return float(magnitudes[:k].sum() / total)
