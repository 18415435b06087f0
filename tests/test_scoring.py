"""Re-scoring with shared prompts (agents/scoring.py) equals the full forward pass.

Runs on the random grouped-query Llama of ``conftest.py`` (4 query heads, 2 key/value heads), so
both the prompt sharing and the grouped attention paths are exercised, in seconds.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_greedy_matches_hf

import rewardgym.agents.policy as policy_module
from rewardgym.agents.decoding import distinct_rows
from rewardgym.agents.policy import LMPolicy
from rewardgym.agents.scoring import _Streams, completion_logits

PROMPTS = ["translate: the red dogs saw a cat =>", "translate: a bird sings =>"]


def _grouped_batch(policy: LMPolicy, group: int = 3):
    prompts = [p for p in PROMPTS for _ in range(group)]
    return policy.generate(prompts, max_new_tokens=10, seed=3)


def _score(policy: LMPolicy, gen, shared: bool, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(policy_module, "supports", lambda model: shared)
    policy.model.zero_grad(set_to_none=True)
    out = policy.sequence_logprobs(gen.prompt_ids, gen.token_ids, with_entropy=True)
    loss = (out.logprobs * out.mask).sum() - 0.1 * (out.entropy * out.mask).sum()
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in policy.model.parameters()])
    return out, grads


def test_shared_prompts_give_the_full_forward_pass_logprobs_and_gradients(
    gqa_policy: LMPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = _grouped_batch(gqa_policy)
    full, full_grads = _score(gqa_policy, gen, shared=False, monkeypatch=monkeypatch)
    shared, shared_grads = _score(gqa_policy, gen, shared=True, monkeypatch=monkeypatch)
    assert torch.allclose(shared.logprobs, full.logprobs, atol=1e-5)
    assert torch.allclose(shared.entropy, full.entropy, atol=1e-5)
    assert torch.equal(shared.mask, full.mask)
    # Summation order differs between the two passes: compare the gradient vectors as a whole.
    relative = (shared_grads - full_grads).norm() / full_grads.norm()
    assert relative < 1e-5, f"gradients differ by {relative:.2e} relative"
    assert shared_grads.abs().sum() > 0


def test_shared_prompts_match_the_sampling_logprobs(gqa_policy: LMPolicy) -> None:
    gen = _grouped_batch(gqa_policy)
    with torch.no_grad():
        out = gqa_policy.sequence_logprobs(gen.prompt_ids, gen.token_ids)
    for row, logprobs in enumerate(gen.logprobs):
        n = len(logprobs)
        assert torch.allclose(out.logprobs[row, :n].double(), torch.as_tensor(logprobs), atol=1e-4)


def test_each_distinct_prompt_is_counted_once(gqa_policy: LMPolicy) -> None:
    prompt_a, prompt_b = gqa_policy.encode_prompts(PROMPTS)
    completions = [[5, 6, 7], [8], [9, 10], [11, 12]]
    prompts = [prompt_a, prompt_a, prompt_b, prompt_b]
    with torch.no_grad():
        logits, counts = completion_logits(gqa_policy.model, prompts, completions, pad_id=0)
    width_p = max(len(prompt_a), len(prompt_b))
    assert logits.shape[:2] == (4, 3)
    assert counts.positions == 2 * width_p + 4 * 3
    real = len(prompt_a) + len(prompt_b) + sum(map(len, completions))
    assert counts.padding == counts.positions - real
    assert counts.per_sample[0] == len(prompt_a) / 2 + 3
    assert counts.per_sample[3] == len(prompt_b) / 2 + 2


def test_distinct_prompts_take_the_plain_path(
    gqa_policy: LMPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("distinct prompts must not use the shared-prompt path")

    monkeypatch.setattr(policy_module, "completion_logits", refuse)
    gen = gqa_policy.generate(PROMPTS, max_new_tokens=4, seed=0)
    out = gqa_policy.sequence_logprobs(gen.prompt_ids, gen.token_ids)
    assert out.n_positions == 2 * (max(map(len, gen.prompt_ids)) + max(gen.n_tokens))


def test_grouped_query_decoding_matches_hf_generate(gqa_policy: LMPolicy) -> None:
    prompts = [*PROMPTS, PROMPTS[0], "translate: hi =>"]
    gen = gqa_policy.generate(prompts, max_new_tokens=8, greedy=True)
    assert_greedy_matches_hf(gqa_policy, gen, 8)


def test_distinct_rows_keeps_first_seen_order() -> None:
    assert distinct_rows([[3], [1, 2], [3], [1, 2], [4]]) == ([[3], [1, 2], [4]], [0, 1, 0, 1, 2])


def test_streams_join_and_split_back() -> None:
    prompt, completion = torch.randn(2, 3, 5), torch.randn(4, 6, 5)
    streams = _Streams(prompt.shape, completion.shape)
    joined = streams.join(prompt, completion)
    assert joined.shape == (1, 2 * 3 + 4 * 6, 5)
    assert torch.equal(joined[0, 3], prompt[1, 0])  # row-major: prompt rows, then completions
    back_p, back_c = streams.split(joined)
    assert torch.equal(back_p, prompt) and torch.equal(back_c, completion)
    heads = joined.view(1, 30, 1, 5).transpose(1, 2)  # [1, heads, positions, dim]
    heads_p, heads_c = streams.split_heads(heads)
    assert torch.equal(heads_p, prompt[:, None]) and torch.equal(heads_c, completion[:, None])
