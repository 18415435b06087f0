"""Does ``torch.compile`` pay on the re-scoring forward and backward? Three ways timed, and the
compile cost.

``python -m benchmarks.compile_rescoring [--model tiny smollm2-135m] [--repeats 5] [--cold]``
samples one GRPO micro-batch of the training benchmark's shape (2 prompts x a group of 4,
completions of up to ``--new-tokens`` tokens, seed 0) and times forward + backward of the
summed completion log-probs three ways, interleaved (medians of ``--repeats``):

* **shared prompts, eager**: what the trainer runs, ``LMPolicy.sequence_logprobs`` with each
  distinct prompt computed once (:mod:`rewardgym.agents.scoring`);
* **full forward, eager**: the model's own ``forward`` over ``[prompt | completion]``, then the
  log-softmax and the gather of the sampled tokens;
* **full forward, compiled**: the same function through ``torch.compile`` (inductor; forward and
  backward graphs, static shapes: a training run would need one graph per padded shape, so the
  compile cost below recurs for every new micro-batch width).

The shared-prompt path is not compiled: it takes Python lists of token ids and indexes the
prompt stream per sample, so every micro-batch would be a new graph. The compile cost is the
first compiled call minus an eager one (``--cold`` bypasses inductor's on-disk caches, as a fresh
machine would see it). Not part of ``run_all``: it answers one question, written up in
docs/performance.md.

Example:
    $ .venv/bin/python -m benchmarks.compile_rescoring --model tiny --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from benchmarks.generation import task_prompts
from rewardgym.agents.padding import pad_ids
from rewardgym.agents.registry import load_policy

GROUP = 4
PROMPTS = 2


def micro_batch(policy: Any, new_tokens: int) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt and completion token ids of one sampled GRPO micro-batch."""
    prompts = [p for p in task_prompts(PROMPTS) for _ in range(GROUP)]
    gen = policy.generate(prompts, max_new_tokens=new_tokens, seed=0)
    return gen.prompt_ids, gen.token_ids


def full_forward_loss(policy: Any, prompt_ids: list, completion_ids: list) -> Callable[..., Any]:
    """A function of the padded micro-batch's tensors: the summed completion log-probs through
    the model's own forward (what compiling can take whole), and its inputs."""
    prompt, prompt_real = pad_ids(prompt_ids, policy.pad_id, side="left")
    completion, completion_real = pad_ids(completion_ids, policy.pad_id, side="right")
    ids = torch.cat([prompt, completion], dim=1)
    mask = torch.cat([prompt_real, completion_real], dim=1).long()
    positions = policy._positions(mask)
    keep = completion.shape[1] + 1
    model = policy.model

    def loss(ids, mask, positions, targets, real):  # noqa: ANN001, ANN202
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        logp = torch.log_softmax(logits[:, -keep:-1].float(), dim=-1)
        return (logp.gather(-1, targets[..., None]).squeeze(-1) * real).sum()

    inputs = (ids, mask, positions, completion, completion_real.float())
    return loss, inputs


def time_rescoring(
    model: str,
    new_tokens: int = 48,
    repeats: int = 5,
    cold: bool = False,
    backend: str = "inductor",
) -> dict[str, Any]:
    """Interleaved median seconds of forward + backward, three ways, and the compile cost
    (``backend``: torch.compile's; ``"aot_eager"`` traces both graphs without generating code).

    Example:
        >>> out = time_rescoring("tiny", new_tokens=8, repeats=2)
        >>> sorted(out["median_s"])
        ['full forward, compiled', 'full forward, eager', 'shared prompts, eager']
    """
    if cold:
        torch._inductor.config.force_disable_caches = True
    torch._dynamo.reset()
    policy = load_policy(model, device="cpu")
    prompt_ids, completion_ids = micro_batch(policy, new_tokens)
    loss, inputs = full_forward_loss(policy, prompt_ids, completion_ids)
    compiled = torch.compile(loss, backend=backend, dynamic=False)
    policy.fast_path = replace(policy.fast_path, share_prompts=True)

    def backward(fn: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            policy.model.zero_grad(set_to_none=True)
            fn(*inputs).backward()

        return run

    def shared() -> None:
        policy.model.zero_grad(set_to_none=True)
        policy.sequence_logprobs(prompt_ids, completion_ids).logprobs.sum().backward()

    arms = {
        "shared prompts, eager": shared,
        "full forward, eager": backward(loss),
        "full forward, compiled": backward(compiled),
    }
    first: dict[str, float] = {}
    for name, run in arms.items():
        start = time.perf_counter()
        run()
        first[name] = time.perf_counter() - start
    check = float((loss(*inputs) - compiled(*inputs)).detach().abs())
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(repeats):
        for name, run in arms.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "model": model,
        "samples": len(prompt_ids),
        "width": int(inputs[0].shape[1]),
        "compile_s": first["full forward, compiled"] - medians["full forward, eager"],
        "median_s": medians,
        "times_s": times,
        "compiled_over_eager": medians["full forward, eager"] / medians["full forward, compiled"],
        "compiled_over_shared": medians["shared prompts, eager"]
        / medians["full forward, compiled"],
        "loss_difference": check,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["tiny", "smollm2-135m"])
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="bypass inductor's on-disk caches")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for model in args.model:
        out = time_rescoring(model, args.new_tokens, args.repeats, args.cold)
        print(
            f"{model}: micro-batch of {out['samples']} samples, width {out['width']}; "
            f"compile {out['compile_s']:.1f} s; |loss eager - compiled| "
            f"{out['loss_difference']:.2e}"
        )
        for name, seconds in out["median_s"].items():
            print(f"  {name}: {1e3 * seconds:.0f} ms forward + backward")
        print(
            f"  compiled vs eager full forward: {out['compiled_over_eager']:.2f}x; "
            f"compiled full forward vs shared prompts (eager): {out['compiled_over_shared']:.2f}x"
        )


if __name__ == "__main__":
    main()
