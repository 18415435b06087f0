"""Fuzzing with hypothesis: arbitrary unicode through every built-in reward, every noise function,
both environment kinds' ``step``, the JSONL task loader and the config loader.

The property everywhere: no crash outside the documented errors (``RewardGymError`` subclasses),
and every number that comes out is finite (or a documented ``None``, "does not apply").
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewardgym  # noqa: F401  (registers the environments)
from rewardgym.agents.config import TrainConfig
from rewardgym.envs.noise import NOISE_TYPES, apply_noise
from rewardgym.envs.tasks import load_task_jsonl
from rewardgym.errors import ConfigError, EnvInputError, RewardGymError, TaskDataError
from rewardgym.rewards import list_rewards, make_reward

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples every run: a CI failure reproduces locally
)
TEXT = st.text(max_size=200)  # any unicode: surrogates, NUL, combining marks, RTL, emoji
BATCH = st.lists(st.tuples(TEXT, TEXT, TEXT), min_size=1, max_size=4)


@pytest.fixture(scope="module")
def rewards() -> dict:
    return {name: make_reward(name) for name in list_rewards()}


@pytest.mark.parametrize(
    "name",
    # the semantic reward embeds every sample with MiniLM: seconds, so not in the quick tier
    [pytest.param(n, marks=pytest.mark.slow) if n == "semantic" else n for n in list_rewards()],
)
@FUZZ
@given(batch=BATCH)
def test_every_builtin_reward_gives_finite_values_or_none(rewards, name, batch) -> None:
    prompts, completions, references = (list(x) for x in zip(*batch, strict=True))
    values = rewards[name](prompts, completions, references=references)
    assert len(values) == len(completions)
    for value in values:
        assert value is None or (isinstance(value, float) and math.isfinite(value)), value
    out = rewards[name].score(prompts, completions, references=references)
    assert out.total.shape == (len(completions),) and np.isfinite(out.total).all()


@pytest.mark.parametrize("kind", NOISE_TYPES)
@FUZZ
@given(text=TEXT, severity=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_every_noise_function_is_total_and_deterministic(kind, text, severity, seed) -> None:
    noisy = apply_noise(text, kind, severity, seed=seed)
    assert isinstance(noisy, str)
    assert noisy == apply_noise(text, kind, severity, seed=seed)
    assert apply_noise(text, kind, 0.0, seed=seed) == text


@pytest.mark.parametrize("kind", NOISE_TYPES)
@FUZZ
@given(severity=st.one_of(st.floats(allow_nan=True), st.just(-0.1), st.just(1.5)))
def test_noise_severity_outside_0_1_is_a_config_error(kind, severity) -> None:
    if 0.0 <= severity <= 1.0:
        apply_noise("some text", kind, severity)
        return
    with pytest.raises(RewardGymError):
        apply_noise("some text", kind, severity)


@pytest.fixture(scope="module")
def text_env():
    env = gym.make("rewardgym/Arithmetic-v0", reward="balanced")
    return env


@FUZZ
@given(action=TEXT, seed=st.integers(0, 1000))
def test_text_env_step_takes_any_string(text_env, action, seed) -> None:
    text_env.reset(seed=seed)
    try:
        _, reward, terminated, truncated, info = text_env.step(action)
    except EnvInputError as exc:  # documented: over-long actions
        assert "over the limit" in str(exc)
        return
    assert math.isfinite(reward) and (terminated or truncated)
    assert math.isfinite(info["reward_total"])


@FUZZ
@given(
    action=st.one_of(st.integers(), st.floats(), st.none(), st.binary(), st.lists(st.integers()))
)
def test_text_env_step_refuses_non_strings_with_a_typed_error(text_env, action) -> None:
    text_env.reset(seed=0)
    with pytest.raises(EnvInputError, match="action must be a str or a dict"):
        text_env.step(action)


@pytest.fixture(scope="module")
def token_env():
    return gym.make("rewardgym/Arithmetic-Token-v0", reward="balanced")


@FUZZ
@given(actions=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=40))
def test_token_env_step_takes_any_int_or_refuses_it(token_env, actions) -> None:
    token_env.reset(seed=0)
    n = token_env.action_space.n
    for action in actions:
        if not 0 <= action < n:
            with pytest.raises(EnvInputError):
                token_env.step(action)
            continue
        obs, reward, terminated, truncated, _ = token_env.step(action)
        assert math.isfinite(reward) and token_env.observation_space.contains(obs)
        if terminated or truncated:
            token_env.reset(seed=0)


JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
RECORD = st.dictionaries(
    st.sampled_from(["prompt", "reference", "split", "meta", "extra"]), JSON_SCALAR, max_size=5
)


@FUZZ
@given(data=st.binary(max_size=400))
def test_jsonl_loader_on_arbitrary_bytes(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "data.jsonl"
    path.write_bytes(data)
    try:
        task = load_task_jsonl(path)
    except TaskDataError:
        return
    assert sum(task.sizes().values()) >= 1


@FUZZ
@given(records=st.lists(RECORD, min_size=1, max_size=12))
def test_jsonl_loader_on_arbitrary_records(tmp_path_factory, records) -> None:
    import json

    path = tmp_path_factory.mktemp("jsonl") / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    try:
        task = load_task_jsonl(path)
    except TaskDataError:
        return
    for split in ("train", "validation", "test"):
        for ex in task.split(split):
            assert isinstance(ex.prompt, str) and isinstance(ex.reference, str)


YAML_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
OPTION = st.sampled_from([*TrainConfig.help_texts(), "nonsense", "lr "])


@FUZZ
@given(data=st.dictionaries(OPTION, YAML_VALUE, max_size=6))
def test_config_from_any_mapping_is_valid_or_a_typed_error(data) -> None:
    try:
        TrainConfig.from_dict(data)
    except RewardGymError:
        pass


@FUZZ
@given(text=st.text(max_size=300))
def test_config_loader_on_arbitrary_yaml_text(tmp_path_factory, text) -> None:
    path = tmp_path_factory.mktemp("yaml") / "cfg.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        TrainConfig.from_yaml(path)
    except RewardGymError as exc:
        assert isinstance(exc, (ConfigError, KeyError))
