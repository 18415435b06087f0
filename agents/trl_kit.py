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

import importlib.metadata
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback

from rewardgym.agents.algorithms import component_shares
from rewardgym.agents.callbacks import Callback, CallbackList, TrainContext
from rewardgym.agents.checkpoint import (
    checkpoint_step,
    last_healthy_checkpoint,
    latest_checkpoint,
    load_callbacks_state,
    load_checkpoint,
    read_state,
    save_checkpoint,
)
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.held_out import batch_quality, evaluate_held_out
from rewardgym.agents.meters.batch_signals import pearson
from rewardgym.agents.meters.compute import FlopCounter
from rewardgym.agents.meters.gradients import GradNoiseAccumulator
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.rollout import batch_metrics
from rewardgym.agents.runlog import SAMPLES_FILE, MetricsLog, read_metrics
from rewardgym.agents.trl_options import options_from_grpo_args
from rewardgym.agents.trl_rewards import BatchScorer, ScoredBatch
from rewardgym.envs.scoring import resolve_reward
from rewardgym.envs.tasks import make_task
from rewardgym.errors import ConfigError, RunDataError, TrainingDivergedError
from rewardgym.fileio import write_json_atomic
from rewardgym.machine import machine_record

__all__ = ["RunRecorder", "TRLKit", "TRL_MISSING", "require_trl"]

TRL_MISSING = (
    "TRL is not installed; install it beside the CPU torch pin with "
    '`pip install "torch==2.13.0" "trl>=0.20,<2"` (or `make setup`)'
)
_LIBRARIES = ("trl", "transformers", "torch", "accelerate", "peft", "datasets")


def require_trl() -> Any:
    """The ``trl`` module, or a ConfigError with the install command."""
    try:
        import trl
    except ImportError:
        raise ConfigError(TRL_MISSING) from None
    return trl


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
        scorer = BatchScorer(task, resolve_reward(config.reward), eos_ids=eos)
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


@dataclass
class _Step:
    """What the recorder keeps between TRL's hooks."""

    started: float = 0.0
    noise: GradNoiseAccumulator | None = None
    nonfinite: list[dict[str, Any]] = field(default_factory=list)


class RunRecorder(TrainerCallback):
    """The ``TrainerCallback`` that turns TRL's training into a rewardgym run directory."""

    def __init__(
        self, config: TrainConfig, scorer: BatchScorer, monitors: CallbackList, policy: LMPolicy
    ) -> None:
        self.base_config, self.scorer, self.callbacks, self.policy = (
            config,
            scorer,
            monitors,
            policy,
        )
        self.run_dir = Path(config.out)
        self.config: TrainConfig | None = None
        self.ctx: TrainContext | None = None
        self.flops = FlopCounter(policy.n_params)
        self.log: MetricsLog | None = None  # opened at the start: attaching writes nothing
        self.samples: MetricsLog | None = None
        self.retention = None
        self.records: list[dict[str, Any]] = []
        self.step = _Step()
        self.rollbacks = 0
        self.alerts_since_save = 0
        self.stopped_early = False
        self.final_eval: dict[str, float] = {}
        self.started = time.perf_counter()
        self.start_eval: dict[str, float] = {}
        self.pending_samples: dict[str, Any] = {}
        self.bar: Any = None
        self.tb: Any = None
        self._prompt_tokens: dict[int, int] = {}

    # -- start -------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        _check_trainer(args, self)
        self.config = self._run_config(args)
        self.log = MetricsLog(self.run_dir / "metrics.jsonl")
        self.samples = MetricsLog(self.run_dir / SAMPLES_FILE)
        resumed = state.global_step > 0
        if not resumed:  # a fresh run, or a resumed one TRL had not checkpointed yet
            self.log.truncate_to(0)
            self.samples.truncate_to(0)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                self.run_dir / "config.json", self.config.to_dict(), sort_keys=True, default=str
            )
        else:
            self._resume_logs(state.global_step)
        if self.config.retention_task:
            self.retention = make_task(self.config.retention_task, seed=self.config.task_seed)
        self.ctx = TrainContext(model=model, config=self.config, run_dir=self.run_dir)
        self.ctx.update = state.global_step
        self.callbacks.on_train_start(self.ctx)
        if resumed:
            self._restore_callbacks(state.global_step)
        self.start_eval = self._evaluate(model, "start/") if self._evaluates_at_start(state) else {}
        self.bar = tqdm(
            total=self.config.updates, initial=state.global_step, desc="trl", unit="update",
            disable=not self.config.progress, dynamic_ncols=True,
        )  # fmt: skip
        if self.config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=state.global_step)
        return control

    def _run_config(self, args) -> TrainConfig:
        """The run's TrainConfig: the kit's task, reward and model with TRL's options."""
        options = {**self.base_config.to_dict(), **options_from_grpo_args(args), "backend": "trl"}
        return _fitting_config(options)

    def _evaluates_at_start(self, state) -> bool:
        return bool(self.config.eval_every) and state.global_step == 0

    def _resume_logs(self, step: int) -> None:
        """A resumed TRL run: the logs are cut back to the checkpoint TRL resumes from."""
        self.log.truncate_to(step)
        self.samples.truncate_to(step)
        self.records = read_metrics(self.log.path)
        checkpoint = self._checkpoint_at(step)
        state = read_state(checkpoint)["state"]
        self.flops.load_state_dict(state["flops"])
        self.rollbacks = int(state.get("rollbacks", 0))

    def _checkpoint_at(self, step: int) -> Path:
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is None or checkpoint_step(checkpoint) != step:
            raise RunDataError(
                f"{str(self.run_dir)!r} has no rewardgym checkpoint at step {step}, the one TRL "
                "resumes from; resume from the TRL checkpoint saved with it"
            )
        return checkpoint

    def _restore_callbacks(self, step: int) -> None:
        self.callbacks.load_state_dict(load_callbacks_state(self._checkpoint_at(step)))

    # -- each step ---------------------------------------------------------------------------
    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.step.started = time.perf_counter()
        if args.gradient_accumulation_steps >= 3:  # the last micro-batch is clipped with all
            self.step.noise = self.step.noise or GradNoiseAccumulator(
                scale=1.0 / args.gradient_accumulation_steps
            )
            self.step.noise.reset()
        return control

    def on_substep_end(self, args, state, control, model=None, **kwargs):
        if self.step.noise is not None and model is not None:
            self.step.noise.observe([p for p in model.parameters() if p.requires_grad])
        return control

    def on_log(self, args, state, control, logs=None, model=None, optimizer=None, **kwargs):
        logs = dict(logs or {})
        if "train_runtime" in logs or "reward" not in logs:
            return control  # TRL's end-of-training summary, not a step
        ctx, update = self.ctx, state.global_step - 1
        ctx.update, ctx.alerts = update, []
        record = {**self.start_eval, **self._step_record(update, args, logs)}
        self.start_eval = {}
        action = self.callbacks.on_before_step(ctx, dict(record))
        if action == "rollback":
            self._rollback(model, optimizer)
        record["step_action"] = "rollback" if action == "rollback" else "step"
        if self.config.eval_every and (update + 1) % self.config.eval_every == 0:
            record.update(self._evaluate(model, "eval/"))
        keep_going = self.callbacks.on_update_end(ctx, record)
        self._finish(record, state)
        self._check_finite(record)
        if keep_going is False:
            self.stopped_early = True
            control.should_save = True
            control.should_training_stop = True
        return control

    def _step_record(self, update: int, args, logs: dict) -> dict[str, Any]:
        batches = self.scorer.take()
        if not batches:
            raise RunDataError(
                "TRL finished a step without calling the kit's reward functions; pass "
                "reward_funcs=kit.reward_funcs and reward_weights=kit.reward_weights"
            )
        batch = _merged(batches)
        weights = dict(zip(self.scorer.names, self.scorer.reward_weights()))
        record = {"update": update, "lr": logs.get("learning_rate")}
        record.update(
            batch_metrics(
                batch.total, batch.components, weights, batch.n_tokens, batch.completions,
                batch.finished,
            )
        )  # fmt: skip
        record.update(self._training_signals(logs, batch, args))
        record["sample/quality"] = batch_quality(
            self.scorer.task,
            batch.completions,
            [self.scorer.train_examples[i] for i in batch.index],
        )
        self._count_flops(batch, args)
        self.pending_samples = _samples_line(update, int(args.num_generations), batch)
        record["time/update_s"] = time.perf_counter() - self.step.started
        record["trl"] = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
        return record

    def _training_signals(self, logs: dict, batch: ScoredBatch, args) -> dict[str, Any]:
        group = int(args.num_generations)
        totals = batch.total.reshape(-1, group)
        out = {
            "loss": logs.get("loss"),
            "grad_norm": logs.get("grad_norm"),
            "entropy_bits": logs["entropy"] / math.log(2) if "entropy" in logs else None,
            "ppo/clip_fraction": logs.get("clip_ratio/region_mean", 0.0),
            "zero_advantage/share": float(np.mean(totals.std(axis=1) == 0)),
            "reward/length_corr": pearson(batch.total, batch.n_tokens),
        }
        if "kl" in logs:
            out["kl"] = logs["kl"]
        weights = dict(zip(self.scorer.names, self.scorer.reward_weights()))
        if group > 1:
            shares = component_shares(batch.components, weights, batch.total, group)
            for name in weights:
                part = shares.get(name)
                out[f"advantage/{name}/mean_abs"] = (
                    float(np.abs(part).mean()) if part is not None else 0.0
                )
        noise = self.step.noise
        if noise is not None and noise.k >= 2:
            out.update(noise.finish().as_dict(prefix="grad/"))
        return out

    def _count_flops(self, batch: ScoredBatch, args) -> None:
        """FLOPs from the batch's token counts under TRL's padding: ``generate`` pads every row
        to the batch's longest prompt and runs it to the longest completion, and the loss pass
        sees that padded batch (6N per position; 2N more per position for the reference)."""
        prompts = np.array([self._prompt_length(i) for i in batch.index])
        new = np.asarray(batch.n_tokens)
        rows, p_max, c_max = len(new), int(prompts.max()), int(new.max())
        flops = self.flops
        flops.add_forward("generation_prompt", rows * p_max)
        flops.add_forward("generation_new", rows * c_max)
        padding = int((p_max - prompts).sum() + (c_max - new).sum())
        flops.add_wasted("padding", flops.flops_for(padding, "forward"))
        positions = rows * (p_max + c_max)
        flops.add_train("train", positions)
        flops.add_wasted("padding", flops.flops_for(padding, "train"))
        if float(args.beta) > 0:
            flops.add_forward("reference", positions)
        group = int(args.num_generations)
        flat = batch.total.reshape(-1, group).std(axis=1) == 0
        zero = np.repeat(flat, group)
        if zero.any():
            tokens = int((prompts + new)[zero].sum())
            flops.add_wasted("zero_advantage", flops.flops_for(tokens, "train"))

    def _prompt_length(self, index: int) -> int:
        if index not in self._prompt_tokens:
            prompt = self.scorer.train_examples[index].prompt
            self._prompt_tokens[index] = len(self.policy.encode_prompt(prompt))
        return self._prompt_tokens[index]

    def _rollback(self, model, optimizer) -> None:
        """Restore the newest healthy checkpoint at or before the update a monitor names."""
        at_most, self.ctx.rollback_to = self.ctx.rollback_to, None
        checkpoint = last_healthy_checkpoint(self.run_dir, at_most)
        if checkpoint is None:
            return
        state = load_checkpoint(checkpoint, _unwrapped(model), optimizer, restore_rng=False)
        then = FlopCounter.from_state_dict(state["flops"])
        useful_since = (self.flops.total - self.flops.wasted) - (then.total - then.wasted)
        self.flops.add_wasted("rolled_back", max(0.0, useful_since))
        self.rollbacks += 1

    def _finish(self, record: dict[str, Any], state) -> None:
        """Complete the step's record and write it, its samples and TensorBoard scalars."""
        flops = self.flops
        record.update({f"flops/{k}": v for k, v in flops.by_category().items()})
        record.update({"flops/total": flops.total, "flops/wasted": flops.wasted})
        record["compute_waste_pct"] = flops.waste_pct
        record["skipped_updates"] = 0
        record["rollbacks"] = self.rollbacks
        record["time/elapsed_s"] = time.perf_counter() - self.started
        if self.ctx.alerts:
            record["alerts"] = list(self.ctx.alerts)
            self.alerts_since_save += len(self.ctx.alerts)
        self.records.append(record)
        self.samples.append(self.pending_samples)
        self.log.append(record)
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    if math.isfinite(value):
                        self.tb.add_scalar(key, value, record["update"])
        self.bar.set_postfix(reward=f"{record['reward/mean']:.3f}")
        self.bar.update(1)

    def _check_finite(self, record: dict[str, Any]) -> None:
        """Stop a run whose loss or gradient stayed non-finite, as rewardgym's trainer does."""
        values = (record.get("loss"), record.get("grad_norm"))
        if all(v is not None and math.isfinite(v) for v in values):
            self.step.nonfinite = []
            return
        self.step.nonfinite.append({"update": record["update"], "loss": str(values[0])})
        if len(self.step.nonfinite) >= self.config.max_nonfinite_updates:
            updates = [entry["update"] for entry in self.step.nonfinite]
            error = TrainingDivergedError(
                f"the loss or gradient norm was not finite in updates {updates} in a row under "
                "TRL (which takes every step); lower lr or the reward's scale, then retrain"
            )
            self._write_summary(error)
            raise error

    # -- evaluation, checkpoints, end ----------------------------------------------------------
    def _evaluate(self, model, prefix: str) -> dict[str, float]:
        """The held-out evaluation on the trainer's own model, greedy, then back to training."""
        view = _policy_view(self.policy, _unwrapped(model))
        training = view.model.training
        try:
            result = evaluate_held_out(
                view, self.scorer.task, self.scorer.reward,
                n_examples=self.config.eval_examples, max_new_tokens=self.config.max_new_tokens,
                retention=self.retention, prefix=prefix,
            )  # fmt: skip
        finally:
            view.model.train(training)
        self.callbacks.on_eval_end(self.ctx, result)
        return result

    def on_save(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._save(state.global_step, model, optimizer)
        return control

    def _save(self, step: int, model, optimizer) -> None:
        """A rewardgym checkpoint beside TRL's: healthy when no alert came since the last."""
        state = {
            "update": step,
            "flops": self.flops.state_dict(),
            "rollbacks": self.rollbacks,
            "healthy": self.alerts_since_save == 0,
        }
        self.alerts_since_save = 0
        path = save_checkpoint(
            self.run_dir, step, _unwrapped(model), optimizer, state,
            keep_last=self.config.keep_checkpoints,
            callbacks_state=self.callbacks.state_dict(),
        )  # fmt: skip
        self.callbacks.on_checkpoint(self.ctx, path)

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        newest = latest_checkpoint(self.run_dir)
        if newest is None or checkpoint_step(newest) != state.global_step:
            self._save(state.global_step, model, optimizer)
        self.final_eval = self._evaluate(model, "final/")
        self.callbacks.on_train_end(self.ctx)
        self._write_summary(None, args=args, updates=state.global_step)
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        return control

    def _write_summary(self, error: Exception | None, args=None, updates: int | None = None):
        done = updates if updates is not None else len(self.records)
        summary = {
            "backend": "trl",
            "updates_done": done,
            "updates_stepped": done,
            "failed": error is not None,
            "final_eval": self.final_eval,
            "stopped_early": self.stopped_early,
            "interrupted": False,
            "skipped_updates": 0,
            "rollbacks": self.rollbacks,
            "flops": self.flops.snapshot(),
            "wall_s": time.perf_counter() - self.started,
            "torch_threads": torch.get_num_threads(),
            "node": platform.node(),
            "machine": machine_record(),
            "versions": _versions(),
        }
        if args is not None:
            summary["options"] = _jsonable_options(args)
        if error is not None:
            summary["error"] = {"type": type(error).__name__, "message": str(error)}
        write_json_atomic(self.run_dir / "run.json", summary, sort_keys=True, default=str)


def _check_trainer(args, recorder: RunRecorder) -> None:
    """Refuse, before anything is written, a trainer the kit cannot measure."""
    trl = require_trl()
    if getattr(args, "world_size", 1) > 1:
        raise ConfigError(
            f"the rewardgym kit records single-process runs, and this one has {args.world_size} "
            "processes (each would score and write its own share); train on one device, or "
            "train without the kit"
        )
    if not isinstance(args, trl.GRPOConfig):
        raise ConfigError(
            f"the rewardgym kit measures TRL's GRPOTrainer, but this trainer's arguments are a "
            f"{type(args).__name__}; pass kit.callbacks to a GRPOTrainer (with a GRPOConfig)"
        )
    if args.logging_steps != 1 or str(getattr(args.logging_strategy, "value", "")) != "steps":
        raise ConfigError(
            f"the kit records every optimizer step, but GRPOConfig has logging_strategy "
            f"{args.logging_strategy!r} and logging_steps {args.logging_steps!r}; set "
            "logging_steps=1 (logging_strategy='steps')"
        )
    weights = list(args.reward_weights) if args.reward_weights is not None else None
    expected = recorder.scorer.reward_weights()
    if weights != expected and not (weights is None and expected == [1.0] * len(expected)):
        raise ConfigError(
            f"GRPOConfig(reward_weights={weights}) differs from the reward's weights "
            f"{expected}; pass reward_weights=kit.reward_weights"
        )
    rolls_back = [
        m.name for m in recorder.callbacks.callbacks if getattr(m, "action", "") == "rollback"
    ]
    if rolls_back and str(getattr(args.save_strategy, "value", args.save_strategy)) == "no":
        raise ConfigError(
            f"monitors {rolls_back} roll back to a saved checkpoint, but GRPOConfig has "
            "save_strategy 'no', so TRL keeps none; set save_strategy='steps' and save_steps"
        )


def _fitting_config(options: dict[str, Any]) -> TrainConfig:
    """A TrainConfig of ``options``, leaving out TRL settings rewardgym's options cannot hold
    (fewer than 4 micro-batches, a loss type of TRL's own...): run.json keeps them all."""
    try:
        return TrainConfig.from_dict(options, source="the TRL run's options")
    except ConfigError:
        pass
    defaults = TrainConfig().to_dict()
    kept = dict(options)
    for key in options:
        if key in {"task", "model", "reward", "out", "backend"}:
            continue
        try:
            TrainConfig.from_dict(
                {**defaults, **{k: kept[k] for k in ("task", "model")}, key: kept[key]}
            )
        except ConfigError:
            kept[key] = defaults[key]
    for key in ("micro_batches", "prompts_per_update", "group_size"):
        try:
            return TrainConfig.from_dict(kept, source="the TRL run's options")
        except ConfigError:
            kept[key] = defaults[key]
    return TrainConfig.from_dict(kept, source="the TRL run's options")


def _merged(batches: list[ScoredBatch]) -> ScoredBatch:
    """The batches TRL scored for one step as one (usually there is exactly one)."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    merged = object.__new__(ScoredBatch)
    merged.step = first.step
    merged.index = [i for b in batches for i in b.index]
    merged.completions = [c for b in batches for c in b.completions]
    merged.n_tokens = [n for b in batches for n in b.n_tokens]
    merged.finished = [f for b in batches for f in b.finished]
    merged.total = np.concatenate([b.total for b in batches])
    merged.components = {
        k: np.concatenate([b.components[k] for b in batches]) for k in first.components
    }
    return merged


def _samples_line(update: int, group_size: int, batch: ScoredBatch) -> dict[str, Any]:
    """The step's batch as one line of samples.jsonl, as rewardgym's trainer writes it."""
    return {
        "update": update,
        "group_size": group_size,
        "index": batch.index,
        "completion": batch.completions,
        "n_tokens": batch.n_tokens,
        "finished": batch.finished,
        "reward": [float(r) for r in batch.total],
        "components": {k: [float(v) for v in vals] for k, vals in batch.components.items()},
    }


def _unwrapped(model: Any) -> Any:
    """The model under accelerate's and DDP's wrappers (``module``), as checkpoints hold it."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def _policy_view(policy: LMPolicy, model: torch.nn.Module) -> LMPolicy:
    """The trainer's own model behind ``policy``'s prompt format (no copy, same device)."""
    parameter = next(model.parameters())
    return LMPolicy(
        model, policy.tokenizer, name=policy.name, device=parameter.device,
        dtype=parameter.dtype, chat=policy.chat, add_bos=policy.add_bos,
        completion_prefix=policy.completion_prefix, info=policy.info,
    )  # fmt: skip


def _versions() -> dict[str, str | None]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _jsonable_options(args) -> dict[str, Any]:
    """TRL's GRPOConfig as plain JSON (tokens and objects as text)."""
    plain = (str, int, float, bool, type(None))
    out = {}
    for key, value in args.to_dict().items():
        if key.endswith("_token") or key in {"hub_token"}:
            continue
        out[key] = value if isinstance(value, plain) else str(value)
    return out
