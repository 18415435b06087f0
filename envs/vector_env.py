"""A batched text-task environment that scores a whole batch with one reward call.

Rewards such as the semantic one run a neural model: one batched call is far cheaper than
``num_envs`` single calls, so this is a native ``gymnasium.vector.VectorEnv``, not a wrapper of
copies. Episodes are single-turn; every step terminates every sub-environment and, in
Gymnasium's same-step autoreset mode, returns the prompts of the next batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rewardgym.envs.scoring import (
    batch_component_info,
    resolve_reward,
    resolve_task,
    score_completions,
)
from rewardgym.envs.spaces import parse_action, positive_int, sanitize, text_charset, text_space
from rewardgym.envs.tasks import Example, Task
from rewardgym.errors import ConfigError, EnvInputError


class TextTaskVectorEnv(VectorEnv):
    """``num_envs = n_prompts × group_size`` copies of a single-turn text task.

    With ``group_size = G`` each distinct prompt appears G times in a row, which is what GRPO's
    group-normalised advantages need.

    Example:
        >>> env = TextTaskVectorEnv("translate", "balanced", n_prompts=4, group_size=2)
        >>> prompts, infos = env.reset(seed=0)
        >>> _, rewards, terminated, truncated, infos = env.step(["a guess"] * env.num_envs)
        >>> rewards.shape
        (8,)
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        task: str | Task = "translate",
        reward: Any = "balanced",
        *,
        n_prompts: int = 8,
        group_size: int = 1,
        split: str = "train",
        max_completion_chars: int | None = None,
        task_seed: int = 0,
        task_kwargs: dict | None = None,
        reward_kwargs: dict | None = None,
    ) -> None:
        positive_int(n_prompts, "n_prompts")
        positive_int(group_size, "group_size")
        self.task = resolve_task(task, task_seed, task_kwargs)
        self.reward = resolve_reward(reward, reward_kwargs, self.task)
        self.examples = self.task.split(split)
        if n_prompts > len(self.examples):
            raise ConfigError(
                f"n_prompts={n_prompts} exceeds the {len(self.examples)} examples of split "
                f"{split!r}; lower n_prompts"
            )
        self.n_prompts, self.group_size = n_prompts, group_size
        self.num_envs = n_prompts * group_size
        self.max_completion_chars = max_completion_chars or 4 * self.task.max_reference_chars + 64

        charset = text_charset(self.task.charset)
        self._charset = frozenset(charset)
        self.single_observation_space = text_space(self.task.max_prompt_chars, charset)
        self.single_action_space = text_space(self.max_completion_chars, charset)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self._rng = np.random.default_rng()
        self._indices = np.zeros(self.num_envs, dtype=np.int64)

    @property
    def batch(self) -> list[Example]:
        """The examples behind the current observations, one per sub-environment."""
        return [self.examples[i] for i in self._indices]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Draw a batch of prompts, or take ``options["indices"]`` (``n_prompts`` of them)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        indices = (options or {}).get("indices")
        self._draw(indices)
        return self._observations(), {"index": self._indices.copy()}

    def step(
        self, actions: Sequence[Any]
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Score ``actions`` (one completion per sub-environment) and draw the next batch."""
        if isinstance(actions, (str, bytes)) or len(actions) != self.num_envs:
            raise EnvInputError(
                f"step() takes one action per sub-environment ({self.num_envs}), got "
                f"{actions!r:.80}"
            )
        parsed = [parse_action(a, self.max_completion_chars) for a in actions]
        scored = self.batch
        output = score_completions(
            self.reward, self.task, scored, [ex.prompt for ex in scored], parsed
        )
        infos: dict[str, Any] = {
            "index": self._indices.copy(),
            "reference": np.array([ex.reference for ex in scored], dtype=object),
            "reward_applies": output.applies.copy(),
            **batch_component_info(output),
        }
        for key in ("n_tokens", "finished", "latency_s"):
            values = [getattr(a, key) for a in parsed]
            if all(v is not None for v in values):
                infos[key] = np.asarray(values)
        self._draw(None)
        done = np.ones(self.num_envs, dtype=bool)
        return self._observations(), output.total.astype(np.float64), done, ~done, infos

    def _draw(self, indices: Sequence[int] | None) -> None:
        if indices is None:
            chosen = self._rng.choice(len(self.examples), size=self.n_prompts, replace=False)
        else:
            chosen = np.asarray(indices, dtype=np.int64)
            if chosen.shape != (self.n_prompts,) or chosen.min() < 0:
                raise EnvInputError(
                    f"options['indices'] must hold {self.n_prompts} example indices, got "
                    f"{list(indices)!r:.80}"
                )
            if chosen.max() >= len(self.examples):
                raise EnvInputError(
                    f"options['indices'] has {int(chosen.max())}, past the last example "
                    f"({len(self.examples) - 1})"
                )
        self._indices = np.repeat(chosen, self.group_size)

    def _observations(self) -> tuple[str, ...]:
        return tuple(sanitize(ex.prompt, self._charset) for ex in self.batch)
