"""LM policies, their trainers, the SB3 bridge and checkpoints.

Names are imported lazily: reading a config must not load torch.

Example:
    >>> from rewardgym.agents import TrainConfig, train
    >>> result = train(TrainConfig(task="translate", reward="balanced", updates=20))
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "rewardgym.agents.config",
    "Generation": "rewardgym.agents.policy",
    "LMPolicy": "rewardgym.agents.policy",
    "load_policy": "rewardgym.agents.policy",
    "RunResult": "rewardgym.agents.trainer",
    "train": "rewardgym.agents.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rewardgym.agents' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
