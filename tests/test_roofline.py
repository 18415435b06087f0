"""The memory-aware roofline: bytes a decode step and an update move, counted by hand on a small
seeded random Llama (no training), the attainable bound as ``min(peak, bandwidth x intensity)``,
and the STREAM measurement's bookkeeping.

The model: hidden 32, intermediate 64, 2 layers, 4 query heads and 2 key/value heads of 8,
vocabulary 96. Per layer its weights are q 32x32 = 1024, k and v 16x32 = 512 each, o 1024,
gate, up and down 2048 each, two norms of 32: 9,280; two layers 18,560, the final norm 32, the
embedding (tied: also the output projection) 96x32 = 3,072.
"""

from __future__ import annotations

import random

import pytest
import torch
from conftest import random_llama

from benchmarks import generation, roofline
from rewardgym.agents.meters.compute import count_params

LAYER_WEIGHTS = 1024 + 512 + 512 + 1024 + 3 * 2048 + 2 * 32  # 9,280
OTHER = 2 * LAYER_WEIGHTS + 32  # every weight but the embedding and output projection
TABLE = 96 * 32  # embedding / output projection
# Activation elements of one position (roofline.activation_elements' list, H 32, I 64, q 32,
# k 16): per layer 64 + 96 + 96 + 64 + 64 + 96 + 64 + 192 + 192 + 96 + 96 = 1,120; two layers
# 2,240, then the final norm 64 and the output projection's input 32.
ACTIVATIONS = 2 * 1120 + 64 + 32  # 2,336


def small(tied: bool = True) -> torch.nn.Module:
    return random_llama(
        96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )


def test_the_hand_count_of_weights_is_the_model_s() -> None:
    assert count_params(small(tied=True)) == OTHER + TABLE == 21_664
    assert count_params(small(tied=False)) == OTHER + 2 * TABLE
    assert roofline.activation_elements(small().config) == ACTIVATIONS


def test_decode_step_bytes_by_hand_in_float32() -> None:
    # batch 3, context 10: weights once (the table once, plus the 3 looked-up rows), keys and
    # values of 10 columns read and 1 written per row, activations and logits per row.
    moved = roofline.decode_step_bytes(small(), batch=3, context=10)
    assert moved["weights"] == (OTHER + TABLE + 3 * 32) * 4 == 87_040
    # layers 2 x kv_heads 2 x head_dim 8 x (4 + 4 bytes) x (3 rows x 10 + 3 new) columns
    assert moved["kv_cache"] == 2 * 2 * 8 * 8 * 33 == 8_448
    assert moved["activations"] == 3 * (ACTIVATIONS + 2 * 96) * 4 == 30_336
    assert moved["total"] == 87_040 + 8_448 + 30_336


def test_an_untied_output_projection_reads_the_same_bytes_per_step() -> None:
    """The untied embedding table is not read whole, only its looked-up rows; the output
    projection is read whole either way. So a step moves the same bytes tied or not."""
    tied = roofline.decode_step_bytes(small(tied=True), batch=3, context=10)
    untied = roofline.decode_step_bytes(small(tied=False), batch=3, context=10)
    assert untied == tied


def test_decode_step_bytes_in_bfloat16_with_float32_keys_and_a_shared_prefix() -> None:
    model = small().to(torch.bfloat16)
    moved = roofline.decode_step_bytes(model, batch=3, context=10, shared_prefix=4)
    assert moved["weights"] == (OTHER + TABLE + 3 * 32) * 2
    # keys 4 bytes, values 2; the 4 prefix columns read once: 3 x 6 + 4 + 3 new = 25 columns
    assert moved["kv_cache"] == 2 * 2 * 8 * (4 + 2) * 25
    assert moved["activations"] == 3 * (ACTIVATIONS + 2 * 96) * 2
    same_dtype = roofline.decode_step_bytes(model, 3, 10, key_dtype=None, shared_prefix=4)
    assert same_dtype["kv_cache"] == 2 * 2 * 8 * (2 + 2) * 25


@pytest.mark.parametrize("tied", [True, False])
def test_update_bytes_by_hand(tied: bool) -> None:
    n = OTHER + TABLE * (1 if tied else 2)
    moved = roofline.update_bytes(small(tied), positions=50, logit_positions=12, micro_batches=2)
    assert moved["weights"] == 2 * 2 * n * 4  # forward and backward of 2 micro-batches
    assert moved["gradients"] == 3 * n * 4  # written once, then read and written once
    assert moved["optimizer"] == 7 * n * 4  # fused AdamW: 4 reads, 3 writes
    assert moved["activations"] == (3 * 50 * ACTIVATIONS + 4 * 12 * 96) * 4
    assert moved["total"] == sum(v for k, v in moved.items() if k != "total")


def test_attainable_is_the_lower_of_compute_and_memory() -> None:
    rng = random.Random(0)
    for _ in range(200):
        flops, moved = 10 ** rng.uniform(6, 12), 10 ** rng.uniform(6, 12)
        peak, bandwidth = 10 ** rng.uniform(10, 13), 10 ** rng.uniform(9, 12)
        bound = roofline.attainable(flops, moved, peak, bandwidth)
        assert bound["flops_per_s"] == pytest.approx(min(peak, bandwidth * flops / moved))
        assert bound["intensity"] == pytest.approx(flops / moved)
        memory_bound = bandwidth * flops / moved < peak
        assert bound["bound_by"] == ("memory" if memory_bound else "compute")


def test_the_decode_bound_of_the_generation_benchmark(random_model_dir: str) -> None:
    from rewardgym.agents.registry import load_policy

    policy = load_policy(random_model_dir, device="cpu")
    bound = generation.decode_bound(policy, 4, 8, peak=1e11, bandwidth=2e10)
    moved = bound["bytes"]
    flops = 2.0 * policy.n_params * 4
    assert bound["tok_s"] == pytest.approx(
        min(1e11, 2e10 * flops / moved["total"]) / (2.0 * policy.n_params)
    )
    assert bound["tok_s"] <= roofline.token_limit(1e11, policy.n_params) * (1 + 1e-9)
    ids = policy.encode_prompts(generation.task_prompts(4))
    lengths = [len(p) for p in ids]
    assert bound["context"] == pytest.approx(sum(lengths) / 4 + 4)
    # the prompt pass's least work: the shared prefix once, each distinct prompt's rest once
    prefix = bound["shared_prefix"]
    distinct = {tuple(p) for p in ids}
    assert bound["prompt_positions"] == prefix + sum(len(p) - prefix for p in distinct)
    work = roofline.prompt_pass_flops(policy.model, bound["prompt_positions"], len(distinct))
    assert bound["prompt_s"] == pytest.approx(work / 1e11)


def test_prompt_pass_flops_by_hand() -> None:
    # 2 FLOPs per weight outside the table per position, the table at each prompt's last one
    assert roofline.prompt_pass_flops(small(), positions=10, prompts=3) == 2 * (
        10 * OTHER + 3 * TABLE
    )


def test_the_whole_rollout_share_counts_the_prompt_pass() -> None:
    # 100 tokens at 50 tok/s take 2 s; the bound: 0.5 s of prompt pass + 100 / 200 s of decoding
    bound = {"prompt_s": 0.5, "tok_s": 200.0}
    assert generation.rollout_share(100, 50.0, bound) == pytest.approx(1.0 / 2.0)
    assert generation.rollout_share(100, 200.0, {**bound, "prompt_s": 0.0}) == pytest.approx(1.0)


def test_stream_counts_two_arrays_per_copy_and_three_per_triad(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(roofline, "last_level_cache_bytes", lambda: 2**20)
    seconds = iter([0.5, 0.25, 0.4, 1.0])  # copy warm-up then repeats, as wall_times returns

    def fake_times(fn, repeats, warmup=1):
        fn()
        return [next(seconds), next(seconds)]

    monkeypatch.setattr(roofline, "wall_times", fake_times)
    bw = roofline.stream_bandwidth(quick=True)
    assert bw["array_bytes"] == 64 * 2**20  # at least 4 x the cache, never under 64 MiB
    assert bw["copy"] == 2 * 64 * 2**20 / 0.25
    assert bw["triad"] == 3 * 64 * 2**20 / 0.4
    assert bw["bandwidth"] == max(bw["copy"], bw["triad"])
