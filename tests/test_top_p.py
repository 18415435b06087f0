"""Training and re-scoring with nucleus sampling (``top_p < 1``) on a peaked model.

A peaked model's nucleus is a few tokens wide, so the token a padding position "predicts"
(the pad token) and a token sampled at the nucleus boundary can fall outside the nucleus the
re-scoring pass computes. Their log-prob must still be finite, with a finite gradient, or every
update's loss is NaN and the run never takes a step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_llama, small_train_config, special_token_ids

from rewardgym.agents import policy as policy_module
from rewardgym.agents import train, trainer
from rewardgym.agents.decoding import FastPathOptions
from rewardgym.agents.registry import load_policy
from rewardgym.agents.runs import policy_for_config
from rewardgym.envs.tasks import make_task

TOP_PS = (0.5, 0.8, 0.95)
# The two decoding paths, each with a re-scoring branch: the static-cache decoder with shared
# prompt re-scoring (GRPO groups repeat prompts), and Hugging Face's dynamic cache with the plain
# forward pass.
PATHS = {
    "static_cache": FastPathOptions(),
    "hf_dynamic_cache": FastPathOptions(static_cache=False, share_prompts=False),
}


@pytest.fixture(scope="module")
def peaked_model_dir(random_model_dir, tmp_path_factory) -> str:
    """A random Llama with logits of several units (a nucleus of a few tokens), whose eos row
    is scaled up so completions end at different lengths and every batch has padding."""
    tokenizer = load_policy(random_model_dir, device="cpu").tokenizer
    model = random_llama(
        len(tokenizer), num_hidden_layers=2, initializer_range=0.5, **special_token_ids(tokenizer)
    )
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] *= 3.0
    directory = tmp_path_factory.mktemp("peaked-model")
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture
def peaked_policy(peaked_model_dir):
    return load_policy(peaked_model_dir, device="cpu")


@pytest.fixture
def shared_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts re-scoring calls that took the shared-prompt branch."""
    calls: list[int] = []
    real = policy_module.completion_logits

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(policy_module, "completion_logits", counting)
    return calls


def _prompts(n: int, repeat: int) -> list[str]:
    return [ex.prompt for ex in make_task("arithmetic").split("train")[:n]] * repeat


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("algo", ["grpo", "ppo"])
@pytest.mark.parametrize("top_p", TOP_PS)
def test_training_with_top_p_steps_every_update_at_ratio_one(
    peaked_model_dir, top_p, algo, path, shared_calls, monkeypatch
) -> None:
    def with_path(config, device=None):
        policy = policy_for_config(config, device)
        policy.fast_path = PATHS[path]
        return policy

    monkeypatch.setattr(trainer, "policy_for_config", with_path)
    config = small_train_config(
        peaked_model_dir, top_p=top_p, algo=algo, kl_coef=0.1, max_new_tokens=8
    )
    result = train(config)
    assert bool(shared_calls) == (path == "static_cache")  # the re-scoring branch under test
    lengths = [m["completion_length/mean"] for m in result.metrics]
    assert all(0 < n < config.max_new_tokens for n in lengths), "batches without padding"
    for m in result.metrics:
        assert m["step_action"] == "step", m
        assert np.isfinite([m["loss"], m["grad_norm"], m["kl"]]).all(), m
        assert m["ppo/ratio_first_epoch"] < 1e-3, m
    assert result.metrics[-1]["skipped_updates"] == 0  # ppo's later epoch stepped too
    assert result.metrics[-1]["rollbacks"] == 0
    assert any(m["grad_norm"] > 0 for m in result.metrics)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("top_p", TOP_PS)
def test_rescored_logprobs_equal_the_samplers_in_rows_with_padding(
    peaked_policy, top_p, path, shared_calls
) -> None:
    peaked_policy.fast_path = PATHS[path]
    prompts = _prompts(4, repeat=2)
    gen = peaked_policy.generate(prompts, max_new_tokens=10, top_p=top_p, seed=0)
    width = max(gen.n_tokens)
    assert min(gen.n_tokens) < width, "no row with padding"
    out = peaked_policy.sequence_logprobs(gen.prompt_ids, gen.token_ids, top_p=top_p)
    assert bool(shared_calls) == (path == "static_cache")
    assert torch.isfinite(out.logprobs).all()
    for row, n in enumerate(gen.n_tokens):
        got = out.logprobs[row].detach().numpy()
        np.testing.assert_allclose(got[:n], gen.logprobs[row], atol=1e-4)
        assert (got[n:] == 0.0).all()  # padding scores nothing


def _least_likely_completions(policy, prompts, top_p):
    """Sampled completions whose third token is replaced by the token the model finds least
    likely there: outside any nucleus smaller than the whole vocabulary."""
    gen = policy.generate(prompts, max_new_tokens=6, top_p=top_p, seed=1)
    completions = [list(ids) + [policy.eos_id] * 3 for ids in gen.token_ids]
    with torch.no_grad():
        for prompt, completion in zip(gen.prompt_ids, completions, strict=True):
            ids = torch.tensor([prompt + completion[:2]])
            completion[2] = int(policy.model(input_ids=ids).logits[0, -1].argmin())
    return gen.prompt_ids, completions


@pytest.mark.parametrize("share_prompts", [True, False])
def test_a_token_outside_the_nucleus_has_a_finite_logprob_and_gradient(
    peaked_policy, share_prompts, shared_calls
) -> None:
    top_p = 0.5
    peaked_policy.fast_path = FastPathOptions(share_prompts=share_prompts)
    prompt_ids, completions = _least_likely_completions(peaked_policy, _prompts(2, 2), top_p)
    clone = peaked_policy.copy()
    out = clone.sequence_logprobs(prompt_ids, completions, top_p=top_p, with_entropy=True)
    assert bool(shared_calls) == share_prompts
    outside = out.logprobs[:, 2]
    assert torch.isfinite(out.logprobs).all() and torch.isfinite(out.entropy).all()
    assert (outside < -1.0).all()  # scored as the unlikely token it is, yet finite
    (out.logprobs.sum() - out.entropy.sum()).backward()
    grads = [p.grad for p in clone.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_scaled_log_softmax_keeps_the_given_tokens_in_the_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.5, 0.3, 0.15, 0.05]]))
    logits.requires_grad_(True)
    logp = policy_module.scaled_log_softmax(logits, 1.0, 0.8, keep=torch.tensor([3, 0]))
    # row 0: the nucleus {0, 1} and the kept token 3; row 1: token 0 was in it already
    expected = torch.tensor([[0.5, 0.3, 0.0, 0.05], [0.5, 0.3, 0.0, 0.0]])
    torch.testing.assert_close(logp.exp(), expected / expected.sum(-1, keepdim=True))
    logp[0, 3].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 3] > 0
