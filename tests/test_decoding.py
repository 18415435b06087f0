"""The rollout decoders: the static-cache Llama path and the generic fallback.

Checks that the fast path (shared prompt prefix run once, distinct prompts run once, finished
rows compacted, float32 KV cache) changes no output: its logits equal the model's own forward,
greedy tokens equal Hugging Face ``generate`` in every batch layout, and sampled log-probs equal
:meth:`LMPolicy.sequence_logprobs`. Also pins ``Generation.positions`` against hand counts.

Runs on the cached ``tiny`` model (trained, so rows finish at different steps), the random model
of ``conftest.py`` and a random grouped-query Llama built here; the whole file takes seconds.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import assert_greedy_matches_hf, special_token_ids

import rewardgym.agents.decoding as decoding
import rewardgym.agents.policy as policy_module
from rewardgym.agents.decoding import (
    MIN_SHARED_PREFIX,
    DynamicCacheDecoder,
    FastPathOptions,
    PackedWeights,
    StaticCacheDecoder,
    common_prefix_length,
    plain_linear,
    supports,
)
from rewardgym.agents.meters.compute import FlopCounter
from rewardgym.agents.padding import pad_ids
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.registry import load_policy
from rewardgym.agents.rollout import count_generation_flops

# Prompts with a long common start (bos + "translate: the dog sees") and different lengths.
# Their token counts, and the completion lengths the trained tiny model gives them, depend on
# the machine that trained it: the tests below derive every expected count from them.
SHARED = [
    "translate: the dog sees a cat =>",
    "translate: the dog sees my friends =>",
    "translate: the dog sees the old house near the river =>",
    "translate: the dog sees a bird =>",
]
# Only bos + "translate:" (3 tokens) in common: below MIN_SHARED_PREFIX, so no shared prefix.
MIXED = [
    "translate: a cat =>",
    "translate: hi =>",
    "translate: my friends will find the old house =>",
]
# For the random models, whose tokenizer was trained on the arithmetic task.
ARITHMETIC = [
    "solve: Lucy buys 6 packs of oranges. Each pack holds 10 oranges. =>",
    "solve: Lucy buys 6 packs of pears =>",
    "solve: Lucy buys 6 packs of oranges. Each pack holds 10 oranges. =>",
    "solve: Lucy buys 6 bags =>",
]


@pytest.fixture(scope="module")
def tiny() -> LMPolicy:
    return load_policy("tiny", device="cpu")


@pytest.fixture(scope="module")
def random_policy(random_model_dir) -> LMPolicy:
    return load_policy(random_model_dir, device="cpu")


@pytest.fixture()
def decoders(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every decoder ``LMPolicy.generate`` builds, in order."""
    made: list = []
    original = LMPolicy._decoder

    def spy(self: LMPolicy, prompt_ids, max_new_tokens):
        decoder = original(self, prompt_ids, max_new_tokens)
        made.append(decoder)
        return decoder

    monkeypatch.setattr(LMPolicy, "_decoder", spy)
    return made


@pytest.fixture()
def drops(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The order every ``StaticCacheDecoder.drop_finished`` call returned, in order."""
    calls: list[list[int]] = []
    original = StaticCacheDecoder.drop_finished

    def spy(self: StaticCacheDecoder, alive: torch.Tensor) -> torch.Tensor:
        order = original(self, alive)
        calls.append(order.tolist())
        return order

    monkeypatch.setattr(StaticCacheDecoder, "drop_finished", spy)
    return calls


def _reference_logits(policy: LMPolicy, ids: list[int]) -> torch.Tensor:
    """Next-token logits of one unpadded sequence from the model's own forward."""
    with torch.no_grad():
        return policy.model(input_ids=torch.tensor([ids])).logits[0, -1]


def _assert_logprobs_match(policy: LMPolicy, gen, atol: float, **sampling) -> None:
    """``gen``'s log-probs and entropies equal :meth:`LMPolicy.sequence_logprobs`, both as it
    runs (repeated prompts of a Llama go through the shared-prompt scoring code, which reuses
    the decoder's attention) and through the model's own forward."""
    args = (gen.prompt_ids, gen.token_ids)
    with torch.no_grad():
        outs = [policy.sequence_logprobs(*args, with_entropy=True, **sampling)]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(policy_module, "supports", lambda model: False)
            outs.append(policy.sequence_logprobs(*args, with_entropy=True, **sampling))
    for out in outs:
        for row, n in enumerate(gen.n_tokens):
            np.testing.assert_allclose(
                out.logprobs[row, :n].float().numpy(), gen.logprobs[row], atol=atol
            )
            bits = out.entropy[row, :n].float().numpy() / np.log(2)
            np.testing.assert_allclose(bits, gen.entropy_bits[row], atol=atol)


# ------------------------------------------------------------------ helpers and layout


def test_supports_llama_models_only(tiny, random_policy, gqa_policy) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    assert supports(tiny.model) and supports(random_policy.model) and supports(gqa_policy.model)
    config = GPT2Config(
        vocab_size=50, n_embd=8, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=1
    )
    gpt2 = GPT2LMHeadModel(config)
    assert not supports(gpt2)
    assert not supports(object())
    # A llama config is not enough: the decoder calls the layers, rotary embedding and head.
    parts = {"model": tiny.model.model, "lm_head": tiny.model.lm_head}
    assert supports(SimpleNamespace(config=tiny.model.config, **parts))
    assert not supports(SimpleNamespace(config=SimpleNamespace(model_type="mistral"), **parts))
    assert not supports(SimpleNamespace(config=tiny.model.config, model=tiny.model.model))


@pytest.mark.parametrize(
    "seqs,expected",
    [
        ([[1, 2, 3], [1, 2, 4]], 2),
        ([[1, 2, 3]], 3),
        ([[1, 2, 3], [1, 2, 3]], 3),
        ([[1, 2], [1, 2, 3, 4]], 2),  # one prompt is a prefix of the other
        ([[1, 2, 3, 4], [1, 2]], 2),
        ([[5, 2], [1, 2]], 0),
        ([[1, 2, 3], [1, 2, 3], [1, 9, 3]], 1),  # the odd one out is last
        ([[1, 2], []], 0),
    ],
)
def test_common_prefix_length(seqs: list[list[int]], expected: int) -> None:
    assert common_prefix_length(seqs) == expected


@pytest.mark.parametrize(
    "prompts,prefix_len,n_distinct",
    [
        ([[1, 2, 3, 4, 5], [1, 2, 3, 4, 6]], 4, 2),
        ([[1, 2, 3, 5], [1, 2, 3, 6]], 0, 2),  # 3 shared tokens do not pay for a forward call
        ([[1, 2, 3, 4, 5]], 4, 1),  # a batch of one: all but the last token
        ([[1, 2, 3, 4]], 0, 1),
        ([[1, 2, 3, 4, 5, 6]] * 3, 5, 1),  # identical prompts: one row, one suffix token
        ([[1, 2, 3, 4], [1, 2, 3, 4, 5, 6]], 0, 2),  # the short prompt needs a suffix token
        ([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5]], 4, 2),
    ],
)
def test_prefix_is_shared_only_when_long_enough_and_shorter_than_every_prompt(
    random_policy: LMPolicy, prompts: list[list[int]], prefix_len: int, n_distinct: int
) -> None:
    decoder = StaticCacheDecoder(random_policy.model, prompts, max_new_tokens=3, pad_id=0)
    assert decoder.prefix_len == prefix_len
    assert len(decoder.distinct) == n_distinct
    assert decoder.prefix_len < min(map(len, prompts))
    assert [decoder.distinct[i] for i in decoder.expand.tolist()] == prompts


# ------------------------------------------------------------- logits of the decoder


@pytest.mark.parametrize(
    "model,prompts",
    [
        ("tiny", SHARED + SHARED[:1]),
        ("tiny", MIXED),
        ("tiny", SHARED[2:3]),
        ("gqa_policy", ARITHMETIC),
        ("gqa_policy", ARITHMETIC[1:2]),  # prefill runs one suffix token: the one-query GQA path
    ],
)
@pytest.mark.parametrize(
    "switch_off", [{}, {"prefix_attention": False}, {"skip_prompt_padding": False}], ids=str
)
def test_prefill_step_take_and_drop_logits_equal_the_model_forward(
    request: pytest.FixtureRequest, model: str, prompts: list[str], switch_off: dict
) -> None:
    policy: LMPolicy = request.getfixturevalue(model)
    ids = policy.encode_prompts(prompts)
    options = FastPathOptions(**switch_off)
    decoder = StaticCacheDecoder(policy.model, ids, 4, policy.pad_id, options)
    seqs = [list(p) for p in ids]
    with torch.no_grad():
        logits = decoder.prefill()
        for step in range(4):
            expected = torch.stack([_reference_logits(policy, s) for s in seqs])
            torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
            nxt = logits.argmax(-1)
            if step == 1:  # keep rows in another order, one of them twice
                index = [len(seqs) - 1, *range(len(seqs) - 1), 0]
                decoder.take(torch.tensor(index))
                seqs, nxt = [seqs[i] for i in index], nxt[index]
            if step == 2:  # the first row finished: the last moves into its place
                storage = decoder.keys.data_ptr()
                alive = torch.ones(len(seqs), dtype=torch.bool)
                alive[0] = False
                order = decoder.drop_finished(alive).tolist()
                assert order == [len(seqs) - 1, *range(1, len(seqs) - 1)]
                assert decoder.keys.data_ptr() == storage and decoder.keys.shape[1] == len(order)
                seqs, nxt = [seqs[i] for i in order], nxt[order]
            seqs = [[*s, t] for s, t in zip(seqs, nxt.tolist())]
            logits = decoder.step(nxt)


def test_real_positions_pack_the_real_columns_and_unpack_heads_with_zero_padding() -> None:
    real = torch.tensor([[False, True, True], [True, True, True], [False, False, True]])
    layout = decoding.RealPositions(real)
    ids = torch.arange(9).view(3, 3)
    assert layout.pack(ids).tolist() == [[1, 2, 3, 4, 5, 8]]
    assert layout.last_of_row.tolist() == [1, 4, 5]  # each row's last column, in packed order
    heads = torch.arange(1.0, 13.0).view(1, 6, 2).transpose(1, 2)[:, :, :, None]  # [1, 2, 6, 1]
    unpacked = layout.unpack_heads(heads)
    assert unpacked.shape == (3, 2, 3, 1)
    assert unpacked[:, 0, :, 0].tolist() == [[0, 1, 3], [5, 7, 9], [0, 0, 11]]
    assert unpacked[:, 1, :, 0].tolist() == [[0, 2, 4], [6, 8, 10], [0, 0, 12]]


@pytest.mark.parametrize("prefix", [0, 5])
@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_decode_attention_equals_sdpa_over_the_whole_cache(prefix: int, kv_heads: int) -> None:
    batch, heads, head_dim, own = 3, 4, 8, 6
    gen = torch.Generator().manual_seed(kv_heads + prefix)
    query = torch.randn(batch, heads, 1, head_dim, generator=gen)
    shared = [torch.randn(kv_heads, prefix, head_dim, generator=gen) for _ in range(2)]
    rows = [torch.randn(batch, kv_heads, own, head_dim, generator=gen) for _ in range(2)]
    mask = torch.rand(batch, own, generator=gen) > 0.4
    mask[:, -1] = True  # a row always sees its own newest column
    attn = SimpleNamespace(scaling=head_dim**-0.5, o_proj=torch.nn.Identity())
    attn.o_proj.weight = query  # only its dtype is read

    got = decoding.decode_attention(attn, query, tuple(shared), tuple(rows), mask)

    full_keys, full_values = (
        torch.cat([s.expand(batch, -1, -1, -1), r], dim=2) for s, r in zip(shared, rows)
    )
    full_mask = torch.cat([torch.ones(batch, prefix, dtype=torch.bool), mask], dim=1)
    groups = heads // kv_heads
    expected = torch.nn.functional.scaled_dot_product_attention(
        query,
        full_keys.repeat_interleave(groups, dim=1),
        full_values.repeat_interleave(groups, dim=1),
        attn_mask=full_mask[:, None, None],
        scale=attn.scaling,
    )
    torch.testing.assert_close(got, expected.transpose(1, 2).reshape(batch, 1, -1))


# ------------------------------------------------------------------ packed weights

PACKABLE = [
    torch.float32,
    pytest.param(
        torch.bfloat16,
        marks=pytest.mark.skipif(
            not PackedWeights.available(torch.zeros(1, dtype=torch.bfloat16)),
            reason="oneDNN has no bf16 kernels on this CPU",
        ),
    ),
]


@pytest.mark.parametrize("dtype", PACKABLE)
def test_packed_weights_compute_every_linear_layer_of_the_model(
    tiny: LMPolicy, dtype: torch.dtype
) -> None:
    """Each layer (tiny's own, and ones with a bias), fed a 3-d batch, gives ``module(x)``; an
    attention's q, k and v projections give theirs as one product, unless their biases differ
    in kind."""
    torch.manual_seed(0)
    hidden = tiny.model.config.hidden_size

    def projections(*biases: bool) -> torch.nn.Module:
        module = torch.nn.Module()
        for name, bias in zip(("q_proj", "k_proj", "v_proj"), biases, strict=True):
            setattr(module, name, torch.nn.Linear(hidden, 4, bias=bias))
        return module

    model = torch.nn.ModuleDict(
        {
            "tiny": copy.deepcopy(tiny.model),
            "with_bias": torch.nn.Linear(hidden, 7),
            "attention_with_biases": projections(True, True, True),
            "mixed_biases": projections(True, False, True),
        }
    ).to(dtype)
    packed = PackedWeights(model)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    attentions = [m for m in model.modules() if hasattr(m, "q_proj")]
    fused = [a for a in attentions if a is not model["mixed_biases"]]
    assert len(fused) == tiny.model.config.num_hidden_layers + 1
    in_fused = {id(getattr(a, name)) for a in fused for name in ("q_proj", "k_proj", "v_proj")}
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    alone = [m for m in layers if id(m) not in in_fused]
    assert len(alone) == 4 * tiny.model.config.num_hidden_layers + 2 + 3
    with torch.no_grad():
        for layer in alone:
            x = torch.randn(3, 5, layer.in_features, dtype=dtype)
            torch.testing.assert_close(packed(layer, x), layer(x), atol=tol, rtol=tol)
        for attn in fused:
            x = torch.randn(3, 5, hidden, dtype=dtype)
            expected = torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], dim=-1)
            torch.testing.assert_close(packed.qkv(attn, x), expected, atol=tol, rtol=tol)
        assert packed.qkv(model["mixed_biases"], x) is None


def test_packed_weights_are_only_offered_where_onednn_runs_them() -> None:
    assert PackedWeights.available(torch.zeros(1))
    assert not PackedWeights.available(torch.zeros(1, dtype=torch.float16))
    assert not PackedWeights.available(torch.zeros(1, dtype=torch.float64))


@pytest.fixture()
def pack_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pack the test models' weights too, though they are below ``PACK_MIN_PARAMS``."""
    monkeypatch.setattr(decoding, "PACK_MIN_PARAMS", 0)


def test_small_models_are_not_packed(tiny: LMPolicy, decoders: list) -> None:
    assert tiny.n_params < decoding.PACK_MIN_PARAMS
    tiny.generate(SHARED[:1], max_new_tokens=2, greedy=True)
    assert decoders[0].linear is plain_linear


def test_the_decoder_packs_weights_unless_switched_off(
    tiny: LMPolicy, decoders: list, pack_any_size: None
) -> None:
    outputs = []
    for packed in (True, False):
        tiny.fast_path = FastPathOptions(packed_weights=packed)
        try:
            outputs.append(tiny.generate(SHARED, max_new_tokens=12, greedy=True).token_ids)
        finally:
            tiny.fast_path = FastPathOptions()
    assert isinstance(decoders[0].linear, PackedWeights)
    assert decoders[1].linear is plain_linear
    assert outputs[0] == outputs[1]


def test_each_rollout_packs_the_weights_as_they_are_now(
    gqa_policy: LMPolicy, decoders: list, pack_any_size: None
) -> None:
    """Training changes the weights between rollouts: a rollout must not reuse stale packs."""
    prompts = ARITHMETIC[:2]
    gqa_policy.fast_path = FastPathOptions(packed_weights=True)
    before = gqa_policy.generate(prompts, max_new_tokens=8, greedy=True).token_ids
    head = gqa_policy.model.lm_head.weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head.copy_(torch.randn_like(head))
        after = gqa_policy.generate(prompts, max_new_tokens=8, greedy=True).token_ids
        gqa_policy.fast_path = FastPathOptions(packed_weights=False)
        unpacked = gqa_policy.generate(prompts, max_new_tokens=8, greedy=True).token_ids
    finally:
        gqa_policy.fast_path = FastPathOptions()
        with torch.no_grad():
            head.copy_(saved)
    assert isinstance(decoders[1].linear, PackedWeights)
    assert after != before
    assert after == unpacked


# ------------------------------------------------------------------ greedy against HF

LAYOUTS = {
    "shared_prefix": SHARED,
    "shared_prefix_and_duplicates": [SHARED[1], SHARED[0], SHARED[1], SHARED[3], SHARED[1]],
    "duplicates_only": [MIXED[0]] * 3,
    "single": SHARED[2:3],
    "no_shared_prefix": MIXED,
}


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_greedy_matches_hf_generate_in_each_layout(
    tiny: LMPolicy, decoders: list, layout: str, packed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decoding, "PACK_MIN_PARAMS", 0)
    monkeypatch.setattr(tiny, "fast_path", FastPathOptions(packed_weights=packed))
    prompts = LAYOUTS[layout]
    gen = tiny.generate(prompts, max_new_tokens=16, greedy=True)
    assert_greedy_matches_hf(tiny, gen, max_new_tokens=16)
    assert all(gen.finished)  # the tiny model ends every answer here: eos handling is covered
    (decoder,) = decoders
    assert isinstance(decoder, StaticCacheDecoder)
    assert isinstance(decoder.linear, PackedWeights) == packed
    assert len(decoder.distinct) == len(set(prompts))
    if layout != "no_shared_prefix":
        assert decoder.prefix_len >= MIN_SHARED_PREFIX
    else:
        assert decoder.prefix_len == 0


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "packed"])
def test_greedy_matches_hf_with_grouped_query_attention(
    gqa_policy: LMPolicy,
    decoders: list,
    pack_any_size: None,
    packed: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both ways of running the linear layers that the measured kernel choice can pick:
    greedy tokens equal ``generate``'s and their log-probs its logits' within 1e-4 nats."""
    monkeypatch.setattr(gqa_policy, "fast_path", FastPathOptions(packed_weights=packed))
    gen = gqa_policy.generate(ARITHMETIC, max_new_tokens=12, greedy=True)
    assert_greedy_matches_hf(gqa_policy, gen, max_new_tokens=12)
    assert isinstance(decoders[0].linear, PackedWeights) == packed
    assert decoders[0].prefix_len >= MIN_SHARED_PREFIX and len(decoders[0].distinct) == 3
    assert len({tuple(t) for t in gen.token_ids}) > 1  # the test model does not ignore prompts
    ids, real = pad_ids(gen.prompt_ids, gqa_policy.pad_id, side="left")
    with torch.no_grad():
        out = gqa_policy.model.generate(
            input_ids=ids,
            attention_mask=real.long(),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=gqa_policy.eos_id,
            pad_token_id=gqa_policy.pad_id,
            return_dict_in_generate=True,
            output_logits=True,
        )
    reference = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)
    for row, tokens in enumerate(gen.token_ids):
        expected = reference[row, torch.arange(len(tokens)), torch.tensor(tokens)]
        np.testing.assert_allclose(gen.logprobs[row], expected.numpy(), atol=1e-4, rtol=0)


def test_greedy_matches_hf_when_finished_rows_are_compacted(
    tiny: LMPolicy, drops: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = SHARED + MIXED
    monkeypatch.setattr(tiny, "fast_path", FastPathOptions(compact_at=2.0))  # never compact
    whole = tiny.generate(prompts, max_new_tokens=16, greedy=True)
    assert drops == [] and whole.positions["new_padding"] > 0
    monkeypatch.setattr(tiny, "fast_path", FastPathOptions())  # as soon as a row finishes
    compacted = tiny.generate(prompts, max_new_tokens=16, greedy=True)
    assert len(set(compacted.n_tokens)) >= 3 and len(drops) >= 2
    assert all(len(b) < len(a) for a, b in zip(drops, drops[1:]))
    assert compacted.positions["new_padding"] == 0
    assert compacted.token_ids == whole.token_ids
    assert_greedy_matches_hf(tiny, compacted, max_new_tokens=16)


def test_token_budget_with_compaction_keeps_a_prefix_of_each_answer(
    tiny: LMPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiny, "fast_path", FastPathOptions(compact_at=0.01))
    full = tiny.generate(SHARED, max_new_tokens=16, greedy=True)
    assert all(full.finished) and max(full.n_tokens) > min(full.n_tokens) + 1, full.n_tokens
    budget = len(SHARED) * min(full.n_tokens) + 1  # the step after the shortest answer ends
    cut = tiny.generate(SHARED, max_new_tokens=16, greedy=True, token_budget=budget)
    lengths = _lengths_under_budget(full.n_tokens, budget)
    assert cut.n_tokens == lengths
    assert cut.finished == [n == m for n, m in zip(lengths, full.n_tokens)]
    assert not all(cut.finished)
    for short, long in zip(cut.token_ids, full.token_ids):
        assert long[: len(short)] == short


def _lengths_under_budget(lengths: list[int], budget: int) -> list[int]:
    """Each row's length when decoding stops at the first step whose running count of generated
    tokens (one per live row per step) reaches ``budget``."""
    generated, step = 0, 0
    while generated < budget and any(n > step for n in lengths):
        generated += sum(n > step for n in lengths)
        step += 1
    return [min(n, step) for n in lengths]


def _shared_prefix(prompt_ids: list[list[int]]) -> int:
    """The static decoder's shared prefix: the common start, leaving every prompt one token."""
    first = prompt_ids[0]
    common = 0
    while common < len(first) and all(
        len(p) > common and p[common] == first[common] for p in prompt_ids
    ):
        common += 1
    return min(common, min(map(len, prompt_ids)) - 1)


# ------------------------------------------------------------------ sampling


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9), (1.5, 1.0)])
@pytest.mark.parametrize(
    "prompts",
    [[*SHARED, SHARED[0], SHARED[0]], [*MIXED, MIXED[1]]],
    ids=["shared_prefix_and_duplicates", "no_shared_prefix"],
)
def test_sampled_logprobs_match_sequence_logprobs(
    tiny: LMPolicy, drops: list, prompts: list[str], temperature: float, top_p: float
) -> None:
    gen = tiny.generate(prompts, max_new_tokens=16, temperature=temperature, top_p=top_p, seed=4)
    assert drops  # finished rows were dropped
    _assert_logprobs_match(tiny, gen, atol=1e-4, temperature=temperature, top_p=top_p)


def test_sampled_logprobs_match_for_grouped_query_attention(gqa_policy: LMPolicy) -> None:
    gen = gqa_policy.generate(ARITHMETIC, max_new_tokens=8, temperature=0.5, seed=0)
    _assert_logprobs_match(gqa_policy, gen, atol=1e-4, temperature=0.5)


def test_same_seed_gives_the_same_samples(tiny: LMPolicy) -> None:
    prompts = [*SHARED, SHARED[1], SHARED[1]]
    first = tiny.generate(prompts, max_new_tokens=16, seed=7)
    again = tiny.generate(prompts, max_new_tokens=16, seed=7)
    other = tiny.generate(prompts, max_new_tokens=16, seed=8)
    assert first.token_ids == again.token_ids
    for a, b in zip(first.logprobs, again.logprobs):
        np.testing.assert_array_equal(a, b)
    assert first.token_ids != other.token_ids
    # Duplicated prompts share a cache row at prefill but are sampled independently.
    assert len({tuple(first.token_ids[i]) for i in (1, 4, 5)}) > 1


def test_greedy_output_of_a_duplicated_prompt_equals_running_it_alone(tiny: LMPolicy) -> None:
    prompts = [SHARED[0], MIXED[2], SHARED[0], SHARED[3], SHARED[0]]
    batch = tiny.generate(prompts, max_new_tokens=16, greedy=True)
    for prompt, ids, logprobs in zip(prompts, batch.token_ids, batch.logprobs):
        alone = tiny.generate([prompt], max_new_tokens=16, greedy=True)
        assert alone.token_ids[0] == ids
        np.testing.assert_allclose(alone.logprobs[0], logprobs, atol=1e-5)


def test_samples_do_not_depend_on_deduplication_or_the_shared_prefix(
    tiny: LMPolicy, decoders: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without compaction both decoders draw the same random numbers for the same rows, so the
    static path (prefix once, distinct prompts once) must sample what the padded batch does."""
    monkeypatch.setattr(tiny, "fast_path", FastPathOptions(compact_at=1.0))
    prompts = [SHARED[0], SHARED[2], SHARED[0], SHARED[0], SHARED[1]]
    fast = tiny.generate(prompts, max_new_tokens=12, seed=3)
    monkeypatch.setattr(policy_module, "supports", lambda model: False)
    plain = tiny.generate(prompts, max_new_tokens=12, seed=3)
    assert (
        isinstance(decoders[0], StaticCacheDecoder) and decoders[0].prefix_len >= MIN_SHARED_PREFIX
    )
    assert isinstance(decoders[1], DynamicCacheDecoder)
    assert fast.token_ids == plain.token_ids
    for a, b in zip(fast.logprobs, plain.logprobs):
        np.testing.assert_allclose(a, b, atol=1e-5)


# ------------------------------------------------------------------ positions


@pytest.mark.parametrize("skip_prompt_padding", [True, False])
def test_positions_of_a_greedy_batch_by_hand(
    tiny: LMPolicy, decoders: list, monkeypatch: pytest.MonkeyPatch, skip_prompt_padding: bool
) -> None:
    options = FastPathOptions(skip_prompt_padding=skip_prompt_padding)
    monkeypatch.setattr(tiny, "fast_path", options)
    gen = tiny.generate(SHARED, max_new_tokens=16, greedy=True)
    lengths = [len(p) for p in gen.prompt_ids]
    prefix = _shared_prefix(gen.prompt_ids)
    assert decoders[0].prefix_len == prefix >= MIN_SHARED_PREFIX
    assert len(set(lengths)) > 1 and all(gen.finished) and max(gen.n_tokens) < 16
    # Prompt: the shared prefix once, then each row's own rest; padded to the longest rest
    # unless padding is skipped.
    rests = [n - prefix for n in lengths]
    padding = 0 if skip_prompt_padding else sum(max(rests) - r for r in rests)
    # New: a finished row leaves the batch at once, so each row is fed its tokens but the last
    # (the step that made eos drops it).
    assert gen.positions == {
        "prompt": prefix + sum(rests) + padding,
        "prompt_padding": padding,
        "new": sum(n - 1 for n in gen.n_tokens),
        "new_padding": 0,
    }


def test_positions_without_compaction_count_finished_rows_as_padding(
    tiny: LMPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiny, "fast_path", FastPathOptions(compact_at=1.0))
    gen = tiny.generate(SHARED, max_new_tokens=16, greedy=True)
    longest = max(gen.n_tokens)
    assert all(gen.finished) and longest < 16 and min(gen.n_tokens) < longest
    # longest - 1 decode steps of every row; a row ending after n tokens is fed padding
    # longest - n times.
    assert gen.positions["new"] == (longest - 1) * len(SHARED)
    assert gen.positions["new_padding"] == sum(longest - n for n in gen.n_tokens)
    prefix = _shared_prefix(gen.prompt_ids)
    assert gen.positions["prompt"] == prefix + sum(len(p) - prefix for p in gen.prompt_ids)
    assert gen.positions["prompt_padding"] == 0


def test_positions_count_a_shared_prefix_once_and_each_distinct_prompt_once(
    tiny: LMPolicy, decoders: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # compact as soon as a row finishes
    monkeypatch.setattr(tiny, "fast_path", FastPathOptions(compact_at=0.01))
    prompts = [SHARED[1], SHARED[0], SHARED[1], SHARED[3], SHARED[1], SHARED[0]]
    gen = tiny.generate(prompts, max_new_tokens=16, greedy=True)
    prefix, distinct = decoders[0].prefix_len, {tuple(p) for p in gen.prompt_ids}
    longest = max(map(len, gen.prompt_ids))
    assert prefix >= MIN_SHARED_PREFIX and len(distinct) == 3
    assert longest - prefix > min(map(len, distinct)) - prefix  # there is padding to skip
    assert gen.positions["prompt"] == prefix + sum(len(p) - prefix for p in distinct)
    assert gen.positions["prompt_padding"] == 0
    # Each row is fed its own tokens but the last: the step that made eos drops it.
    assert gen.positions["new"] == sum(n - 1 for n in gen.n_tokens)
    assert gen.positions["new_padding"] == 0


def test_positions_of_one_new_token(tiny: LMPolicy) -> None:
    gen = tiny.generate(MIXED, max_new_tokens=1, greedy=True)
    lengths = [len(p) for p in gen.prompt_ids]
    assert gen.n_tokens == [1, 1, 1]
    assert max(lengths) > min(lengths)
    assert gen.positions == {
        "prompt": sum(lengths),
        "prompt_padding": 0,
        "new": 0,
        "new_padding": 0,
    }


def test_generation_flops_count_the_computed_positions(
    tiny: LMPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiny, "fast_path", FastPathOptions(skip_prompt_padding=False))
    gen = tiny.generate(SHARED, max_new_tokens=16, greedy=True)
    padding = gen.positions["prompt_padding"] + gen.positions["new_padding"]
    assert padding > 0  # the prompts differ in length, so the padded prompt pass has some
    flops = FlopCounter(tiny.n_params)
    count_generation_flops(flops, gen)
    assert flops.tokens("generation_prompt", "forward") == gen.positions["prompt"]
    assert flops.tokens("generation_new", "forward") == gen.positions["new"]
    assert flops.wasted == flops.flops_for(padding, "forward")


# ------------------------------------------------------------------ the generic path


def test_unsupported_model_falls_back_and_matches_hf(
    tiny: LMPolicy, decoders: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = tiny.generate(SHARED + MIXED[:1], max_new_tokens=16, greedy=True)
    monkeypatch.setattr(policy_module, "supports", lambda model: False)
    gen = tiny.generate(SHARED + MIXED[:1], max_new_tokens=16, greedy=True)
    assert isinstance(decoders[0], StaticCacheDecoder)
    assert isinstance(decoders[1], DynamicCacheDecoder) and not decoders[1].can_drop
    assert_greedy_matches_hf(tiny, gen, max_new_tokens=16)
    assert gen.token_ids == fast.token_ids
    lengths, longest = [len(p) for p in gen.prompt_ids], max(gen.n_tokens)
    assert gen.positions == {
        "prompt": 5 * max(lengths),
        "prompt_padding": 5 * max(lengths) - sum(lengths),
        "new": 5 * (longest - 1),
        "new_padding": sum(longest - n for n in gen.n_tokens),
    }


def test_non_llama_model_uses_the_generic_path(random_policy: LMPolicy, decoders: list) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = random_policy.tokenizer
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        initializer_range=0.2,
        **special_token_ids(tok),
    )
    gpt2 = LMPolicy(GPT2LMHeadModel(config), tok, name="gpt2", device="cpu")
    gen = gpt2.generate(ARITHMETIC, max_new_tokens=8, greedy=True)
    assert isinstance(decoders[0], DynamicCacheDecoder)
    assert_greedy_matches_hf(gpt2, gen, max_new_tokens=8)
    sampled = gpt2.generate(ARITHMETIC, max_new_tokens=8, temperature=0.5, seed=0)
    _assert_logprobs_match(gpt2, sampled, atol=1e-4, temperature=0.5)


# ------------------------------------------------------------------ bfloat16


def test_bfloat16_logprobs_agree_with_sequence_logprobs(decoders: list) -> None:
    """Both paths end in the bf16 ``lm_head``, but the decoder scores over float32 keys
    while re-scoring attends in bf16, so their hidden states differ slightly and a logit may
    round to the neighbouring bf16 value. bf16 keeps 8 significant bits: logits in
    ``[2**e, 2**(e+1))`` are ``2**(e-7)`` apart, 0.125 for the tiny model's top logits of ~19.
    So a log-prob may move by about one such step (seeds 0-7 give at most 0.075), while the
    mean difference stays far smaller (at most 0.0065): a real bug (a wrong position, mask or
    cache row) would move the mean."""
    half = load_policy("tiny", device="cpu", dtype="bfloat16")
    gen = half.generate([*SHARED, SHARED[0], SHARED[2]], max_new_tokens=16, seed=1)
    decoder = decoders[0]
    assert isinstance(decoder, StaticCacheDecoder) and decoder.prefix_len >= MIN_SHARED_PREFIX
    assert decoder.keys.dtype == torch.float32 and decoder.values.dtype == torch.bfloat16
    with torch.no_grad():
        out = half.sequence_logprobs(gen.prompt_ids, gen.token_ids)
        rows = [p + c for p, c in zip(gen.prompt_ids, gen.token_ids)]
        ids, real = pad_ids(rows, half.pad_id, side="left")
        mask = real.long()
        logits = half.model(input_ids=ids, attention_mask=mask).logits
    peak = logits[mask.bool()].float().max().item()  # the largest logit at a real position
    step = 2.0 ** (math.floor(math.log2(peak)) - 7)
    diffs = np.concatenate(
        [
            np.abs(out.logprobs[row, :n].float().numpy() - gen.logprobs[row])
            for row, n in enumerate(gen.n_tokens)
        ]
    )
    assert np.isfinite(diffs).all()
    assert diffs.max() <= step
    assert diffs.mean() <= 0.015
