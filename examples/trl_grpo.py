"""Your own TRL script, measured by rewardgym: the lines marked "rewardgym" are all it adds.

Run it (CPU, a minute with the tiny model), then read the run as a native one:

    python examples/trl_grpo.py --out runs/trl/balanced
    rewardgym evaluate runs/trl/balanced          # test split, noise robustness
    rewardgym replay runs/trl/balanced --reward speed_only
    rewardgym report runs/trl                     # compares every run in the folder

``--model`` takes any local Hugging Face model folder (or ``smollm2-135m``); on a GPU, TRL puts
the model on it as usual.
"""

from __future__ import annotations

import argparse

import torch
from trl import GRPOConfig, GRPOTrainer

import rewardgym


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/trl/balanced", help="the run directory")
    parser.add_argument("--task", default="translate")
    parser.add_argument("--reward", default="balanced")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    policy = rewardgym.load_policy(args.model, task=args.task)
    kit = rewardgym.trl.attach(  # rewardgym: the run directory and what goes into it
        task=args.task, reward=args.reward, out=args.out, model=policy, eval_every=10
    )
    trainer = GRPOTrainer(
        model=policy.model,
        processing_class=policy.tokenizer,
        reward_funcs=kit.reward_funcs,  # rewardgym: one function per reward component
        train_dataset=kit.train_dataset(),  # rewardgym: the task's train split
        args=GRPOConfig(
            output_dir=f"{args.out}/trl",
            max_steps=args.steps,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=4,
            num_generations=4,
            max_completion_length=32,
            learning_rate=2e-4,
            logging_steps=1,  # rewardgym records every step
            save_steps=10,
            reward_weights=kit.reward_weights,  # rewardgym: the components' weights
            report_to="none",
            bf16=torch.cuda.is_available(),  # TRL's default; a CPU trains in float32
            use_cpu=not torch.cuda.is_available(),
        ),
        callbacks=kit.callbacks,  # rewardgym: metrics, samples, held-out evaluation, monitors
    )
    trainer.train()
    print(f"run directory: {kit.run_dir}")


if __name__ == "__main__":
    main()
