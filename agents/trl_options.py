"""rewardgym's training options in TRL's terms: the one table both directions read.

``backend: trl`` turns a :class:`~rewardgym.agents.config.TrainConfig` into ``GRPOConfig``
keywords (:func:`grpo_arguments`); a TRL script with :func:`rewardgym.integrations.trl.attach`
goes the other way, recording the ``GRPOConfig`` it trains with as the run's config
(:func:`options_from_grpo_args`). An option TRL has no counterpart for is refused by name with
the alternative (:func:`check_trl_options`), never silently dropped.

Example:
    >>> grpo_arguments(TrainConfig(updates=3), output_dir="runs/a/trl")["max_steps"]
    3
"""

from __future__ import annotations

from typing import Any

from rewardgym.errors import ConfigError

TRL_MISSING = (
    "TRL is not installed; install it beside the CPU torch pin with "
    '`pip install "torch==2.13.0" "trl>=0.20,<2"` (or `make setup`)'
)


def require_trl() -> Any:
    """The ``trl`` module, or a ConfigError with the install command."""
    try:
        import trl
    except ImportError:
        raise ConfigError(TRL_MISSING) from None
    return trl


__all__ = [
    "OPTION_TABLE",
    "TRL_MISSING",
    "UNSUPPORTED",
    "check_trl_options",
    "grpo_arguments",
    "options_from_grpo_args",
    "require_trl",
]

#: rewardgym option -> its GRPOConfig counterpart (docs/trl.md prints this table)
OPTION_TABLE: dict[str, str] = {
    "updates": "max_steps",
    "seed": "seed (and data_seed)",
    "group_size": "num_generations",
    "prompts_per_update": "per_device_train_batch_size × gradient_accumulation_steps "
    "/ num_generations",
    "micro_batches": "gradient_accumulation_steps (= steps_per_generation: one rollout per step)",
    "max_new_tokens": "max_completion_length",
    "temperature": "temperature",
    "top_p": "top_p (top_k 0)",
    "lr": "learning_rate",
    "lr_schedule": "lr_scheduler_type",
    "warmup_updates": "warmup_steps",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "kl_coef": "beta",
    "entropy_coef": "entropy_coef",
    "clip_eps": "epsilon",
    "epsilon_high": "epsilon_high",
    "loss_type": "loss_type",
    "scale_rewards": "scale_rewards",
    "aggregation": "multi_objective_aggregation",
    "mask_truncated_completions": "mask_truncated_completions",
    "lora_r, lora_alpha, lora_dropout, lora_target_modules": "peft_config=LoraConfig(r, "
    "lora_alpha, lora_dropout, target_modules): the adapter is put in before TRL gets the model",
    "checkpoint_every": "save_steps (save_strategy 'steps'; 0: 'no')",
    "keep_checkpoints": "save_total_limit",
    "dtype": "bf16 (bfloat16) or fp32",
    "device": "use_cpu (cpu) or accelerate's choice (None: CUDA when present)",
    "reward (its components and weights)": "reward_funcs and reward_weights",
}  # fmt: skip

#: options with no TRL counterpart: refused under backend trl unless left at the default
UNSUPPORTED: dict[str, str] = {
    "algo": "GRPOTrainer runs GRPO only: set algo: grpo, or backend: native for reinforce and ppo",
    "token_budget": "TRL generates every completion to max_completion_length: lower "
    "max_new_tokens, or use backend: native for a per-update token budget",
    "replay_share": "TRL trains on the RL loss only: use backend: native for supervised replay",
    "replay_tasks": "replay needs backend: native",
    "replay_confidence_weighting": "replay needs backend: native",
    "measure_kl": "TRL computes the KL only when it pays it: set kl_coef > 0 (TRL's beta), or "
    "use backend: native to measure it at kl_coef 0",
    "max_faults": "TRL takes every optimizer step, so a non-finite update is not skipped; the run "
    "still stops after max_nonfinite_updates non-finite updates in a row",
}


def check_trl_options(config: Any) -> None:
    """Refuse, by name, every option set away from its default that TRL cannot honour.

    Raises:
        ConfigError: one message naming each such option and its alternative.
    """
    defaults = type(config)()  # a TrainConfig of defaults (backend native: no recursion)
    refused = [
        f"{name} = {getattr(config, name)!r} ({why})"
        for name, why in UNSUPPORTED.items()
        if getattr(config, name) != getattr(defaults, name)
    ]
    if refused:
        raise ConfigError(
            "backend 'trl' has no counterpart for: " + "; ".join(refused) + ". Leave these at "
            "their defaults under backend: trl (see docs/trl.md for the option table)"
        )


def grpo_arguments(config: Any, output_dir: str) -> dict[str, Any]:
    """``GRPOConfig`` keywords that train as ``config`` says (reward weights come from the kit).

    One rollout per optimizer step: the update's ``prompts_per_update × group_size`` samples are
    generated at once and split into ``micro_batches`` gradient-accumulation steps, as
    rewardgym's trainer splits them.
    """
    epsilon_high = config.epsilon_high if config.epsilon_high is not None else config.clip_eps
    return {
        "output_dir": output_dir,
        "max_steps": config.updates,
        "seed": config.seed,
        "data_seed": config.seed,
        "num_generations": config.group_size,
        "per_device_train_batch_size": config.batch_size // config.micro_batches,
        "gradient_accumulation_steps": config.micro_batches,
        "steps_per_generation": config.micro_batches,
        "num_iterations": 1,
        "max_completion_length": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": 0,
        "learning_rate": config.lr,
        "lr_scheduler_type": config.lr_schedule,
        "warmup_steps": config.warmup_updates,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "beta": config.kl_coef,
        "entropy_coef": config.entropy_coef,
        "epsilon": config.clip_eps,
        "epsilon_high": epsilon_high,
        "loss_type": config.loss_type,
        "scale_rewards": config.scale_rewards,
        "multi_objective_aggregation": config.aggregation,
        "mask_truncated_completions": config.mask_truncated_completions,
        "save_strategy": "steps" if config.checkpoint_every else "no",
        "save_steps": config.checkpoint_every or 1,
        "save_total_limit": config.keep_checkpoints,
        "bf16": config.dtype == "bfloat16",
        "use_cpu": config.device == "cpu",
        "logging_steps": 1,
        "report_to": "none",  # the run writes its own TensorBoard files
        "disable_tqdm": True,  # the run shows its own progress bar
        "log_completions": False,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
    }


def options_from_grpo_args(args: Any) -> dict[str, Any]:
    """The TrainConfig options a ``GRPOConfig`` amounts to (the inverse of
    :func:`grpo_arguments`), for the config.json of a run a TRL script trained."""
    generations = int(args.num_generations)
    batch = int(args.per_device_train_batch_size) * int(args.gradient_accumulation_steps)
    return {
        "updates": int(args.max_steps),
        "seed": int(args.seed),
        "group_size": generations,
        "prompts_per_update": max(1, batch // generations),
        "micro_batches": int(args.gradient_accumulation_steps),
        "max_new_tokens": int(args.max_completion_length),
        "temperature": float(args.temperature),
        "top_p": float(args.top_p),
        "lr": float(args.learning_rate),
        "lr_schedule": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup_updates": int(args.warmup_steps or 0),
        "weight_decay": float(args.weight_decay),
        "max_grad_norm": float(args.max_grad_norm or 0.0),
        "kl_coef": float(args.beta),
        "entropy_coef": float(getattr(args, "entropy_coef", 0.0) or 0.0),
        "clip_eps": float(args.epsilon),
        "epsilon_high": float(args.epsilon_high) if args.epsilon_high is not None else None,
        "loss_type": str(args.loss_type),
        "scale_rewards": _scale_rewards(args.scale_rewards),
        "aggregation": str(getattr(args, "multi_objective_aggregation", "sum_then_normalize")),
        "mask_truncated_completions": bool(args.mask_truncated_completions),
        "dtype": "bfloat16" if args.bf16 else "float32",
    }


def _scale_rewards(value: Any) -> str:
    """TRL also takes booleans here: True is per group, False is none."""
    if value is True:
        return "group"
    if value is False:
        return "none"
    return str(value)
