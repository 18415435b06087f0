"""Seeded, deterministic noise for prompts (the robustness evaluation).

Four kinds, each touching ``k`` units of the text, where ``n`` is the number of units the kind
can touch and ``k = min(n, max(1, floor(severity * n + 0.5)))`` for ``severity > 0`` (round half
up, at least one), and ``k = 0`` for ``severity == 0``:

- ``char_drop``: deletes ``k`` of the ``n`` non-whitespace characters.
- ``char_swap``: swaps ``k`` of the ``n`` adjacent pairs of non-whitespace characters (applied
  left to right), so the characters and the whitespace positions are kept.
- ``keyboard_typo``: replaces ``k`` of the ``n`` ASCII letters with a QWERTY neighbour of the
  same case.
- ``word_drop``: deletes ``k`` of the ``n`` whitespace-separated words, but never the last one
  (``k <= n - 1``); the remaining words are joined by single spaces.

The random generator is ``numpy.random.default_rng([seed, zlib.crc32(text)])``, so the same
``(text, kind, severity, seed)`` always gives the same output, and different texts get
independent noise.

Example:
    >>> apply_noise("the red dog", "char_drop", 0.2, seed=0)
    'the rd dg'
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from rewardgym.envs.tasks.base import Example
from rewardgym.errors import ConfigError, UnknownNameError

NOISE_TYPES = ("char_swap", "char_drop", "keyboard_typo", "word_drop")

_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _qwerty_neighbours() -> dict[str, str]:
    """Letters next to each letter on a QWERTY keyboard (same row and the rows above/below)."""
    position = {ch: (r, c) for r, row in enumerate(_QWERTY_ROWS) for c, ch in enumerate(row)}
    neighbours = {}
    for ch, (r, c) in position.items():
        near = [
            other
            for other, (r2, c2) in position.items()
            if other != ch and abs(r2 - r) <= 1 and abs(c2 - c) <= 1
        ]
        neighbours[ch] = "".join(sorted(near))
    return neighbours


QWERTY_NEIGHBOURS = _qwerty_neighbours()


def n_touched(severity: float, n: int) -> int:
    """How many of ``n`` units a noise of ``severity`` touches (round half up, at least one).

    Example:
        >>> n_touched(0.1, 25), n_touched(0.01, 5), n_touched(0.0, 5)
        (3, 1, 0)
    """
    if severity <= 0 or n <= 0:
        return 0
    return min(n, max(1, math.floor(severity * n + 0.5)))


def apply_noise(text: str, kind: str, severity: float, seed: int = 0) -> str:
    """Return ``text`` with noise of ``kind`` touching a ``severity`` share of it.

    Args:
        text: any string (empty, unicode and whitespace-only texts are fine).
        kind: one of :data:`NOISE_TYPES`.
        severity: share of characters (words for ``word_drop``) touched, in [0, 1]; 0 returns
            ``text`` unchanged.
        seed: a non-negative int; with ``text`` it seeds the random generator.

    Raises:
        UnknownNameError: ``kind`` is not a noise type (with a "did you mean").
        ConfigError: ``severity`` outside [0, 1] or NaN, a bad seed, or text not a str.

    Example:
        >>> apply_noise("hello world", "keyboard_typo", 0.1, seed=1)
        'hello qorld'
    """
    noise = _check(text, kind, severity, seed)
    if severity == 0:
        return text
    rng = np.random.default_rng([seed, zlib.crc32(text.encode("utf-8", "surrogatepass"))])
    return noise(text, float(severity), rng)


def _check(
    text: object, kind: object, severity: object, seed: object
) -> Callable[[str, float, np.random.Generator], str]:
    if kind not in _NOISES:
        raise UnknownNameError("noise type", kind, NOISE_TYPES)
    if not isinstance(text, str):
        raise ConfigError(f"noise text must be a str, got {type(text).__name__}: {text!r}")
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, float, np.floating, np.integer))
        or not 0 <= severity <= 1  # also False for NaN
    ):
        raise ConfigError(f"noise severity must be a number in [0, 1], got {severity!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"noise seed must be a non-negative int, got {seed!r}")
    return _NOISES[kind]


def _pick(rng: np.random.Generator, candidates: list[int], severity: float) -> list[int]:
    """``n_touched`` distinct candidates, sorted."""
    k = n_touched(severity, len(candidates))
    if k == 0:
        return []
    chosen = rng.choice(len(candidates), size=k, replace=False)
    return sorted(candidates[i] for i in chosen)


def _char_drop(text: str, severity: float, rng: np.random.Generator) -> str:
    candidates = [i for i, ch in enumerate(text) if not ch.isspace()]
    dropped = set(_pick(rng, candidates, severity))
    return "".join(ch for i, ch in enumerate(text) if i not in dropped)


def _char_swap(text: str, severity: float, rng: np.random.Generator) -> str:
    chars = list(text)
    pairs = [i for i in range(len(chars) - 1) if not (chars[i].isspace() or chars[i + 1].isspace())]
    for i in _pick(rng, pairs, severity):
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def _keyboard_typo(text: str, severity: float, rng: np.random.Generator) -> str:
    chars = list(text)
    letters = [i for i, ch in enumerate(chars) if ch.lower() in QWERTY_NEIGHBOURS]
    for i in _pick(rng, letters, severity):
        original = chars[i]
        near = QWERTY_NEIGHBOURS[original.lower()]
        typo = near[int(rng.integers(len(near)))]
        chars[i] = typo.upper() if original.isupper() else typo
    return "".join(chars)


def _word_drop(text: str, severity: float, rng: np.random.Generator) -> str:
    words = text.split()
    if len(words) < 2:
        return text  # dropping the only word would leave nothing to read
    k = min(n_touched(severity, len(words)), len(words) - 1)
    dropped = set(rng.choice(len(words), size=k, replace=False).tolist())
    return " ".join(word for i, word in enumerate(words) if i not in dropped)


_NOISES: dict[str, Callable[[str, float, np.random.Generator], str]] = {
    "char_swap": _char_swap,
    "char_drop": _char_drop,
    "keyboard_typo": _keyboard_typo,
    "word_drop": _word_drop,
}


def noisy_example(example: Example, kind: str, severity: float, seed: int = 0) -> Example:
    """A copy of ``example`` with a noisy prompt; the reference is untouched.

    When ``meta["input"]`` is a non-empty string found in the prompt, only that part is noised
    (its last occurrence, so a task prefix such as ``"translate: "`` stays readable) and
    ``meta["input"]`` becomes the noisy input; otherwise the whole prompt is noised.
    ``meta["noise"]`` records kind, severity, seed and the clean prompt.

    Example:
        >>> ex = Example("solve: 2 plus 3 =>", "5", {"input": "2 plus 3"})
        >>> noisy_example(ex, "word_drop", 0.3, seed=0).prompt
        'solve: 2 3 =>'
    """
    _check(example.prompt, kind, severity, seed)
    if severity == 0:
        return example
    meta = dict(example.meta)
    content = meta.get("input")
    start = example.prompt.rfind(content) if isinstance(content, str) and content else -1
    if start < 0:
        prompt = apply_noise(example.prompt, kind, severity, seed)
    else:
        noisy = apply_noise(content, kind, severity, seed)
        prompt = example.prompt[:start] + noisy + example.prompt[start + len(content) :]
        meta["input"] = noisy
    meta["noise"] = {
        "kind": kind,
        "severity": float(severity),
        "seed": int(seed),
        "clean_prompt": example.prompt,
    }
    return dataclasses.replace(example, prompt=prompt, meta=meta)


class NoisyPrompts(gym.ObservationWrapper):
    """Noise the prompt a sequence-level environment shows its agent; rewards are unchanged.

    Wraps a ``TextTaskEnv`` (multi-turn included: only the prompt part of the conversation is
    noised; as in ``noisy_example``, only the task's content, not its instruction). Each
    episode's noise is seeded by ``seed`` and the example index, so the same prompt always gets
    the same noise.

    Example:
        >>> import gymnasium, rewardgym
        >>> base = gymnasium.make("rewardgym/Translate-v0", reward="task_only")
        >>> noisy_prompt, info = NoisyPrompts(base, "char_swap", 0.1).reset(seed=0)
        >>> noisy_prompt.startswith("translate: ")
        True
    """

    def __init__(self, env: gym.Env, kind: str, severity: float, seed: int = 0) -> None:
        super().__init__(env)
        _check("", kind, severity, seed)
        self.kind, self.severity, self.noise_seed = kind, float(severity), int(seed)
        self._clean = self._noisy = ""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        noise_seed = self.noise_seed + info["index"]
        example = self.env.unwrapped.examples[info["index"]]
        self._clean = obs
        if obs == example.prompt:  # noise the content, keep the task's instruction readable
            self._noisy = noisy_example(example, self.kind, self.severity, noise_seed).prompt
        else:
            self._noisy = apply_noise(obs, self.kind, self.severity, noise_seed)
        return self.observation(obs), info

    def observation(self, observation: str) -> str:
        if self._clean and observation.startswith(self._clean):
            return self._noisy + observation[len(self._clean) :]
        return observation
