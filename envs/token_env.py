"""Token-level text-task environment, for stable-baselines3.

SB3 cannot take ``Text`` spaces, so here the observation is a ``Dict`` of token ids and an
attention mask (prompt plus the tokens generated so far, right-padded) and each action is one
token, ``Discrete(vocab_size)``. The episode ends at end-of-sequence (terminated) or at the token
limit (truncated); the reward of the decoded completion is paid at the end, plus an optional
per-token ``step_cost``.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rewardgym.envs.scoring import component_info, resolve_reward, resolve_task, score_completions
from rewardgym.envs.spaces import EPISODE_ENDED, Action, positive_int
from rewardgym.envs.tasks import Example, Task
from rewardgym.errors import ConfigError, EnvInputError


class TokenizerLike(Protocol):
    """What the environment needs of a tokenizer."""

    vocab_size: int
    eos_token_id: int
    pad_token_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens (0–255) plus end-of-sequence (256) and padding (257).

    The default tokenizer: it needs no training and covers any text.

    Example:
        >>> tok = ByteTokenizer()
        >>> tok.decode(tok.encode("hé"))
        'hé'
    """

    vocab_size = 258
    eos_token_id = 256
    pad_token_id = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class HFTokenizerAdapter:
    """Wraps a transformers tokenizer in the :class:`TokenizerLike` shape."""

    def __init__(self, tokenizer: Any) -> None:
        if tokenizer.eos_token_id is None:
            raise ConfigError(
                f"tokenizer {type(tokenizer).__name__} has no eos token; set tokenizer.eos_token"
            )
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self.eos_token_id = int(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else tokenizer.eos_token_id)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def as_tokenizer(tokenizer: Any) -> TokenizerLike:
    """The byte tokenizer for None, an adapter for a transformers tokenizer, else as given."""
    if tokenizer is None:
        return ByteTokenizer()
    if hasattr(tokenizer, "convert_tokens_to_ids"):  # a transformers tokenizer
        return HFTokenizerAdapter(tokenizer)
    return tokenizer


class TokenTaskEnv(gym.Env[dict, int]):
    """One completion generated token by token.

    Args:
        task, reward, split, task_seed, task_kwargs, reward_kwargs: as for ``TextTaskEnv``.
        tokenizer: None (byte-level), a transformers tokenizer, or a :class:`TokenizerLike`.
        max_prompt_tokens: prompts longer than this keep their last tokens. Default: the
            longest prompt of the split.
        max_new_tokens: the token limit of a completion.
        step_cost: reward subtracted for every generated token (a speed pressure per step).

    Example:
        >>> import gymnasium, rewardgym
        >>> env = gymnasium.make("rewardgym/Arithmetic-Token-v0", reward="task_only")
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.eos_token_id)
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        task: str | Task = "translate",
        reward: Any = "balanced",
        *,
        tokenizer: Any = None,
        split: str = "train",
        max_prompt_tokens: int | None = None,
        max_new_tokens: int = 32,
        step_cost: float = 0.0,
        task_seed: int = 0,
        task_kwargs: dict | None = None,
        reward_kwargs: dict | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.task = resolve_task(task, task_seed, task_kwargs)
        self.reward = resolve_reward(reward, reward_kwargs, self.task)
        self.examples = self.task.split(split)
        self.tokenizer = as_tokenizer(tokenizer)
        self.eos_token_id = self.tokenizer.eos_token_id
        self.max_new_tokens = positive_int(max_new_tokens, "max_new_tokens")
        if max_prompt_tokens is None:
            max_prompt_tokens = max(len(self.tokenizer.encode(ex.prompt)) for ex in self.examples)
        self.max_prompt_tokens = positive_int(max_prompt_tokens, "max_prompt_tokens")
        if not isinstance(step_cost, (int, float)) or not 0.0 <= step_cost < float("inf"):
            raise ConfigError(f"step_cost must be a finite number >= 0, got {step_cost!r}")
        self.step_cost = float(step_cost)
        self.render_mode = render_mode

        length = self.max_prompt_tokens + self.max_new_tokens
        vocab = self.tokenizer.vocab_size
        self.observation_space = spaces.Dict(
            {
                "input_ids": spaces.Box(0, vocab - 1, shape=(length,), dtype=np.int64),
                "attention_mask": spaces.Box(0, 1, shape=(length,), dtype=np.int8),
            }
        )
        self.action_space = spaces.Discrete(vocab)

        self._example: Example | None = None
        self._index = -1
        self._prompt_ids: list[int] = []
        self._new_ids: list[int] = []
        self._ended = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode on a random example, or ``options["index"]``."""
        super().reset(seed=seed)
        index = (options or {}).get("index")
        if index is None:
            index = int(self.np_random.integers(len(self.examples)))
        elif not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.examples):
            raise EnvInputError(
                f"options['index'] must be an int in [0, {len(self.examples)}), got {index!r}"
            )
        self._index = int(index)
        self._example = self.examples[self._index]
        self._prompt_ids = self.tokenizer.encode(self._example.prompt)[-self.max_prompt_tokens :]
        self._new_ids = []
        self._ended = False
        return self._observation(), {"index": self._index}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        """Append one token; at end-of-sequence or the limit, score the completion."""
        if self._example is None:
            raise EnvInputError("call reset() before step()")
        if self._ended:
            raise EnvInputError(EPISODE_ENDED)
        token = _token(action, self.action_space.n)
        self._new_ids.append(token)
        finished = token == self.eos_token_id
        truncated = not finished and len(self._new_ids) >= self.max_new_tokens
        reward, info = -self.step_cost, {"index": self._index}
        if finished or truncated:
            total, info = self._score(finished)
            reward += total
            self._ended = True
        return self._observation(), reward, finished, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._example is None:
            return None
        return self._example.prompt + self.tokenizer.decode(self._completion_ids())

    def _completion_ids(self) -> list[int]:
        return [i for i in self._new_ids if i != self.eos_token_id]

    def _score(self, finished: bool) -> tuple[float, dict[str, Any]]:
        ids = self._completion_ids()
        text = self.tokenizer.decode(ids)
        action = Action(
            text=text, n_tokens=len(self._new_ids), finished=finished, completion_ids=tuple(ids)
        )
        output = score_completions(
            self.reward, self.task, [self._example], [self._example.prompt], [action]
        )
        total = float(output.total[0])
        info = {
            "index": self._index,
            "completion": text,
            "reference": self._example.reference,
            "reward_total": total,
            "n_tokens": len(self._new_ids),
            "finished": finished,
            **component_info(output, 0),
        }
        return total, info

    def _observation(self) -> dict[str, np.ndarray]:
        ids = self._prompt_ids + self._new_ids
        length = self.observation_space["input_ids"].shape[0]
        input_ids = np.full(length, self.tokenizer.pad_token_id, dtype=np.int64)
        input_ids[: len(ids)] = ids
        mask = np.zeros(length, dtype=np.int8)
        mask[: len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


def _token(action: Any, vocab: int) -> int:
    if isinstance(action, np.ndarray) and action.shape == ():
        action = action.item()
    if isinstance(action, bool) or not isinstance(action, (int, np.integer)):
        raise EnvInputError(f"action must be a token id (int), got {action!r:.80}")
    if not 0 <= int(action) < vocab:
        raise EnvInputError(f"action {int(action)} is outside the vocabulary [0, {vocab})")
    return int(action)
