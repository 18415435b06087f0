"""The policy-gradient losses, per token, as small pure functions.

One clipped surrogate serves every algorithm: on fresh on-policy samples (one epoch) the
importance ratio is exactly 1 and the gradient is the plain ``A · ∇log π``; an algorithm that
reuses a batch for several epochs (``ppo``) is where the clip matters.

Per-token terms are summed over each completion and divided by ``max_new_tokens``, a constant
(as in Dr. GRPO): dividing by each completion's own length would pay short completions more per
token, a length bias that would confound any study of speed rewards.
"""

from __future__ import annotations

import torch


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
