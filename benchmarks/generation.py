"""Rollout generation: rewardgym's decode loop vs Hugging Face ``generate``, side by side.

Both run on the same model object, the same prompts (the task's training prompts, encoded and
left-padded the same way) and the same sampling settings (temperature 1, no top-k/top-p), and the
two are timed alternately in one process so machine load hits both alike. Tokens per second
counts the tokens each one actually produced (up to and including eos); the compute roofline share
divides that by ``peak / 2N`` of the same dtype, the attainable share by the memory-aware bound
of :func:`benchmarks.roofline.attainable` for a decode step of that batch: every weight read once
per step, the KV cache read at the rollout's mean context (prompt plus half the new tokens; the
shared prefix once, keys in float32), activations (:func:`benchmarks.roofline.decode_step_bytes`).
The correctness check runs in the same call: greedy fp32 outputs must equal ``generate``'s token
for token, and rewardgym's log-probs must match ``log_softmax`` of ``generate``'s logits within
1e-4, on both ways of running the linear layers (packed oneDNN weights and the model's own).

The linear layers' kernel is chosen by measurement at first use (``choose_linear`` in
``agents/decoding.py``); the benchmark reports each choice it ran with and its timings.

Two more measurements say where the speed comes from: an ablation at the largest batch that
switches each optimisation of the rollout path off alone (``FastPathOptions``; timed
round-robin with everything on) and the compiled decode step (off by default) on alone, and the
sampler against ``torch.multinomial``.

Example:
    >>> result = run(quick=True, model="tiny", peaks={"float32": 1e11, "bfloat16": 1e11})
    >>> result["correctness"]["greedy_identical"]
    True
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

import torch

from benchmarks.roofline import (
    attainable,
    decode_step_bytes,
    figure,
    measure_peaks,
    median_time,
    prompt_pass_flops,
    stream_bandwidth,
    token_limit,
)
from rewardgym.agents.decoding import (
    MIN_SHARED_PREFIX,
    FastPathOptions,
    PackedWeights,
    choose_linear,
    common_prefix_length,
    distinct_rows,
)
from rewardgym.agents.padding import pad_ids
from rewardgym.agents.policy import (
    LMPolicy,
    draw_tokens,
    draw_tokens_from_table,
    sample_categorical,
)
from rewardgym.agents.registry import load_policy
from rewardgym.envs.tasks import make_task

LOGPROB_TOL = 1e-4
TARGET_VS_HF = 2.0
TARGET_BF16_SHARE = 0.40
# The rollout target: a batch-64 rollout at half the attainable (memory-aware) roofline or more.
TARGET_ATTAINABLE_SHARE = 0.50
# Each optimisation of the rollout path switched off alone (FastPathOptions), to measure its gain.
ABLATIONS = {
    "no shared prompt work": {"share_prompts": False},
    "no row compaction": {"compact_at": 2.0},
    "keys cached in the model dtype": {"float32_keys": False},
    "unpacked weights (the model's own layers, MKL)": {"packed_weights": False},
    "prompt padding computed": {"skip_prompt_padding": False},
    "per-row attention over the whole cache (SDPA)": {"prefix_attention": False},
    "generic decode loop (HF forward + dynamic cache)": {"static_cache": False},
}
# Options that are off by default, switched on alone: their row's gain is on over all on (a
# gain below 1 is what switching it on costs). The compiled variant is warmed by one untimed
# rollout first, so its compile cost (reported as compile_s) is not in the timed rate.
ADDITIONS = {
    "torch.compile decode step (compile_step, off by default)": {"compile_step": True},
}


def task_prompts(n: int, task: str = "translate") -> list[str]:
    """The first ``n`` training prompts of ``task`` (repeated when the split is shorter).

    Example:
        >>> len(task_prompts(3))
        3
    """
    examples = make_task(task, seed=0).split("train")
    return [examples[i % len(examples)].prompt for i in range(n)]


def _left_pad(policy: LMPolicy, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, real = pad_ids(policy.encode_prompts(prompts), policy.pad_id, side="left")
    return ids.to(policy.device), real.long().to(policy.device)


def hf_generate(
    policy: LMPolicy, prompts: list[str], max_new_tokens: int, greedy: bool, seed: int = 0
) -> tuple[list[list[int]], Any]:
    """Hugging Face ``generate`` on the policy's model; token lists cut after eos, and its output.

    Example:
        >>> tokens, _ = hf_generate(policy, ["translate: a dog =>"], 8, greedy=True)
    """
    ids, mask = _left_pad(policy, prompts)
    torch.manual_seed(seed)
    options: dict[str, Any] = (
        {"do_sample": False}
        if greedy
        else {
            "do_sample": True,
            "temperature": 1.0,
            "top_p": 1.0,
            "top_k": 0,
        }
    )
    with torch.inference_mode():
        out = policy.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=policy.eos_id,
            pad_token_id=policy.pad_id,
            return_dict_in_generate=True,
            output_logits=greedy,
            **options,
        )
    new = out.sequences[:, ids.shape[1] :].tolist()
    tokens = []
    for row in new:
        cut = row.index(policy.eos_id) + 1 if policy.eos_id in row else len(row)
        tokens.append(row[:cut])
    return tokens, out


def check_correctness(policy: LMPolicy, batch: int, max_new_tokens: int) -> dict[str, Any]:
    """Greedy outputs of rewardgym (fp32 policy) and ``generate`` compared token for token, and
    log-probs, with the linear layers run both ways (packed oneDNN weights where the decoder can
    pack this model, and the model's own layers); the figures are the worse of the two.

    Example:
        >>> check_correctness(policy, 4, 8)["greedy_identical"]
        True
    """
    prompts = task_prompts(batch)
    theirs, out = hf_generate(policy, prompts, max_new_tokens, greedy=True)
    logits = torch.stack(out.logits, dim=1).float()  # [B, steps, V]
    hf_logp = torch.log_softmax(logits, dim=-1)
    paths = [False, True] if PackedWeights.pays_for(policy.model) else [False]
    identical, worst, default = True, 0.0, policy.fast_path
    try:
        for packed in paths:
            policy.fast_path = replace(default, packed_weights=packed)
            ours = policy.generate(prompts, max_new_tokens=max_new_tokens, greedy=True)
            identical &= ours.token_ids == theirs
            for row, ids in enumerate(ours.token_ids):
                n = min(len(ids), len(theirs[row]))
                if n == 0:
                    continue
                ref = hf_logp[row, torch.arange(n), torch.tensor(ids[:n])]
                diff = (ref - torch.as_tensor(ours.logprobs[row][:n]).float()).abs().max()
                worst = max(worst, float(diff))
    finally:
        policy.fast_path = default
    return {
        "batch": batch,
        "max_new_tokens": max_new_tokens,
        "paths": ["packed" if p else "plain" for p in paths],
        "greedy_identical": bool(identical),
        "max_logprob_diff": worst,
        "logprobs_within_tol": worst <= LOGPROB_TOL,
    }


def decode_bound(
    policy: LMPolicy, batch: int, max_new_tokens: int, peak: float, bandwidth: float
) -> dict[str, Any]:
    """The attainable tokens/s of a decode step of ``batch`` rows of the benchmark's prompts:
    the roofline of :func:`benchmarks.roofline.attainable` over ``2N`` FLOPs per token and the
    bytes of :func:`benchmarks.roofline.decode_step_bytes` at the mean context (mean prompt
    length plus half the new tokens), the shared prefix read once, keys in float32 as the
    fast path keeps them by default.

    Example:
        >>> decode_bound(policy, 64, 48, 4e11, 3e10)["bound_by"]
        'memory'
    """
    ids = policy.encode_prompts(task_prompts(batch))
    prefix = min(common_prefix_length(ids), min(map(len, ids)) - 1) if batch > 1 else 0
    prefix = prefix if prefix >= MIN_SHARED_PREFIX else 0
    context = sum(map(len, ids)) / len(ids) + max_new_tokens / 2
    options = FastPathOptions()
    key_dtype = torch.float32 if options.float32_keys else None
    moved = decode_step_bytes(policy.model, batch, context, key_dtype, shared_prefix=prefix)
    flops = 2.0 * policy.n_params * batch
    bound = attainable(flops, moved["total"], peak, bandwidth)
    # The prompt pass's least work: each distinct prompt once, the shared prefix once. It is
    # compute-bound (hundreds of positions per weight read), so it is bounded by the peak.
    distinct, _ = distinct_rows(ids)
    positions = prefix + sum(len(p) - prefix for p in distinct)
    return {
        **bound,
        "tok_s": bound["flops_per_s"] / (2.0 * policy.n_params),
        "bytes": moved,
        "context": context,
        "shared_prefix": prefix,
        "prompt_positions": positions,
        "prompt_s": prompt_pass_flops(policy.model, positions, len(distinct)) / peak,
    }


def rollout_share(tokens: int, tok_s: float, bound: dict[str, Any]) -> float:
    """Share of the whole-rollout roofline: the least time of the prompt pass plus ``tokens``
    decode tokens at the attainable rate, over the rollout's measured time (``tokens / tok_s``).

    Example:
        >>> rollout_share(100, 50.0, {"prompt_s": 0.5, "tok_s": 200.0})
        0.5
    """
    return (bound["prompt_s"] + tokens / bound["tok_s"]) / (tokens / tok_s)


def _time_pair(
    policy: LMPolicy, batch: int, max_new_tokens: int, repeats: int, warmup: bool
) -> dict[str, float]:
    """Both paths alternately on the same prompts; median tokens/s of each.

    ``warmup`` runs each path once untimed first (once per model is enough: the first timed
    batch size is the smallest, so later sizes find the code paths warm).
    """
    prompts = task_prompts(batch)
    counts: dict[str, int] = {}

    def ours() -> None:
        gen = policy.generate(prompts, max_new_tokens=max_new_tokens, seed=0)
        counts["rewardgym"] = sum(gen.n_tokens)

    def theirs() -> None:
        tokens, _ = hf_generate(policy, prompts, max_new_tokens, greedy=False)
        counts["hf"] = sum(len(t) for t in tokens)

    times: dict[str, list[float]] = {"rewardgym": [], "hf": []}
    if warmup:
        ours(), theirs()
    for _ in range(repeats):
        times["rewardgym"].append(median_time(ours, 1, warmup=0))
        times["hf"].append(median_time(theirs, 1, warmup=0))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "rewardgym_tok_s": counts["rewardgym"] / med["rewardgym"],
        "hf_tok_s": counts["hf"] / med["hf"],
        "rewardgym_tokens": counts["rewardgym"],
        "hf_tokens": counts["hf"],
    }


def run(
    quick: bool = False,
    model: str = "smollm2-135m",
    peaks: dict[str, float] | None = None,
    device: str = "cpu",
    batches: tuple[int, ...] | None = None,
    repeats: int | None = None,
    new_tokens: int | None = None,
    bandwidth: dict[str, Any] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Benchmark entry: tokens/s of both paths per dtype and batch, and the correctness check.

    ``batches``, ``repeats`` and ``new_tokens`` override the mode's defaults (1/8/64 quick,
    1/8/32/64 full; 2 quick, 3 full; 16 quick, 48 full); the targets apply to the largest batch.

    Example:
        >>> run(quick=True, model="tiny")["rows"][0]["dtype"]
        'float32'
    """
    peaks = peaks or measure_peaks(quick, device=device)
    bandwidth = bandwidth or stream_bandwidth(quick, device=device)
    batches = batches or ((1, 8, 64) if quick else (1, 8, 32, 64))
    new_tokens = new_tokens or (16 if quick else 48)
    repeats = repeats or (2 if quick else 3)
    rows: list[dict[str, Any]] = []
    correctness: dict[str, Any] = {}
    ablations: list[dict[str, Any]] = []
    additions: list[dict[str, Any]] = []  # options off by default, switched on alone
    choices: list[dict[str, Any]] = []
    for dtype in ("float32", "bfloat16"):
        policy = load_policy(model, device=device, dtype=dtype)
        # Measured (or read from the cache) before anything is timed, as the first rollout
        # of each batch bucket would; reported with the timings it rests on.
        for batch in sorted(batches):
            choice = choose_linear(policy.model, batch, policy.fast_path.packed_weights)
            choices.append({"dtype": dtype, "batch": batch, **_choice_record(choice)})
        if dtype == "float32":
            correctness = check_correctness(policy, 4 if quick else 8, new_tokens)
        for row in ablate(policy, max(batches), new_tokens, repeats):
            (additions if "switched_on" in row else ablations).append(row)
        vocab = policy.vocab_size
        limit = token_limit(peaks[dtype], policy.n_params)
        for index, batch in enumerate(sorted(batches)):
            pair = _time_pair(policy, batch, new_tokens, repeats, warmup=index == 0)
            bound = decode_bound(policy, batch, new_tokens, peaks[dtype], bandwidth["bandwidth"])
            rows.append(
                {
                    "dtype": dtype,
                    "batch": batch,
                    **pair,
                    "speedup_vs_hf": pair["rewardgym_tok_s"] / pair["hf_tok_s"],
                    "rewardgym_roofline_share": pair["rewardgym_tok_s"] / limit,
                    "hf_roofline_share": pair["hf_tok_s"] / limit,
                    "roofline_tok_s": limit,
                    "attainable_tok_s": bound["tok_s"],
                    "rewardgym_attainable_share": pair["rewardgym_tok_s"] / bound["tok_s"],
                    "hf_attainable_share": pair["hf_tok_s"] / bound["tok_s"],
                    "rewardgym_rollout_share": rollout_share(
                        pair["rewardgym_tokens"], pair["rewardgym_tok_s"], bound
                    ),
                    "hf_rollout_share": rollout_share(pair["hf_tokens"], pair["hf_tok_s"], bound),
                    "attainable": bound,
                }
            )
        del policy
    sampler = time_sampler(vocab, max(batches))
    return {
        "benchmark": "generation",
        "model": model,
        "device": device,
        "max_new_tokens": new_tokens,
        "repeats": repeats,
        "bandwidth": bandwidth,
        "rows": rows,
        "kernel_choices": choices,
        "correctness": correctness,
        "ablations": ablations,
        "additions": additions,
        "sampler": sampler,
        "figures": [
            *_figures(rows, correctness, device),
            *_choice_figures(choices, device),
            *_ablation_figures(ablations + additions, device),
            *_sampler_figures(sampler),
        ],
    }


def _choice_record(choice: Any) -> dict[str, Any]:
    measured = choice.measured
    return {
        "packed": choice.packed,
        "reason": choice.reason,
        "source": measured.source if measured else None,
        "seconds": measured.seconds if measured else {},
        "describe": choice.describe(),
    }


def _choice_figures(choices: list[dict], device: str) -> list[dict[str, Any]]:
    """One row per dtype and batch: packed weights chosen (1) or not (0), and why."""
    return [
        figure(
            f"kernel choice {c['dtype']} batch {c['batch']} ({device}): packed oneDNN weights "
            f"(1) or the model's own layers (0), one decode step's linear layers",
            float(c["packed"]),
            c["describe"],
        )
        for c in choices
    ]


def ablate(policy: LMPolicy, batch: int, max_new_tokens: int, repeats: int) -> list[dict[str, Any]]:
    """Tokens/s with every optimisation on vs with each one off, timed round-robin.

    ``gain`` is the all-on rate over the ablated rate: what that optimisation buys (all on
    includes packed weights whatever the measured kernel choice, where they apply). The bf16
    KV-cache switch only exists for non-float32 models and is skipped in float32; the
    packed-weights switch only where the decoder packs the model's weights (CPU, large enough).

    Example:
        >>> ablate(policy, 8, 8, 1)[0]["gain"] > 0
        True
    """
    prompts = task_prompts(batch)
    dtype = str(policy.dtype).removeprefix("torch.")
    variants = {"all on": {}}
    for name, switch in ABLATIONS.items():
        if "float32_keys" in switch and policy.dtype == torch.float32:
            continue
        if "packed_weights" in switch and not PackedWeights.pays_for(policy.model):
            continue
        variants[name] = switch
    variants.update(ADDITIONS)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    compile_s: dict[str, float] = {}
    default = policy.fast_path
    # "All on" means every optimisation on, packed weights too (where the decoder can pack),
    # whatever the measured choice: the packed-weights row then checks that choice end to end.
    every = replace(default, packed_weights=True)
    try:
        for name, switch in ADDITIONS.items():  # untimed warm-up: the first compile
            policy.fast_path = replace(every, **switch)
            start = time.perf_counter()
            policy.generate(prompts, max_new_tokens=max_new_tokens, seed=0)
            compile_s[name] = time.perf_counter() - start
        for _ in range(repeats):
            for name, switch in variants.items():
                policy.fast_path = replace(every, **switch)
                start = time.perf_counter()
                gen = policy.generate(prompts, max_new_tokens=max_new_tokens, seed=0)
                rates[name].append(sum(gen.n_tokens) / (time.perf_counter() - start))
    finally:
        policy.fast_path = default
    best = statistics.median(rates["all on"])
    rows = []
    for name in variants:
        if name == "all on":
            continue
        rate = statistics.median(rates[name])
        added = name in ADDITIONS
        row = {
            "dtype": dtype,
            "batch": batch,
            "switched_on" if added else "switched_off": name,
            "tok_s": rate,
            "all_on_tok_s": best,
            "gain": rate / best if added else best / rate,
        }
        if added:
            row["first_rollout_s"] = compile_s[name]
        rows.append(row)
    return rows


def time_sampler(vocab: int, batch: int) -> dict[str, float]:
    """Milliseconds per draw of ``[batch, vocab]``: :func:`sample_categorical` vs
    ``torch.multinomial``, on the same random distributions.

    Example:
        >>> time_sampler(1000, 4)["speedup"] > 0
        True
    """
    generator = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(batch, vocab, generator=generator)
    probs = torch.softmax(logits, dim=-1)
    ours = median_time(lambda: sample_categorical(probs, generator), 20)
    theirs = median_time(lambda: torch.multinomial(probs, 1, generator=generator), 20)
    fused = median_time(lambda: draw_tokens(logits, 1.0, 1.0, False, generator), 20)
    table = median_time(lambda: draw_tokens_from_table(logits, 1.0, 1.0, False, generator), 20)
    return {
        "batch": batch,
        "vocab": vocab,
        "ours_ms": 1e3 * ours,
        "multinomial_ms": 1e3 * theirs,
        "speedup": theirs / ours,
        "head_fused_ms": 1e3 * fused,
        "head_table_ms": 1e3 * table,
    }


def _sampler_figures(sampler: dict[str, Any]) -> list[dict[str, Any]]:
    shape = f"[{sampler['batch']}, {sampler['vocab']}]"
    return [
        figure(
            f"sampler {shape}: speed-up over torch.multinomial",
            sampler["speedup"],
            f"x ({sampler['ours_ms']:.1f} vs {sampler['multinomial_ms']:.1f} ms)",
        ),
        figure(
            f"sampling head {shape} (draw, log-prob, entropy): fused vs log-prob table",
            sampler["head_table_ms"] / sampler["head_fused_ms"],
            f"x ({sampler['head_fused_ms']:.1f} vs {sampler['head_table_ms']:.1f} ms)",
        ),
    ]


def _ablation_figures(ablations: list[dict], device: str) -> list[dict[str, Any]]:
    out = []
    for row in ablations:
        label = f"generation ablation {row['dtype']} batch {row['batch']} ({device}): "
        if "switched_on" in row:
            out.append(
                figure(
                    f"{label}gain of '{row['switched_on']}' switched on over all on",
                    row["gain"],
                    f"x ({row['all_on_tok_s']:.0f} -> {row['tok_s']:.0f} tok/s; first "
                    f"rollout, compile included, {row['first_rollout_s']:.1f} s)",
                )
            )
            continue
        out.append(
            figure(
                f"{label}gain of '{row['switched_off']}' off -> on",
                row["gain"],
                f"x ({row['tok_s']:.0f} -> {row['all_on_tok_s']:.0f} tok/s)",
            )
        )
    return out


def _figures(rows: list[dict], correctness: dict, device: str) -> list[dict[str, Any]]:
    out = []
    top = max(r["batch"] for r in rows)
    for row in rows:
        short = "fp32" if row["dtype"] == "float32" else "bf16"
        label = f"{short} batch {row['batch']} ({device})"
        at_top = row["batch"] == top
        out.append(
            figure(
                f"generation {label}: tok/s rewardgym / HF",
                row["rewardgym_tok_s"],
                f"tok/s (HF {row['hf_tok_s']:.1f})",
            )
        )
        out.append(
            figure(
                f"generation {label}: speed-up vs HF generate",
                row["speedup_vs_hf"],
                "x",
                f">= {TARGET_VS_HF:.0f}x" if at_top else "",
                row["speedup_vs_hf"] >= TARGET_VS_HF if at_top else None,
            )
        )
        bound = row["attainable"]
        moved = bound["bytes"]
        share = row["rewardgym_attainable_share"]
        out.append(
            figure(
                f"generation {label}: share of the attainable (memory-aware) roofline "
                f"(HF {100 * row['hf_attainable_share']:.1f} %)",
                100 * share,
                f"% of {row['attainable_tok_s']:.0f} tok/s, {bound['bound_by']}-bound: "
                f"{moved['weights'] / 1e6:.0f} MB weights + {moved['kv_cache'] / 1e6:.0f} MB "
                f"KV + {moved['activations'] / 1e6:.0f} MB activations per step at context "
                f"{row['attainable']['context']:.0f}; compute-only {row['roofline_tok_s']:.0f} "
                "tok/s",
                f">= {100 * TARGET_ATTAINABLE_SHARE:.0f} %" if at_top else "",
                share >= TARGET_ATTAINABLE_SHARE if at_top else None,
            )
        )
        out.append(
            figure(
                f"generation {label}: share of the whole-rollout roofline, prompt pass counted "
                f"(HF {100 * row['hf_rollout_share']:.1f} %)",
                100 * row["rewardgym_rollout_share"],
                f"% (least prompt work: {bound['prompt_positions']} positions, "
                f"{1e3 * bound['prompt_s']:.0f} ms at the peak)",
            )
        )
        bf16_target = at_top and row["dtype"] == "bfloat16"
        out.append(
            figure(
                f"generation {label}: share of the compute-only roofline "
                f"(HF {100 * row['hf_roofline_share']:.1f} %)",
                100 * row["rewardgym_roofline_share"],
                "%",
                f">= {100 * TARGET_BF16_SHARE:.0f} %" if bf16_target else "",
                row["rewardgym_roofline_share"] >= TARGET_BF16_SHARE if bf16_target else None,
            )
        )
    out.append(
        figure(
            "generation correctness: greedy fp32 identical to HF generate "
            f"(linear layers: {' and '.join(correctness['paths'])})",
            float(correctness["greedy_identical"]),
            "bool",
            "identical",
            correctness["greedy_identical"],
        )
    )
    out.append(
        figure(
            "generation correctness: max |log-prob diff|",
            correctness["max_logprob_diff"],
            "nats",
            f"<= {LOGPROB_TOL:g}",
            correctness["logprobs_within_tol"],
        )
    )
    return out
