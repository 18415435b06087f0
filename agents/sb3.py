"""The stable-baselines3 bridge: PPO and A2C on the token-level environments.

SB3's ``MultiInputPolicy`` reads the ``Dict`` observation of a ``rewardgym/<Task>-Token-v0`` env
through :class:`TransformerExtractor`, a small transformers model built from a config (nothing is
downloaded). Policies are saved as ``policy.state_dict()`` in safetensors plus a JSON config and
rebuilt from that config on load: SB3's own zip files hold pickled objects, and we never unpickle.
Our trainer callbacks and monitors run inside ``model.learn`` through :class:`SB3CallbackAdapter`.

Example:
    >>> import gymnasium, rewardgym
    >>> from rewardgym.agents.sb3 import make_sb3_agent, save_sb3_policy, load_sb3_policy
    >>> env = gymnasium.make("rewardgym/Arithmetic-Token-v0", reward="task_only")
    >>> model = make_sb3_agent("ppo", env, n_steps=64, batch_size=32)
    >>> model = model.learn(total_timesteps=128)
    >>> path = save_sb3_policy(model, "runs/sb3-ppo", env_id="rewardgym/Arithmetic-Token-v0")
    >>> again = load_sb3_policy(path, env)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from transformers import AutoModel, GPT2Config, LlamaConfig, PretrainedConfig

from rewardgym.agents.callbacks import TrainContext
from rewardgym.errors import CheckpointError, ConfigError, UnknownNameError
from rewardgym.fileio import atomic_dir

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"a2c": A2C, "ppo": PPO}
ARCHITECTURES = ("gpt2", "llama")

WEIGHTS_FILE = "policy.safetensors"
CONFIG_FILE = "sb3_config.json"
COMPLETE_FILE = "COMPLETE"
CHECKPOINT_FORMAT = "rewardgym-sb3-policy"
CHECKPOINT_VERSION = 1
_OBS_KEYS = ("input_ids", "attention_mask")
# Settings of the machine a model was trained on, not of the model: never saved.
_MACHINE_KWARGS = ("device", "tensorboard_log")


# --------------------------------------------------------------------------- features extractor


@dataclass(frozen=True)
class ExtractorConfig:
    """The shape of the transformer inside :class:`TransformerExtractor`.

    Example:
        >>> ExtractorConfig(arch="llama", n_layer=2, d_model=128).n_head
        4
    """

    arch: str = dataclasses.field(default="gpt2", metadata={"help": "'gpt2' or 'llama'"})
    n_layer: int = dataclasses.field(default=1, metadata={"help": "transformer blocks"})
    d_model: int = dataclasses.field(default=64, metadata={"help": "hidden size = features_dim"})
    n_head: int = dataclasses.field(default=4, metadata={"help": "attention heads"})
    d_ff: int | None = dataclasses.field(
        default=None, metadata={"help": "MLP width (None: 4 * d_model for gpt2, 2 * for llama)"}
    )

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise UnknownNameError("architecture", self.arch, ARCHITECTURES)
        for name in ("n_layer", "d_model", "n_head"):
            _check_positive_int(name, getattr(self, name))
        if self.d_ff is not None:
            _check_positive_int("d_ff", self.d_ff)
        if self.d_model % self.n_head:
            raise ConfigError(
                f"d_model={self.d_model} is not divisible by n_head={self.n_head}; "
                "pick d_model a multiple of n_head"
            )

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any] | None) -> ExtractorConfig:
        """Build from user kwargs, rejecting unknown keys by name."""
        kwargs = dict(kwargs or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise UnknownNameError("extractor option", unknown[0], known)
        return cls(**kwargs)

    def hf_config(self, vocab_size: int, n_positions: int) -> PretrainedConfig:
        """The transformers config of this shape (dropout off: PPO ratios need a fixed policy)."""
        if self.arch == "gpt2":
            return GPT2Config(
                vocab_size=vocab_size,
                n_positions=n_positions,
                n_embd=self.d_model,
                n_layer=self.n_layer,
                n_head=self.n_head,
                n_inner=self.d_ff,
                resid_pdrop=0.0,
                embd_pdrop=0.0,
                attn_pdrop=0.0,
                bos_token_id=None,
                eos_token_id=None,
            )
        return LlamaConfig(
            vocab_size=vocab_size,
            max_position_embeddings=n_positions,
            hidden_size=self.d_model,
            intermediate_size=self.d_ff or 2 * self.d_model,
            num_hidden_layers=self.n_layer,
            num_attention_heads=self.n_head,
            num_key_value_heads=self.n_head,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
        )


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")


def token_space_shape(observation_space: spaces.Space) -> tuple[int, int]:
    """``(vocab_size, sequence_length)`` of a token env's observation space.

    Raises:
        ConfigError: the space is not the ``Dict(input_ids, attention_mask)`` of a token env.

    Example:
        >>> import gymnasium, rewardgym
        >>> env = gymnasium.make("rewardgym/Arithmetic-Token-v0", reward="task_only")
        >>> token_space_shape(env.observation_space)[0]
        258
    """
    fix = "use a token-level env, e.g. 'rewardgym/Translate-Token-v0'"
    if not isinstance(observation_space, spaces.Dict) or set(observation_space.spaces) != set(
        _OBS_KEYS
    ):
        raise ConfigError(
            f"TransformerExtractor needs a Dict observation space with keys {list(_OBS_KEYS)}, "
            f"got {observation_space!r}; {fix}"
        )
    ids, mask = (observation_space[key] for key in _OBS_KEYS)
    for key, box in zip(_OBS_KEYS, (ids, mask), strict=True):
        if not isinstance(box, spaces.Box) or len(box.shape) != 1:
            raise ConfigError(f"observation '{key}' must be a 1-D Box, got {box!r}; {fix}")
    if ids.shape != mask.shape:
        raise ConfigError(
            f"input_ids shape {ids.shape} differs from attention_mask shape {mask.shape}; {fix}"
        )
    return int(np.max(ids.high)) + 1, int(ids.shape[0])


class TransformerExtractor(BaseFeaturesExtractor):
    """Features of a token observation: a small transformer's hidden state at the last real token.

    The model is built from a config (``AutoModel.from_config``: no download), with
    ``vocab = input_ids.high + 1`` and as many positions as the observation is long. The mask
    is right-padded, so a causal model's state at the last real token has read the whole text.

    Args:
        observation_space: the token env's ``Dict(input_ids, attention_mask)`` space.
        **kwargs: the fields of :class:`ExtractorConfig` (arch, n_layer, d_model, n_head, d_ff).

    Example:
        >>> import gymnasium, rewardgym
        >>> env = gymnasium.make("rewardgym/Arithmetic-Token-v0", reward="task_only")
        >>> extractor = TransformerExtractor(env.observation_space, n_layer=1, d_model=64)
        >>> extractor.features_dim
        64
    """

    def __init__(self, observation_space: spaces.Dict, **kwargs: Any) -> None:
        config = ExtractorConfig.from_kwargs(kwargs)
        super().__init__(observation_space, features_dim=config.d_model)
        self.config = config
        self.vocab_size, self.seq_len = token_space_shape(observation_space)
        self.transformer = AutoModel.from_config(config.hf_config(self.vocab_size, self.seq_len))

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        # SB3 hands Box observations over as float32; ids below 2**24 survive that exactly.
        input_ids = observations["input_ids"].round().long().clamp(0, self.vocab_size - 1)
        mask = (observations["attention_mask"] > 0.5).long()
        hidden = self.transformer(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), _last_real(mask)]


def _last_real(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of ``mask`` (0 for an all-zero row)."""
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    return (mask * positions).argmax(dim=1)


# --------------------------------------------------------------------------- building a model


def make_sb3_agent(
    algo: str,
    env: Any,
    *,
    extractor_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    **algo_kwargs: Any,
) -> BaseAlgorithm:
    """An SB3 PPO or A2C model whose ``MultiInputPolicy`` reads tokens with a transformer.

    Args:
        algo: "ppo" or "a2c".
        env: a token-level env (``rewardgym/<Task>-Token-v0``), a VecEnv of them, or an env id.
        extractor_kwargs: fields of :class:`ExtractorConfig` (arch, n_layer, d_model, n_head,
            d_ff).
        seed: seeds SB3, numpy and torch (so the policy's initial weights too).
        **algo_kwargs: passed to the SB3 class (n_steps, batch_size, learning_rate, ...);
            ``policy_kwargs`` is merged with the extractor settings.

    Returns:
        The SB3 model; ``model.rewardgym_config`` records how it was built (for saving).

    Raises:
        UnknownNameError: ``algo`` or an extractor option is unknown.
        ConfigError: the env is not token-level, or policy_kwargs sets the extractor itself.

    Example:
        >>> import gymnasium, rewardgym
        >>> env = gymnasium.make("rewardgym/Arithmetic-Token-v0", reward="task_only")
        >>> model = make_sb3_agent("a2c", env, extractor_kwargs={"d_model": 64}, n_steps=8)
    """
    algo_class = _algo_class(algo)
    extractor = ExtractorConfig.from_kwargs(extractor_kwargs)
    policy_kwargs = dict(algo_kwargs.pop("policy_kwargs", None) or {})
    for key in ("features_extractor_class", "features_extractor_kwargs"):
        if key in policy_kwargs:
            raise ConfigError(
                f"policy_kwargs[{key!r}] is set by make_sb3_agent; pass the transformer's "
                "shape as extractor_kwargs instead"
            )
    record = {
        "algo": algo,
        "seed": seed,
        "extractor_kwargs": dataclasses.asdict(extractor),
        "policy_kwargs": dict(policy_kwargs),
        "algo_kwargs": dict(algo_kwargs),
    }
    policy_kwargs["features_extractor_class"] = TransformerExtractor
    policy_kwargs["features_extractor_kwargs"] = dataclasses.asdict(extractor)
    model = algo_class(
        "MultiInputPolicy", env, policy_kwargs=policy_kwargs, seed=seed, **algo_kwargs
    )
    model.rewardgym_config = record
    if not algo_kwargs.get("verbose") and not algo_kwargs.get("tensorboard_log"):
        # SB3's default logger would create an empty SB3-<date> folder in the temp dir per learn()
        model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def _algo_class(algo: str) -> type[BaseAlgorithm]:
    if algo not in ALGORITHMS:
        raise UnknownNameError("algorithm", algo, list(ALGORITHMS))
    return ALGORITHMS[algo]


# --------------------------------------------------------------------------- save and load


def save_sb3_policy(
    model: BaseAlgorithm,
    path_dir: str | os.PathLike[str],
    *,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Save an SB3 model's policy as safetensors plus a JSON config, atomically.

    The directory gets ``policy.safetensors`` (``model.policy.state_dict()``, aliases of shared
    tensors stored once), ``sb3_config.json`` (algorithm, extractor and policy settings, the env
    id and kwargs you pass, the space shapes, the weights' sha256) and a ``COMPLETE`` marker. It
    is written to a temporary directory beside ``path_dir`` and renamed into place; an existing
    checkpoint there is replaced. No optimizer state and no pickle.

    Args:
        model: a PPO or A2C model from :func:`make_sb3_agent` (or built by hand with a
            :class:`TransformerExtractor`).
        path_dir: the checkpoint directory.
        env_id: recorded for whoever loads it (e.g. "rewardgym/Translate-Token-v0").
        env_kwargs: recorded too; must be JSON (a reward given by name, not as an object).

    Returns:
        The checkpoint directory.

    Raises:
        ConfigError: the model cannot be described in JSON, or ``path_dir`` holds other files.

    Example:
        >>> save_sb3_policy(model, "runs/ppo-policy", env_id="rewardgym/Arithmetic-Token-v0")
        PosixPath('runs/ppo-policy')
    """
    target = Path(path_dir)
    config = _checkpoint_config(model, env_id, env_kwargs)
    tensors = _unique_tensors(model.policy.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(target)
    with atomic_dir(target) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        config["weights_sha256"] = _sha256(tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / COMPLETE_FILE).write_text("")
    return target


def load_sb3_policy(
    path_dir: str | os.PathLike[str], env: Any, *, device: str = "auto"
) -> BaseAlgorithm:
    """Rebuild an SB3 model from a :func:`save_sb3_policy` directory and load its weights.

    The model is constructed from ``sb3_config.json`` with :func:`make_sb3_agent`, then the
    safetensors state dict is loaded strictly. Nothing is unpickled: never ``PPO.load``.

    Args:
        path_dir: the checkpoint directory.
        env: an env with the same spaces as the one saved (same tokenizer and lengths).
        device: torch device of the rebuilt policy.

    Returns:
        The PPO or A2C model, ready for ``predict`` or more ``learn``.

    Raises:
        CheckpointError: files missing or incomplete, a weights file that is not safetensors or
            does not match its recorded hash, an unknown format version, or env spaces that
            differ from the saved ones.

    Example:
        >>> model = load_sb3_policy("runs/ppo-policy", env)
        >>> action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    """
    root = Path(path_dir)
    config = _read_config(root)
    algo_kwargs = {**config["algo_kwargs"], "device": device}
    model = make_sb3_agent(
        config["algo"],
        env,
        extractor_kwargs=config["extractor_kwargs"],
        seed=config["seed"],
        policy_kwargs=config["policy_kwargs"],
        **algo_kwargs,
    )
    _check_spaces(config, model, root)
    state = _read_weights(root, config)
    _load_state(model.policy, state, root)
    model.rewardgym_config["env_id"] = config.get("env_id")
    model.rewardgym_config["env_kwargs"] = config.get("env_kwargs")
    return model


def _checkpoint_config(
    model: BaseAlgorithm, env_id: str | None, env_kwargs: dict[str, Any] | None
) -> dict[str, Any]:
    record = getattr(model, "rewardgym_config", None) or _describe_model(model)
    algo_kwargs, skipped = {}, []
    for key, value in record["algo_kwargs"].items():
        if key in _MACHINE_KWARGS:
            continue
        # A callable schedule shapes training, not the weights: record that it was skipped.
        if _is_json(value):
            algo_kwargs[key] = value
        else:
            skipped.append(key)
    for name, value in (("policy_kwargs", record["policy_kwargs"]), ("env_kwargs", env_kwargs)):
        if not _is_json(value):
            raise ConfigError(
                f"{name}={value!r:.200} cannot be saved as JSON; pass names and numbers "
                "(e.g. reward='balanced', net_arch=[64, 64]) so the policy can be rebuilt"
            )
    ids_space, action_space = model.observation_space["input_ids"], model.action_space
    vocab, length = token_space_shape(model.observation_space)
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "algo": record["algo"],
        "seed": record["seed"],
        "extractor_kwargs": record["extractor_kwargs"],
        "policy_kwargs": record["policy_kwargs"],
        "algo_kwargs": algo_kwargs,
        "skipped_algo_kwargs": sorted(skipped),
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "observation_space": {"input_ids": list(ids_space.shape), "vocab_size": vocab},
        "action_space": {"n": int(action_space.n)},
        "sequence_length": length,
    }


def _describe_model(model: BaseAlgorithm) -> dict[str, Any]:
    """The build record of a model not made by :func:`make_sb3_agent`."""
    algo = next((name for name, cls in ALGORITHMS.items() if type(model) is cls), None)
    extractor = getattr(model.policy, "features_extractor", None)
    if algo is None or not isinstance(extractor, TransformerExtractor):
        raise ConfigError(
            f"cannot save {type(model).__name__} with "
            f"{type(extractor).__name__}: only PPO/A2C with a TransformerExtractor are "
            "supported; build the model with make_sb3_agent"
        )
    policy_kwargs = {
        k: v for k, v in model.policy_kwargs.items() if not k.startswith("features_extractor")
    }
    return {
        "algo": algo,
        "seed": model.seed if model.seed is not None else 0,
        "extractor_kwargs": dataclasses.asdict(extractor.config),
        "policy_kwargs": policy_kwargs,
        "algo_kwargs": {},
    }


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _unique_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous copies of a state dict, each shared tensor kept once under its first name.

    With a shared features extractor SB3 lists the same weights under ``features_extractor``,
    ``pi_features_extractor`` and ``vf_features_extractor``; safetensors refuses aliases.
    """
    return {name: state[name].contiguous() for name in _alias_map(state).values()}


def _alias_map(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Every state-dict name -> the first name holding the same tensor."""
    first: dict[tuple[int, tuple[int, ...], torch.dtype], str] = {}
    canonical = {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() == 0:  # empty tensors share no storage worth deduplicating
            key = (id(tensor), (), tensor.dtype)
        canonical[name] = first.setdefault(key, name)
    return canonical


def _check_replaceable(target: Path) -> None:
    if not target.exists():
        return
    if target.is_dir() and (not any(target.iterdir()) or (target / CONFIG_FILE).exists()):
        return
    raise ConfigError(
        f"refusing to overwrite {target}: it is not an SB3 policy checkpoint directory; "
        "pick a new path or remove it"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_config(root: Path) -> dict[str, Any]:
    for name in (CONFIG_FILE, WEIGHTS_FILE, COMPLETE_FILE):
        if not (root / name).is_file():
            raise CheckpointError(
                f"{root} is not a complete SB3 policy checkpoint: {name} is missing; "
                "save it with save_sb3_policy"
            )
    try:
        config = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{root / CONFIG_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{root / CONFIG_FILE} is not a {CHECKPOINT_FORMAT} config")
    if config.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{root / CONFIG_FILE} has format version {config.get('version')!r}; this rewardgym "
            f"reads version {CHECKPOINT_VERSION}: upgrade rewardgym or re-save the policy"
        )
    return config


def _check_spaces(config: dict[str, Any], model: BaseAlgorithm, root: Path) -> None:
    vocab, length = token_space_shape(model.observation_space)
    saved = (config["observation_space"]["vocab_size"], config["sequence_length"])
    if (vocab, length) != tuple(saved) or int(model.action_space.n) != config["action_space"]["n"]:
        raise CheckpointError(
            f"the env's spaces (vocab {vocab}, length {length}) differ from the policy saved in "
            f"{root} (vocab {saved[0]}, length {saved[1]}); make the env as it was saved: "
            f"env_id={config.get('env_id')!r}, env_kwargs={config.get('env_kwargs')!r}"
        )


def _read_weights(root: Path, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = root / WEIGHTS_FILE
    recorded = config.get("weights_sha256")
    if recorded is not None and _sha256(path) != recorded:
        raise CheckpointError(
            f"{path} does not match the sha256 recorded in {CONFIG_FILE}: the file was changed "
            "or corrupted after saving; save the policy again"
        )
    try:
        return load_file(str(path))  # safetensors parses a header and raw bytes: never pickle
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a safetensors file ({exc}); rewardgym never loads pickled weights: "
            "save the policy with save_sb3_policy"
        ) from exc


def _load_state(policy: torch.nn.Module, state: dict[str, torch.Tensor], root: Path) -> None:
    aliases = _alias_map(policy.state_dict())
    needed = set(aliases.values())
    missing, unexpected = sorted(needed - set(state)), sorted(set(state) - needed)
    if missing or unexpected:
        raise CheckpointError(
            f"the weights in {root} do not fit the policy built from its config: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}; the files come from different saves"
        )
    full = {name: state[first] for name, first in aliases.items()}
    try:
        policy.load_state_dict(full, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the weights in {root} do not fit the policy: {exc}") from exc


# --------------------------------------------------------------------------- callbacks


class SB3CallbackAdapter(BaseCallback):
    """Runs a rewardgym callback (or monitor) inside SB3's ``learn``.

    After every rollout, ``callback.on_update_end(ctx, metrics)`` is called with SB3's logger
    values recorded since the last log dump (``train/*`` of the previous update, ``rollout/*``),
    plus ``update`` (0, 1, ... per rollout), ``timesteps``, ``reward_mean`` (mean return of the
    episodes in SB3's episode buffer, NaN before the first one ends) and, when SB3 logged an
    entropy loss, ``entropy_bits``. Returning ``False`` stops ``learn`` at its next env step.
    ``ctx`` is a :class:`~rewardgym.agents.callbacks.TrainContext` whose ``model`` is the SB3
    policy module and ``run_dir`` is None. ``on_train_start`` / ``on_train_end`` are called
    when the callback has them; ``on_before_step`` is not (SB3 owns the optimizer step).

    Args:
        callback: an object with ``on_update_end(ctx, metrics) -> bool | None``.
        verbose: SB3 verbosity.

    Example:
        >>> class StopAt:
        ...     def on_update_end(self, ctx, metrics):
        ...         return metrics["reward_mean"] < 0.9
        >>> model.learn(total_timesteps=10_000, callback=SB3CallbackAdapter(StopAt()))
    """

    def __init__(self, callback: Any, verbose: int = 0) -> None:
        if not callable(getattr(callback, "on_update_end", None)):
            raise ConfigError(
                f"{type(callback).__name__} has no on_update_end(ctx, metrics) method; wrap a "
                "rewardgym Callback (rewardgym.agents.callbacks.Callback)"
            )
        super().__init__(verbose)
        self.callback = callback
        self.continue_training = True
        self.update = 0
        self.ctx: TrainContext | None = None

    def _on_training_start(self) -> None:
        config = getattr(self.model, "rewardgym_config", None)
        self.ctx = TrainContext(
            model=self.model.policy, config=config, run_dir=None, update=self.update
        )
        self._call_optional("on_train_start")

    def _on_rollout_end(self) -> None:
        self.ctx.update = self.update
        result = self.callback.on_update_end(self.ctx, self._metrics())
        self.update += 1
        if result is False:
            self.continue_training = False

    def _on_step(self) -> bool:
        return self.continue_training

    def _on_training_end(self) -> None:
        self._call_optional("on_train_end")

    def _call_optional(self, hook: str) -> None:
        method = getattr(self.callback, hook, None)
        if callable(method):
            method(self.ctx)

    def _metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = dict(self.model.logger.name_to_value)
        returns = [info["r"] for info in self.model.ep_info_buffer or ()]
        metrics["update"] = self.update
        metrics["timesteps"] = int(self.model.num_timesteps)
        metrics["reward_mean"] = float(np.mean(returns)) if returns else math.nan
        if "train/entropy_loss" in metrics:  # SB3 logs minus the mean entropy, in nats
            metrics["entropy_bits"] = -float(metrics["train/entropy_loss"]) / math.log(2)
        return metrics
