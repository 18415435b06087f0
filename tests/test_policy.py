"""LMPolicy: generation, log-probs, entropy, seeding, eos handling, copies, saving, errors.

Runs on a randomly initialised tiny Llama (no warm start), so the whole file takes seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_greedy_matches_hf

from rewardgym.agents.memory import ENV_VAR as KEEP_FREED_MEMORY
from rewardgym.agents.policy import (
    Generation,
    LMPolicy,
    draw_tokens,
    draw_tokens_from_table,
    resolve_dtype,
    scaled_log_softmax,
)
from rewardgym.agents.registry import load_policy
from rewardgym.agents.tiny import TinyConfig, build_model, train_tokenizer
from rewardgym.errors import ConfigError, ModelLoadError, UnknownNameError

TEXTS = [
    "translate: the red dogs saw a cat =>",
    "keli fekubu-ni biru beti tovi mupa-ta",
    "translate: a bird sings =>",
    "beti mima zatu-mo",
    "translate: my friends will find the old house =>",
    "lu nera-ni keli pini gome fofo-ru",
] * 20
PROMPTS = ["translate: the red dogs saw a cat =>", "translate: a bird sings =>", "translate: hi =>"]


@pytest.fixture(scope="module")
def policy() -> LMPolicy:
    tokenizer = train_tokenizer(TEXTS, vocab_size=300, min_frequency=1)
    config = TinyConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=2, d_ff=64)
    model = build_model(config, tokenizer, seed=0)
    return LMPolicy(
        model, tokenizer, name="tiny", device="cpu", add_bos=True, completion_prefix=" "
    )


def test_generate_shapes(policy: LMPolicy) -> None:
    gen = policy.generate(PROMPTS, max_new_tokens=6, seed=0)
    assert isinstance(gen, Generation) and len(gen) == 3
    assert gen.prompt_ids == policy.encode_prompts(PROMPTS)
    assert all(ids[0] == policy.tokenizer.bos_token_id for ids in gen.prompt_ids)
    for ids, lp, ent, n in zip(
        gen.token_ids, gen.logprobs, gen.entropy_bits, gen.n_tokens, strict=True
    ):
        assert 1 <= n <= 6 and len(ids) == len(lp) == len(ent) == n
        assert lp.dtype == np.float64 and np.all(lp <= 0)
    assert gen.wall_s > 0
    assert all(isinstance(c, str) for c in gen.completions)


def test_only_processes_rewardgym_owns_change_the_allocator(
    policy: LMPolicy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """generate() is a library call: it leaves malloc alone; the command line and training own
    their process and keep freed memory for reuse (a bad switch is a clear error there)."""
    from rewardgym import cli

    real = cli.keep_freed_memory
    calls: list[int] = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or True)
    policy.generate(PROMPTS[:1], max_new_tokens=2, seed=0)
    assert calls == []
    assert cli.main(["list", "tasks"]) == 0
    assert calls == [1]
    monkeypatch.setattr(cli, "keep_freed_memory", real)
    monkeypatch.setenv(KEEP_FREED_MEMORY, "maybe")
    capsys.readouterr()
    assert cli.main(["list", "tasks"]) == 2
    assert "REWARDGYM_KEEP_FREED_MEMORY must be 0" in capsys.readouterr().err


def test_single_string_and_empty_batch(policy: LMPolicy) -> None:
    assert len(policy.generate(PROMPTS[0], max_new_tokens=2, seed=0)) == 1
    empty = policy.generate([], max_new_tokens=2)
    assert empty.completions == [] and empty.n_tokens == []


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (1.3, 0.8)])
def test_logprobs_match_recomputation(policy: LMPolicy, temperature: float, top_p: float) -> None:
    gen = policy.generate(PROMPTS, max_new_tokens=8, temperature=temperature, top_p=top_p, seed=3)
    out = policy.sequence_logprobs(
        gen.prompt_ids, gen.token_ids, temperature=temperature, top_p=top_p, with_entropy=True
    )
    assert out.logprobs.shape == out.mask.shape == (3, max(gen.n_tokens))
    for row, n in enumerate(gen.n_tokens):
        assert out.mask[row].sum().item() == n
        np.testing.assert_allclose(
            out.logprobs[row, :n].detach().numpy(), gen.logprobs[row], atol=1e-4
        )
        bits = out.entropy[row, :n].detach().numpy() / math.log(2)
        np.testing.assert_allclose(bits, gen.entropy_bits[row], atol=1e-4)
    real = [len(p) + len(c) for p, c in zip(gen.prompt_ids, gen.token_ids, strict=True)]
    assert out.real_positions_per_sample == real
    assert out.n_positions == 3 * (max(map(len, gen.prompt_ids)) + max(gen.n_tokens))
    assert out.n_padding == out.n_positions - sum(real)


def test_sequence_logprobs_is_differentiable(policy: LMPolicy) -> None:
    gen = policy.generate(PROMPTS, max_new_tokens=4, seed=0)
    clone = policy.copy()
    out = clone.sequence_logprobs(gen.prompt_ids, gen.token_ids)
    (-(out.logprobs * out.mask).sum()).backward()
    grads = [p.grad for p in clone.model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_greedy_matches_hf_generate(policy: LMPolicy) -> None:
    gen = policy.generate(PROMPTS, max_new_tokens=10, greedy=True)
    assert_greedy_matches_hf(policy, gen, max_new_tokens=10)


def test_seeded_sampling_is_deterministic(policy: LMPolicy) -> None:
    first = policy.generate(PROMPTS, max_new_tokens=8, seed=11)
    again = policy.generate(PROMPTS, max_new_tokens=8, seed=11)
    other = policy.generate(PROMPTS, max_new_tokens=8, seed=12)
    assert first.token_ids == again.token_ids and first.completions == again.completions
    assert first.token_ids != other.token_ids


def test_eos_sets_finished_and_is_kept_in_ids_only(policy: LMPolicy) -> None:
    greedy = policy.generate(PROMPTS[:1], max_new_tokens=6, greedy=True)
    stop_token = greedy.token_ids[0][2]
    first_hit = greedy.token_ids[0].index(stop_token)
    clone = policy.copy()
    clone.eos_id = stop_token  # pretend that token is eos: generation must stop right after it
    gen = clone.generate(PROMPTS[:1], max_new_tokens=6, greedy=True)
    assert gen.finished == [True]
    assert gen.token_ids[0] == greedy.token_ids[0][: first_hit + 1]
    assert gen.completions[0] == clone.decode(gen.token_ids[0][:-1])
    unfinished = policy.generate(PROMPTS, max_new_tokens=3, greedy=True)
    assert unfinished.finished == [False] * 3 and unfinished.n_tokens == [3] * 3


def test_entropy_bounds_and_top_p(policy: LMPolicy) -> None:
    wide = policy.generate(PROMPTS, max_new_tokens=6, seed=0, temperature=2.0)
    upper = math.log2(policy.vocab_size)
    values = np.concatenate(wide.entropy_bits)
    assert np.all(values >= 0) and np.all(values <= upper + 1e-6)
    narrow = policy.generate(PROMPTS, max_new_tokens=6, seed=0, top_p=1e-6)
    assert np.allclose(np.concatenate(narrow.entropy_bits), 0.0)
    assert np.allclose(np.concatenate(narrow.logprobs), 0.0)


def test_scaled_log_softmax_top_p_keeps_the_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = scaled_log_softmax(logits, 1.0, 0.8).exp()
    torch.testing.assert_close(kept, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("greedy", [False, True])
def test_fused_draw_matches_the_log_prob_table(temperature: float, greedy: bool) -> None:
    # The fused head (no log-prob table) against the table path on the same logits and draws.
    logits = torch.randn(16, 3000, generator=torch.Generator().manual_seed(3)) * 4
    logits[0, :5] = float("-inf")  # a token the model rules out: weight 0, no NaN entropy
    fused = draw_tokens(logits, temperature, 1.0, greedy, torch.Generator().manual_seed(7))
    table = draw_tokens_from_table(
        logits, temperature, 1.0, greedy, torch.Generator().manual_seed(7)
    )
    assert torch.equal(fused[0], table[0])
    assert torch.allclose(fused[1], table[1], atol=1e-5)
    assert torch.allclose(fused[2], table[2], atol=1e-5)
    assert torch.isfinite(fused[2]).all()


def test_top_p_draw_goes_through_the_table() -> None:
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 4
    fused = draw_tokens(logits, 1.3, 0.8, False, torch.Generator().manual_seed(1))
    table = draw_tokens_from_table(logits, 1.3, 0.8, False, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(fused, table, strict=True))


def test_token_budget_cuts_the_batch(policy: LMPolicy) -> None:
    gen = policy.generate(PROMPTS, max_new_tokens=10, greedy=True, token_budget=7)
    assert sum(gen.n_tokens) == 9  # the step that crossed the budget finishes for all rows
    assert gen.finished == [False] * 3


def test_copy_and_frozen_copy_are_independent(policy: LMPolicy) -> None:
    clone, frozen = policy.copy(), policy.frozen_copy()
    assert clone.model is not policy.model and frozen.model is not policy.model
    assert all(p.requires_grad for p in clone.model.parameters())
    assert not any(p.requires_grad for p in frozen.model.parameters())
    with torch.no_grad():
        next(clone.model.parameters()).add_(1.0)
    original = next(policy.model.parameters())
    assert not torch.equal(original, next(clone.model.parameters()))
    assert torch.equal(original, next(frozen.model.parameters()))


def test_n_params_counts_tied_embedding_once(policy: LMPolicy) -> None:
    model = policy.model
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert policy.n_params == sum(p.numel() for p in model.parameters())
    assert "n_params=" in repr(policy)


def test_save_and_load_round_trip(policy: LMPolicy, tmp_path) -> None:
    path = policy.save(tmp_path / "saved")
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    loaded = load_policy(path, device="cpu")
    assert loaded.add_bos and loaded.completion_prefix == " " and not loaded.chat
    a = policy.generate(PROMPTS, max_new_tokens=5, greedy=True)
    b = loaded.generate(PROMPTS, max_new_tokens=5, greedy=True)
    assert a.token_ids == b.token_ids and a.prompt_ids == b.prompt_ids


def test_bfloat16_policy_generates(policy: LMPolicy) -> None:
    half = LMPolicy(
        policy.copy().model, policy.tokenizer, device="cpu", dtype="bfloat16", add_bos=True
    )
    assert next(half.model.parameters()).dtype == torch.bfloat16
    gen = half.generate(PROMPTS, max_new_tokens=3, seed=0)
    assert all(np.isfinite(lp).all() for lp in gen.logprobs)


def test_sampling_argument_errors(policy: LMPolicy) -> None:
    with pytest.raises(ConfigError, match=r"temperature must be > 0, got 0; use greedy=True"):
        policy.generate(PROMPTS, temperature=0)
    with pytest.raises(ConfigError, match=r"top_p must be in \(0, 1\], got 1.5"):
        policy.generate(PROMPTS, top_p=1.5)
    with pytest.raises(ConfigError, match=r"max_new_tokens must be >= 1, got 0"):
        policy.generate(PROMPTS, max_new_tokens=0)
    with pytest.raises(ConfigError, match=r"token_budget must be >= 1 or None, got 0"):
        policy.generate(PROMPTS, token_budget=0)
    with pytest.raises(ConfigError, match=r"got 2 prompts but 1 completions"):
        policy.sequence_logprobs([[1], [1]], [[2]])


def test_unknown_names() -> None:
    with pytest.raises(
        UnknownNameError,
        match=r"unknown model 'tinyy'; did you mean 'tiny'\? "
        r"Valid models: smollm2-135m, tiny\. Or give a local Hugging Face model directory\.",
    ):
        load_policy("tinyy")
    with pytest.raises(UnknownNameError, match=r"unknown dtype 'fp8'"):
        resolve_dtype("fp8")
    with pytest.raises(UnknownNameError, match=r"unknown dtype 'fp8'"):
        load_policy("tiny", dtype="fp8")
    with pytest.raises(ConfigError, match=r"options \['steps'\] only apply to the 'tiny' model"):
        load_policy("smollm2-135m", steps=3)


def test_local_directory_errors(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match=r"config.json is missing"):
        load_policy(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ModelLoadError, match=rf"model directory {tmp_path} has no weight files"):
        load_policy(str(tmp_path))


def test_a_registered_model_loads_by_name(random_model_dir) -> None:
    from rewardgym.agents import registry
    from rewardgym.agents.models import load_local

    def loader(device, dtype, cache_dir):
        return load_local(random_model_dir, device=device, dtype=dtype)

    registry.register_model("random-llama", loader, doc="a seeded random test model")
    try:
        assert "random-llama" in registry.list_models()
        policy = registry.load_policy("random-llama", device="cpu")
        assert policy.n_params == load_local(random_model_dir, device="cpu").n_params
        with pytest.raises(ConfigError, match="'random-llama' is already registered"):
            registry.register_model("random-llama", loader)
        with pytest.raises(ConfigError, match=r"options \['steps'\] only apply to the 'tiny'"):
            registry.load_policy("random-llama", steps=3)
    finally:
        registry._MODELS.pop("random-llama")
    with pytest.raises(UnknownNameError, match=r"unknown model 'random-lama'.*smollm2-135m, tiny"):
        registry.load_policy("random-lama")
