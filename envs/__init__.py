"""Tasks, Gymnasium environments and prompt noise.

Example:
    >>> import gymnasium, rewardgym
    >>> env = gymnasium.make("rewardgym/Translate-v0", reward="balanced")
"""

from rewardgym.envs import (
    games,  # noqa: F401  (registers GEM games' env ids; imports no GEM)
    tasks,  # noqa: F401  (registers the built-in tasks and their env ids)
)
from rewardgym.envs.registration import env_ids

__all__ = ["env_ids"]
