"""Supervised training on (prompt, reference) pairs: the tiny model's warm start and "replay".

The loss is the mean negative log-likelihood of the completion tokens only
(``prompt + completion_prefix + reference + eos``; prompt tokens carry no loss). It reuses
:meth:`LMPolicy.sequence_logprobs`, so supervised training sees exactly the token layout and
positions that generation and the policy-gradient loss see.

Example:
    >>> result = train_sft(policy, task.split("train"), SFTConfig(steps=100), seed=0)
    >>> result.losses[-1][1] < result.losses[0][1]
    True
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rewardgym.envs.tasks.base import ANSWER_MARKER, NOTE_MARKER
from rewardgym.errors import ConfigError

__all__ = [
    "ReplayLoss",
    "SFTConfig",
    "SFTResult",
    "completion_nll",
    "demonstrations",
    "replay_loss",
    "train_sft",
]

Pair = tuple[list[int], list[int]]
# What a flawed demonstration says before its answer, as an instruct model opens with a stock
# phrase: words that carry nothing, so dropping them costs no quality.
STOCK_PREAMBLE = "sure, here is my answer"


@dataclass(frozen=True)
class SFTConfig:
    """Hyper-parameters of supervised training (AdamW, linear warmup then cosine decay).

    Attributes:
        steps: optimizer steps.
        batch_size: sequences per step.
        lr: peak learning rate.
        min_lr_ratio: final learning rate as a share of ``lr``.
        warmup_steps: linear warmup length.
        weight_decay: AdamW weight decay (matrices only; norms and biases are not decayed).
        beta2: AdamW's second-moment decay.
        grad_clip: global gradient-norm clip (0 turns clipping off).
        bucket_batches: batches drawn from one shuffled window sorted by length (cuts padding;
            1 turns bucketing off).
        autocast_bf16: run forward passes under bfloat16 autocast.
        log_every: record the mean loss every this many steps.
        loop_share: share of demonstrations that end in a repetition loop (the answer's last
            word said 1-3 more times), a flaw the supervised model copies and a task reward
            can repair.
        note_share: share of demonstrations that open with a stock phrase (``note: sure, here
            is my answer``) and give the answer after ``answer:``; the gold metric reads only
            the answer, so these are tokens a speed term can save at no cost in quality.

    Example:
        >>> SFTConfig(steps=200, lr=2e-3).warmup_steps
        40
    """

    steps: int = 800
    batch_size: int = 32
    lr: float = 4e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 40
    weight_decay: float = 0.01
    beta2: float = 0.98
    grad_clip: float = 1.0
    bucket_batches: int = 16
    autocast_bf16: bool = False
    log_every: int = 25
    loop_share: float = 0.0
    note_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "bucket_batches", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"SFTConfig.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(
                f"SFTConfig.warmup_steps must be an int >= 0, got {self.warmup_steps!r}"
            )
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ConfigError(f"SFTConfig.lr must be in (0, 1), got {self.lr!r}")
        for name in ("min_lr_ratio", "beta2", "loop_share", "note_share"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ConfigError(f"SFTConfig.{name} must be in [0, 1], got {value!r}")
        for name in ("weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ConfigError(f"SFTConfig.{name} must be >= 0, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (for cache keys and logs)."""
        return asdict(self)


@dataclass
class SFTResult:
    """What :func:`train_sft` did: loss curve ``[(step, mean loss)]``, tokens, wall time."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    completion_tokens: int = 0
    positions: int = 0
    wall_s: float = 0.0


@dataclass
class ReplayLoss:
    """A differentiable supervised loss and the positions its forward pass computed."""

    loss: torch.Tensor
    n_positions: int


def demonstrations(examples: Sequence[Any], config: SFTConfig, seed: int) -> list[Any]:
    """The examples with the flaws ``config`` asks for written into their references (seeded).

    Example:
        >>> demos = demonstrations(train, SFTConfig(note_share=1.0), seed=0)
        >>> demos[0].reference.startswith(NOTE_MARKER)
        True
    """
    if not (config.loop_share or config.note_share):
        return list(examples)
    rng = np.random.default_rng([seed, 1])  # its own stream: batch order stays as it was
    out = []
    for ex in examples:
        text = ex.reference
        if rng.random() < config.loop_share and text.split():
            text = " ".join([text, *[text.split()[-1]] * int(rng.integers(1, 4))])
        if rng.random() < config.note_share:
            text = f"{NOTE_MARKER} {STOCK_PREAMBLE} {ANSWER_MARKER} {text}"
        out.append(dataclasses.replace(ex, reference=text))
    return out


def encode_pairs(policy: Any, examples: Sequence[Any]) -> list[Pair]:
    """Token ids ``(prompt, reference + eos)`` of each example, as the policy formats them.

    Example:
        >>> prompt, completion = encode_pairs(policy, task.split("train")[:1])[0]
        >>> completion[-1] == policy.eos_id
        True
    """
    prompts = policy.encode_prompts([ex.prompt for ex in examples])
    completions = policy.encode_completions([ex.reference for ex in examples])
    return list(zip(prompts, completions, strict=True))


def completion_nll(
    policy: Any, pairs: Sequence[Pair], *, confidence_weighting: bool = False
) -> tuple[torch.Tensor, int, int]:
    """Mean NLL over completion tokens; returns ``(loss, completion tokens, positions computed)``.

    With ``confidence_weighting`` each token's loss is weighted by ``1 - p`` (``p`` the model's
    own probability of the target token, not differentiated), so already-known tokens count less.

    Example:
        >>> loss, n_tokens, n_positions = completion_nll(policy, pairs[:8])
    """
    out = policy.sequence_logprobs([p for p, _ in pairs], [c for _, c in pairs])
    nll = -out.logprobs
    if confidence_weighting:
        nll = nll * (1.0 - out.logprobs.detach().exp())
    n_tokens = int(out.mask.sum().item())
    loss = (nll * out.mask).sum() / max(1, n_tokens)
    return loss, n_tokens, out.n_positions


def _batches(
    lengths: np.ndarray, batch_size: int, bucket_batches: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Endless batches of indices: shuffle, sort windows of ``bucket_batches`` batches by length,
    cut them into batches and shuffle the batches (similar lengths share a batch)."""
    window = batch_size * bucket_batches
    while True:
        order = rng.permutation(len(lengths))
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            cut = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            for pick in rng.permutation(len(cut)):
                yield cut[pick]


def lr_at(step: int, config: SFTConfig) -> float:
    """Learning rate at ``step``: linear warmup, then cosine decay to ``lr * min_lr_ratio``.

    Example:
        >>> lr_at(0, SFTConfig(lr=1e-3, warmup_steps=10))
        0.0001
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, config: SFTConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, config.beta2))


def _progress_bar(total: int, label: str, enabled: bool) -> Any:
    """A tqdm bar over ``total`` optimizer steps with an ETA, drawn on stderr when ``enabled``.

    It redraws at most once a second: steps are short, and a redraw per step would flood a
    log file that captures stderr.

    Example:
        >>> with _progress_bar(100, "warm start tiny (translate)", enabled=False) as bar:
        ...     bar.update(1)
    """
    return tqdm(
        total=total,
        desc=label,
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=1.0,
    )


def _sft_step(
    policy: Any,
    optimizer: torch.optim.Optimizer,
    batch: Sequence[Pair],
    step: int,
    config: SFTConfig,
) -> tuple[float, int, int]:
    """One optimizer step on ``batch``; returns ``(loss, completion tokens, positions)``.

    Example:
        >>> loss, n_tokens, n_positions = _sft_step(policy, optimizer, pairs[:8], 0, config)
    """
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, config)
    with torch.autocast(policy.device.type, torch.bfloat16, enabled=config.autocast_bf16):
        loss, n_tokens, n_positions = completion_nll(policy, batch)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(policy.model.parameters(), config.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach()), n_tokens, n_positions


def train_sft(
    policy: Any,
    examples: Sequence[Any],
    config: SFTConfig | None = None,
    *,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
    progress: bool = False,
    label: str = "supervised training",
) -> SFTResult:
    """Train ``policy.model`` on ``examples`` (loss on completion tokens only).

    Args:
        policy: an :class:`~rewardgym.agents.policy.LMPolicy`.
        examples: objects with ``prompt`` and ``reference`` (task examples).
        config: hyper-parameters; defaults to :class:`SFTConfig()`.
        seed: seeds the batch order.
        callback: called as ``callback(step, mean_loss)`` at every log point.
        progress: draw a progress bar over the steps on stderr (ETA, and the mean loss at
            every log point). Not part of :class:`SFTConfig`: it does not change the weights,
            so it must not change a cache key built from the config.
        label: the progress bar's title.

    Returns:
        An :class:`SFTResult` with the loss curve. The model is left in eval mode.

    Example:
        >>> result = train_sft(policy, task.split("train"), SFTConfig(steps=50), seed=0)
        >>> len(result.losses)
        2
    """
    config = config or SFTConfig()
    if not examples:
        raise ConfigError("train_sft needs at least one example; the split given was empty")
    start = time.perf_counter()
    pairs = encode_pairs(policy, examples)
    lengths = np.array([len(p) + len(c) for p, c in pairs])
    rng = np.random.default_rng(seed)
    batches = _batches(lengths, config.batch_size, config.bucket_batches, rng)
    model = policy.model
    optimizer = make_optimizer(model, config)
    result, running, count = SFTResult(), 0.0, 0
    model.train()
    try:
        with _progress_bar(config.steps, label, progress) as bar:
            for step in range(config.steps):
                batch = [pairs[i] for i in next(batches)]
                loss, n_tokens, n_positions = _sft_step(policy, optimizer, batch, step, config)
                running, count = running + loss, count + 1
                result.completion_tokens += n_tokens
                result.positions += n_positions
                if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                    result.losses.append((step + 1, running / count))
                    # refresh=False: the bar redraws on its own clock, not at every log point
                    bar.set_postfix(loss=f"{running / count:.3f}", refresh=False)
                    if callback is not None:
                        callback(step + 1, running / count)
                    running, count = 0.0, 0
                bar.update(1)
    finally:
        model.eval()
    result.steps = config.steps
    result.wall_s = time.perf_counter() - start
    return result


def replay_loss(
    policy: Any, examples: Sequence[Any], n: int, seed: int, *, confidence_weighting: bool = False
) -> ReplayLoss:
    """Supervised loss on ``n`` warm-start examples drawn (seeded) from ``examples``.

    Used by the trainer's replay mitigation: mixing it into each update keeps the policy close
    to the supervised data (the warm start's tasks' train splits).

    Args:
        policy: the policy being trained.
        examples: the pool to draw from (:class:`~rewardgym.envs.tasks.Example` objects).
        n: examples to draw (with replacement when ``n`` exceeds the pool).
        seed: seeds the draw, so a resumed run replays the same examples.
        confidence_weighting: weight each token's loss by ``1 - p``.

    Example:
        >>> out = replay_loss(policy, make_task("translate").split("train"), n=8, seed=0)
        >>> out.loss.backward()
    """
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"replay_loss needs n >= 1 examples, got {n!r}")
    if not examples:
        raise ConfigError(
            "replay needs examples to draw from; the replay tasks' train splits are empty"
        )
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(examples), size=n, replace=n > len(examples))
    pairs = encode_pairs(policy, [examples[i] for i in picks])
    loss, _, n_positions = completion_nll(policy, pairs, confidence_weighting=confidence_weighting)
    return ReplayLoss(loss, n_positions)
