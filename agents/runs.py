"""A training run's files as objects: its config, its policy at the latest checkpoint, its export.

The trainer, the evaluation harness and ``rewardgym export`` all rebuild a run's policy the same
way: the model the config names, plus the LoRA adapter it asks for, then the checkpoint's weights.

Example:
    >>> policy, checkpoint, step = load_run_policy(Path("runs/balanced"))
    >>> export_merged(Path("runs/balanced"), Path("exported"))       # load_policy("exported")
    PosixPath('exported')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardgym.agents.checkpoint import checkpoint_step, latest_checkpoint, load_checkpoint
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.lora import add_lora, has_adapter, merged_state_dict
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.registry import load_policy, trains_on_tasks
from rewardgym.agents.runlog import SAMPLES_FILE
from rewardgym.errors import CheckpointError, ConfigError, RunDataError
from rewardgym.fileio import atomic_dir

__all__ = [
    "RUN_ENTRIES",
    "RunResult",
    "check_fresh_out",
    "export_merged",
    "load_run_policy",
    "policy_for_config",
    "read_run_config",
]


@dataclass
class RunResult:
    """What :func:`train` returns.

    ``updates_done`` counts the updates run, ``updates_stepped`` those that took an optimizer
    step (the others were skipped: a non-finite loss or gradient, or a monitor's veto).
    """

    config: TrainConfig
    run_dir: Path | None
    updates_done: int
    metrics: list[dict[str, Any]]
    final_eval: dict[str, float]
    stopped_early: bool = False
    interrupted: bool = False
    policy: LMPolicy | None = field(default=None, repr=False)
    updates_stepped: int = 0


#: what a run writes into its folder: never written over a user's file of the same name
RUN_ENTRIES = (
    "config.json", "metrics.jsonl", SAMPLES_FILE, "run.json", "checkpoints", "tensorboard",
    "eval", "replay", "trl",
)  # fmt: skip


def check_fresh_out(out: str | None, into_existing: bool = False) -> None:
    """Refuse to start a run in a folder that holds files of the user's.

    A new or empty folder is fine (hidden files, such as the run's own lock, do not count), and
    so is a run's folder (resuming or refusing it is the trainer's decision). A folder with other
    files is refused unless ``into_existing``; even then, files named as the run's own would be
    written over, so those are always refused.

    Raises:
        RunDataError: naming the folder, what is in it and the fix.
    """
    path = Path(out) if out else None
    if path is None or not path.is_dir() or (path / "config.json").is_file():
        return
    theirs = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    clash = [name for name in theirs if name in RUN_ENTRIES]
    if clash:
        raise RunDataError(
            f"--out {str(path)!r} holds {clash}, which a run writes; nothing was written: choose "
            "a new or empty folder"
        )
    if theirs and not into_existing:
        shown = ", ".join(theirs[:5]) + (", ..." if len(theirs) > 5 else "")
        raise RunDataError(
            f"--out {str(path)!r} is not empty and holds no run ({shown}); nothing was written: "
            "choose a new or empty folder, or pass --into-existing (into_existing=True) to train "
            "beside these files, which are left as they are"
        )


def read_run_config(run_dir: Path) -> TrainConfig:
    """The TrainConfig a run saved (``RUN/config.json``), or a RunDataError saying why not."""
    if not run_dir.is_dir():
        raise RunDataError(
            f"run directory {str(run_dir)!r} does not exist; pass the --out folder of a "
            "`rewardgym train` run"
        )
    path = run_dir / "config.json"
    if not path.is_file():
        raise RunDataError(
            f"{str(run_dir)!r} is not a run directory: it has no config.json; pass the --out "
            "folder of a `rewardgym train` run"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return TrainConfig.from_dict(data, source=str(path))
    except (OSError, ValueError) as exc:  # ConfigError is a ValueError
        raise RunDataError(f"cannot read the run's config {str(path)!r}: {exc}") from None


def policy_for_config(config: TrainConfig, device: str | None = None) -> LMPolicy:
    """The policy a run of ``config`` starts from: its model, with a fresh LoRA adapter when
    ``config.lora_r > 0`` (the adapter computes nothing until it is trained)."""
    if config.warm_start_tasks and not trains_on_tasks(config.model):
        raise ConfigError(
            f"warm_start_tasks {config.warm_start_tasks} applies to models warm-started here "
            f"(tiny), not {config.model!r}, whose training data is its own; drop it"
        )
    policy = load_policy(
        config.model,
        task=tuple(config.warm_start_tasks or [config.task]),
        device=device or config.device,
        dtype=config.dtype,
        **config.model_options,
    )
    if config.lora_r:
        add_lora(
            policy.model,
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            target_modules=config.lora_target_modules,
        )
        policy.info["lora"] = {"r": config.lora_r, "alpha": config.lora_alpha}
    return policy


def load_run_policy(
    run_dir: Path, config: TrainConfig | None = None, device: str | None = None
) -> tuple[LMPolicy, Path, int]:
    """The run's policy at its latest complete checkpoint: (policy, checkpoint, update).

    Raises:
        RunDataError: not a run directory.
        CheckpointError: the run has no complete checkpoint, or it does not fit the model.
    """
    config = config or read_run_config(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise CheckpointError(
            f"run directory {str(run_dir)!r} has no complete checkpoint in "
            f"{str(run_dir / 'checkpoints')!r} (folders without a COMPLETE marker are ignored); "
            "train it first, or resume it with `rewardgym train --resume` to write one"
        )
    policy = policy_for_config(config, device)
    load_checkpoint(checkpoint, policy.model, restore_rng=False)
    policy.model.eval()
    return policy, checkpoint, checkpoint_step(checkpoint) or 0


def export_merged(run_dir: Path, out_dir: Path) -> Path:
    """Write the run's latest policy as a plain model directory, its adapter merged in.

    The directory loads with ``load_policy(out_dir)`` (and transformers'
    ``AutoModelForCausalLM.from_pretrained``) without peft. A run trained without LoRA is
    exported as it is. Written atomically: on any error ``out_dir`` is not created.

    Raises:
        ConfigError: ``out_dir`` exists and is not empty.
        RunDataError, CheckpointError: as :func:`load_run_policy`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(
            f"export target {str(out_dir)!r} already exists and is not an empty folder; choose "
            "a new --merged folder (nothing is overwritten)"
        )
    config = read_run_config(run_dir)
    policy, checkpoint, step = load_run_policy(run_dir, config, device="cpu")
    if has_adapter(policy.model):
        merged = merged_state_dict(policy.model)
        policy = load_policy(
            config.model,
            task=config.task,
            device="cpu",
            dtype=config.dtype,
            **config.model_options,
        )
        policy.model.load_state_dict(merged, strict=True)
    with atomic_dir(out_dir) as tmp:
        policy.save(tmp)
        provenance = {"run": str(run_dir.resolve()), "checkpoint": checkpoint.name, "update": step}
        (tmp / "rewardgym_export.json").write_text(json.dumps(provenance, indent=2))
    return out_dir
