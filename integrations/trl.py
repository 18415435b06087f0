"""rewardgym's measurements in your own TRL script: a few lines give a rewardgym run directory.

Example:
    >>> import rewardgym
    >>> from trl import GRPOConfig, GRPOTrainer
    >>> policy = rewardgym.load_policy("tiny", task="arithmetic")
    >>> kit = rewardgym.trl.attach(task="arithmetic", reward="balanced", out="runs/trl0",
    ...                            model=policy, eval_every=10)
    >>> trainer = GRPOTrainer(
    ...     model=policy.model, processing_class=policy.tokenizer,
    ...     reward_funcs=kit.reward_funcs, train_dataset=kit.train_dataset(),
    ...     args=GRPOConfig(output_dir="runs/trl0/trl", reward_weights=kit.reward_weights,
    ...                     logging_steps=1, max_steps=50),
    ...     callbacks=kit.callbacks)
    >>> trainer.train()    # then: rewardgym evaluate runs/trl0; rewardgym report runs/

docs/trl.md walks through it and maps every option.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewardgym.agents.callbacks import Callback
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.registry import load_policy
from rewardgym.agents.trl_kit import TRLKit
from rewardgym.agents.trl_options import require_trl
from rewardgym.errors import ConfigError

__all__ = ["TRLKit", "attach"]


def attach(
    task: str,
    reward: Any,
    out: str,
    *,
    model: Any,
    tokenizer: Any = None,
    eval_every: int = 10,
    eval_examples: int = 64,
    monitors: str | Sequence[Any] | None = "all",
    action: str = "log",
    task_seed: int = 0,
    task_kwargs: dict | None = None,
    model_options: dict | None = None,
    retention_task: str | None = None,
    progress: bool = True,
    tensorboard: bool = True,
) -> TRLKit:
    """A :class:`TRLKit` for a ``GRPOTrainer`` that trains on ``task`` under ``reward``.

    Args:
        task: a rewardgym task (name or JSONL file): its train split is the dataset, its
            validation split the held-out gold evaluation, its primary metric the gold metric.
        reward: any reward spec ``make_reward`` takes, with fixed weights.
        out: the run directory (new, or an empty folder).
        model: the model TRL trains: an :class:`LMPolicy` (``rewardgym.load_policy``), a
            registered name or local folder rewardgym loads, or a transformers model with its
            ``tokenizer`` (its ``name_or_path`` is recorded: ``rewardgym evaluate`` loads it).
        eval_every: held-out evaluation every this many steps (0: at the start and end only).
        eval_examples: validation examples per evaluation.
        monitors: ``"all"``, ``"source"``, None, or a list of monitor names, ``{name: options}``
            entries or monitor objects (``rewardgym list monitors``).
        action: what the named monitors do on an alert: log, pause or rollback.
        task_seed, task_kwargs, model_options, retention_task: as in ``TrainConfig``.

    Raises:
        ConfigError: TRL missing, a scheduled reward, a monitor that skips, bad options.
        RunDataError: ``out`` already holds a run.
    """
    require_trl()
    policy = _policy(model, tokenizer, task, model_options or {})
    config = TrainConfig(
        task=task,
        task_seed=task_seed,
        task_kwargs=dict(task_kwargs or {}),
        model=policy.name,
        model_options=dict(model_options or {}),
        reward=reward,
        out=str(out),
        eval_every=eval_every,
        eval_examples=eval_examples,
        retention_task=retention_task,
        progress=progress,
        tensorboard=tensorboard,
        backend="trl",
    )
    return TRLKit.create(config, _monitors(monitors, action), policy)


def _policy(model: Any, tokenizer: Any, task: str, options: dict) -> LMPolicy:
    if isinstance(model, LMPolicy):
        return model
    if isinstance(model, str):
        return load_policy(model, task=task, device="cpu", **options)
    if tokenizer is None:
        raise ConfigError(
            f"attach(model=<{type(model).__name__}>) needs tokenizer= (the processing_class you "
            "give GRPOTrainer), or pass an LMPolicy from rewardgym.load_policy"
        )
    parameter = next(model.parameters())
    name = str(getattr(model.config, "name_or_path", "") or "model")
    return LMPolicy(
        model, tokenizer, name=name, device=parameter.device, dtype=parameter.dtype,
        chat=getattr(tokenizer, "chat_template", None) is not None,
    )  # fmt: skip


def _monitors(monitors: str | Sequence[Any] | None, action: str) -> list[Callback]:
    from rewardgym.evaluation.monitors import default_monitors, make_monitors

    if monitors in (None, "none"):
        return []
    if monitors in ("all", "source"):
        preset = "source" if monitors == "source" else "calibrated"
        return default_monitors(action=action, preset=preset)
    built = [m for m in monitors if isinstance(m, Callback)]
    named = [m for m in monitors if not isinstance(m, Callback)]
    return built + (make_monitors([_with_action(m, action) for m in named]) if named else [])


def _with_action(entry: Any, action: str) -> Any:
    if isinstance(entry, str):
        return {entry: {"action": action}}
    return entry
