"""LM policies, their trainers, the SB3 bridge and checkpoints.

Names are imported lazily: reading a config must not load torch.

Example:
    >>> from rewardgym.agents import TrainConfig, train
    >>> result = train(TrainConfig(task="translate", reward="balanced", updates=20))
"""

from __future__ import annotations

from rewardgym._lazy import lazy_getattr

_EXPORTS = {
    "TrainConfig": "rewardgym.agents.config",
    "Generation": "rewardgym.agents.policy",
    "LMPolicy": "rewardgym.agents.policy",
    "load_policy": "rewardgym.agents.registry",
    "register_model": "rewardgym.agents.registry",
    "list_models": "rewardgym.agents.registry",
    "RunResult": "rewardgym.agents.trainer",
    "train": "rewardgym.agents.trainer",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
