"""GEM's games as rewardgym envs: the same rewards and flags as GEM, composition, limits, bad
input, offline play and the success-rate measurement.

Each multi-turn test plays GEM's own env (behind GEM's ``concat_with_action`` observation
wrapper) beside rewardgym's with the same seed and the same actions, derived from the game's
feedback by a simple strategy, and compares what both return.
"""

from __future__ import annotations

import doctest
import itertools
import math
import random
import re
import socket
import subprocess
import sys
import urllib.request
import warnings

import gem
import gymnasium as gym
import numpy as np
import pytest
from gem.envs.registration import ENV_REGISTRY
from gem.utils.constants import LanguageGameReward
from gem.wrappers.wrapper_factory import WRAPPER_FACTORY
from gymnasium.utils.env_checker import check_env

import rewardgym  # noqa: F401  (registers the env ids)
from rewardgym.envs import games
from rewardgym.envs.games import (
    GENERIC_ENV_ID,
    GameEnv,
    game_env_id,
    offline_game_ids,
    play_episodes,
    register_game_envs,
)
from rewardgym.errors import ConfigError, EnvInputError, RewardError, UnknownNameError
from rewardgym.rewards import Speed, make_reward

GUESS, MASTERMIND, HANOI = (
    "game:GuessTheNumber-v0-easy",
    "game:Mastermind-v0-easy",
    "game:TowerofHanoi-v0-easy",
)
SEEDS = (0, 1, 2)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection is refused, name lookups included."""

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("network refused by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with pytest.raises(OSError):
        urllib.request.urlopen("http://example.com", timeout=1)


# -- strategies: an action from the conversation so far -----------------------------------------


def bisection(conversation: str) -> str:
    """Guess the Number: the middle of the range the feedback leaves."""
    lo, hi = map(int, re.search(r"between (\d+) and (\d+)", conversation).groups())
    for guess, hint in re.findall(
        r"you guessed (\d+), and the target number is (\w+)", conversation
    ):
        if hint == "higher":
            lo = max(lo, int(guess) + 1)
        else:
            hi = min(hi, int(guess) - 1)
    return f"\\boxed{{{(lo + hi) // 2}}}"


def hanoi_moves(n: int, src: str = "A", via: str = "B", dst: str = "C") -> list[tuple[str, str]]:
    if n == 0:
        return []
    return hanoi_moves(n - 1, src, dst, via) + [(src, dst)] + hanoi_moves(n - 1, via, src, dst)


def hanoi(conversation: str) -> str:
    """Tower of Hanoi: the next move of the optimal solution (2^n - 1 legal moves)."""
    n = int(re.search(r"Tower of Hanoi with (\d+) disks", conversation)[1])
    src, dst = hanoi_moves(n)[len(re.findall(r"you moved disk", conversation))]
    return f"\\boxed{{{src} {dst}}}"


def pegs(code: tuple[int, ...], guess: tuple[int, ...]) -> tuple[int, int]:
    black = sum(a == b for a, b in zip(code, guess))
    return black, len(set(code) & set(guess)) - black  # no repeated digits in these codes


def mastermind(conversation: str) -> str:
    """Mastermind: the first code (no repeats) consistent with every answer so far."""
    length = int(re.search(r"secret (\d+) digit code", conversation)[1])
    digits = int(re.search(r"digits from 1 to (\d+)", conversation)[1])
    answers = [
        (tuple(map(int, guess.split(", "))), int(black), int(white))
        for guess, black, white in re.findall(
            r"you guessed \[([\d, ]+)\]\. This guess receives (\d+) black peg\(s\) and (\d+) white",
            conversation,
        )
    ]
    for code in itertools.permutations(range(1, digits + 1), length):
        if all(pegs(code, guess) == (b, w) for guess, b, w in answers):
            return "\\boxed{" + " ".join(map(str, code)) + "}"
    raise AssertionError("no code fits the answers")


STRATEGIES = {GUESS: bisection, MASTERMIND: mastermind, HANOI: hanoi}


def won(game: str, raw, last_action: str) -> bool:
    """Whether the game was won, read from GEM's game state, not from its messages."""
    if game == GUESS:
        return last_action == f"\\boxed{{{raw.unwrapped.game_number}}}"
    if game == MASTERMIND:
        return last_action == "\\boxed{" + " ".join(map(str, raw.unwrapped.game_code)) + "}"
    return raw.unwrapped.board["C"] == list(range(raw.unwrapped.num_disks, 0, -1))


def play_beside_gem(game: str, seed: int, policy, action=lambda text, turn: text, **env_kwargs):
    """Play GEM's env and rewardgym's in lockstep; assert each step agrees; return the steps."""
    raw = WRAPPER_FACTORY["concat_with_action"](gem.make(game))
    env = GameEnv(games.GEM_PREFIX + game, **env_kwargs)
    raw_obs, _ = raw.reset(seed=seed)
    obs, info = env.reset(seed=seed)
    assert obs == raw_obs and info["game_seed"] == seed
    steps = []
    while True:
        text = policy(raw_obs)
        raw_obs, raw_reward, raw_term, raw_trunc, _ = raw.step(text)
        obs, reward, terminated, truncated, info = env.step(action(text, len(steps) + 1))
        assert obs == raw_obs  # the conversation is GEM's concat_with_action observation
        assert (terminated, truncated) == (raw_term, raw_trunc)
        assert info["reward/env"] == raw_reward == info["env_reward"]
        steps.append((text, raw_reward, reward, info))
        if terminated or truncated:
            assert info["success"] == won(game, raw, text)
            return steps


# -- the game's rewards, flags and conversation -----------------------------------------------


@pytest.mark.parametrize("game", [GUESS, MASTERMIND, HANOI])
@pytest.mark.parametrize("seed", SEEDS)
def test_env_rewards_and_flags_equal_gems_own_for_the_same_actions(game, seed) -> None:
    steps = play_beside_gem(game, seed, STRATEGIES[game])
    assert all(reward == raw_reward for _, raw_reward, reward, _ in steps)  # reward "env" alone
    assert len(steps) > 1  # multi-turn


@pytest.mark.parametrize("game", [GUESS, HANOI])
def test_the_strategies_that_must_win_win(game) -> None:
    # bisection over 1..10 needs at most floor(log2(10)) + 1 guesses; Hanoi's optimal solution
    # 2^n - 1 moves: both within the game's own turn limit
    kwargs = ENV_REGISTRY[game].kwargs
    needed = (
        math.floor(math.log2(kwargs["max_number"] - kwargs["min_number"] + 1)) + 1
        if game == GUESS
        else 2 ** kwargs["num_disks"] - 1
    )
    assert needed <= kwargs["max_turns"]
    for seed in SEEDS:
        steps = play_beside_gem(game, seed, STRATEGIES[game])
        assert steps[-1][3]["success"] and len(steps) <= needed
        assert steps[-1][1] == LanguageGameReward.success_reward


def test_a_lost_game_is_no_success_and_keeps_gems_flags() -> None:
    # Hanoi shuffling the smallest disk between A and B never solves: GEM ends it at its turn
    # limit with both flags set and a partial reward (the share of disks on C: none)
    shuffle = ("\\boxed{A B}", "\\boxed{B A}")
    steps = play_beside_gem(HANOI, 0, lambda obs: shuffle[obs.count("you moved disk") % 2])
    info = steps[-1][3]
    assert len(steps) == ENV_REGISTRY[HANOI].kwargs["max_turns"]
    assert info["success"] is False and steps[-1][1] == 0.0


def test_without_history_the_observation_is_the_latest_message_and_suffix() -> None:
    env = GameEnv(games.GEM_PREFIX + HANOI, history=False)
    raw = gem.make(HANOI)
    message, info = raw.reset(seed=0)
    obs, _ = env.reset(seed=0)
    assert obs == message + info["suffix"]  # GEM's instructions end in a newline
    message, _, _, _, info = raw.step("\\boxed{A C}")
    obs, *_ = env.step("\\boxed{A C}")
    assert obs == message + "\n" + info["suffix"]


# -- composition with rewardgym's rewards ---------------------------------------------------------


def test_env_composes_with_speed_in_a_composite_spec() -> None:
    weights = {"env": 1.0, "speed": 0.1}
    # a structured action: the agent reports the completion's token count
    steps = play_beside_gem(
        GUESS,
        1,
        bisection,
        action=lambda text, turn: {"text": text, "n_tokens": 3 * turn, "finished": True},
        reward={"composite": weights},
    )
    for turn, (text, raw_reward, reward, info) in enumerate(steps, start=1):
        speed = Speed()(
            ["p"], [text], n_tokens=[3 * turn], finished=[True], latency_s=[0.0], turns=[turn]
        )[0]
        assert info["reward/speed"] == pytest.approx(speed)
        assert info["reward/env"] == raw_reward
        assert reward == pytest.approx(weights["env"] * raw_reward + weights["speed"] * speed)
        assert info["n_tokens"] == 3 * turn and info["reward_total"] == reward


def test_env_does_not_apply_where_no_env_reward_is_passed() -> None:
    # a text task passes none: the component is "does not apply" (NaN), the rest still pays
    env = gym.make("rewardgym/Arithmetic-v0", reward={"composite": {"env": 1.0, "speed": 0.1}})
    env.reset(seed=0)
    *_, info = env.step("7")
    assert math.isnan(info["reward/env"])
    assert info["reward_total"] == pytest.approx(0.1 * info["reward/speed"])
    with pytest.raises(RewardError, match="env_reward= must be a list with one entry"):
        make_reward("env")(["p"], ["a"], env_reward=[1.0, 2.0])


def test_a_reward_that_needs_references_is_refused() -> None:
    for reward in ("balanced", {"composite": {"env": 1.0, "bleu": 0.5}}):
        with pytest.raises(ConfigError, match="compares completions with references"):
            GameEnv(games.GEM_PREFIX + GUESS, reward=reward)


# -- episode limits -------------------------------------------------------------------------------


def test_max_turns_truncates_before_the_game_ends_and_then_steps_are_refused() -> None:
    out_of_range = "\\boxed{11}"  # the easy game's numbers run 1..10: the game goes on
    raw = gem.make(GUESS)
    raw.reset(seed=0)
    raw_flags = [raw.step(out_of_range)[2:4] for _ in range(2)]
    assert raw_flags == [(False, False)] * 2  # GEM itself has not ended the game by turn 2

    env = GameEnv(games.GEM_PREFIX + GUESS, max_turns=2)
    env.reset(seed=0)
    assert env.step(out_of_range)[2:4] == (False, False)
    _, _, terminated, truncated, info = env.step(out_of_range)
    assert (terminated, truncated) == (False, True) and info["success"] is False
    with pytest.raises(EnvInputError, match="episode has ended"):
        env.step(out_of_range)
    env.reset(seed=0)  # a reset starts over
    assert env.step(out_of_range)[2:4] == (False, False)


def test_stepping_after_the_game_ends_or_before_reset_is_refused() -> None:
    env = GameEnv(games.GEM_PREFIX + GUESS)
    with pytest.raises(EnvInputError, match="reset"):
        env.step("\\boxed{5}")
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("no boxed guess")  # GEM ends on a format error
    assert terminated and reward == LanguageGameReward.format_error_reward
    assert info["success"] is False
    with pytest.raises(EnvInputError, match="episode has ended"):
        env.step("\\boxed{5}")


# -- the success rate -----------------------------------------------------------------------------


def test_play_episodes_measures_success_rate_and_returns() -> None:
    n = 4
    won_all = play_episodes(games.GEM_PREFIX + GUESS, bisection, n)
    assert won_all.success_rate == 1.0 and len(won_all.successes) == n  # see the test above
    # every turn but the winning one pays internal_step_reward
    expected = [
        LanguageGameReward.success_reward + (t - 1) * LanguageGameReward.internal_step_reward
        for t in won_all.turns
    ]
    assert won_all.game_returns == pytest.approx(expected)
    assert won_all.mean_return == won_all.mean_game_return  # reward "env" alone

    # a guess outside the range is never right; GEM pays it invalid_action_reward every turn
    turns = ENV_REGISTRY[GUESS].kwargs["max_turns"]
    env = gym.make(game_env_id(GUESS), reward={"composite": {"env": 2.0}})
    lost = play_episodes(env, lambda obs: "\\boxed{11}", n, seed=7)
    assert lost.success_rate == 0.0 and lost.turns == (turns,) * n
    assert lost.mean_game_return == turns * LanguageGameReward.invalid_action_reward
    assert lost.mean_return == 2.0 * lost.mean_game_return


def test_play_episodes_refuses_what_is_not_a_game_or_a_policy() -> None:
    with pytest.raises(ConfigError, match="GameEnv"):
        play_episodes(gym.make("rewardgym/Arithmetic-v0", reward="speed"), bisection, 1)
    with pytest.raises(ConfigError, match="callable"):
        play_episodes(games.GEM_PREFIX + GUESS, "\\boxed{5}", 1)
    with pytest.raises(ConfigError, match="n_episodes"):
        play_episodes(games.GEM_PREFIX + GUESS, bisection, 0)


# -- Gymnasium ids, seeding ---------------------------------------------------------------------


def test_gymnasium_ids_build_the_game_they_name() -> None:
    ids = register_game_envs()
    assert ids == [GENERIC_ENV_ID] + [game_env_id(g) for g in offline_game_ids()]
    for game in (GUESS, MASTERMIND, HANOI):
        env = gym.make(game_env_id(game))
        assert env.unwrapped.game == game
    env = gym.make(GENERIC_ENV_ID, game=games.GEM_PREFIX + MASTERMIND, max_turns=3)
    assert env.unwrapped.game == MASTERMIND and env.unwrapped.max_turns == 3
    with pytest.raises(ConfigError, match="needs game="):
        gym.make(GENERIC_ENV_ID)


def test_offline_games_are_gems_games() -> None:
    registered = {g for g in ENV_REGISTRY if g.startswith("game:")}
    assert {g.removeprefix(games.GEM_PREFIX) for g in offline_game_ids()} <= registered


def test_games_leave_the_programs_random_generators_alone_and_replay_from_their_seed() -> None:
    moves = ["\\boxed{up}", "\\boxed{left}", "\\boxed{down}", "\\boxed{right}"] * 3

    def play(draw_between_steps: bool) -> list:
        env = GameEnv("gem:game:Game2048-v0-easy")  # 2048 draws a new tile after each move
        trace = [env.reset(seed=3)[0]]
        for move in moves:
            if draw_between_steps:
                random.random(), np.random.random()
            obs, reward, terminated, truncated, _ = env.step(move)
            trace.append((obs, reward))
            if terminated or truncated:
                break
        return trace

    random.seed(11)
    np.random.seed(11)
    before = (random.getstate(), np.random.get_state()[1].copy())
    quiet = play(False)
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert play(True) == quiet


def test_gymnasiums_checker_passes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(game_env_id(HANOI)).unwrapped, skip_render_check=True)


# -- bad input ------------------------------------------------------------------------------------


def test_an_unknown_game_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'gem:game:GuessTheNumber-v0-easy'"):
        GameEnv("gem:game:GuesTheNumber-v0-easy")
    with pytest.raises(UnknownNameError, match="did you mean 'gem:game:Mastermind-v0-easy'"):
        GameEnv("gem:Mastermind-v0-easy")  # without GEM's "game:"


def test_a_gem_env_that_is_not_a_game_is_refused() -> None:
    with pytest.raises(ConfigError, match="not one of GEM's procedural games"):
        GameEnv("gem:math:GSM8K")


def test_a_game_that_needs_a_download_says_so(offline) -> None:
    import nltk

    try:
        nltk.data.find("corpora/words")
        pytest.skip("nltk's word list is installed on this machine: Hangman builds")
    except LookupError:
        pass
    with pytest.raises(ConfigError, match="needs a download .* never downloads at run time"):
        GameEnv("gem:game:Hangman-v0-easy")


def test_gem_missing_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gem", None)  # `import gem` now raises ImportError
    with pytest.raises(ConfigError, match=re.escape(games.GEM_INSTALL)):
        GameEnv(games.GEM_PREFIX + GUESS)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"game": None}, ConfigError, "needs game="),
        ({"game": 5}, ConfigError, "GEM game id"),
        ({"max_turns": 0}, ConfigError, "max_turns must be a positive int"),
        ({"history": "yes"}, ConfigError, "history must be True or False"),
        ({"render_mode": "human"}, UnknownNameError, "render mode"),
    ],
)
def test_bad_options_are_typed_errors(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        GameEnv(**{"game": games.GEM_PREFIX + GUESS, **kwargs})


def test_bad_actions_and_reset_options_are_typed_errors() -> None:
    env = GameEnv(games.GEM_PREFIX + GUESS, max_completion_chars=20)
    with pytest.raises(EnvInputError, match="takes no options"):
        env.reset(seed=0, options={"index": 1})
    env.reset(seed=0)
    with pytest.raises(EnvInputError, match="must be a str"):
        env.step(5)
    with pytest.raises(EnvInputError, match="over the limit of 20"):
        env.step("x" * 21)
    with pytest.raises(EnvInputError, match="'stop'"):
        env.step({"text": "\\boxed{5}", "stop": True})
    assert env.step("\\boxed{5}")[4]["turn"] == 1  # refused actions play no turn


# -- offline --------------------------------------------------------------------------------------


@pytest.mark.parametrize("game", [GUESS, MASTERMIND, HANOI])
def test_the_games_build_and_play_with_the_network_refused(offline, game) -> None:
    env = gym.make(game_env_id(game), reward={"composite": {"env": 1.0, "speed": 0.1}})
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        obs, _, terminated, truncated, info = env.step(STRATEGIES[game](obs))
        assert "reward/env" in info and "reward/speed" in info
        if terminated or truncated:
            break


@pytest.mark.parametrize(
    "game",
    # Sokoban generates its rooms by trial: seconds for the bigger ones
    [pytest.param(g, marks=pytest.mark.slow) if "Sokoban" in g else g for g in offline_game_ids()],
)
def test_every_offline_game_builds_and_plays_with_the_network_refused(offline, game) -> None:
    env = gym.make(game_env_id(game))
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("not a move")  # every GEM game ends on it
    assert terminated and info["success"] is False
    assert reward == LanguageGameReward.format_error_reward


def test_import_loads_no_gem_and_a_game_leaves_logging_alone() -> None:
    code = (
        "import logging, sys, rewardgym, gymnasium;"
        "assert 'gem' not in sys.modules;"
        f"gymnasium.make({game_env_id(HANOI)!r}).reset(seed=0);"
        "assert 'gem' in sys.modules;"
        "print(logging.getLogger().handlers, logging.getLogger().level)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "30"]  # no handler, level WARNING: as Python starts


def test_docstring_examples_run() -> None:
    assert doctest.testmod(games).failed == 0
