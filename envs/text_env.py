"""Sequence-level text-task environment: the prompt is the observation, a completion the action.

Registered as ``rewardgym/<Task>-v0``. One step scores one completion with the env's reward.
With ``max_turns > 1`` the agent may revise: the observation becomes the conversation so far
plus the env's feedback (the current score), and the reward of each step is the change in score,
so an episode's return equals the score of its last completion (speed terms see the turn count).
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np

from rewardgym.envs.noise import NOISE_TYPES, noisy_example
from rewardgym.envs.scoring import component_info, resolve_reward, resolve_task, score_completions
from rewardgym.envs.spaces import (
    EPISODE_ENDED,
    parse_action,
    positive_int,
    sanitize,
    text_charset,
    text_space,
)
from rewardgym.envs.tasks import Example, Task
from rewardgym.errors import ConfigError, EnvInputError, UnknownNameError

FEEDBACK_TEMPLATE = "\n[turn {turn}] {completion}\n[score {score:.3f}] revise or stop\n"


class TextTaskEnv(gym.Env[str, Any]):
    """A Gymnasium environment over one split of a text task.

    Args:
        task: a registered task name or a :class:`Task`.
        reward: any reward spec ``make_reward`` accepts ("balanced", "speed_only", a composite
            dict, a ``"module:function"`` string, a ``Reward``).
        split: which split episodes draw from.
        max_turns: completions the agent may submit per episode (1 = single shot).
        max_completion_chars: longest completion accepted; longer actions raise ``EnvInputError``.
        noise: a noise type from ``envs.noise.NOISE_TYPES`` applied to prompts, or None.
        noise_severity: share of characters or words the noise touches, in [0, 1].
        task_seed: seed of the generated task (not of the episode sampling; see ``reset``).
        task_kwargs, reward_kwargs: passed to ``make_task`` / ``make_reward``.

    Example:
        >>> import gymnasium, rewardgym
        >>> env = gymnasium.make("rewardgym/Translate-v0", reward="balanced")
        >>> prompt, info = env.reset(seed=0)
        >>> _, reward, terminated, _, info = env.step("some completion")
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        task: str | Task = "translate",
        reward: Any = "balanced",
        *,
        split: str = "train",
        max_turns: int = 1,
        max_completion_chars: int | None = None,
        noise: str | None = None,
        noise_severity: float = 0.0,
        task_seed: int = 0,
        task_kwargs: dict | None = None,
        reward_kwargs: dict | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.task = resolve_task(task, task_seed, task_kwargs)
        self.reward = resolve_reward(reward, reward_kwargs, self.task)
        self.examples = self.task.split(split)
        self.split = split
        self.max_turns = positive_int(max_turns, "max_turns")
        self.max_completion_chars = max_completion_chars or 4 * self.task.max_reference_chars + 64
        self.max_completion_chars = positive_int(self.max_completion_chars, "max_completion_chars")
        self.noise, self.noise_severity = _check_noise(noise, noise_severity)
        if render_mode not in (None, "ansi"):
            raise UnknownNameError("render mode", render_mode, ["ansi"])
        self.render_mode = render_mode

        charset = text_charset(self.task.charset)
        self._charset = frozenset(charset)
        feedback_chars = len(FEEDBACK_TEMPLATE) + 16
        obs_len = self.task.max_prompt_chars + self.max_turns * (
            self.max_completion_chars + feedback_chars
        )
        self.observation_space = text_space(obs_len, charset)
        self.action_space = text_space(self.max_completion_chars, charset)

        self._example: Example | None = None
        self._index = -1
        self._turn = 0
        self._last_total = 0.0
        self._transcript = ""
        self._ended = False

    # -- Gymnasium API ---------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode on a random example of the split, or ``options["index"]``."""
        super().reset(seed=seed)
        options = options or {}
        index = options.get("index")
        if index is None:
            index = int(self.np_random.integers(len(self.examples)))
        elif not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.examples):
            raise EnvInputError(
                f"options['index'] must be an int in [0, {len(self.examples)}), got {index!r}"
            )
        self._index = int(index)
        self._example = self._noisy(self.examples[self._index])
        self._turn = 0
        self._last_total = 0.0
        self._ended = False
        self._transcript = sanitize(self._example.prompt, self._charset)
        return self._transcript, {"index": self._index, "turn": 0}

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Score one completion; end the episode unless the agent may still revise."""
        if self._example is None:
            raise EnvInputError("call reset() before step()")
        if self._ended:
            raise EnvInputError(EPISODE_ENDED)
        parsed = parse_action(action, self.max_completion_chars)
        self._turn += 1
        output = score_completions(
            self.reward,
            self.task,
            [self._example],
            [self._example.prompt],
            [parsed],
            turns=[self._turn],
        )
        total = float(output.total[0])
        reward, self._last_total = total - self._last_total, total
        terminated = parsed.stop or self._turn >= self.max_turns
        self._ended = terminated
        if not terminated:
            self._transcript += FEEDBACK_TEMPLATE.format(
                turn=self._turn, completion=sanitize(parsed.text, self._charset), score=total
            )
        info = self._step_info(parsed, total, output, bool(output.applies[0]))
        return self._transcript, reward, terminated, False, info

    def render(self) -> str | None:
        """The conversation so far, as text (``render_mode="ansi"``)."""
        return self._transcript if self.render_mode == "ansi" else None

    # -- helpers ---------------------------------------------------------------------------

    def _noisy(self, example: Example) -> Example:
        if self.noise is None or self.noise_severity == 0.0:
            return example
        # seeded by the example's index so the same prompt always gets the same noise
        return noisy_example(example, self.noise, self.noise_severity, seed=self._index)

    def _step_info(self, action, total: float, output, applies: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "index": self._index,
            "turn": self._turn,
            "reference": self._example.reference,
            # a deep copy: meta nests lists and dicts (a reasoning-gym entry), and the info of
            # each step must be the caller's to keep or change
            "meta": copy.deepcopy(self._example.meta),
            "reward_total": total,
            "reward_applies": applies,
            **component_info(output, 0),
        }
        for key in ("n_tokens", "finished", "latency_s"):
            value = getattr(action, key)
            if value is not None:
                info[key] = value
        return info


def _check_noise(noise: str | None, severity: float) -> tuple[str | None, float]:
    if noise is not None and noise not in NOISE_TYPES:
        raise UnknownNameError("noise type", noise, NOISE_TYPES)
    if not isinstance(severity, (int, float)) or not 0.0 <= severity <= 1.0:
        raise ConfigError(f"noise_severity must be in [0, 1], got {severity!r}")
    return noise, float(severity)
