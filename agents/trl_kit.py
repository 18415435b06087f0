"""rewardgym's measurements inside TRL's ``GRPOTrainer``: a run directory like a native run's.

:class:`TRLKit` holds what a TRL script passes on: ``reward_funcs`` and ``reward_weights`` (the
reward, one function per component, scoring each batch once and keeping its samples), the
``train_dataset`` (the task's train split with each prompt's ``index``) and ``callbacks``
(:class:`RunRecorder`). The recorder writes what rewardgym's trainer writes, in the same schema:

- ``config.json``: the run as a :class:`TrainConfig` (``backend: trl``), read back by
  ``rewardgym evaluate`` and ``replay``;
- ``metrics.jsonl``: one record per optimizer step (``update`` = TRL's step - 1): reward total
  and components, lengths, entropy, KL, gradient norm, clip ratio, learning rate, FLOPs, the
  held-out ``eval/`` keys every ``eval_every`` steps, alerts; TRL's own log under ``trl/``;
- ``samples.jsonl``: every training batch (prompt index, completion, tokens, each component);
- ``checkpoints/step-N``: a rewardgym checkpoint beside each one TRL saves, marked healthy when
  no alert came since the previous one: what a rollback restores and ``evaluate`` loads;
- ``run.json``: the summary, with ``backend``, library versions and TRL's options.

Monitors run as in rewardgym's trainer, after TRL's step: ``log``; ``pause`` (TRL saves a
checkpoint and stops); ``rollback`` (the newest healthy checkpoint's weights and optimizer state
are restored). TRL takes every step it computes, so ``skip`` is refused at start-up.

Example:
    >>> kit = TRLKit.create(config, monitors=[], policy=policy)
    >>> trainer = GRPOTrainer(model=policy.model, processing_class=policy.tokenizer,
    ...     reward_funcs=kit.reward_funcs, train_dataset=kit.train_dataset(),
    ...     args=GRPOConfig(..., reward_weights=kit.reward_weights, logging_steps=1),
    ...     callbacks=kit.callbacks)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardgym.agents.callbacks import Callback, CallbackList
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.runs import check_fresh_out
from rewardgym.agents.trl_options import require_trl
from rewardgym.agents.trl_recorder import RunRecorder
from rewardgym.agents.trl_rewards import BatchScorer
from rewardgym.envs.scoring import resolve_reward
from rewardgym.envs.tasks import make_task
from rewardgym.errors import ConfigError, RunDataError

__all__ = ["TRLKit"]


@dataclass
class TRLKit:
    """What a TRL script passes to ``GRPOTrainer`` to get a rewardgym run directory."""

    reward_funcs: list
    reward_weights: list[float]
    callbacks: list
    recorder: RunRecorder = field(repr=False)

    @property
    def run_dir(self) -> Path:
        return self.recorder.run_dir

    @classmethod
    def create(
        cls, config: TrainConfig, monitors: list[Callback], policy: LMPolicy, resume: bool = False
    ) -> TRLKit:
        """The kit of a run of ``config`` (task, reward, model, eval settings, ``out``) whose
        model ``policy`` formats prompts the way TRL will see them.

        Raises:
            ConfigError: TRL missing, no ``out``, a scheduled reward, a monitor that skips.
            RunDataError: ``out`` already holds a run (unless ``resume``) or is not a folder.
        """
        require_trl()
        if not resume:
            _check_out(config.out)
        for monitor in monitors:
            if getattr(monitor, "action", None) == "skip":
                raise ConfigError(
                    f"monitor {monitor.name!r} has action 'skip', but TRL takes every optimizer "
                    "step it computes; use log, pause or rollback under TRL"
                )
        task = make_task(config.task, seed=config.task_seed, **config.task_kwargs)
        eos = {policy.eos_id, *_ids(getattr(policy.model.generation_config, "eos_token_id", []))}
        scorer = BatchScorer(task, resolve_reward(config.reward, task=task), eos_ids=eos)
        recorder = RunRecorder(config, scorer, CallbackList(monitors), policy)
        return cls(scorer.reward_funcs(), scorer.reward_weights(), [recorder], recorder)

    def train_dataset(self) -> Any:
        """The task's train split as a ``datasets.Dataset``: ``prompt`` as the model sees it
        (a conversation for chat models, whose template TRL applies), ``index`` (the example's
        place in the split: the samples log and the rewards find it by it) and ``references``
        (for reward functions of your own)."""
        from datasets import Dataset

        policy, train = self.recorder.policy, self.recorder.scorer.task.split("train")
        return Dataset.from_dict(
            {
                "prompt": [_trl_prompt(policy, ex.prompt) for ex in train],
                "index": list(range(len(train))),
                "references": [ex.reference for ex in train],
            }
        )


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def _trl_prompt(policy: LMPolicy, prompt: str) -> Any:
    """The prompt as TRL should get it to tokenize it as ``policy.encode_prompt`` does."""
    if policy.chat:
        return [{"role": "user", "content": prompt}]
    bos = policy.tokenizer.bos_token if policy.add_bos else None
    return (bos or "") + policy.format_prompt(prompt)


def _check_out(out: str | None) -> None:
    """A fresh run directory: a TRL run never writes into a run or over the user's files."""
    if not out:
        raise ConfigError("a TRL run needs out=RUN_DIR: the folder its measurements go to")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunDataError(f"out {out!r} is a file, not a folder; choose another")
    if (path / "config.json").exists():
        raise RunDataError(
            f"{out!r} already holds a run; choose another out (a run directory is written once)"
        )
    check_fresh_out(out)
