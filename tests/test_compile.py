"""The compiled decode step (``FastPathOptions(compile_step=True)``, ``CompiledStep``).

Pins that it changes no output (greedy tokens equal Hugging Face ``generate``, log-probs within
1e-4 nats of the eager path and of ``sequence_logprobs``), that it does not recompile as the
batch shrinks or across rollouts, and that a missing compiler or a failing compile warns once
and runs eager. The recompile and fallback tests run dynamo with its ``eager`` backend (no C++
code generation), so they take milliseconds; one test compiles with inductor for real.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch._dynamo.testing
from conftest import assert_greedy_matches_hf, random_llama, special_token_ids

import rewardgym.agents.decoding as decoding
from rewardgym.agents.decoding import CompiledStep, FastPathOptions, StaticCacheDecoder
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.registry import load_policy

PROMPTS = [
    "solve: Lucy buys 6 packs of oranges. Each pack holds 10 oranges. =>",
    "solve: Lucy buys 6 packs of pears =>",
    "solve: Lucy buys 6 packs of oranges. Each pack holds 10 oranges. =>",
    "solve: Tom has 3 =>",
    "solve: Lucy buys 2 =>",
]
LOGPROB_TOL = 1e-4


@pytest.fixture(autouse=True)
def _fresh_compile_state():
    decoding.reset_compiled()
    yield
    decoding.reset_compiled()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> torch._dynamo.testing.CompileCounter:
    """Dynamo with a counting backend that runs the captured graph as it is: counts every
    (re)compile without inductor's code generation."""
    counter = torch._dynamo.testing.CompileCounter()
    monkeypatch.setattr(decoding, "COMPILE_BACKEND", counter)
    return counter


@pytest.fixture(scope="module")
def wide_gqa(random_model_dir) -> LMPolicy:
    """Two layers, 4 query heads over 2 key/value heads, logits of a few units (wrong
    arithmetic shows in the greedy tokens)."""
    tok = load_policy(random_model_dir, device="cpu").tokenizer
    model = random_llama(
        len(tok),
        seed=3,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.2,
        **special_token_ids(tok),
    )
    return LMPolicy(model.eval(), tok, name="gqa-compile", device="cpu")


def _compiled(policy: LMPolicy) -> LMPolicy:
    policy.fast_path = replace(FastPathOptions(), compile_step=True)
    return policy


def _generate(policy: LMPolicy, compile_step: bool, **kwargs):
    default = policy.fast_path
    policy.fast_path = replace(default, compile_step=compile_step)
    try:
        return policy.generate(PROMPTS, max_new_tokens=12, **kwargs)
    finally:
        policy.fast_path = default


@pytest.mark.slow
def test_compiled_step_with_inductor_matches_hf_and_the_eager_logprobs(wide_gqa) -> None:
    """Inductor's real C++ code: greedy tokens of ``generate``, log-probs of the eager path."""
    if not decoding.compiler_available():
        pytest.skip("no C++ compiler for inductor here")
    eager = _generate(wide_gqa, False, greedy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback warning: it compiled
        compiled = _generate(wide_gqa, True, greedy=True)
    assert decoding._COMPILE["failed"] is None
    assert decoding._COMPILE["graphs"]  # the compiled path ran
    assert_greedy_matches_hf(wide_gqa, compiled, 12)
    assert compiled.token_ids == eager.token_ids
    for ours, theirs in zip(compiled.logprobs, eager.logprobs, strict=True):
        assert np.abs(ours - theirs).max() <= LOGPROB_TOL


def test_sampled_logprobs_of_the_compiled_step_match_sequence_logprobs(wide_gqa, counted) -> None:
    gen = _generate(wide_gqa, True, seed=0)
    with torch.no_grad():
        rescored = wide_gqa.sequence_logprobs(gen.prompt_ids, gen.token_ids)
    for row, logps in enumerate(gen.logprobs):
        ref = rescored.logprobs[row, : len(logps)].numpy()
        assert np.abs(ref - logps).max() <= LOGPROB_TOL
    assert counted.frame_count > 0


def test_greedy_matches_hf_with_compaction_and_a_shared_prefix(wide_gqa, counted) -> None:
    gen = _generate(wide_gqa, True, greedy=True)
    assert_greedy_matches_hf(wide_gqa, gen, 12)


def test_the_step_does_not_recompile_per_step_batch_size_or_rollout(wide_gqa, counted) -> None:
    """One graph per function for every batch of two rows or more (dimension 0 dynamic), one
    more for a single row (dynamo specialises size 1): compaction and new rollouts of other
    sizes reuse them."""
    prompt_ids = wide_gqa.encode_prompts(PROMPTS)
    options = FastPathOptions(compile_step=True, compact_at=0.0)
    with torch.inference_mode():
        for rows in (5, 4, 3):
            decoder = StaticCacheDecoder(wide_gqa.model, prompt_ids[:rows], 8, 0, options)
            tokens = decoder.prefill().argmax(-1)
            for _ in range(3):
                tokens = decoder.step(tokens).argmax(-1)
            alive = torch.ones(rows, dtype=torch.bool)
            alive[0] = False
            decoder.drop_finished(alive)
            decoder.step(tokens[1:])
    assert counted.frame_count == 2  # _pre_attention and _post_attention, batch dynamic
    with torch.inference_mode():
        decoder = StaticCacheDecoder(wide_gqa.model, prompt_ids[:1], 8, 0, options)
        tokens = decoder.prefill().argmax(-1)
        for _ in range(4):
            tokens = decoder.step(tokens).argmax(-1)
    assert counted.frame_count == 4  # the single-row graphs, once
    _generate(wide_gqa, True, seed=1)
    _generate(wide_gqa, True, greedy=True)
    assert counted.frame_count == 4


def test_no_compiler_warns_once_and_runs_eager(wide_gqa, monkeypatch, counted) -> None:
    monkeypatch.setattr(decoding, "compiler_available", lambda: False)
    eager = _generate(wide_gqa, False, greedy=True)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler") as caught:
        first = _generate(wide_gqa, True, greedy=True)
        second = _generate(wide_gqa, True, greedy=True)
    assert len([w for w in caught if "torch.compile" in str(w.message)]) == 1
    assert first.token_ids == second.token_ids == eager.token_ids
    assert counted.frame_count == 0


def test_a_failing_compile_warns_once_and_runs_eager(wide_gqa, monkeypatch) -> None:
    calls = []

    def broken_backend(graph, example_inputs):
        calls.append(1)
        raise RuntimeError("C++ compile failed: cc1plus not found")

    monkeypatch.setattr(decoding, "COMPILE_BACKEND", broken_backend)
    eager = _generate(wide_gqa, False, greedy=True)
    with pytest.warns(RuntimeWarning, match="compile of the decode step is off") as caught:
        first = _generate(wide_gqa, True, greedy=True)
        second = _generate(wide_gqa, True, greedy=True)
    assert len([w for w in caught if "torch.compile" in str(w.message)]) == 1
    assert len(calls) == 1  # given up after the first failure, not retried every step
    assert first.token_ids == second.token_ids == eager.token_ids
    for ours, theirs in zip(first.logprobs, eager.logprobs, strict=True):
        assert np.abs(ours - theirs).max() <= LOGPROB_TOL
    # A later decoder does not even try.
    decoder = StaticCacheDecoder(
        wide_gqa.model, [[1, 2, 3]], 2, 0, FastPathOptions(compile_step=True)
    )
    assert decoder.compiled is None


def test_an_error_that_is_not_the_compilers_still_raises(wide_gqa, counted) -> None:
    step = CompiledStep.for_model(wide_gqa.model)
    hidden = torch.zeros(2, 1, 7)  # wrong width: eager raises too
    rotary = (torch.zeros(2, 1, 8), torch.zeros(2, 1, 8))
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError):
        step.pre_attention(0, hidden, rotary)


def test_models_the_compiled_step_cannot_run_stay_eager(wide_gqa) -> None:
    gelu = random_llama(64, hidden_act="gelu")
    assert CompiledStep.unsupported(gelu) == "activation is not SiLU"
    assert CompiledStep.for_model(gelu) is None
    assert CompiledStep.unsupported(wide_gqa.model) is None
    decoder = StaticCacheDecoder(gelu, [[1, 2, 3]], 2, 0, FastPathOptions())
    assert decoder.compiled is None  # off by default
