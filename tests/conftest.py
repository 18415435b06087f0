"""Shared fixtures. Tests never touch the user's cache: REWARDGYM_CACHE points at a session dir
unless the caller set it (CI reuses one cache across the suite so the tiny model trains once)."""

from __future__ import annotations

import os
import re

import pytest

os.environ.setdefault("REWARDGYM_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache"))
# The suite keeps every core busy (pytest-xdist): a warm start that trains here gets one thread.
os.environ.setdefault("REWARDGYM_THREADS", "1")

# A test that starts a local Ray cluster: they run one after another in one pytest-xdist worker
# (``--dist loadgroup``), since two local clusters started at once on one machine contend for
# its ports, shared memory and session folder.
_STARTS_RAY = re.compile(r"(^|[_\[+])ray([_\]+]|$)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module.__name__ == "test_cluster" or _STARTS_RAY.search(item.name):
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture(autouse=True)
def _no_hub_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a model hub: this machine has no network, and CI must not need one."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def special_token_ids(tokenizer) -> dict[str, int]:
    """The pad/bos/eos ids a transformers model config takes from its tokenizer."""
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


# A tiny-model warm start that builds in seconds: its numbers only need to be valid.
SMALL_TINY = {
    "vocab_size": 400,
    "d_model": 32,
    "n_layers": 1,
    "n_heads": 2,
    "d_ff": 64,
    "steps": 6,
    "batch_size": 16,
    "log_every": 3,
    "eval_max_new_tokens": 2,
}


def small_train_config(model_dir: str, **options):
    """The suite's one TrainConfig builder: a run of the random model on arithmetic that takes
    seconds (2 GRPO updates of 4 prompts x 2 samples, 6 tokens); ``options`` change any field."""
    from rewardgym.agents.config import TrainConfig

    base = dict(
        model=model_dir,
        task="arithmetic",
        reward="speed_only",
        algo="grpo",
        updates=2,
        prompts_per_update=4,
        group_size=2,
        micro_batches=4,
        max_new_tokens=6,
        eval_examples=4,
        progress=False,
        lr=1e-3,
    )
    return TrainConfig(**{**base, **options})


def random_llama(vocab_size: int, *, seed: int = 0, **config):
    """The suite's one seeded random Llama: 32 wide, 2 heads, 256 positions unless ``config``
    (LlamaConfig fields) says otherwise."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, **{**settings, **config}))


def save_random_model(directory, texts, vocab_size: int = 320, hidden: int = 32, layers: int = 1):
    """A randomly initialised Llama and a byte-level BPE tokenizer, saved as a local HF model
    directory: loads in milliseconds, so trainer and harness tests need no warm start."""
    from rewardgym.agents.tiny import train_tokenizer

    hf_tok = train_tokenizer(texts, vocab_size, min_frequency=0)
    model = random_llama(
        len(hf_tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        tie_word_embeddings=True,
        **special_token_ids(hf_tok),
    )
    model.save_pretrained(directory, safe_serialization=True)
    hf_tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory):
    """A tiny random causal LM directory whose tokenizer knows the arithmetic task's text."""
    from rewardgym.envs.tasks import make_task

    task = make_task("arithmetic")
    texts = [f"{ex.prompt} {ex.reference}" for ex in task.split("train")[:2000]]
    return str(save_random_model(tmp_path_factory.mktemp("random-model"), texts))


@pytest.fixture(scope="session")
def gqa_policy(random_model_dir):
    """A random Llama whose 4 query heads share 2 key/value heads (SmolLM2 groups them too),
    with the tokenizer of ``random_model_dir``.

    A wide initialisation gives logits of a few units, so wrong attention shows in the tokens.
    """
    from rewardgym.agents.policy import LMPolicy
    from rewardgym.agents.registry import load_policy

    tok = load_policy(random_model_dir, device="cpu").tokenizer
    model = random_llama(
        len(tok),
        num_hidden_layers=2,
        num_attention_heads=4,
        initializer_range=0.2,
        **special_token_ids(tok),
    )
    return LMPolicy(model, tok, name="gqa", device="cpu")


def assert_greedy_matches_hf(policy, gen, max_new_tokens: int) -> None:
    """Our greedy decode loop gives the tokens of Hugging Face ``generate``, eos and padding
    included (``gen`` came from ``policy.generate(..., greedy=True)``)."""
    from rewardgym.agents.padding import pad_ids

    ids, real = pad_ids(gen.prompt_ids, policy.pad_id, side="left")
    mask = real.long()
    reference = policy.model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=policy.eos_id,
        pad_token_id=policy.pad_id,
    )[:, ids.shape[1] :]
    for row, tokens in enumerate(gen.token_ids):
        assert reference[row, : len(tokens)].tolist() == tokens


def hold_run_in_subprocess(run_dir, ready):
    """A separate process that holds ``run_dir``'s lock until killed; returns once it holds it."""
    import subprocess
    import sys
    import time

    code = (
        "import pathlib, time\n"
        "from rewardgym.locks import hold_run_dir\n"
        f"with hold_run_dir({str(run_dir)!r}):\n"
        f"    pathlib.Path({str(ready)!r}).touch()\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the holding process did not take the lock")
        time.sleep(0.05)
    return proc


def weights_after_each_update():
    """A trainer callback keeping a copy of the weights at the end of every update (after any
    rollback), by update: what rollback tests compare checkpoints with."""
    from rewardgym.agents.callbacks import Callback

    class WeightsAfterEachUpdate(Callback):
        def __init__(self) -> None:
            self.after: dict = {}

        def on_update_end(self, ctx, metrics):
            state = ctx.model.state_dict()
            self.after[metrics["update"]] = {k: v.detach().clone() for k, v in state.items()}

    return WeightsAfterEachUpdate()
