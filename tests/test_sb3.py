"""The SB3 bridge: transformer extractor, PPO/A2C, safetensors save/load, callbacks."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO

import rewardgym  # noqa: F401  (registers the env ids)
from benchmarks.sb3_copy import (
    MAX_NEW_TOKENS,
    CharTokenizer,
    copy_env,
    copy_reward,
    copy_task,
    copy_vec_env,
)
from rewardgym.agents.sb3 import (
    ExtractorConfig,
    SB3CallbackAdapter,
    TransformerExtractor,
    load_sb3_policy,
    make_sb3_agent,
    save_sb3_policy,
)
from rewardgym.envs.token_env import TokenTaskEnv
from rewardgym.errors import CheckpointError, ConfigError, UnknownNameError

SMALL = {"n_layer": 1, "d_model": 32, "n_head": 2}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models on a shared 2-core machine: extra torch threads only fight (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- the toy copy task


def fixed_observations(env: TokenTaskEnv) -> dict[str, np.ndarray]:
    """A batch of observations: every prompt, and the same prompts one token into the answer."""
    batch = []
    for index in range(len(env.examples)):
        obs, _ = env.reset(options={"index": index})
        batch.append(obs)
        batch.append(env.step(env.tokenizer.encode(env.examples[index].reference)[0])[0])
    return {key: np.stack([obs[key] for obs in batch]) for key in batch[0]}


# --------------------------------------------------------------------------- extractor


def test_extractor_reads_token_obs_and_ignores_padding():
    env = gymnasium.make("rewardgym/Arithmetic-Token-v0", reward=copy_reward, max_new_tokens=4)
    torch.manual_seed(0)
    extractor = TransformerExtractor(env.observation_space, **SMALL)
    assert extractor.features_dim == 32
    assert extractor.vocab_size == 258  # the byte tokenizer: high 257 + 1
    assert extractor.transformer.get_input_embeddings().num_embeddings == 258
    obs, _ = env.reset(seed=0)
    batch = {key: torch.as_tensor(np.stack([obs[key]] * 2)).float() for key in obs}
    n_real = int(obs["attention_mask"].sum())
    batch["input_ids"][1, n_real:] = 7  # junk after the last real token must not matter
    features = extractor(batch)
    assert features.shape == (2, 32)
    torch.testing.assert_close(features[0], features[1])
    batch["input_ids"][1, n_real - 1] = 7  # the last real token does matter
    assert not torch.allclose(extractor(batch)[0], extractor(batch)[1])


def test_llama_extractor_builds_from_config():
    env = copy_env()
    extractor = TransformerExtractor(env.observation_space, arch="llama", n_layer=2, d_model=32)
    assert type(extractor.transformer).__name__ == "LlamaModel"
    assert extractor.transformer.config.num_hidden_layers == 2
    obs = {k: torch.as_tensor(v).float() for k, v in fixed_observations(env).items()}
    assert extractor(obs).shape == (2 * len(env.examples), 32)


def test_extractor_rejects_a_non_token_space():
    space = gymnasium.spaces.Box(0, 1, shape=(4,))
    with pytest.raises(ConfigError, match=r"needs a Dict observation space with keys"):
        TransformerExtractor(space)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"layers": 2}, UnknownNameError, r"unknown extractor option 'layers'.*n_layer"),
        ({"arch": "gtp2"}, UnknownNameError, r"unknown architecture 'gtp2'; did you mean 'gpt2'"),
        ({"d_model": 30, "n_head": 4}, ConfigError, r"d_model=30 is not divisible by n_head=4"),
        ({"n_layer": 0}, ConfigError, r"n_layer must be a positive int, got 0"),
    ],
)
def test_extractor_config_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        ExtractorConfig.from_kwargs(kwargs)


# --------------------------------------------------------------------------- building and training


def test_unknown_algorithm_suggests_the_close_one():
    message = r"unknown algorithm 'ppo2'; did you mean 'ppo'\? Valid algorithms: a2c, ppo\."
    with pytest.raises(UnknownNameError, match=message):
        make_sb3_agent("ppo2", copy_env())


def test_policy_kwargs_may_not_replace_the_extractor():
    with pytest.raises(ConfigError, match=r"policy_kwargs\['features_extractor_class'\] is set"):
        make_sb3_agent(
            "ppo", copy_env(), policy_kwargs={"features_extractor_class": TransformerExtractor}
        )


def test_make_sb3_agent_uses_multi_input_policy_with_the_transformer():
    model = make_sb3_agent("ppo", copy_env(), extractor_kwargs=SMALL, n_steps=16, batch_size=16)
    assert isinstance(model, PPO)
    assert type(model.policy).__name__ == "MultiInputActorCriticPolicy"
    assert isinstance(model.policy.features_extractor, TransformerExtractor)
    assert model.policy.features_extractor.config == ExtractorConfig(**SMALL)


def test_same_seed_same_initial_policy():
    first, second = (
        make_sb3_agent("a2c", copy_env(), extractor_kwargs=SMALL, seed=3) for _ in range(2)
    )
    second_state = second.policy.state_dict()
    for name, tensor in first.policy.state_dict().items():
        torch.testing.assert_close(second_state[name], tensor, msg=name)


def test_a2c_runs_a_few_hundred_steps_and_changes_the_transformer():
    model = make_sb3_agent("a2c", copy_vec_env(n_envs=2), extractor_kwargs=SMALL, n_steps=5)
    assert isinstance(model, A2C)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(total_timesteps=300)
    assert model.num_timesteps >= 300
    after = model.policy.state_dict()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    for part in ("features_extractor.transformer.h.0.attn", "action_net", "value_net"):
        assert any(name.startswith(part) for name in changed), part


# --------------------------------------------------------------------------- save and load


def trained_model(algo: str = "ppo"):
    model = make_sb3_agent(
        algo, copy_vec_env(n_envs=2), extractor_kwargs=SMALL, n_steps=16, **_batch(algo)
    )
    return model.learn(total_timesteps=64)


def _batch(algo: str) -> dict:
    return {"batch_size": 16} if algo == "ppo" else {}


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_save_load_round_trip_gives_identical_actions(tmp_path, algo):
    model = trained_model(algo)
    env_kwargs = {"max_new_tokens": MAX_NEW_TOKENS}
    path = save_sb3_policy(model, tmp_path / "policy", env_id="copy-token", env_kwargs=env_kwargs)
    assert sorted(os.listdir(path)) == ["COMPLETE", "policy.safetensors", "sb3_config.json"]
    assert not list(tmp_path.glob(".*"))  # no temporary directory left behind
    config = json.loads((path / "sb3_config.json").read_text())
    assert config["algo"] == algo
    assert config["extractor_kwargs"] == {**SMALL, "arch": "gpt2", "d_ff": None}
    assert (config["env_id"], config["env_kwargs"]) == ("copy-token", env_kwargs)
    assert config["action_space"] == {"n": 13}  # 11 characters, eos, pad
    assert config["observation_space"]["input_ids"] == [len("copy: ab =>") + MAX_NEW_TOKENS]

    env = copy_env()
    loaded = load_sb3_policy(path, env)
    assert type(loaded) is type(model)
    for name, tensor in model.policy.state_dict().items():
        torch.testing.assert_close(loaded.policy.state_dict()[name], tensor, msg=name)
    obs = fixed_observations(env)
    expected, _ = model.predict(obs, deterministic=True)
    actual, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actual, expected)


def test_shared_extractor_weights_are_stored_once(tmp_path):
    from safetensors import safe_open

    path = save_sb3_policy(trained_model(), tmp_path / "policy")
    with safe_open(path / "policy.safetensors", framework="pt") as handle:
        keys = list(handle.keys())
    assert any(k.startswith("features_extractor.") for k in keys)
    assert not any(k.startswith(("pi_features_extractor.", "vf_features_extractor.")) for k in keys)


def test_save_replaces_an_old_checkpoint_and_refuses_other_directories(tmp_path):
    model = trained_model()
    path = save_sb3_policy(model, tmp_path / "policy")
    model.learn(total_timesteps=32)
    save_sb3_policy(model, path)
    loaded = load_sb3_policy(path, copy_env())
    for name, tensor in model.policy.state_dict().items():
        torch.testing.assert_close(loaded.policy.state_dict()[name], tensor, msg=name)

    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(ConfigError, match=r"refusing to overwrite .*notes: it is not an SB3"):
        save_sb3_policy(model, precious)
    assert (precious / "thesis.txt").read_text() == "do not delete"


def test_env_kwargs_must_be_json(tmp_path):
    with pytest.raises(ConfigError, match=r"env_kwargs=.* cannot be saved as JSON"):
        save_sb3_policy(trained_model(), tmp_path / "p", env_kwargs={"reward": copy_reward})
    assert not (tmp_path / "p").exists()


class _Exploit:
    """A pickle payload: unpickling it would create the directory named by ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _plant_pickle(path: Path, marker: Path, *, fix_hash: bool) -> None:
    payload = pickle.dumps({"policy": _Exploit(marker)})
    (path / "policy.safetensors").write_bytes(payload)
    if fix_hash:  # an attacker who can write the weights can rewrite the JSON too
        import hashlib

        config = json.loads((path / "sb3_config.json").read_text())
        config["weights_sha256"] = hashlib.sha256(payload).hexdigest()
        (path / "sb3_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("fix_hash", "message"),
    [
        (True, r"policy\.safetensors is not a safetensors file .*never loads pickled weights"),
        (False, r"policy\.safetensors does not match the sha256 recorded in sb3_config\.json"),
    ],
)
def test_a_pickle_payload_is_refused_and_never_executed(tmp_path, fix_hash, message):
    path = save_sb3_policy(trained_model(), tmp_path / "policy")
    marker = tmp_path / "pwned"
    _plant_pickle(path, marker, fix_hash=fix_hash)
    with pytest.raises(CheckpointError, match=message):
        load_sb3_policy(path, copy_env())
    assert not marker.exists()


def test_load_refuses_incomplete_and_mismatched_checkpoints(tmp_path):
    path = save_sb3_policy(trained_model(), tmp_path / "policy")
    other_env = TokenTaskEnv(
        copy_task(), reward=copy_reward, tokenizer=CharTokenizer(copy_task().charset + "XYZ")
    )
    message = (
        r"spaces \(vocab 16, length 43\) differ from the policy saved in .* \(vocab 13, length 14\)"
    )
    with pytest.raises(CheckpointError, match=message):
        load_sb3_policy(path, other_env)

    config = json.loads((path / "sb3_config.json").read_text())
    (path / "sb3_config.json").write_text(json.dumps({**config, "version": 99}))
    with pytest.raises(CheckpointError, match=r"format version 99; this rewardgym reads version 1"):
        load_sb3_policy(path, copy_env())

    (path / "COMPLETE").unlink()
    with pytest.raises(CheckpointError, match=r"not a complete SB3 policy checkpoint: COMPLETE"):
        load_sb3_policy(path, copy_env())


# --------------------------------------------------------------------------- callbacks


class Recorder:
    """A rewardgym callback that records its calls and stops after ``stop_after`` updates."""

    def __init__(self, stop_after: int) -> None:
        self.stop_after = stop_after
        self.events: list[str] = []
        self.metrics: list[dict] = []

    def on_train_start(self, ctx):
        self.events.append("start")
        assert isinstance(ctx.model, torch.nn.Module) and ctx.run_dir is None

    def on_update_end(self, ctx, metrics):
        self.events.append(f"update {ctx.update}")
        self.metrics.append(metrics)
        return len(self.metrics) < self.stop_after

    def on_train_end(self, ctx):
        self.events.append("end")


def test_callback_returning_false_stops_learn_early():
    n_envs, n_steps = 2, 16
    model = make_sb3_agent(
        "ppo", copy_vec_env(n_envs), extractor_kwargs=SMALL, n_steps=n_steps, batch_size=16
    )
    recorder = Recorder(stop_after=2)
    model.learn(total_timesteps=10_000, callback=SB3CallbackAdapter(recorder))
    assert recorder.events == ["start", "update 0", "update 1", "end"]
    # two full rollouts, then one vector step before SB3 sees the stop
    assert model.num_timesteps == 2 * n_envs * n_steps + n_envs
    first, second = recorder.metrics
    assert (first["update"], second["update"]) == (0, 1)
    assert first["timesteps"] == n_envs * n_steps
    assert 0.0 <= second["reward_mean"] <= 1.0
    # the second call sees what SB3 logged for the first update
    assert "train/value_loss" in second and "train/entropy_loss" in second
    assert second["entropy_bits"] == pytest.approx(
        -second["train/entropy_loss"] / np.log(2), rel=1e-6
    )
    assert 0.0 < second["entropy_bits"] <= np.log2(13) + 1e-6


def test_adapter_needs_an_on_update_end_hook():
    with pytest.raises(ConfigError, match=r"object has no on_update_end\(ctx, metrics\) method"):
        SB3CallbackAdapter(object())
