"""Tasks, Gymnasium environments and prompt noise.

Example:
    >>> import gymnasium, rewardgym
    >>> env = gymnasium.make("rewardgym/Translate-v0", reward="balanced")
"""

from rewardgym.envs.registration import env_ids, register_envs

__all__ = ["env_ids", "register_envs"]
