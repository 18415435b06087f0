"""The policy-gradient losses, per token, as small pure functions.

One clipped surrogate serves every algorithm: on fresh on-policy samples (one epoch) the
importance ratio is exactly 1 and the gradient is the plain ``A · ∇log π``; an algorithm that
reuses a batch for several epochs (``ppo``) is where the clip matters.

How per-token terms become one loss is the ``loss_type`` (TRL's names): ``dr_grpo`` (default)
sums each completion's terms and divides by ``max_new_tokens``, a constant, since dividing by
each completion's own length (``grpo``) pays short completions more per token, a length bias
that would confound any study of speed rewards; ``bnpo`` averages over the micro-batch's tokens,
``dapo`` over the whole batch's.
"""

from __future__ import annotations

import torch

from rewardgym.agents.algorithms import LOSS_TYPES

__all__ = [
    "LOSS_TYPES",
    "aggregate_loss",
    "clipped_surrogate",
    "kl_k3",
    "ratio_stats",
    "sequence_sum",
]


def clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    clip_eps_high: float | None = None,
) -> torch.Tensor:
    """Per-token PPO objective, negated to a loss: ``−min(ρA, clip(ρ, 1−ε, 1+ε_high)A)``.

    Args:
        logprobs: ``[B, T]`` log-probs of the sampled tokens under the current policy.
        old_logprobs: ``[B, T]`` the same under the policy that sampled them.
        advantages: ``[B]`` one advantage per completion.
        mask: ``[B, T]`` 1 for completion tokens, 0 for padding.
        clip_eps: the clip range ε.
        clip_eps_high: the upper range (DAPO's clip-higher); None: ``clip_eps``.
    """
    high = clip_eps if clip_eps_high is None else clip_eps_high
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + high) * adv
    return -torch.minimum(unclipped, clipped) * mask


def aggregate_loss(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    max_new_tokens: int,
    batch_tokens: int,
    micro_batches: int,
) -> torch.Tensor:
    """One micro-batch's loss from its (masked) per-token terms; the trainer sums the
    micro-batches' losses divided by their count ``micro_batches``.

    Example:
        >>> t, m = torch.tensor([[1.0, 1.0], [4.0, 0.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]])
        >>> [aggregate_loss(t, m, k, 4, 3, 1).item() for k in LOSS_TYPES]
        [0.75, 2.5, 2.0, 2.0]
    """
    masked = per_token * mask
    if loss_type == "grpo":  # each completion's mean over its tokens, then over completions
        return (masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    if loss_type == "bnpo":  # the mean over this micro-batch's tokens
        return masked.sum() / mask.sum().clamp(min=1)
    if loss_type == "dapo":  # the mean over the whole batch's tokens, once K are summed
        return masked.sum() * micro_batches / max(1, batch_tokens)
    return sequence_sum(masked, max_new_tokens).mean()


@torch.no_grad()
def ratio_stats(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    clip_eps_high: float | None = None,
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
    high = clip_eps if clip_eps_high is None else clip_eps_high
    clipped = (((ratio < 1 - clip_eps) | (ratio > 1 + high)).float() * mask).sum() / real
    return deviation, clipped


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate k3 = e^{r} − r − 1 with r = log π_ref − log π (≥ 0)."""
    r = ref_logprobs - logprobs
    return (torch.exp(r) - r - 1) * mask


def sequence_sum(per_token: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Sum each completion's per-token terms and divide by the constant ``max_new_tokens``."""
    return per_token.sum(dim=1) / max_new_tokens
