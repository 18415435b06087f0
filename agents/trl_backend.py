"""``backend: trl``: the same run, trained by TRL's ``GRPOTrainer`` on whatever device
accelerate picks (CUDA when present), measured by the rewardgym kit (:mod:`.trl_kit`).

The run's options become ``GRPOConfig`` keywords (:func:`~.trl_options.grpo_arguments`), the
model is the one rewardgym's trainer would start from (LoRA adapter included), and the result
is a :class:`~rewardgym.agents.trainer.RunResult` like a native run's, so studies, evaluation and
reports read both alike. TRL's own checkpoints go to ``RUN/trl`` (resume continues from them);
rewardgym's go beside them to ``RUN/checkpoints``.

Example:
    >>> result = train(TrainConfig(task="arithmetic", backend="trl", updates=10, out="runs/t"))
    >>> result.run_dir
    PosixPath('runs/t')
"""

from __future__ import annotations

import re
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from rewardgym.agents.callbacks import Callback
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.runs import RunResult, policy_for_config
from rewardgym.agents.trl_kit import TRLKit
from rewardgym.agents.trl_options import grpo_arguments, require_trl

__all__ = ["TRL_CHECKPOINTS", "train_with_trl"]

TRL_CHECKPOINTS = "trl"  # RUN/trl/checkpoint-N: TRL's own, for resuming
_TRL_NAME = re.compile(r"^checkpoint-(\d+)$")


def train_with_trl(config: TrainConfig, callbacks: list[Callback], resume: bool) -> Any:
    """Train ``config`` through TRL's GRPOTrainer; returns a ``RunResult`` (see module doc)."""
    trl = require_trl()
    keep = nullcontext(config.out) if config.out else tempfile.TemporaryDirectory()
    with keep as out:
        run_config = (
            config if config.out else TrainConfig.from_dict({**config.to_dict(), "out": out})
        )
        policy = policy_for_config(run_config)
        kit = TRLKit.create(run_config, callbacks, policy, resume=resume)
        trainer = _trainer(trl, run_config, policy, kit)
        trainer.train(resume_from_checkpoint=_trl_checkpoint(Path(out)) if resume else None)
        recorder = kit.recorder
    policy.model.eval()
    return RunResult(
        config,
        Path(config.out) if config.out else None,
        len(recorder.records),
        recorder.records,
        recorder.final_eval,
        stopped_early=recorder.stopped_early,
        policy=policy,
        updates_stepped=len(recorder.records),
    )


def _trainer(trl, config: TrainConfig, policy, kit: TRLKit):
    """A GRPOTrainer on ``policy``'s model that prints nothing of its own (the kit's bar does)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    arguments = grpo_arguments(config, output_dir=str(Path(config.out) / TRL_CHECKPOINTS))
    # without a GPU, say so: TRL's defaults would otherwise refuse bf16 ("no bf16/gpu")
    arguments["use_cpu"] = arguments["use_cpu"] or not torch.cuda.is_available()
    args = trl.GRPOConfig(**arguments, reward_weights=kit.reward_weights)
    policy.model.train()
    trainer = trl.GRPOTrainer(
        model=policy.model,
        processing_class=policy.tokenizer,
        reward_funcs=kit.reward_funcs,
        train_dataset=kit.train_dataset(),
        args=args,
        callbacks=kit.callbacks,
    )
    for printer in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(printer)
    return trainer


def _trl_checkpoint(run_dir: Path) -> str | None:
    """TRL's newest checkpoint in the run (None: the run starts again from its first step)."""
    folder = run_dir / TRL_CHECKPOINTS
    found = [
        (int(m.group(1)), path)
        for path in (folder.iterdir() if folder.is_dir() else [])
        if (m := _TRL_NAME.match(path.name)) and (path / "trainer_state.json").is_file()
    ]
    return str(max(found)[1]) if found else None
