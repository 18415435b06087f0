"""GEM's procedural multi-turn games as rewardgym environments: ``gem:<GEM id>``.

`GEM <https://github.com/axon-rl/gem>`_ (the ``gem-llm`` package) ships text games an agent
plays over several turns: Guess the Number, Mastermind, Tower of Hanoi, Minesweeper, Sudoku,
2048... :class:`GameEnv` wraps one as a Gymnasium environment:

- **observation**: the conversation so far, framed as GEM's own ``concat_with_action``
  observation wrapper frames it: the game's first message, then each completion and the game's
  reply to it, then the game's ``suffix`` (its current board and "enter your move"). GEM's
  games return only their latest message, so rewardgym carries the history;
  ``history=False`` gives the latest message and suffix alone, for an agent that keeps its own
  chat history.
- **action**: one completion, a ``str`` or the structured dict :func:`parse_action` reads
  (``n_tokens``, ``finished``, ``latency_s``...), passed to the game as its text.
- **reward**: any reward spec; the game's own reward for the step is the component ``env``
  (:func:`rewardgym.rewards.builtin.env`, fed the kwarg ``env_reward``), so
  ``{"composite": {"env": 1.0, "speed": 0.1}}`` pays the game's reward plus a speed term.
  ``info["reward/<name>"]`` holds each component.
- **end**: the game's own ``terminated``/``truncated`` pass through unchanged (GEM's games
  report running out of their turns as both); ``max_turns`` truncates earlier;
  ``info["success"]`` says at the end whether the game was won (:func:`game_won`).

Gymnasium ids: ``rewardgym/Gem-v0`` takes ``game=`` (any GEM game id), and each game in
:data:`OFFLINE_GAMES` has its own, ``game:<Name>-v<N>-<difficulty>`` becoming
``rewardgym/Gem<Name><Difficulty>-v<N>`` (:func:`game_env_id`). Registering imports no GEM
code; GEM is imported when the first game is built.

Example:
    >>> env = GameEnv("gem:game:GuessTheNumber-v0-easy", reward="env")
    >>> prompt, info = env.reset(seed=0)
    >>> _, reward, terminated, truncated, info = env.step("\\\\boxed{5}")
    >>> info["reward/env"] == reward
    True
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

from rewardgym.envs.registration import env_name
from rewardgym.envs.scoring import component_info, resolve_reward
from rewardgym.envs.spaces import (
    EPISODE_ENDED,
    Action,
    parse_action,
    positive_int,
    sanitize,
    text_charset,
    text_space,
)
from rewardgym.errors import ConfigError, EnvInputError, UnknownNameError
from rewardgym.rewards import RewardOutput

#: the prefix that names a GEM game wherever rewardgym takes a game: ``gem:game:Mastermind-v0-easy``
GEM_PREFIX = "gem:"
#: the GEM release these games were checked against
GEM_REQUIREMENT = "gem-llm==0.1.0"
GEM_INSTALL = f'pip install "torch==2.13.0" "{GEM_REQUIREMENT}"'
#: GEM's games carry no success flag; each one's winning step, and only that step, ends the
#: game (terminated, not truncated) with a message that opens with these words.
WIN_MESSAGE = "Congratulations!"
#: the Gymnasium id that takes any GEM game as ``game=``
GENERIC_ENV_ID = "rewardgym/Gem-v0"
ENTRY_POINT = "rewardgym.envs.games:GameEnv"
DEFAULT_MAX_COMPLETION_CHARS = 8192
# The observation space's length bound, not a limit anything enforces: the conversation grows by
# one completion and one game message a turn, and GEM's longest game (2048) allows 100 turns.
OBSERVATION_BOUND = 10**7
# Printable ASCII and the one other symbol GEM's games draw (Sokoban's box on a goal); anything
# else (an agent's emoji echoed in the history) is shown as "?", as text tasks do.
GAME_CHARSET = text_charset("√")

#: GEM game name -> the difficulties that build and play offline (a test builds and steps each
#: with sockets refused). Left out: Hangman, Wordle and WordSearch, which need nltk's word list
#: (a download), and the ``random`` variants of FifteenPuzzle and Crosswords, which GEM 0.1.0
#: fails to build.
OFFLINE_GAMES: dict[str, tuple[str, ...]] = {
    "GuessTheNumber": ("easy", "hard", "random"),
    "Mastermind": ("easy", "hard", "random"),
    "TowerofHanoi": ("easy", "hard", "random"),
    "Minesweeper": ("easy", "hard", "random"),
    "Sudoku": ("easy", "hard", "random"),
    "Game2048": ("easy", "hard", "extreme-hard", "random"),
    "Sokoban": ("easy", "hard", "random"),
    "FifteenPuzzle": ("easy", "hard"),
    "Crosswords": ("easy", "hard"),
}
# a few offline games and where the rest are listed, for error messages
_SOME_GAMES = (
    "gem:game:GuessTheNumber-v0-easy, gem:game:Mastermind-v0-easy, gem:game:TowerofHanoi-v0-easy"
    ", ...: rewardgym.envs.games.offline_game_ids() lists them"
)
_GAME_ID = re.compile(r"game:(?P<name>\w+)-v(?P<version>\d+)-(?P<difficulty>[\w-]+)")


def offline_game_ids(version: int = 0) -> list[str]:
    """The GEM ids of :data:`OFFLINE_GAMES`, as ``gem:game:<Name>-v<N>-<difficulty>``.

    Example:
        >>> offline_game_ids()[0]
        'gem:game:GuessTheNumber-v0-easy'
    """
    return [
        f"{GEM_PREFIX}game:{name}-v{version}-{difficulty}"
        for name, difficulties in OFFLINE_GAMES.items()
        for difficulty in difficulties
    ]


def game_env_id(game: str) -> str:
    """The Gymnasium id of a GEM game: GEM's version becomes the env's version.

    Example:
        >>> game_env_id("gem:game:Game2048-v0-extreme-hard")
        'rewardgym/GemGame2048ExtremeHard-v0'
    """
    match = _GAME_ID.fullmatch(_strip_prefix(game))
    if match is None:
        raise ConfigError(
            f"{game!r} is not a GEM game id; write gem:game:<Name>-v<N>-<difficulty>, "
            "e.g. gem:game:Mastermind-v0-easy"
        )
    camel = env_name(f"gem_{match['name']}_{match['difficulty']}")
    return f"rewardgym/{camel}-v{match['version']}"


def register_game_envs() -> list[str]:
    """Register :data:`GENERIC_ENV_ID` and one id per offline game (idempotent); return them.

    Entry points are strings, so registering imports no GEM code.

    Example:
        >>> "rewardgym/GemMastermindEasy-v0" in register_game_envs()
        True
    """
    ids = [GENERIC_ENV_ID]
    if GENERIC_ENV_ID not in gym.registry:
        gym.register(id=GENERIC_ENV_ID, entry_point=ENTRY_POINT)
    for game in offline_game_ids():
        env_id = game_env_id(game)
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs={"game": game})
        ids.append(env_id)
    return ids


def require_gem() -> ModuleType:
    """The ``gem`` package, imported on first use, leaving the root logger as it was.

    ``import gem`` calls ``logging.basicConfig(level=INFO)``, which would print every library's
    INFO messages in the importing program; rewardgym undoes that.

    Raises:
        ConfigError: gem-llm is not installed; names the install command.

    Example:
        >>> require_gem().make is not None
        True
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import gem
        import gem.envs  # noqa: F401  (registers GEM's environments)
    except ImportError as exc:
        raise ConfigError(
            f"GEM games need the gem-llm package, which is not importable ({exc}); install it "
            f"with: {GEM_INSTALL}"
        ) from None
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return gem


def gem_game_ids() -> list[str]:
    """Every game GEM registers, as ``gem:game:...`` ids, sorted (those needing a download too).

    Example:
        >>> "gem:game:TowerofHanoi-v0-easy" in gem_game_ids()
        True
    """
    require_gem()
    from gem.envs.registration import ENV_REGISTRY

    return sorted(GEM_PREFIX + env_id for env_id in ENV_REGISTRY if env_id.startswith("game:"))


def resolve_game(game: Any) -> str:
    """GEM's id of ``game`` (``gem:game:X`` or ``game:X``), checked against GEM's registry.

    Raises:
        UnknownNameError: no such GEM game, with "did you mean".
        ConfigError: not a string, or a GEM env that is not a game (GEM's math, QA and code
            envs load datasets from a hub, which rewardgym never does at run time).

    Example:
        >>> resolve_game("gem:game:Mastermind-v0-easy")
        'game:Mastermind-v0-easy'
    """
    if not isinstance(game, str) or not game:
        raise ConfigError(
            f"game must be a GEM game id such as 'gem:game:GuessTheNumber-v0-easy', got {game!r}"
        )
    gem_id = _strip_prefix(game)
    require_gem()
    from gem.envs.registration import ENV_REGISTRY

    if gem_id in ENV_REGISTRY and not gem_id.startswith("game:"):
        raise ConfigError(
            f"GEM env {game!r} is not one of GEM's procedural games: rewardgym wraps the "
            "'game:' envs only (GEM's math, QA and code envs load datasets from a hub); "
            f"choose a game: {_SOME_GAMES}"
        )
    choices = gem_game_ids()
    if GEM_PREFIX + gem_id not in choices:
        hint = "GEM's games are listed by rewardgym.envs.games.gem_game_ids()."
        raise UnknownNameError("GEM game", GEM_PREFIX + gem_id, choices, hint=hint)
    return gem_id


def _strip_prefix(game: str) -> str:
    return game[len(GEM_PREFIX) :] if game.startswith(GEM_PREFIX) else game


def build_game(gem_id: str) -> Any:
    """GEM's environment for ``gem_id``, with its failures turned into typed errors.

    Raises:
        ConfigError: the game needs data that is downloaded (nltk's word list), or GEM fails to
            build it; names the game and what to do.
    """
    gem = require_gem()
    try:
        return gem.make(gem_id)
    except Exception as exc:  # GEM's constructors raise whatever their code hits: report it typed
        # nltk raises a bare LookupError for data it would download; its subclasses (KeyError,
        # IndexError) are ordinary bugs, reported as such below.
        if type(exc) is LookupError:
            raise ConfigError(
                f"GEM game {GEM_PREFIX + gem_id!r} needs a download (nltk's 'words' corpus), "
                "and rewardgym runs offline: it never downloads at run time. Choose a game that "
                f"needs none ({_SOME_GAMES}), or fetch the data once yourself with "
                "`python -m nltk.downloader words`"
            ) from None
        raise ConfigError(
            f"GEM could not build game {GEM_PREFIX + gem_id!r} ({type(exc).__name__}: {exc}); "
            f"this variant fails in gem-llm {_gem_version()}: choose another difficulty"
        ) from exc


def _gem_version() -> str:
    try:
        return metadata.version("gem-llm")
    except metadata.PackageNotFoundError:  # imported from a source tree, not installed
        return "(version unknown)"


def game_won(observation: str, terminated: bool, truncated: bool) -> bool:
    """Whether a GEM game's last step won it: the game ended itself with its win message.

    GEM's games have no success flag. A win is the one step that returns ``terminated`` without
    ``truncated`` and a message opening with :data:`WIN_MESSAGE`; losses (a mine hit, 2048's
    full board) end without it, and running out of turns also sets ``truncated``.

    Example:
        >>> game_won("Congratulations! You solved the Tower of Hanoi Puzzle", True, False)
        True
        >>> game_won("You have reached the maximum number of turns.", True, True)
        False
    """
    return bool(terminated) and not truncated and observation.startswith(WIN_MESSAGE)


def conversation(messages: list[str], info: dict[str, Any]) -> str:
    """The observation GEM's ``concat_with_action`` wrapper builds: each game message and
    completion on its own line(s), in order, then the game's ``suffix`` (and ``prefix``).

    Example:
        >>> conversation(["Guess.", "\\\\boxed{5}", "Higher."], {"suffix": "Next guess."})
        'Guess.\\n\\\\boxed{5}\\nHigher.\\nNext guess.'
    """
    text = "".join(m if not m or m.endswith("\n") else m + "\n" for m in messages)
    return info.get("prefix", "") + text + info.get("suffix", "")


class _PrivateRandom:
    """The game's own random state, swapped in around every call into GEM.

    GEM's games draw from Python's global ``random`` and seed it (and NumPy's global RNG) in
    ``reset``. Swapping keeps the program's global generators untouched by a game and keeps a
    game's draws (2048's new tiles) independent of what the program draws between steps, so
    an episode is a function of its seed and actions. Not thread-safe, as GEM is not.
    """

    def __init__(self, seed: int = 0) -> None:
        self._state = (random.Random(seed).getstate(), np.random.RandomState(seed).get_state())
        self._outer: tuple[Any, Any] | None = None

    def __enter__(self) -> _PrivateRandom:
        self._outer = (random.getstate(), np.random.get_state())
        random.setstate(self._state[0])
        np.random.set_state(self._state[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self._state = (random.getstate(), np.random.get_state())
        random.setstate(self._outer[0])
        np.random.set_state(self._outer[1])


class GameEnv(gym.Env[str, Any]):
    """A Gymnasium environment over one GEM game (see the module docstring).

    Args:
        game: a GEM game id, ``gem:game:<Name>-v<N>-<difficulty>`` (``game:...`` also works).
        reward: any reward spec ``make_reward`` accepts that needs no references (games have
            none): ``"env"`` (the game's own reward, the default), a composite such as
            ``{"composite": {"env": 1.0, "speed": 0.1}}``...
        max_turns: truncate the episode after this many steps (None: the game's own limit).
        history: observe the whole conversation (True) or only the game's latest message and
            suffix (False).
        max_completion_chars: longest completion accepted; longer ones raise ``EnvInputError``.
        reward_kwargs: passed to ``make_reward``.

    Raises:
        UnknownNameError: an unknown game (did you mean).
        ConfigError: gem-llm missing, a game that needs a download or that GEM cannot build,
            a reward that needs references, or a bad option.

    Example:
        >>> env = GameEnv("gem:game:TowerofHanoi-v0-easy", {"composite": {"env": 1, "speed": 0.1}})
        >>> _ = env.reset(seed=0)
        >>> _, reward, _, _, info = env.step({"text": "\\\\boxed{A C}", "n_tokens": 6})
        >>> sorted(k for k in info if k.startswith("reward/"))
        ['reward/env', 'reward/speed']
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        game: str | None = None,
        reward: Any = "env",
        *,
        max_turns: int | None = None,
        history: bool = True,
        max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS,
        reward_kwargs: dict | None = None,
        render_mode: str | None = None,
    ) -> None:
        if game is None:
            raise ConfigError(
                f"GameEnv needs game=, a GEM game id such as {offline_game_ids()[0]!r}"
            )
        self.game = resolve_game(game)
        self.reward = resolve_reward(reward, reward_kwargs)
        if self.reward.needs_references:
            raise ConfigError(
                f"reward {self.reward.name!r} ({self.reward.formula}) compares completions with "
                "references, and a game has none; use rewards that need none: env (the game's "
                "own reward), speed, completion, or your own"
            )
        self.max_turns = None if max_turns is None else positive_int(max_turns, "max_turns")
        self.max_completion_chars = positive_int(max_completion_chars, "max_completion_chars")
        if not isinstance(history, bool):
            raise ConfigError(f"history must be True or False, got {history!r}")
        self.history = history
        if render_mode not in (None, "ansi"):
            raise UnknownNameError("render mode", render_mode, ["ansi"])
        self.render_mode = render_mode
        self._charset = frozenset(GAME_CHARSET)
        self.observation_space = text_space(OBSERVATION_BOUND, GAME_CHARSET)
        self.action_space = text_space(self.max_completion_chars, GAME_CHARSET)

        self._random = _PrivateRandom()
        with self._random:  # GEM's constructors reset the game, drawing from `random`
            self._game = build_game(self.game)
        self._messages: list[str] = []
        self._observation = ""
        self._turn = 0
        self._started = False
        self._ended = False

    # -- Gymnasium API ---------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start a game: seeded by ``seed``, else by a seed drawn from the env's generator."""
        super().reset(seed=seed)
        if options:
            raise EnvInputError(f"GameEnv.reset takes no options, got {sorted(options)}")
        # Always hand GEM a seed: reset(seed=s) then plays the game GEM's reset(seed=s) plays,
        # and unseeded resets after a seeded one are reproducible, as Gymnasium promises.
        game_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        with self._random:
            message, game_info = self._game.reset(seed=game_seed)
        self._messages = [message]
        self._turn, self._started, self._ended = 0, True, False
        self._observation = self._observe(message, game_info)
        info = {"game": self.game, "turn": 0, "game_seed": game_seed, "game_info": game_info}
        return self._observation, info

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Play one completion; the game's reply (with the history) is the next observation."""
        if not self._started:
            raise EnvInputError("call reset() before step()")
        if self._ended:
            raise EnvInputError(EPISODE_ENDED)
        parsed = parse_action(action, self.max_completion_chars)
        if parsed.stop:
            raise EnvInputError(
                "a game ends by itself or at max_turns; 'stop' is for text tasks' revisions, "
                "drop it from the action"
            )
        self._turn += 1
        with self._random:
            message, game_reward, game_over, game_cut, game_info = self._game.step(parsed.text)
        game_reward, game_over, game_cut = float(game_reward), bool(game_over), bool(game_cut)
        output = self._score(parsed, game_reward)
        out_of_turns = self.max_turns is not None and self._turn >= self.max_turns
        truncated = game_cut or (out_of_turns and not game_over)
        self._ended = game_over or truncated
        self._messages += [parsed.text, message]
        self._observation = self._observe(message, game_info)
        info = self._step_info(parsed, message, game_reward, game_info, output)
        if self._ended:
            info["success"] = game_won(message, game_over, game_cut)
        return self._observation, float(output.total[0]), game_over, truncated, info

    def render(self) -> str | None:
        """The observation now, as text (``render_mode="ansi"``)."""
        return self._observation if self.render_mode == "ansi" else None

    # -- helpers ---------------------------------------------------------------------------

    def _observe(self, message: str, game_info: dict[str, Any]) -> str:
        messages = self._messages if self.history else [message]
        return sanitize(conversation(messages, game_info), self._charset)

    def _score(self, action: Action, game_reward: float) -> RewardOutput:
        """Score one completion: the prompt is the observation it answered, and the game's
        reward reaches the ``env`` component as ``env_reward``. Fields the agent did not pass
        are left out, so the reward's own defaults apply (as text tasks score)."""
        kwargs: dict[str, Any] = {
            "env_reward": [game_reward],
            "turns": [self._turn],
            "meta": [{"game": GEM_PREFIX + self.game}],
            "completion_ids": [list(action.completion_ids or ())],
        }
        for key in ("n_tokens", "finished", "latency_s"):
            value = getattr(action, key)
            if value is not None:
                kwargs[key] = [value]
        return self.reward.score([self._observation], [action.text], **kwargs)

    def _step_info(
        self,
        action: Action,
        message: str,
        game_reward: float,
        game_info: dict[str, Any],
        output: RewardOutput,
    ) -> dict[str, Any]:
        info: dict[str, Any] = {
            "game": self.game,
            "turn": self._turn,
            "env_reward": game_reward,
            "game_message": message,
            "game_info": game_info,
            "reward_total": float(output.total[0]),
            "reward_applies": bool(output.applies[0]),
            **component_info(output, 0),
        }
        for key in ("n_tokens", "finished", "latency_s"):
            value = getattr(action, key)
            if value is not None:
                info[key] = value
        return info


@dataclass(frozen=True)
class GameResult:
    """What :func:`play_episodes` measured: the success rate is the headline.

    Attributes:
        game: the GEM game id.
        successes: per episode, whether the game was won.
        returns: per episode, the sum of the env's rewards (the reward spec's totals).
        game_returns: per episode, the sum of the game's own rewards.
        turns: per episode, the steps played.
    """

    game: str
    successes: tuple[bool, ...]
    returns: tuple[float, ...]
    game_returns: tuple[float, ...]
    turns: tuple[int, ...]

    @property
    def success_rate(self) -> float:
        """The share of episodes won."""
        return float(np.mean(self.successes))

    @property
    def mean_return(self) -> float:
        """The mean over episodes of the env's return."""
        return float(np.mean(self.returns))

    @property
    def mean_game_return(self) -> float:
        """The mean over episodes of the game's own return."""
        return float(np.mean(self.game_returns))


def play_episodes(
    env: gym.Env | str,
    policy: Callable[[str], Any],
    n_episodes: int,
    *,
    seed: int = 0,
    **env_kwargs: Any,
) -> GameResult:
    """Play ``n_episodes`` games, episode ``i`` seeded ``seed + i``, and measure the policy.

    Args:
        env: a :class:`GameEnv` (also through ``gymnasium.make``) or a GEM game id.
        policy: ``observation -> action`` (a completion, or a structured dict action).
        n_episodes: how many games.
        seed: the first episode's seed.
        **env_kwargs: options of the :class:`GameEnv` built when ``env`` is a game id.

    Raises:
        ConfigError: ``env`` is not a game env, ``policy`` is not callable, or
            ``n_episodes`` is not a positive int.

    Example:
        >>> result = play_episodes("gem:game:GuessTheNumber-v0-easy", lambda obs: "\\\\boxed{3}", 2)
        >>> len(result.successes), 0.0 <= result.success_rate <= 1.0
        (2, True)
    """
    if isinstance(env, str):
        env = GameEnv(env, **env_kwargs)
    elif env_kwargs:
        raise ConfigError(f"env options {sorted(env_kwargs)} apply only when env is a game id")
    if not isinstance(getattr(env, "unwrapped", None), GameEnv):
        raise ConfigError(f"play_episodes plays GEM games (GameEnv), got {type(env).__name__}")
    if not callable(policy):
        raise ConfigError(f"policy must be callable (observation -> action), got {policy!r:.80}")
    n_episodes = positive_int(n_episodes, "n_episodes")
    episodes = [_play_one(env, policy, seed + i) for i in range(n_episodes)]
    return GameResult(env.unwrapped.game, *(tuple(column) for column in zip(*episodes)))


def _play_one(env: gym.Env, policy: Callable[[str], Any], seed: int) -> tuple:
    """One episode: ``(won, return, game return, turns)``."""
    observation, _ = env.reset(seed=seed)
    total = game_total = 0.0
    turns, done, info = 0, False, {}
    while not done:
        observation, reward, terminated, truncated, info = env.step(policy(observation))
        total, game_total, turns = total + reward, game_total + info["env_reward"], turns + 1
        done = terminated or truncated
    return bool(info["success"]), total, game_total, turns


register_game_envs()
