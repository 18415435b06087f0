"""Rollouts: the policy answers a batch of prompts and the task's vector env scores the answers.

Going through the env means the training reward is exactly what ``env.step`` reports. Each
update draws its batch and its sampling noise from seeds derived from ``(seed, update)``, so a
resumed run replays the same batches as an uninterrupted one without saving any RNG stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardgym.agents.meters.compute import FlopCounter
from rewardgym.envs.tasks import Example
from rewardgym.envs.vector_env import TextTaskVectorEnv


@dataclass
class Rollout:
    """One update's samples: what was asked, what the policy said, what the env paid."""

    examples: list[Example]
    prompts: list[str]
    generation: object  # agents.policy.Generation
    rewards: np.ndarray
    components: dict[str, np.ndarray]
    weights: dict[str, float]  # each component's weight at this update
    indices: np.ndarray  # each sample's example index in the task's train split

    @property
    def n_tokens(self) -> np.ndarray:
        return np.asarray(self.generation.n_tokens)

    def samples_record(self, update: int, group_size: int) -> dict[str, Any]:
        """This batch as one line of ``samples.jsonl``: enough to score it again under another
        reward with no model (``rewardgym replay``). Samples of a group are adjacent."""
        gen = self.generation
        return {
            "update": update,
            "group_size": group_size,
            "index": [int(i) for i in self.indices],
            "completion": list(gen.completions),
            "n_tokens": [int(n) for n in gen.n_tokens],
            "finished": [bool(f) for f in gen.finished],
            "reward": [float(r) for r in self.rewards],
            "components": {k: [float(v) for v in vals] for k, vals in self.components.items()},
        }

    def metrics(self) -> dict[str, float]:
        """Reward, component and completion statistics of this batch, for metrics.jsonl."""
        gen = self.generation
        entropy = [e for e in gen.entropy_bits if len(e)]
        out = batch_metrics(
            self.rewards, self.components, self.weights, self.n_tokens, gen.completions,
            gen.finished,
        )  # fmt: skip
        out["entropy_bits"] = float(np.concatenate(entropy).mean()) if entropy else 0.0
        out["generation_s"] = float(gen.wall_s)
        return out


def batch_metrics(
    rewards: np.ndarray,
    components: dict[str, np.ndarray],
    weights: dict[str, float],
    n_tokens,
    completions,
    finished,
) -> dict[str, float]:
    """Reward, component and completion statistics of one training batch, whichever trainer
    sampled it: each component's mean, std, weight and what it added to ``reward/mean``."""
    n_tokens = np.asarray(n_tokens)
    out = {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()),
        "tokens_generated": int(n_tokens.sum()),
        "completion_length/mean": float(n_tokens.mean()),
        "completion_chars/mean": float(np.mean([len(c) for c in completions])),
        "finished/share": float(np.mean(finished)),
    }
    for name, values in components.items():
        finite = values[np.isfinite(values)]
        if finite.size:
            out[f"reward/{name}/mean"] = float(finite.mean())
            out[f"reward/{name}/std"] = float(finite.std())
        if name in weights:
            weight = weights[name]
            out[f"reward/{name}/weight"] = weight
            # what it added to reward/mean: a component that does not apply adds 0
            paid = np.nan_to_num(weight * values, nan=0.0) if weight else np.zeros_like(values)
            out[f"reward/{name}/contribution"] = float(paid.mean())
    return out


def update_seed(seed: int, update: int) -> int:
    """The seed of one update's batch and sampling, a pure function of (run seed, update)."""
    return int(np.random.SeedSequence([seed, update]).generate_state(1)[0])


def collect_rollout(
    policy,
    env: TextTaskVectorEnv,
    *,
    update: int,
    seed: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    token_budget: int | None,
    flops: FlopCounter | None = None,
) -> Rollout:
    """Sample completions for one batch of prompts and score them through ``env``."""
    batch_seed = update_seed(seed, update)
    prompts, drawn = env.reset(seed=batch_seed)
    examples = env.batch
    gen = policy.generate(
        list(prompts),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=batch_seed,
        token_budget=token_budget,
    )
    per_sample_s = gen.wall_s / max(1, len(prompts))
    actions = [
        {
            "text": text[: env.max_completion_chars],
            "n_tokens": n,
            "finished": bool(done),
            "latency_s": per_sample_s,
            "completion_ids": ids,
        }
        for text, n, done, ids in zip(gen.completions, gen.n_tokens, gen.finished, gen.token_ids)
    ]
    _, rewards, _, _, infos = env.step(actions)
    components = {k[len("reward/") :]: v for k, v in infos.items() if k.startswith("reward/")}
    if flops is not None:
        count_generation_flops(flops, gen)
    rewards = np.asarray(rewards, dtype=np.float64)
    weights = dict(env.reward.weights)
    indices = np.asarray(drawn["index"])
    return Rollout(examples, list(prompts), gen, rewards, components, weights, indices)


def count_generation_flops(flops: FlopCounter, gen) -> None:
    """2N per position the model computed; positions that only carried padding are also waste.

    The counts come from the decode loop (``gen.positions``): prompts left-padded to the longest
    (a prefix the whole batch shares is computed once), then one position per decode step for
    every row still in the batch (finished rows leave it at once on the fast path; the generic
    path keeps them, fed padding).
    """
    positions = gen.positions
    flops.add_forward("generation_prompt", positions["prompt"])
    flops.add_forward("generation_new", positions["new"])
    padded = positions["prompt_padding"] + positions["new_padding"]
    if padded:
        flops.add_wasted("padding", flops.flops_for(padded, "forward"))
