"""The training loop: rollout → advantages → loss over K micro-batches → checks → step.

Read :func:`train` top to bottom; each stage is a small function below it. Every update appends
one record to ``metrics.jsonl`` (and TensorBoard), callbacks (the monitors) see every update and
may skip a step, roll back or stop the run, and checkpoints are written atomically.
"""

from __future__ import annotations

import json
import math
import platform
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rewardgym.agents.algorithms import (
    RunningBaseline,
    component_shares,
    compute_advantages,
    decoupled_advantages,
    get_algorithm,
)
from rewardgym.agents.callbacks import Callback, CallbackList, TrainContext
from rewardgym.agents.checkpoint import (
    last_healthy_checkpoint,
    latest_checkpoint,
    load_callbacks_state,
    load_checkpoint,
    save_checkpoint,
)
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.divergence import Divergence, divergence_message
from rewardgym.agents.held_out import batch_quality, evaluate_held_out
from rewardgym.agents.losses import aggregate_loss, clipped_surrogate, kl_k3, ratio_stats
from rewardgym.agents.memory import keep_freed_memory
from rewardgym.agents.meters.batch_signals import pearson, top_share
from rewardgym.agents.meters.compute import FlopCounter
from rewardgym.agents.meters.gradients import GradNoiseAccumulator
from rewardgym.agents.padding import pad_values
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.rollout import Rollout, collect_rollout
from rewardgym.agents.runlog import SAMPLES_FILE, MetricsLog, read_metrics, write_scalars
from rewardgym.agents.runs import RunResult, check_fresh_out, policy_for_config
from rewardgym.agents.sft import replay_loss
from rewardgym.agents.trl_backend import train_with_trl
from rewardgym.envs.tasks import Example, Task, make_task
from rewardgym.envs.vector_env import TextTaskVectorEnv
from rewardgym.errors import ConfigError, RunDataError, TrainingDivergedError
from rewardgym.fileio import write_json_atomic
from rewardgym.locks import hold_run_dir
from rewardgym.machine import machine_record, torch_threads

# options that do not change what a run computes, so a resume may change them
RESUMABLE_CHANGES = frozenset(
    {"updates", "out", "device", "progress", "tensorboard", "checkpoint_every", "keep_checkpoints"}
)


@dataclass
class _Run:
    """The mutable state of one training run."""

    config: TrainConfig
    policy: LMPolicy
    reference: LMPolicy | None
    optimizer: torch.optim.Optimizer
    env: TextTaskVectorEnv
    flops: FlopCounter
    baseline: RunningBaseline
    callbacks: CallbackList
    ctx: TrainContext
    run_dir: Path | None
    log: MetricsLog | None
    samples: MetricsLog | None = None  # samples.jsonl: what each update trained on
    pending_samples: dict[str, Any] | None = None
    tb: Any = None
    update: int = 0
    skipped_updates: int = 0
    updates_stepped: int = 0  # updates in which at least one optimizer step was taken
    consecutive_faults: int = 0  # non-finite steps since the last finite one or rollback
    # the non-finite updates in a row up to now, each {"update", "loss", "grad_norm"}
    nonfinite_streak: list[dict[str, Any]] = field(default_factory=list)
    rollbacks: int = 0
    alerts_since_checkpoint: int = 0
    last_checkpoint: int = -1
    records: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    grad_noise: GradNoiseAccumulator | None = None
    replay_examples: list[Example] = field(default_factory=list)  # what replay draws from
    retention: Task | None = None  # the task evaluated beside the run's own (retention_task)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.policy.model.parameters() if p.requires_grad]


def train(
    config: TrainConfig | dict,
    callbacks: list[Callback] | None = None,
    *,
    resume: bool = False,
    label: str = "train",
    into_existing: bool = False,
) -> RunResult:
    """Train a policy on a task under a reward, as ``config`` says.

    Args:
        config: a :class:`TrainConfig` or a mapping of its fields.
        callbacks: trainer callbacks (monitors); see ``agents.callbacks``.
        resume: continue from the latest complete checkpoint in ``config.out``.
        label: the progress bar's title.
        into_existing: start a run in an ``out`` folder that holds files of the user's (left as
            they are; a file named as one the run writes is still refused).

    Returns:
        A :class:`RunResult` with the metrics of every update and the final evaluation.

    Example:
        >>> result = train(TrainConfig(task="arithmetic", reward="task_only", updates=10))
        >>> result.metrics[-1]["reward/mean"]
    """
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if resume:
        _check_resumable(config.out)
    else:
        check_fresh_out(config.out, into_existing)
    with _holding_run_dir(config.out), torch_threads(config.threads):
        if config.backend == "trl":
            return train_with_trl(config, callbacks or [], resume)
        return _train(config, callbacks or [], resume, label)


def _train(config: TrainConfig, callbacks: list[Callback], resume: bool, label: str) -> RunResult:
    run = _setup(config, callbacks, resume)
    run.callbacks.on_train_start(run.ctx)
    _restore_callbacks(run)
    stopped_early = interrupted = False
    bar = tqdm(
        total=config.updates,
        initial=run.update,
        desc=label,
        unit="update",
        disable=not config.progress,
        dynamic_ncols=True,
    )
    with bar, _stop_on_signals() as stop_requested:
        start_eval = _evaluate_at_start(run)
        while run.update < config.updates:
            record = {**start_eval, **_one_update(run)}
            start_eval = {}
            if config.eval_every and (run.update + 1) % config.eval_every == 0:
                record.update(_evaluate_during_training(run))
            # before the record is written, so alerts raised here land in it
            keep_going = run.callbacks.on_update_end(run.ctx, record)
            _finish_update(run, record)
            bar.set_postfix(
                reward=f"{record['reward/mean']:.3f}",
                tok_s=f"{record['tokens_generated'] / record['time/update_s']:.0f}",
            )
            bar.update(1)
            if len(run.nonfinite_streak) >= config.max_nonfinite_updates:
                _stop_diverged(run)
            if config.checkpoint_every and run.update % config.checkpoint_every == 0:
                _checkpoint(run)
            if keep_going is False:
                stopped_early = True
                break
            if stop_requested.is_set():
                interrupted = True
                break
    _checkpoint(run)
    final_eval = _evaluate_during_training(run, prefix="final/")
    run.callbacks.on_train_end(run.ctx)
    return _close(run, final_eval, stopped_early, interrupted)


# -- set-up ----------------------------------------------------------------------------------


def _setup(config: TrainConfig, callbacks: list[Callback], resume: bool) -> _Run:
    run_dir = Path(config.out) if config.out else None
    if run_dir is not None:
        _check_run_dir(run_dir, config, resume)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    keep_freed_memory()
    policy = policy_for_config(config)
    reference = policy.frozen_copy() if config.kl_coef > 0 or config.measure_kl else None
    optimizer = torch.optim.AdamW(
        [p for p in policy.model.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
        # One fused kernel instead of per-op loops: 0.07 vs 0.40 s per step for SmolLM2 on CPU.
        fused=policy.device.type in ("cpu", "cuda"),
    )
    env = TextTaskVectorEnv(
        config.task,
        config.reward,
        n_prompts=config.prompts_per_update,
        group_size=config.group_size,
        task_seed=config.task_seed,
        task_kwargs=config.task_kwargs,
    )
    replay_examples = _replay_examples(config, env.task) if config.replay_share > 0 else []
    retention = None
    if config.retention_task is not None:
        retention = make_task(config.retention_task, seed=config.task_seed)
    if run_dir is not None:  # only now: a bad task, reward or model leaves nothing behind
        with _writing(run_dir):
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                run_dir / "config.json", config.to_dict(), sort_keys=True, default=str
            )
    ctx = TrainContext(model=policy.model, config=config, run_dir=run_dir)
    run = _Run(
        config=config,
        policy=policy,
        reference=reference,
        optimizer=optimizer,
        env=env,
        flops=FlopCounter(policy.n_params),
        baseline=RunningBaseline(config.baseline_momentum),
        callbacks=CallbackList(callbacks),
        ctx=ctx,
        run_dir=run_dir,
        log=MetricsLog(run_dir / "metrics.jsonl") if run_dir else None,
        samples=MetricsLog(run_dir / SAMPLES_FILE) if run_dir else None,
        replay_examples=replay_examples,
        retention=retention,
    )
    if resume and run_dir is not None:
        _restore(run, latest_checkpoint(run_dir))
    if run_dir is not None and config.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        run.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=run.update)
    return run


def _replay_examples(config: TrainConfig, task: Task) -> list[Example]:
    """The train splits replay draws from: ``replay_tasks``, else the warm start's tasks."""
    names = config.replay_tasks or config.warm_start_tasks or [config.task]
    pool: list[Example] = []
    for name in names:
        source = task if name == config.task else make_task(name, seed=config.task_seed)
        pool.extend(source.split("train"))
    return pool


def _check_resumable(out: str | None) -> None:
    """Resume only a run: a folder without our ``config.json`` is refused before anything is
    written there, so a mistyped ``--out`` never gets a fresh run trained into the user's files."""
    if out is None:
        raise ConfigError("resume=True needs an output directory (--out RUN_DIR) to continue")
    if not (Path(out) / "config.json").is_file():
        what = "does not exist" if not Path(out).exists() else "holds no run (no config.json)"
        raise RunDataError(
            f"cannot resume {out!r}: it {what}; point --out at the folder of the run to "
            "continue, or drop --resume to start a new run"
        )


def _holding_run_dir(out: str | None):
    """One writer per run directory: held while the run trains (nothing to hold in memory)."""
    if out is None:
        return nullcontext()
    if Path(out).exists() and not Path(out).is_dir():
        raise RunDataError(f"--out {out!r} is a file, not a directory; choose another")
    return hold_run_dir(out, notice=lambda line: print(line, file=sys.stderr, flush=True))


def _check_run_dir(run_dir: Path, config: TrainConfig, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one under a config that computes differently."""
    config_path = run_dir / "config.json"
    if config_path.exists() and not resume:
        raise ConfigError(
            f"run directory {str(run_dir)!r} already holds a run; pass resume=True (--resume) "
            "to continue it, or choose another --out"
        )
    if resume and config_path.exists():
        saved = json.loads(config_path.read_text(encoding="utf-8"))
        defaults = TrainConfig().to_dict()  # options newer than the saved run had these
        changed = sorted(
            k
            for k, v in config.to_dict().items()
            if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != v
        )
        if changed:
            raise ConfigError(
                f"cannot resume {str(run_dir)!r} with a different config: {changed} differ from "
                f"config.json; resume with the same options (only {sorted(RESUMABLE_CHANGES)} "
                "may change)"
            )


@contextmanager
def _writing(path: Path):
    """Turn an OS write failure (read-only, full disk, a file in the way) into a clear error."""
    try:
        yield
    except OSError as exc:
        raise RunDataError(
            f"cannot write to {str(path)!r}: {exc.strerror or exc}; choose a writable --out "
            "(or free disk space), then resume: files written so far are intact"
        ) from exc


def _restore(run: _Run, checkpoint: Path | None) -> None:
    """Continue from ``checkpoint`` (or from scratch when there is none)."""
    if checkpoint is None:
        for log in (run.log, run.samples):
            if log is not None:
                log.truncate_to(0)
        return
    state = load_checkpoint(checkpoint, run.policy.model, run.optimizer, restore_rng=True)
    run.update = run.last_checkpoint = int(state["update"])
    run.baseline.value = state.get("baseline")
    run.flops.load_state_dict(state["flops"])
    run.skipped_updates = int(state.get("skipped_updates", 0))
    run.rollbacks = int(state.get("rollbacks", 0))
    run.nonfinite_streak = list(state.get("nonfinite_streak", []))
    if run.samples is not None:
        run.samples.truncate_to(run.update)
    if run.log is not None:
        run.log.truncate_to(run.update)
        run.records = read_metrics(run.log.path)
    # a checkpoint from before updates_stepped was saved: count the logged steps instead
    logged = sum(r.get("step_action") == "step" for r in run.records)
    run.updates_stepped = int(state.get("updates_stepped", logged))


def _restore_callbacks(run: _Run) -> None:
    """Give the callbacks the state they had at the checkpoint the run resumed from.

    Called after ``on_train_start``, which measured the monitors' references on the resumed
    weights: the saved ones, from the run's real start, replace them, so the alerts after the
    checkpoint are those of the uninterrupted run. A rollback leaves callback state alone: the
    update counter and metrics.jsonl carry on through it, so the alert counts and histories do.
    """
    if run.run_dir is None or run.last_checkpoint < 0:
        return  # a fresh run: nothing was restored
    checkpoint = latest_checkpoint(run.run_dir)
    if checkpoint is not None:
        run.callbacks.load_state_dict(load_callbacks_state(checkpoint))


# -- one update ------------------------------------------------------------------------------


def _one_update(run: _Run) -> dict[str, Any]:
    config = run.config
    run.ctx.update = run.update
    run.ctx.alerts = []
    start = time.perf_counter()
    lr = _set_learning_rate(run)
    run.env.reward.set_progress(run.update, config.updates)
    rollout = collect_rollout(
        run.policy,
        run.env,
        update=run.update,
        seed=config.seed,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        token_budget=config.token_budget,
        flops=run.flops,
    )
    run.pending_samples = rollout.samples_record(run.update, config.group_size)
    advantages, parts = _advantages(run, rollout)
    record: dict[str, Any] = {"update": run.update, "lr": lr, **rollout.metrics()}
    for name in rollout.weights if parts else ():  # a weight-0 component's part is 0
        part = parts.get(name)
        record[f"advantage/{name}/mean_abs"] = (
            float(np.abs(part).mean()) if part is not None else 0.0
        )
    record["zero_advantage/share"] = float(np.mean(advantages == 0.0))
    record["advantage/top_quarter_share"] = top_share(advantages)
    record["reward/length_corr"] = pearson(rollout.rewards, rollout.n_tokens)
    record["sample/quality"] = batch_quality(
        run.env.task, rollout.generation.completions, rollout.examples
    )
    clip_fractions, epoch_stats = [], []
    epochs = config.ppo_epochs if get_algorithm(config.algo).reuses_batch else 1
    for epoch in range(epochs):
        stats = _optimise(run, rollout, advantages, measure_noise=epoch == 0, seen=record)
        clip_fractions.append(stats.pop("ppo/clip_fraction"))
        ratio_dev = stats.pop("ppo/ratio_dev")
        epoch_stats.append(stats)
        if epoch == 0:
            record.update(stats)
            record["ppo/ratio_first_epoch"] = ratio_dev
    _count_update(run, epoch_stats)
    record["ppo/clip_fraction"] = float(np.mean(clip_fractions))
    record["time/update_s"] = time.perf_counter() - start
    return record


def _advantages(run: _Run, rollout: Rollout) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every sample's advantage, and each reward component's part in it (logged)."""
    config = run.config
    if config.aggregation == "normalize_then_sum":
        return decoupled_advantages(
            rollout.components, rollout.weights, config.group_size, config.scale_rewards
        )
    advantages = compute_advantages(
        config.algo, rollout.rewards, config.group_size, run.baseline, config.scale_rewards
    )
    if config.group_size < 2:
        return advantages, {}
    shares = component_shares(
        rollout.components, rollout.weights, rollout.rewards, config.group_size
    )
    return advantages, shares


def _optimise(
    run: _Run, rollout: Rollout, advantages: np.ndarray, measure_noise: bool, seen: dict
) -> dict[str, Any]:
    """One pass over the batch in K micro-batches, then (unless vetoed) one optimizer step.

    Monitors deciding on the step see ``seen`` (the rollout's metrics) besides the gradients.
    """
    config = run.config
    k = config.micro_batches
    chunks = np.array_split(np.arange(len(advantages)), k)
    noise = _grad_noise(run) if measure_noise else None
    run.optimizer.zero_grad(set_to_none=True)
    totals = {
        "loss": 0.0,
        "kl": 0.0,
        "replay_loss": 0.0,
        "ppo/ratio_dev": 0.0,
        "ppo/clip_fraction": 0.0,
    }
    train_flops = 0.0
    for chunk in chunks:
        parts, chunk_flops = _micro_batch_loss(run, rollout, advantages, chunk)
        (parts["loss"] / k).backward()
        if noise is not None:
            noise.observe(run.params)
        for name in totals:
            totals[name] += float(parts[name].detach()) / k
        train_flops += chunk_flops
    grad_norm = _grad_norm(run)
    stats: dict[str, Any] = {**totals, "grad_norm": grad_norm}
    if noise is not None:
        stats.update(noise.finish().as_dict(prefix="grad/"))
    action = _decide_step(run, {**seen, **stats})
    stats["step_action"] = action
    if action == "step":
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(run.params, config.max_grad_norm)
        run.optimizer.step()
    else:
        run.flops.add_wasted("skipped_update", train_flops)
    run.optimizer.zero_grad(set_to_none=True)
    if action == "rollback":
        _rollback(run)
    return stats


def _grad_noise(run: _Run) -> GradNoiseAccumulator:
    """The run's gradient-noise accumulator, ready for an update.

    Kept across updates: its parameter-sized buffer is then allocated once, not per update
    (fresh memory of that size cost about 0.3 s of page faults per update for SmolLM2).
    """
    if run.grad_noise is None:
        run.grad_noise = GradNoiseAccumulator(scale=1.0 / run.config.micro_batches)
    if run.grad_noise.k:  # an update that stopped half-way left partial sums
        run.grad_noise.reset()
    return run.grad_noise


def _micro_batch_loss(
    run: _Run, rollout: Rollout, advantages: np.ndarray, chunk: np.ndarray
) -> tuple[dict[str, torch.Tensor], float]:
    """The loss of one micro-batch and the training FLOPs it cost."""
    config, gen = run.config, rollout.generation
    prompt_ids = [gen.prompt_ids[i] for i in chunk]
    completion_ids = [gen.token_ids[i] for i in chunk]
    # Scored under the distribution the rollout sampled from (temperature and nucleus), so the
    # first epoch's ratio is 1 and the clip only acts on later epochs.
    out = run.policy.sequence_logprobs(
        prompt_ids,
        completion_ids,
        temperature=config.temperature,
        top_p=config.top_p,
        with_entropy=config.entropy_coef > 0,
    )
    mask = out.mask
    if config.mask_truncated_completions:  # a cut-off completion teaches nothing about its end
        finished = torch.tensor([bool(gen.finished[i]) for i in chunk], device=mask.device)
        mask = mask * finished[:, None].to(mask.dtype)
    old = pad_values([gen.logprobs[i] for i in chunk], mask.shape[1], mask.device)
    adv = torch.as_tensor(advantages[chunk], dtype=out.logprobs.dtype, device=mask.device)
    eps, eps_high = config.clip_eps, config.epsilon_high
    per_token = clipped_surrogate(out.logprobs, old, adv, mask, eps, eps_high)
    ratio_dev, clip_fraction = ratio_stats(out.logprobs, old, mask, eps, eps_high)

    batch_tokens = _loss_tokens(rollout, config)

    def aggregate(terms: torch.Tensor) -> torch.Tensor:
        return aggregate_loss(
            terms, mask, config.loss_type, config.max_new_tokens, batch_tokens,
            config.micro_batches,
        )  # fmt: skip

    loss = aggregate(per_token)
    kl = torch.zeros((), device=mask.device)
    if run.reference is not None:
        with torch.no_grad():
            ref = run.reference.sequence_logprobs(
                prompt_ids, completion_ids, temperature=config.temperature, top_p=config.top_p
            )
        kl = aggregate(kl_k3(out.logprobs, ref.logprobs, mask))
        loss = loss + config.kl_coef * kl
        run.flops.add_forward("reference", out.n_positions)
    if config.entropy_coef:
        entropy = (out.entropy * mask).sum() / mask.sum().clamp(min=1)
        loss = loss - config.entropy_coef * entropy
    replay = torch.zeros((), device=mask.device)
    if config.replay_share > 0:
        replay = replay_loss(
            run.policy,
            run.replay_examples,
            n=len(chunk),
            seed=int(chunk[0]) + 7919 * run.update,
            confidence_weighting=config.replay_confidence_weighting,
        )
        loss = (1 - config.replay_share) * loss + config.replay_share * replay.loss
        run.flops.add_train("replay", replay.n_positions)
        replay = replay.loss
    flops = _count_train_flops(run, out, advantages[chunk])
    parts = {
        "loss": loss,
        "kl": kl,
        "replay_loss": replay,
        "ppo/ratio_dev": ratio_dev,
        "ppo/clip_fraction": clip_fraction,
    }
    return parts, flops


def _loss_tokens(rollout: Rollout, config) -> int:
    """The batch's tokens that enter the loss (``dapo`` averages over them)."""
    gen = rollout.generation
    return sum(
        len(ids)
        for ids, done in zip(gen.token_ids, gen.finished, strict=True)
        if done or not config.mask_truncated_completions
    )


def _count_train_flops(run: _Run, out, chunk_advantages: np.ndarray) -> float:
    """6N per trained position; padding and zero-advantage samples are waste."""
    run.flops.add_train("train", out.n_positions)
    run.flops.add_wasted("padding", run.flops.flops_for(out.n_padding, "train"))
    real_per_sample = out.real_positions_per_sample
    zero = round(sum(r for r, a in zip(real_per_sample, chunk_advantages) if a == 0.0))
    if zero:
        run.flops.add_wasted("zero_advantage", run.flops.flops_for(zero, "train"))
    return run.flops.flops_for(out.n_positions, "train")


def _grad_norm(run: _Run) -> float:
    norms = [p.grad.detach().norm(2) for p in run.params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def _finite(stats: dict[str, Any]) -> bool:
    return math.isfinite(stats["loss"]) and math.isfinite(stats["grad_norm"])


def _decide_step(run: _Run, stats: dict[str, Any]) -> str:
    """A non-finite loss or gradient skips the step; repeated faults roll back; monitors vote."""
    if not _finite(stats):
        run.skipped_updates += 1
        run.consecutive_faults += 1
        run.ctx.alert(
            "numerical_fault",
            stats["grad_norm"],
            float("inf"),
            "non-finite loss or gradient: update skipped",
            "skip",
        )
        if run.consecutive_faults >= run.config.max_faults:
            run.consecutive_faults = 0
            return "rollback"
        return "skip"
    run.consecutive_faults = 0
    action = run.callbacks.on_before_step(run.ctx, stats)
    if action != "step":
        run.skipped_updates += 1
    return action


def _count_update(run: _Run, epochs: list[dict[str, Any]]) -> None:
    """Count an update that stepped, and extend the streak of non-finite updates or end it.

    Only a finite update ends the streak, a rollback does not: when the same reward or
    settings fault again after it, the run would otherwise skip and roll back forever without
    taking a step, and still end as if it had trained.
    """
    if any(stats["step_action"] == "step" for stats in epochs):
        run.updates_stepped += 1
    fault = next((stats for stats in epochs if not _finite(stats)), None)
    if fault is None:
        run.nonfinite_streak = []
        return
    # as text: JSON has no NaN or infinity (Python writes tokens other JSON readers refuse)
    run.nonfinite_streak.append(
        {
            "update": run.update,
            "loss": f"{fault['loss']:.4g}",
            "grad_norm": f"{fault['grad_norm']:.4g}",
        }
    )


def _stop_diverged(run: _Run) -> None:
    """End a run whose loss or gradient stayed non-finite: the callbacks see the end, run.json
    says that it failed and why, then :class:`TrainingDivergedError` is raised."""
    where = Divergence(
        run.nonfinite_streak, run.rollbacks, run.updates_stepped, run.update, run.run_dir
    )
    error = TrainingDivergedError(divergence_message(run.config, where))
    run.callbacks.on_train_end(run.ctx)
    _close(run, {}, stopped_early=False, interrupted=False, error=error)
    raise error


def _rollback(run: _Run) -> None:
    """Restore the last healthy checkpoint's weights and optimizer (not its update counter).

    Everything computed since that checkpoint and not yet counted as waste is now waste.
    """
    at_most, run.ctx.rollback_to = run.ctx.rollback_to, None
    checkpoint = last_healthy_checkpoint(run.run_dir, at_most) if run.run_dir else None
    if checkpoint is None:
        return
    state = load_checkpoint(checkpoint, run.policy.model, run.optimizer, restore_rng=False)
    run.flops.undo_since(FlopCounter.from_state_dict(state["flops"]))
    run.rollbacks += 1


def _set_learning_rate(run: _Run) -> float:
    """Warmup, then constant, linear or cosine decay, as a pure function of the update."""
    config, u = run.config, run.update
    if config.warmup_updates and u < config.warmup_updates:
        factor = (u + 1) / config.warmup_updates
    else:
        span = max(1, config.updates - config.warmup_updates)
        progress = (u - config.warmup_updates) / span
        factor = {
            "constant": 1.0,
            "linear": 1.0 - progress,
            "cosine": 0.5 * (1 + math.cos(math.pi * progress)),
        }[config.lr_schedule]
    lr = config.lr * max(factor, 0.0)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    return lr


# -- logging, evaluation, checkpoints ---------------------------------------------------------


def _finish_update(run: _Run, record: dict[str, Any]) -> None:
    record.update(run.flops.record_fields())
    record["skipped_updates"] = run.skipped_updates
    record["rollbacks"] = run.rollbacks
    record["time/elapsed_s"] = time.perf_counter() - run.started
    if run.ctx.alerts:
        record["alerts"] = list(run.ctx.alerts)
        run.alerts_since_checkpoint += len(run.ctx.alerts)
    run.records.append(record)
    if run.samples is not None and run.pending_samples is not None:
        with _writing(run.samples.path):
            run.samples.append(run.pending_samples)
    run.pending_samples = None
    if run.log is not None:
        with _writing(run.log.path):
            run.log.append(record)
    if run.tb is not None:
        write_scalars(run.tb, record, run.update)
    run.update += 1


def _evaluate_during_training(run: _Run, prefix: str = "eval/") -> dict[str, float]:
    """The held-out evaluation (:func:`~rewardgym.agents.held_out.evaluate_held_out`), which
    the callbacks see."""
    result = evaluate_held_out(
        run.policy,
        run.env.task,
        run.env.reward,
        n_examples=run.config.eval_examples,
        max_new_tokens=run.config.max_new_tokens,
        retention=run.retention,
        prefix=prefix,
    )
    run.callbacks.on_eval_end(run.ctx, result)
    return result


def _evaluate_at_start(run: _Run) -> dict[str, float]:
    """The policy before any update, as ``start/`` keys of update 0's record: the reference a
    drop in held-out quality is measured from. Only runs that evaluate during training, and
    only on a fresh start (a resumed run has it in its log already)."""
    if not run.config.eval_every or run.update != 0:
        return {}
    return _evaluate_during_training(run, prefix="start/")


def _checkpoint(run: _Run) -> None:
    if run.run_dir is None or run.last_checkpoint == run.update:
        return
    state = {
        "update": run.update,
        "baseline": run.baseline.value,
        "flops": run.flops.state_dict(),
        "skipped_updates": run.skipped_updates,
        "updates_stepped": run.updates_stepped,
        "nonfinite_streak": run.nonfinite_streak,
        "rollbacks": run.rollbacks,
        "healthy": run.alerts_since_checkpoint == 0,
    }
    run.alerts_since_checkpoint = 0
    path = save_checkpoint(
        run.run_dir,
        run.update,
        run.policy.model,
        run.optimizer,
        state,
        keep_last=run.config.keep_checkpoints,
        callbacks_state=run.callbacks.state_dict(),
    )
    run.last_checkpoint = run.update
    run.callbacks.on_checkpoint(run.ctx, path)


def _close(
    run: _Run,
    final_eval: dict,
    stopped_early: bool,
    interrupted: bool,
    error: Exception | None = None,
) -> RunResult:
    """The run's result, and its summary in run.json; ``error``: the run failed with it."""
    if run.tb is not None:
        run.tb.close()
    result = RunResult(
        run.config,
        run.run_dir,
        run.update,
        run.records,
        final_eval,
        stopped_early,
        interrupted,
        run.policy,
        updates_stepped=run.updates_stepped,
    )
    if run.run_dir is not None:
        summary = {
            "updates_done": run.update,
            "updates_stepped": run.updates_stepped,
            "failed": error is not None,
            "final_eval": final_eval,
            "stopped_early": stopped_early,
            "interrupted": interrupted,
            "skipped_updates": run.skipped_updates,
            "rollbacks": run.rollbacks,
            "flops": run.flops.snapshot(),
            "wall_s": time.perf_counter() - run.started,
            "torch_threads": torch.get_num_threads(),
            "node": platform.node(),
            "machine": machine_record(),
        }
        if error is not None:
            summary["error"] = {"type": type(error).__name__, "message": str(error)}
        with _writing(run.run_dir):
            write_json_atomic(run.run_dir / "run.json", summary, sort_keys=True, default=str)
    return result


@contextmanager
def _stop_on_signals():
    """SIGINT/SIGTERM set a flag: the loop finishes its update, checkpoints and returns."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
