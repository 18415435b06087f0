"""Which reasoning-gym tasks can SmolLM2-135M-Instruct partly do zero-shot?

A reward-shaping study needs a task the starting policy half-solves: at 0 % no sample earns a
reward to learn from, near 100 % there is nothing left to improve or to break. For each
candidate dataset this greedily answers the first ``n`` test examples of
``reasoning_gym:NAME`` (the task's own prompt and answer extraction) and scores them with the
dataset's own ``score_answer`` (the task's primary metric), with the answers' length; the study
``smollm2_reasoning`` takes the two with scores nearest the middle.

    python -m benchmarks.reasoning_pilot --n 48 --out benchmarks/results/reasoning_pilot.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.roofline import machine
from rewardgym.agents.registry import load_policy
from rewardgym.envs.tasks import make_task

# Short-answer generators whose questions fit a 135M model's context and whose answers fit in
# a few dozen tokens, at their default difficulty and at an easy setting of their own config
# (the name, then config keys as key=value); the pilot measures which the model partly solves.
CANDIDATES = (
    "leg_counting",
    "basic_arithmetic",
    "chain_sum",
    "spell_backward",
    "letter_counting",
    "number_sorting",
    "word_sorting",
    "gcd",
    "count_bits",
    "products",
    "chain_sum:max_terms=2,max_digits=1",
    "products:max_digits=1",
    "basic_arithmetic:max_terms=2,max_digits=1,allow_parentheses=false,allow_negation=false",
    "leg_counting:min_animals=1,max_animals=2,max_instances=3",
    "spell_backward:max_word_len=4",
    "gcd:max_value=20",
)


def parse_candidate(text: str) -> tuple[str, dict[str, Any]]:
    """``name:key=value,...`` as (name, config); values are ints, booleans or text."""
    name, _, options = text.partition(":")
    config: dict[str, Any] = {}
    for pair in filter(None, options.split(",")):
        key, value = pair.split("=")
        lowered = value.lower()
        config[key] = (
            int(value)
            if value.lstrip("-").isdigit()
            else (lowered == "true" if lowered in ("true", "false") else value)
        )
    return name, config


def pilot_one(policy: Any, candidate: str, n: int, max_new_tokens: int) -> dict[str, Any]:
    """Greedy zero-shot score and length of the policy on ``n`` test examples of one dataset."""
    name, config = parse_candidate(candidate)
    task = make_task(f"reasoning_gym:{name}", n_train=8, n_validation=8, n_test=n, **config)
    examples = task.split("test")
    started = time.perf_counter()
    gen = policy.generate(
        [ex.prompt for ex in examples], max_new_tokens=max_new_tokens, greedy=True
    )
    answers = task.answers(gen.completions)
    refs = [ex.reference for ex in examples]
    score = task.quality(answers, refs, None, [ex.meta for ex in examples])
    return {
        "dataset": candidate,
        "n": len(examples),
        "score": float(score),
        "tokens": float(np.mean(gen.n_tokens)),
        "finished": float(np.mean(gen.finished)),
        "seconds": time.perf_counter() - started,
        "example": {"prompt": examples[0].prompt, "completion": gen.completions[0]},
    }


def run(names: Sequence[str], n: int, max_new_tokens: int) -> dict[str, Any]:
    policy = load_policy("smollm2-135m", device="cpu")
    rows = [pilot_one(policy, name, n, max_new_tokens) for name in names]
    return {"model": "smollm2-135m", "max_new_tokens": max_new_tokens, "rows": rows,
            "machine": machine()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="test examples per dataset")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--datasets", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--out", help="write the JSON result here")
    args = parser.parse_args()
    result = run(args.datasets, args.n, args.max_new_tokens)
    print("| dataset | zero-shot score | answer tokens | finished | s |")
    print("| --- | --- | --- | --- | --- |")
    for r in result["rows"]:
        print(f"| {r['dataset']} | {r['score']:.1f} | {r['tokens']:.1f} | {r['finished']:.2f} "
              f"| {r['seconds']:.0f} |")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
