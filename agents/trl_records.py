"""The pieces of a TRL run's records that need no trainer: a step's training signals and
FLOPs, its samples line, the run's config and the library versions, and the trainer's model seen
as a rewardgym policy. :class:`~rewardgym.agents.trl_recorder.RunRecorder` assembles them.
"""

from __future__ import annotations

import importlib.metadata
import math
from typing import Any

import numpy as np
import torch

from rewardgym.agents.algorithms import component_shares
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.meters.batch_signals import pearson
from rewardgym.agents.meters.compute import FlopCounter
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.trl_rewards import ScoredBatch
from rewardgym.errors import ConfigError, UnknownNameError

LIBRARIES = ("trl", "transformers", "torch", "accelerate", "peft", "datasets")


def step_signals(
    logs: dict, batch: ScoredBatch, group: int, weights: dict[str, float], noise
) -> dict[str, Any]:
    """The step's training signals in rewardgym's names: TRL's loss, gradient norm, entropy (in
    bits) and clip ratio; from the batch, the zero-advantage share, the reward-length
    correlation and each component's part in the advantage; gradient noise when measured."""
    totals = batch.total.reshape(-1, group)
    out = {
        "loss": logs.get("loss"),
        "grad_norm": logs.get("grad_norm"),
        "entropy_bits": logs["entropy"] / math.log(2) if "entropy" in logs else None,
        "ppo/clip_fraction": logs.get("clip_ratio/region_mean", 0.0),
        "zero_advantage/share": float(np.mean(totals.std(axis=1) == 0)),
        "reward/length_corr": pearson(batch.total, batch.n_tokens),
    }
    if "kl" in logs:
        out["kl"] = logs["kl"]
    if group > 1:
        shares = component_shares(batch.components, weights, batch.total, group)
        for name in weights:
            part = shares.get(name)
            out[f"advantage/{name}/mean_abs"] = (
                float(np.abs(part).mean()) if part is not None else 0.0
            )
    if noise is not None:
        out.update(noise.finish().as_dict(prefix="grad/"))
    return out


def count_step_flops(
    flops: FlopCounter, batch: ScoredBatch, prompt_tokens, group: int, beta: float
) -> None:
    """FLOPs from the batch's token counts under TRL's padding: ``generate`` pads every row
    to the batch's longest prompt and runs it to the longest completion, and the loss pass
    sees that padded batch (6N per position; 2N more per position for the reference)."""
    prompts = np.asarray(prompt_tokens)
    new = np.asarray(batch.n_tokens)
    rows, p_max, c_max = len(new), int(prompts.max()), int(new.max())
    flops.add_forward("generation_prompt", rows * p_max)
    flops.add_forward("generation_new", rows * c_max)
    padding = int((p_max - prompts).sum() + (c_max - new).sum())
    flops.add_wasted("padding", flops.flops_for(padding, "forward"))
    positions = rows * (p_max + c_max)
    flops.add_train("train", positions)
    flops.add_wasted("padding", flops.flops_for(padding, "train"))
    if beta > 0:
        flops.add_forward("reference", positions)
    zero = np.repeat(batch.total.reshape(-1, group).std(axis=1) == 0, group)
    if zero.any():
        tokens = int((prompts + new)[zero].sum())
        flops.add_wasted("zero_advantage", flops.flops_for(tokens, "train"))


_CORE = ("task", "model", "reward", "out", "backend")
_SIZES = ("prompts_per_update", "group_size", "micro_batches")


def fitting_config(options: dict[str, Any]) -> tuple[TrainConfig, list[str]]:
    """A TrainConfig of ``options`` and the names of those it cannot hold, left at their
    defaults (fewer than 4 micro-batches, a loss type of TRL's own...): run.json keeps TRL's
    real settings, and names the ones config.json could not."""
    defaults = TrainConfig().to_dict()
    kept = {k: v for k, v in options.items() if k in _CORE or _holds(defaults, k, v)}
    try:
        config = TrainConfig.from_dict({**defaults, **kept})
    except (
        ConfigError,
        UnknownNameError,
    ):  # sizes that are fine alone but do not split into micro-batches
        kept = {k: v for k, v in kept.items() if k not in _SIZES}
        config = TrainConfig.from_dict({**defaults, **kept})
    return config, sorted(k for k in options if k not in kept)


def _holds(defaults: dict[str, Any], key: str, value: Any) -> bool:
    try:
        TrainConfig.from_dict({**defaults, key: value})
    except (ConfigError, UnknownNameError):
        return False
    return True


def merged_batches(batches: list[ScoredBatch]) -> ScoredBatch:
    """The batches TRL scored for one step as one (usually there is exactly one)."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    merged = object.__new__(ScoredBatch)
    merged.step = first.step
    merged.index = [i for b in batches for i in b.index]
    merged.completions = [c for b in batches for c in b.completions]
    merged.n_tokens = [n for b in batches for n in b.n_tokens]
    merged.finished = [f for b in batches for f in b.finished]
    merged.total = np.concatenate([b.total for b in batches])
    merged.components = {
        k: np.concatenate([b.components[k] for b in batches]) for k in first.components
    }
    return merged


def samples_line(update: int, group_size: int, batch: ScoredBatch) -> dict[str, Any]:
    """The step's batch as one line of samples.jsonl, as rewardgym's trainer writes it."""
    return {
        "update": update,
        "group_size": group_size,
        "index": batch.index,
        "completion": batch.completions,
        "n_tokens": batch.n_tokens,
        "finished": batch.finished,
        "reward": [float(r) for r in batch.total],
        "components": {k: [float(v) for v in vals] for k, vals in batch.components.items()},
    }


def unwrapped(model: Any) -> Any:
    """The model under accelerate's and DDP's wrappers (``module``), as checkpoints hold it."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def policy_view(policy: LMPolicy, model: torch.nn.Module) -> LMPolicy:
    """The trainer's own model behind ``policy``'s prompt format (no copy, same device)."""
    parameter = next(model.parameters())
    return LMPolicy(
        model, policy.tokenizer, name=policy.name, device=parameter.device,
        dtype=parameter.dtype, chat=policy.chat, add_bos=policy.add_bos,
        completion_prefix=policy.completion_prefix, info=policy.info,
    )  # fmt: skip


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def jsonable_options(args) -> dict[str, Any]:
    """TRL's GRPOConfig as plain JSON (tokens and objects as text)."""
    plain = (str, int, float, bool, type(None))
    out = {}
    for key, value in args.to_dict().items():
        if key.endswith("_token") or key in {"hub_token"}:
            continue
        out[key] = value if isinstance(value, plain) else str(value)
    return out
