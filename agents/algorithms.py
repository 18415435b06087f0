"""Advantages and losses of the policy-gradient algorithms, as small pure functions.

One clipped surrogate serves all three algorithms. For ``reinforce`` and ``grpo`` there is one
epoch over fresh on-policy samples, so the importance ratio is exactly 1 and the gradient is the
plain ``A · ∇log π``; ``ppo`` runs several epochs over the same rollouts, where the clip matters.
PPO here has no value network (as in most LM RL): its advantages are group-normalised rewards
like GRPO's when ``group_size > 1``, batch-normalised otherwise.

Per-token terms are summed over each completion and divided by ``max_new_tokens``, a constant
(as in Dr. GRPO): dividing by each completion's own length would pay short completions more per
token, a length bias that would confound any study of speed rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EPS = 1e-6


def group_advantages(rewards: np.ndarray, group_size: int) -> np.ndarray:
    """GRPO: each reward minus its group's mean, over the group's standard deviation.

    A group whose samples all scored the same gets zero advantage (no learning signal).

    Example:
        >>> group_advantages(np.array([1.0, 0.0, 0.5, 0.5]), group_size=2).round(3).tolist()
        [1.0, -1.0, 0.0, 0.0]
    """
    groups = rewards.reshape(-1, group_size)
    mean = groups.mean(axis=1, keepdims=True)
    std = groups.std(axis=1, keepdims=True)
    adv = np.where(std > EPS, (groups - mean) / np.maximum(std, EPS), 0.0)
    return adv.reshape(-1)


def batch_advantages(rewards: np.ndarray) -> np.ndarray:
    """Rewards centred and scaled over the whole batch (zero when all rewards are equal)."""
    std = rewards.std()
    if std <= EPS:
        return np.zeros_like(rewards)
    return (rewards - rewards.mean()) / std


@dataclass
class RunningBaseline:
    """REINFORCE's baseline: an exponential moving average of the mean batch reward."""

    momentum: float = 0.9
    value: float | None = None

    def advantages(self, rewards: np.ndarray) -> np.ndarray:
        """``rewards − baseline`` (the first batch is its own baseline), then update it."""
        baseline = float(rewards.mean()) if self.value is None else self.value
        adv = rewards - baseline
        mean = float(rewards.mean())
        self.value = (
            mean if self.value is None else self.momentum * self.value + (1 - self.momentum) * mean
        )
        return adv


def compute_advantages(
    algo: str, rewards: np.ndarray, group_size: int, baseline: RunningBaseline
) -> np.ndarray:
    """The advantage of every sample under ``algo`` (see the module docstring)."""
    if algo == "reinforce":
        return baseline.advantages(rewards)
    if group_size > 1:
        return group_advantages(rewards, group_size)
    return batch_advantages(rewards)


def clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
) -> torch.Tensor:
    """Per-token PPO objective, negated to a loss: ``−min(ρA, clip(ρ, 1±ε)A)``.

    Args:
        logprobs: ``[B, T]`` log-probs of the sampled tokens under the current policy.
        old_logprobs: ``[B, T]`` the same under the policy that sampled them.
        advantages: ``[B]`` one advantage per completion.
        mask: ``[B, T]`` 1 for completion tokens, 0 for padding.
        clip_eps: the clip range ε.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv
    return -torch.minimum(unclipped, clipped) * mask


@torch.no_grad()
def ratio_stats(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor, clip_eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean |ρ − 1|, share of tokens with ρ outside [1 − ε, 1 + ε])`` over real tokens.

    On fresh samples scored the way they were sampled, ρ is 1 up to rounding: both near 0.

    Example:
        >>> lp = torch.log(torch.tensor([[0.5, 0.25]]))
        >>> [round(float(x), 3) for x in ratio_stats(lp, lp, torch.ones(1, 2), 0.2)]
        [0.0, 0.0]
    """
    ratio = torch.exp(logprobs - old_logprobs)
    real = mask.sum().clamp(min=1)
    deviation = ((ratio - 1).abs() * mask).sum() / real
    clipped = (((ratio < 1 - clip_eps) | (ratio > 1 + clip_eps)).float() * mask).sum() / real
    return deviation, clipped


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate k3 = e^{r} − r − 1 with r = log π_ref − log π (≥ 0)."""
    r = ref_logprobs - logprobs
    return (torch.exp(r) - r - 1) * mask


def sequence_sum(per_token: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Sum each completion's per-token terms and divide by the constant ``max_new_tokens``."""
    return per_token.sum(dim=1) / max_new_tokens
