"""Every registered env id: Gymnasium's checker, SB3's checker, determinism, pickling."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rewardgym  # noqa: F401  (registers the env ids)
from rewardgym.envs import env_ids
from rewardgym.errors import ConfigError, EnvInputError, UnknownNameError

TEXT_IDS = [i for i in env_ids() if "-Token-" not in i]
TOKEN_IDS = [i for i in env_ids() if "-Token-" in i]


def _make(env_id: str, **kw):
    # task_only needs no model: keeps the checker tests fast
    return gym.make(env_id, reward=kw.pop("reward", "task_only"), **kw)


@pytest.mark.parametrize("env_id", env_ids())
def test_gymnasium_env_checker(env_id: str) -> None:
    env = _make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", TOKEN_IDS)
def test_sb3_env_checker(env_id: str) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(_make(env_id).unwrapped, warn=True)


def _rollout(env: gym.Env, seed: int, steps: int = 6) -> list:
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trace.append((obs, reward, terminated, truncated, info.get("reward_total")))
        if terminated or truncated:
            obs, _ = env.reset()
            trace.append(obs)
    return trace


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize("env_id", env_ids())
def test_same_seed_same_rollout(env_id: str) -> None:
    assert _equal(_rollout(_make(env_id), seed=7), _rollout(_make(env_id), seed=7))
    assert not _equal(_rollout(_make(env_id), seed=7), _rollout(_make(env_id), seed=8))


@pytest.mark.parametrize("env_id", env_ids())
def test_a_finished_episode_takes_no_more_steps(env_id: str) -> None:
    env = _make(env_id).unwrapped
    env.reset(seed=0)
    end = env.eos_token_id if "-Token-" in env_id else "an answer"
    _, _, terminated, truncated, _ = env.step(end)
    assert terminated or truncated
    with pytest.raises(EnvInputError, match=r"episode has ended .*call reset\(\) before step"):
        env.step(end)
    env.reset(seed=1)
    env.step(end)  # a new episode steps again


@pytest.mark.parametrize("env_id", env_ids())
def test_pickle_round_trip(env_id: str) -> None:
    env = _make(env_id).unwrapped
    env.reset(seed=3)
    clone = pickle.loads(pickle.dumps(env))
    action = env.action_space.sample()
    first, second = env.step(action), clone.step(action)
    assert _equal(first[:4], second[:4])


def test_rewards_read_the_answer_after_the_working() -> None:
    env = gym.make("rewardgym/Translate-v0", reward={"composite": {"bleu": 0.5, "speed": 0.5}})
    _, info = env.reset(seed=0)
    reference = env.unwrapped.examples[info["index"]].reference
    _, _, _, _, info = env.step({"text": f"note: a b c answer: {reference}", "n_tokens": 20})
    assert info["reward/bleu"] == pytest.approx(1.0)
    env.reset(seed=0)
    _, _, _, _, short = env.step({"text": reference, "n_tokens": 10})
    assert short["reward/speed"] > info["reward/speed"]  # the working still costs tokens


def test_step_scores_with_the_reward_and_reports_components() -> None:
    env = gym.make("rewardgym/Translate-v0", reward={"composite": {"bleu": 0.5, "length": 0.5}})
    _, info = env.reset(seed=0)
    reference = env.unwrapped.examples[info["index"]].reference
    _, reward, terminated, truncated, info = env.step(
        {"text": reference, "n_tokens": 9, "finished": True, "latency_s": 0.25}
    )
    assert terminated and not truncated
    assert reward == pytest.approx(1.0)
    assert info["reference"] == reference
    assert info["reward/bleu"] == pytest.approx(1.0)
    assert info["reward/length"] == pytest.approx(1.0)
    assert (info["n_tokens"], info["finished"], info["latency_s"]) == (9, True, 0.25)


def test_empty_completion_is_a_legal_action() -> None:
    env = gym.make("rewardgym/Translate-v0", reward="speed_only")
    env.reset(seed=0)
    assert env.observation_space.contains(env.unwrapped._transcript)
    assert env.action_space.contains("")
    _, reward, terminated, _, _ = env.step("")
    assert terminated and reward > 0.9


def test_multi_turn_feedback_and_return_equals_last_score() -> None:
    env = gym.make("rewardgym/Arithmetic-v0", reward="task_only", max_turns=3)
    prompt, _ = env.reset(seed=1)
    obs, r1, terminated, _, info = env.step("wrong answer")
    assert not terminated
    assert obs.startswith(prompt) and "[score" in obs and "wrong answer" in obs
    assert env.observation_space.contains(obs)
    _, r2, terminated, _, info = env.step({"text": info["reference"], "stop": True})
    assert terminated
    assert r1 + r2 == pytest.approx(info["reward_total"])
    assert info["turn"] == 2


def test_multi_turn_speed_term_counts_turns() -> None:
    scores = []
    for turns in (1, 3):
        env = gym.make("rewardgym/Translate-v0", reward="speed_only", max_turns=turns)
        env.reset(seed=0)
        total = 0.0
        for _ in range(turns):
            total += env.step({"text": "x", "n_tokens": 1})[1]
        scores.append(total)
    assert scores[1] < scores[0]


def test_noise_changes_prompts_deterministically() -> None:
    clean = gym.make("rewardgym/Translate-v0", reward="task_only")
    noisy = gym.make(
        "rewardgym/Translate-v0", reward="task_only", noise="char_drop", noise_severity=0.2
    )
    p_clean, _ = clean.reset(seed=5)
    p_noisy, _ = noisy.reset(seed=5)
    assert p_noisy != p_clean and len(p_noisy) < len(p_clean)
    assert noisy.reset(seed=5)[0] == p_noisy


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (42, "action must be a str or a dict with a 'text' key, got int: 42"),
        ({"txt": "a"}, r"unknown action key\(s\) \['txt'\]"),
        ({"text": "a", "n_tokens": -1}, "action n_tokens must be a non-negative int, got -1"),
        ({"text": "a", "latency_s": float("nan")}, "latency_s must be a finite number"),
        ("a" * 10_000, "action is 10000 characters, over the limit of"),
    ],
)
def test_bad_actions_raise_typed_errors(action, message: str) -> None:
    env = gym.make("rewardgym/Translate-v0", reward="task_only").unwrapped
    env.reset(seed=0)
    with pytest.raises(EnvInputError, match=message):
        env.step(action)


def test_bad_env_options_raise_typed_errors() -> None:
    with pytest.raises(ConfigError, match="max_turns must be a positive int, got 0"):
        gym.make("rewardgym/Translate-v0", max_turns=0)
    with pytest.raises(UnknownNameError, match="did you mean 'char_drop'"):
        gym.make("rewardgym/Translate-v0", reward="task_only", noise="char_dorp")
    with pytest.raises(ConfigError, match=r"noise_severity must be in \[0, 1\], got 1.5"):
        gym.make(
            "rewardgym/Translate-v0", reward="task_only", noise="char_drop", noise_severity=1.5
        )
    env = gym.make("rewardgym/Translate-v0", reward="task_only").unwrapped
    with pytest.raises(EnvInputError, match=r"call reset\(\) before step\(\)"):
        env.step("a")


def test_token_env_episode_scores_the_decoded_completion() -> None:
    env = gym.make("rewardgym/Arithmetic-Token-v0", reward="task_only").unwrapped
    obs, info = env.reset(seed=0)
    reference = env.examples[info["index"]].reference
    n_prompt = int(obs["attention_mask"].sum())
    for byte in reference.encode():
        obs, reward, terminated, truncated, info = env.step(byte)
        assert not terminated and reward == 0.0
    obs, reward, terminated, truncated, info = env.step(env.eos_token_id)
    assert terminated and not truncated
    assert info["completion"] == reference and reward == pytest.approx(1.0)
    assert int(obs["attention_mask"].sum()) == n_prompt + len(reference) + 1


def test_token_env_truncates_at_the_limit_and_charges_step_cost() -> None:
    env = gym.make(
        "rewardgym/Translate-Token-v0", reward="task_only", max_new_tokens=3, step_cost=0.01
    ).unwrapped
    env.reset(seed=0)
    rewards = [env.step(ord("a"))[1] for _ in range(2)]
    assert rewards == [pytest.approx(-0.01)] * 2
    _, _, terminated, truncated, info = env.step(ord("a"))
    assert truncated and not terminated and info["finished"] is False
    env.reset(seed=1)
    with pytest.raises(EnvInputError, match="outside the vocabulary"):
        env.step(10_000)


def test_token_env_takes_a_transformers_tokenizer(tmp_path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(
        ["solve: Tom has 3 apples =>", "8"],
        trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<eos>", "<pad>"]),
    )
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    env = gym.make("rewardgym/Arithmetic-Token-v0", reward="task_only", tokenizer=hf).unwrapped
    assert env.action_space.n == len(hf)
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(hf.eos_token_id)
    assert terminated and info["completion"] == ""


def test_noisy_prompts_wrapper_noises_only_what_the_agent_sees() -> None:
    from rewardgym.envs.noise import NoisyPrompts

    base = gym.make("rewardgym/Arithmetic-v0", reward="task_only", max_turns=2)
    env = NoisyPrompts(base, "char_swap", 0.2, seed=3)
    noisy, info = env.reset(seed=4)
    clean = base.unwrapped.examples[info["index"]].prompt
    assert noisy != clean and sorted(noisy) == sorted(clean)
    assert env.reset(seed=4)[0] == noisy  # same episode, same noise
    obs, reward, terminated, _, step_info = env.step("wrong")
    assert obs.startswith(noisy) and "wrong" in obs and not terminated
    # the reward still compares with the clean reference
    _, reward, terminated, _, step_info = env.step(step_info["reference"])
    assert terminated and step_info["reward_total"] == pytest.approx(1.0)
    with pytest.raises(UnknownNameError, match="did you mean 'char_swap'"):
        NoisyPrompts(base, "char_swp", 0.1)
