"""Padding token sequences into rectangular batches, the one way every module does it.

Example:
    >>> ids, real = pad_ids([[5, 6], [7]], pad_id=0, side="left")
    >>> ids.tolist(), real.tolist()
    ([[5, 6], [0, 7]], [[True, True], [False, True]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["pad_ids", "pad_values"]


def pad_ids(
    seqs: Sequence[Sequence[int]], pad_id: int, *, side: str = "right", width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, W]`` token ids and a boolean mask of the real (not padding) positions, on the CPU.

    Args:
        seqs: token ids per row (rows may be empty).
        pad_id: id written at padding positions.
        side: ``"left"`` (prompts: their ends line up) or ``"right"`` (completions).
        width: the batch width; default the longest row.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    width = max((len(s) for s in seqs), default=0) if width is None else width
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    real = torch.zeros((len(seqs), width), dtype=torch.bool)
    for row, seq in enumerate(seqs):
        if not len(seq):
            continue
        cols = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, cols] = torch.as_tensor(list(seq), dtype=torch.long)
        real[row, cols] = True
    return ids, real


def pad_values(
    arrays: Sequence[np.ndarray], width: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``[B, width]`` float32 rows, each array written from the left, zeros after it."""
    out = torch.zeros((len(arrays), width), dtype=torch.float32, device=device)
    for row, values in enumerate(arrays):
        out[row, : len(values)] = torch.as_tensor(values, dtype=torch.float32)
    return out
