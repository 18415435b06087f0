"""LoRA adapters: options checked up front, only the adapter trains, checkpoints hold the adapter
in peft's format, resume is bit for bit, and the merged export loads as a plain model."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import random_llama, small_train_config

from rewardgym.agents.checkpoint import latest_checkpoint
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.decoding import PackedWeights
from rewardgym.agents.lora import adapter_state, add_lora, has_adapter, linear_layer_names
from rewardgym.agents.registry import load_policy
from rewardgym.agents.runs import export_merged, load_run_policy
from rewardgym.agents.trainer import train
from rewardgym.cli import main
from rewardgym.errors import CheckpointError, ConfigError

# "length" varies between samples of the random model, so advantages (and updates) are nonzero
LORA = dict(
    reward="length", lora_r=4, lora_alpha=8.0, lora_target_modules=["q_proj", "v_proj", "down_proj"]
)


def _logits(policy, text: str = "12 + 7 =") -> torch.Tensor:
    ids = torch.tensor([policy.encode_prompt(text)])
    with torch.no_grad():
        return policy.model(input_ids=ids).logits


def _perturb_adapter(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every B matrix random values, as training would, so the adapter changes outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(lora_r=-1), "lora_r must be an int >= 0"),
        (dict(lora_r=4, lora_alpha=0.0), "lora_alpha must be a finite number > 0"),
        (dict(lora_r=4, lora_dropout=1.0), "lora_dropout must be a finite number in [0, 1)"),
        (dict(lora_r=4, lora_target_modules=[]), "non-empty list of layer names"),
        (dict(lora_alpha=32.0), "set but lora_r is 0"),
    ],
)
def test_bad_lora_options_are_typed_errors(options, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        TrainConfig(**options)


def test_a_target_the_model_lacks_names_the_layers_it_has() -> None:
    model = random_llama(64)
    with pytest.raises(ConfigError, match=r"\['qkv'\] are not linear layers") as caught:
        add_lora(model, r=2, target_modules=["qkv"])
    assert str(linear_layer_names(model)) in str(caught.value)
    assert not has_adapter(model)


def test_a_tied_output_projection_cannot_be_a_target() -> None:
    with pytest.raises(ConfigError, match="ties to its input embeddings"):
        add_lora(random_llama(64, tie_word_embeddings=True), r=2, target_modules=["lm_head"])


def test_a_fresh_adapter_changes_nothing_and_only_it_trains(random_model_dir) -> None:
    policy = load_policy(random_model_dir, device="cpu")
    before = _logits(policy)
    add_lora(policy.model, r=4, target_modules=["q_proj", "v_proj"])
    assert torch.equal(_logits(policy), before)  # B starts at zero
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    n_layers = policy.model.config.num_hidden_layers
    assert len(trainable) == 2 * 2 * n_layers  # A and B of two projections per layer


def test_packed_weights_fold_the_adapter_into_the_packed_weight(random_model_dir) -> None:
    policy = load_policy(random_model_dir, device="cpu")
    add_lora(policy.model, r=4, target_modules=["q_proj", "v_proj", "up_proj"])
    _perturb_adapter(policy.model)
    layer = policy.model.model.layers[0]
    attn = layer.self_attn
    if not PackedWeights.available(attn.k_proj.weight):
        pytest.skip("oneDNN cannot run these weights here")
    packed = PackedWeights(policy.model)
    x = torch.randn(3, attn.q_proj.in_features)
    with torch.no_grad():
        delta = attn.q_proj(x) - attn.q_proj.base_layer(x)
        assert delta.abs().max() > 1e-2  # the adapter matters, so folding it in is tested
        qkv = torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], -1)
        torch.testing.assert_close(packed.qkv(attn, x), qkv, rtol=1e-5, atol=1e-5)
        up = layer.mlp.up_proj
        torch.testing.assert_close(packed(up, x), up(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("packed", [False, True])
def test_greedy_rollouts_of_an_adapted_model_match_hf_generate(
    random_model_dir, packed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import assert_greedy_matches_hf

    from rewardgym.agents import decoding

    if packed:  # the random model is below the size the decoder packs at
        monkeypatch.setattr(decoding, "PACK_MIN_PARAMS", 0)
    policy = load_policy(random_model_dir, device="cpu")
    add_lora(policy.model, r=4, target_modules=["q_proj", "v_proj", "up_proj"])
    _perturb_adapter(policy.model)
    gen = policy.generate(["3 + 4 =", "10 - 2 ="], max_new_tokens=6, greedy=True)
    assert_greedy_matches_hf(policy, gen, max_new_tokens=6)


def test_training_moves_the_adapter_and_leaves_the_base_alone(random_model_dir, tmp_path) -> None:
    base = load_policy(random_model_dir, device="cpu").model.state_dict()
    result = train(small_train_config(random_model_dir, out=str(tmp_path / "run"), **LORA))
    state = result.policy.model.state_dict()
    for key, value in base.items():
        adapted_key = key.replace(".weight", ".base_layer.weight")
        torch.testing.assert_close(state.get(key, state.get(adapted_key)), value, rtol=0, atol=0)
    moved = [k for k, v in state.items() if "lora_B" in k and v.abs().sum() > 0]
    assert moved, "no B matrix moved off zero after two updates"

    checkpoint = latest_checkpoint(tmp_path / "run")
    files = {p.name for p in checkpoint.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json"} <= files
    assert "model.safetensors" not in files
    config = json.loads((checkpoint / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["target_modules"] == sorted(LORA["lora_target_modules"])


def test_peft_loads_the_checkpoint_as_its_own_adapter(random_model_dir, tmp_path) -> None:
    from peft import PeftModel

    train(small_train_config(random_model_dir, out=str(tmp_path / "run"), **LORA))
    ours, checkpoint, _ = load_run_policy(tmp_path / "run", device="cpu")
    plain = load_policy(random_model_dir, device="cpu")
    theirs = PeftModel.from_pretrained(plain.model, str(checkpoint)).eval()
    ids = torch.tensor([ours.encode_prompt("5 + 5 =")])
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids=ids).logits, _logits(ours, "5 + 5 ="))


def test_resume_continues_the_adapter_bit_for_bit(random_model_dir, tmp_path) -> None:
    options = dict(LORA, lora_dropout=0.1)  # dropout draws from the RNG the checkpoint saves
    full = train(
        small_train_config(random_model_dir, updates=4, out=str(tmp_path / "a"), **options)
    )
    train(small_train_config(random_model_dir, updates=2, out=str(tmp_path / "b"), **options))
    resumed = train(
        small_train_config(random_model_dir, updates=4, out=str(tmp_path / "b"), **options),
        resume=True,
    )
    want, got = adapter_state(full.policy.model), adapter_state(resumed.policy.model)
    assert want.keys() == got.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key
    assert [m["reward/mean"] for m in resumed.metrics] == [m["reward/mean"] for m in full.metrics]


def test_resume_with_another_rank_is_refused(random_model_dir, tmp_path) -> None:
    train(small_train_config(random_model_dir, out=str(tmp_path / "run"), **LORA))
    with pytest.raises(ConfigError, match="lora_r"):
        train(
            small_train_config(
                random_model_dir, out=str(tmp_path / "run"), **{**LORA, "lora_r": 8}
            ),
            resume=True,
        )


def test_an_adapter_checkpoint_does_not_load_into_a_plain_model(random_model_dir, tmp_path) -> None:
    from rewardgym.agents.checkpoint import load_checkpoint

    train(small_train_config(random_model_dir, out=str(tmp_path / "run"), **LORA))
    plain = load_policy(random_model_dir, device="cpu")
    before = plain.model.state_dict()["lm_head.weight"].clone()
    with pytest.raises(CheckpointError, match="holds a LoRA adapter"):
        load_checkpoint(latest_checkpoint(tmp_path / "run"), plain.model)
    assert torch.equal(plain.model.state_dict()["lm_head.weight"], before)


def test_export_merges_the_adapter_into_a_plain_model(random_model_dir, tmp_path) -> None:
    train(small_train_config(random_model_dir, out=str(tmp_path / "run"), **LORA))
    adapted, _, _ = load_run_policy(tmp_path / "run", device="cpu")
    assert main(["export", str(tmp_path / "run"), "--merged", str(tmp_path / "merged")]) == 0

    merged = load_policy(str(tmp_path / "merged"), device="cpu")
    assert not has_adapter(merged.model)
    assert not any("lora" in k for k in merged.model.state_dict())
    assert merged.n_params == load_policy(random_model_dir, device="cpu").n_params
    # folding B·A·scale into W changes only the summation order
    torch.testing.assert_close(_logits(merged), _logits(adapted), rtol=1e-5, atol=1e-5)
    provenance = json.loads((tmp_path / "merged" / "rewardgym_export.json").read_text())
    assert provenance["update"] == 2


def test_export_of_a_full_fine_tune_writes_its_weights(random_model_dir, tmp_path) -> None:
    result = train(small_train_config(random_model_dir, out=str(tmp_path / "run")))
    out = export_merged(tmp_path / "run", tmp_path / "model")
    torch.testing.assert_close(
        _logits(load_policy(str(out), device="cpu")), _logits(result.policy), rtol=0, atol=0
    )


def test_export_never_overwrites(random_model_dir, tmp_path, capsys) -> None:
    train(small_train_config(random_model_dir, out=str(tmp_path / "run"), **LORA))
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert main(["export", str(tmp_path / "run"), "--merged", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
