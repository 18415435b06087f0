"""The ``TrainerCallback`` that turns a TRL ``GRPOTrainer`` run into a rewardgym run directory
(what it writes and when: :mod:`rewardgym.agents.trl_kit`)."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback

from rewardgym.agents.callbacks import CallbackList, TrainContext
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
from rewardgym.agents.meters.compute import FlopCounter
from rewardgym.agents.meters.gradients import GradNoiseAccumulator
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.rollout import batch_metrics
from rewardgym.agents.runlog import SAMPLES_FILE, MetricsLog, read_metrics, write_scalars
from rewardgym.agents.trl_options import options_from_grpo_args, require_trl
from rewardgym.agents.trl_records import (
    count_step_flops,
    fitting_config,
    jsonable_options,
    library_versions,
    merged_batches,
    policy_view,
    samples_line,
    step_signals,
    unwrapped,
)
from rewardgym.agents.trl_rewards import BatchScorer, ScoredBatch
from rewardgym.envs.tasks import make_task
from rewardgym.errors import ConfigError, RunDataError, TrainingDivergedError
from rewardgym.fileio import write_json_atomic
from rewardgym.machine import machine_record

__all__ = ["RunRecorder"]


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
        self.config_left_out: list[str] = []  # TRL settings config.json cannot hold
        self.pending_samples: dict[str, Any] = {}
        self.bar: Any = None
        self.tb: Any = None
        self._prompt_tokens: dict[int, int] = {}

    # -- start -------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        _check_trainer(args, self)
        self.config = self._run_config(args, state)
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

    def _run_config(self, args, state) -> TrainConfig:
        """The run's TrainConfig: the kit's task, reward and model with TRL's options (the step
        count as TRL worked it out: ``max_steps`` or the epochs' steps)."""
        options = {**self.base_config.to_dict(), **options_from_grpo_args(args), "backend": "trl"}
        options["updates"] = int(state.max_steps) or options["updates"]
        config, self.config_left_out = fitting_config(options)
        return config

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
        batch = merged_batches(batches)
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
        self.pending_samples = samples_line(update, int(args.num_generations), batch)
        record["time/update_s"] = time.perf_counter() - self.step.started
        record["trl"] = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
        return record

    def _training_signals(self, logs: dict, batch: ScoredBatch, args) -> dict[str, Any]:
        weights = dict(zip(self.scorer.names, self.scorer.reward_weights()))
        noise = self.step.noise if self.step.noise is not None and self.step.noise.k >= 2 else None
        return step_signals(logs, batch, int(args.num_generations), weights, noise)

    def _count_flops(self, batch: ScoredBatch, args) -> None:
        prompts = [self._prompt_length(i) for i in batch.index]
        count_step_flops(self.flops, batch, prompts, int(args.num_generations), float(args.beta))

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
        state = load_checkpoint(checkpoint, unwrapped(model), optimizer, restore_rng=False)
        self.flops.undo_since(FlopCounter.from_state_dict(state["flops"]))
        self.rollbacks += 1

    def _finish(self, record: dict[str, Any], state) -> None:
        """Complete the step's record and write it, its samples and TensorBoard scalars."""
        record.update(self.flops.record_fields())
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
            write_scalars(self.tb, record, record["update"])
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
        view = policy_view(self.policy, unwrapped(model))
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
            self.run_dir, step, unwrapped(model), optimizer, state,
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
            "versions": library_versions(),
        }
        if args is not None:
            summary["options"] = jsonable_options(args)
            summary["config_left_out"] = self.config_left_out
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
