"""Collapse early-warning monitors: each one provoked, each one quiet on a healthy sequence."""

from __future__ import annotations

import copy
import io
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import random_llama, small_train_config
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from rewardgym.agents.callbacks import CallbackList, TrainContext
from rewardgym.errors import CheckpointError, ConfigError, UnknownNameError
from rewardgym.evaluation.monitors import (
    BUILTIN_MONITORS,
    AttentionReversalMonitor,
    EntropyMonitor,
    GradientSpikeMonitor,
    Monitor,
    NormDriftMonitor,
    RewardHackingMonitor,
    SaturationMonitor,
    SpectralSpreadMonitor,
    default_monitors,
    make_monitors,
    top_singular_ratio,
)


def _llama(seed: int = 0):
    return random_llama(
        64,
        seed=seed,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )


@pytest.fixture()
def ctx() -> TrainContext:
    return TrainContext(model=_llama(), config=None, run_dir=None)


def _steps(monitor, ctx: TrainContext, values, key: str = "grad_norm") -> list[str]:
    """Feed one pre-step statistic per update; return the step actions."""
    actions = []
    for update, value in enumerate(values):
        ctx.update = update
        actions.append(monitor.on_before_step(ctx, {key: value, "loss": 0.0}))
        monitor.on_update_end(ctx, {})
    return actions


def _weight_check(monitor, ctx: TrainContext, update: int) -> str:
    ctx.update = update
    return monitor.on_before_step(ctx, {"grad_norm": 1.0, "loss": 0.0})


# -- base and actions ----------------------------------------------------------------------


def test_unknown_action_is_rejected_by_name() -> None:
    with pytest.raises(
        UnknownNameError, match="unknown monitor action 'rollbak'; did you mean 'rollback'"
    ):
        GradientSpikeMonitor(action="rollbak")


def test_post_step_monitors_cannot_skip() -> None:
    with pytest.raises(ConfigError, match="monitor 'norm_drift' cannot 'skip'"):
        NormDriftMonitor(action="skip")


def test_bad_threshold_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"gradient_spike: factor must be >= 1, got 0.5"):
        GradientSpikeMonitor(factor=0.5)
    with pytest.raises(ConfigError, match=r"spectral_spread: every must be an integer >= 1, got 0"):
        SpectralSpreadMonitor(every=0)


# -- gradient spike ------------------------------------------------------------------------


def test_gradient_spike_fires_after_a_stable_run(ctx: TrainContext) -> None:
    monitor = GradientSpikeMonitor()
    monitor.on_train_start(ctx)
    _steps(monitor, ctx, [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 4.0])
    assert len(ctx.alerts) == 1
    alert = ctx.alerts[0]
    assert alert["update"] == 6 and alert["monitor"] == "gradient_spike"
    assert alert["value"] == 4.0
    assert alert["threshold"] == pytest.approx(monitor.factor * 1.0)
    assert alert["action"] == "log"


def test_gradient_spike_quiet_on_healthy_noise(ctx: TrainContext) -> None:
    monitor = GradientSpikeMonitor()
    monitor.on_train_start(ctx)
    healthy = [1.0, 1.2, 0.8, 1.1, 0.0, 0.9, 1.3, 1.0, 0.85, 1.25, 1.1, 0.95, 1.4]
    assert set(_steps(monitor, ctx, healthy)) == {"step"}
    assert ctx.alerts == []


def test_gradient_spike_ignores_zero_norms(ctx: TrainContext) -> None:
    monitor = GradientSpikeMonitor(min_history=2)
    monitor.on_train_start(ctx)
    _steps(monitor, ctx, [0.0, 0.0, 0.0, 0.5])
    assert ctx.alerts == []


def test_gradient_spike_skip_keeps_the_spike_out_of_the_median(ctx: TrainContext) -> None:
    monitor = GradientSpikeMonitor(min_history=3, action="skip")
    monitor.on_train_start(ctx)
    actions = _steps(monitor, ctx, [1.0, 1.0, 1.0, 9.0, 9.0, 1.0])
    assert actions == ["step", "step", "step", "skip", "skip", "step"]
    assert [a["action"] for a in ctx.alerts] == ["skip", "skip"]


def test_gradient_spike_rollback_and_pause(ctx: TrainContext) -> None:
    rollback = GradientSpikeMonitor(min_history=2, action="rollback")
    rollback.on_train_start(ctx)
    assert _steps(rollback, ctx, [1.0, 1.0, 5.0]) == ["step", "step", "rollback"]
    pause = GradientSpikeMonitor(min_history=2, action="pause")
    pause.on_train_start(ctx)
    for update, norm in enumerate([1.0, 1.0, 5.0]):
        ctx.update = update
        action = pause.on_before_step(ctx, {"grad_norm": norm})
        keep_going = pause.on_update_end(ctx, {})
    assert action == "skip" and keep_going is False


# -- entropy -------------------------------------------------------------------------------


def test_entropy_instability_and_collapse(ctx: TrainContext) -> None:
    monitor = EntropyMonitor()
    monitor.on_train_start(ctx)
    _steps(monitor, ctx, [2.0, 4.8, 1.0, 0.01], key="entropy_bits")
    assert [(a["update"], a["value"], a["threshold"]) for a in ctx.alerts] == [
        (1, 4.8, 4.3),
        (3, 0.01, 0.05),
    ]
    assert "collapse" in ctx.alerts[1]["message"]


def test_entropy_quiet_on_healthy_run(ctx: TrainContext) -> None:
    monitor = EntropyMonitor(action="skip")
    monitor.on_train_start(ctx)
    assert set(_steps(monitor, ctx, [3.1, 2.7, 2.2, 1.9, 1.5, 1.2], key="entropy_bits")) == {"step"}
    assert ctx.alerts == []


def test_entropy_from_update_metrics_rolls_back_before_the_next_step(ctx: TrainContext) -> None:
    monitor = EntropyMonitor(floor_bits=0.5, action="rollback")
    monitor.on_train_start(ctx)
    ctx.update = 0
    assert monitor.on_before_step(ctx, {"grad_norm": 1.0}) == "step"
    assert monitor.on_update_end(ctx, {"entropy_bits": 0.1}) is None
    assert ctx.alerts[0]["value"] == pytest.approx(0.1)
    ctx.update = 1
    assert monitor.on_before_step(ctx, {"grad_norm": 1.0}) == "rollback"
    assert monitor.on_before_step(ctx, {"grad_norm": 1.0}) == "step"


# -- norm drift ----------------------------------------------------------------------------


def test_norm_drift_fires_when_a_layer_is_scaled(ctx: TrainContext) -> None:
    monitor = NormDriftMonitor()
    monitor.on_train_start(ctx)
    _weight_check(monitor, ctx, 0)
    with torch.no_grad():
        ctx.model.model.layers[1].mlp.up_proj.weight.mul_(1.2)
    _weight_check(monitor, ctx, 1)
    start, window = ctx.alerts
    assert start["value"] == pytest.approx(0.2, rel=1e-4) and start["threshold"] == 0.1
    assert "model.layers.1.mlp.up_proj.weight" in start["message"]
    assert window["value"] == pytest.approx(0.2, rel=1e-4) and window["threshold"] == 0.15


def test_norm_drift_window_sees_fast_change_only(ctx: TrainContext) -> None:
    monitor = NormDriftMonitor(max_drift=10.0, max_window_drift=0.15, window=3)
    monitor.on_train_start(ctx)
    weight = ctx.model.model.layers[0].self_attn.q_proj.weight
    for update in range(12):  # 5 % per update: > 15 % within 3 updates only from update 3 on
        _weight_check(monitor, ctx, update)
        with torch.no_grad():
            weight.mul_(1.05)
    assert ctx.alerts and min(a["update"] for a in ctx.alerts) == 3
    assert all(a["threshold"] == 0.15 for a in ctx.alerts)


def test_norm_drift_quiet_on_small_updates(ctx: TrainContext) -> None:
    monitor = NormDriftMonitor(action="rollback")
    monitor.on_train_start(ctx)
    gen = torch.Generator().manual_seed(0)
    for update in range(15):
        assert _weight_check(monitor, ctx, update) == "step"
        with torch.no_grad():
            for p in ctx.model.parameters():
                p.add_(1e-4 * torch.randn(p.shape, generator=gen))
    assert ctx.alerts == []


# -- spectral spread -----------------------------------------------------------------------


def test_top_singular_ratio_matches_svd() -> None:
    w = torch.randn(40, 24, generator=torch.Generator().manual_seed(1))
    s = torch.linalg.svdvals(w)
    assert float(top_singular_ratio(w, 10)) == pytest.approx(float(s[0] / s[9]), rel=1e-4)
    assert float(top_singular_ratio(torch.diag(torch.tensor([4.0, 2.0, 1.0])), 3)) == 4.0


def test_spectral_spread_fires_on_an_ill_conditioned_matrix(ctx: TrainContext) -> None:
    monitor = SpectralSpreadMonitor(every=2)
    monitor.on_train_start(ctx)
    weight = ctx.model.model.layers[0].self_attn.v_proj.weight
    with torch.no_grad():
        u, v = torch.randn(weight.shape[0], 1), torch.randn(1, weight.shape[1])
        weight.add_(5.0 * u @ v / (u.norm() * v.norm()) * weight.norm())
    _weight_check(monitor, ctx, 1)
    assert ctx.alerts == []  # every=2: update 1 is not checked
    _weight_check(monitor, ctx, 2)
    names = {a["message"].split(" of ")[1].split(" ")[0] for a in ctx.alerts}
    assert names == {"model.layers.0.self_attn.v_proj.weight"}
    growth, absolute = ctx.alerts
    assert growth["value"] > growth["threshold"] and absolute["threshold"] == 10.0
    assert absolute["value"] > 10.0


def test_spectral_spread_quiet_on_small_noise(ctx: TrainContext) -> None:
    monitor = SpectralSpreadMonitor(every=1)
    monitor.on_train_start(ctx)
    with torch.no_grad():
        for p in ctx.model.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    _weight_check(monitor, ctx, 1)
    assert ctx.alerts == []


# -- saturation ----------------------------------------------------------------------------


def test_saturation_fires_when_weights_leave_zero(ctx: TrainContext) -> None:
    monitor = SaturationMonitor(every=1)
    monitor.on_train_start(ctx)
    weight = ctx.model.model.layers[1].mlp.down_proj.weight
    with torch.no_grad():
        weight.copy_(torch.sign(weight) * (weight.abs() + weight.pow(2).mean().sqrt()))
    _weight_check(monitor, ctx, 1)
    (alert,) = ctx.alerts
    assert alert["value"] == 0.0 and alert["threshold"] == 0.02
    assert "model.layers.1.mlp.down_proj.weight" in alert["message"]


def test_saturation_dead_weights_when_zeroed(ctx: TrainContext) -> None:
    monitor = SaturationMonitor(max_share=0.5, every=1)
    monitor.on_train_start(ctx)
    with torch.no_grad():
        ctx.model.model.layers[0].mlp.gate_proj.weight.zero_()
    _weight_check(monitor, ctx, 1)
    (alert,) = ctx.alerts
    assert alert["value"] == 1.0 and alert["threshold"] == 0.5 and "dead" in alert["message"]


def test_saturation_quiet_on_a_healthy_model(ctx: TrainContext) -> None:
    monitor = SaturationMonitor(max_share=0.5, every=1)
    monitor.on_train_start(ctx)
    for update in range(3):
        _weight_check(monitor, ctx, update)
    assert ctx.alerts == []


# -- attention sign reversal -----------------------------------------------------------------


def test_attention_reversal_fires_when_queries_are_negated(ctx: TrainContext) -> None:
    monitor = AttentionReversalMonitor(every=1)
    monitor.on_train_start(ctx)
    assert ctx.model.config._attn_implementation == "sdpa"  # restored after the probe
    with torch.no_grad():
        for layer in ctx.model.model.layers:
            layer.self_attn.q_proj.weight.neg_()
    _weight_check(monitor, ctx, 1)
    (alert,) = ctx.alerts
    assert alert["value"] > 0.9 and alert["threshold"] == 0.2


def test_attention_reversal_quiet_on_small_noise(ctx: TrainContext) -> None:
    monitor = AttentionReversalMonitor(every=1)
    monitor.on_train_start(ctx)
    with torch.no_grad():
        for p in ctx.model.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    _weight_check(monitor, ctx, 1)
    assert ctx.alerts == []
    assert monitor.flip_share(ctx.model) < 0.2


def test_attention_reversal_on_gpt2_with_fixed_probe() -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=64,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=32,
            bos_token_id=0,
            eos_token_id=0,
        )
    )
    ctx = TrainContext(model=model, config=None, run_dir=None)
    monitor = AttentionReversalMonitor(
        probe_ids=[list(range(3, 19)), list(range(40, 56))], min_margin=0.0
    )
    monitor.on_train_start(ctx)
    assert monitor.flip_share(model) == 0.0
    with torch.no_grad():
        for block in model.transformer.h:  # Conv1D [in, 3*out]: queries are the first third
            block.attn.c_attn.weight[:, :32].neg_()
            block.attn.c_attn.bias[:32].neg_()
    assert monitor.flip_share(model) > 0.9


def test_attention_reversal_rejects_bad_probe() -> None:
    with pytest.raises(ConfigError, match="probe_ids must be non-empty rows of equal length"):
        AttentionReversalMonitor(probe_ids=[[1, 2, 3], [4, 5]])


# -- reward hacking ------------------------------------------------------------------------


def _evals(monitor, ctx: TrainContext, pairs) -> None:
    for update, (proxy, bleu) in enumerate(pairs):
        ctx.update = update
        monitor.on_eval_end(ctx, {"eval/reward": proxy, "eval/quality": bleu, "eval/chrf": 40.0})


def test_reward_hacking_fires_when_proxy_rises_and_bleu_falls(ctx: TrainContext) -> None:
    monitor = RewardHackingMonitor(action="rollback")
    monitor.on_train_start(ctx)
    _evals(monitor, ctx, [(0.40, 30.0), (0.50, 28.0), (0.65, 22.0)])
    (alert,) = ctx.alerts
    assert alert["update"] == 2 and alert["value"] == pytest.approx(8.0)
    assert alert["threshold"] == 1.0 and "reward hacking" in alert["message"]
    ctx.update = 3
    assert monitor.on_before_step(ctx, {"grad_norm": 1.0}) == "rollback"


def test_reward_hacking_quiet_when_both_improve(ctx: TrainContext) -> None:
    monitor = RewardHackingMonitor()
    monitor.on_train_start(ctx)
    _evals(monitor, ctx, [(0.40, 30.0), (0.50, 31.0), (0.65, 33.0), (0.66, 32.5), (0.7, 32.4)])
    monitor.on_eval_end(ctx, {"final/reward": 0.9, "final/bleu": 1.0})  # final eval: ignored
    assert ctx.alerts == []


def test_reward_hacking_pause_stops_the_run(ctx: TrainContext) -> None:
    monitor = RewardHackingMonitor(window=2, action="pause")
    monitor.on_train_start(ctx)
    _evals(monitor, ctx, [(0.40, 30.0), (0.60, 20.0)])
    assert monitor.on_update_end(ctx, {}) is False


def test_reward_hacking_missing_key_names_the_choices(ctx: TrainContext) -> None:
    monitor = RewardHackingMonitor(gold_key="eval/semantic")
    monitor.on_train_start(ctx)
    with pytest.raises(ConfigError, match="evaluation metrics have no 'eval/semantic'"):
        monitor.on_eval_end(ctx, {"eval/reward": 0.5, "eval/quality": 20.0})


# -- building from config ------------------------------------------------------------------


def test_default_monitors_builds_every_builtin_but_the_opt_in_ones() -> None:
    monitors = default_monitors()
    opt_in = ("kl_acceleration", "advantage_concentration")
    assert [m.name for m in monitors] == [n for n in BUILTIN_MONITORS if n not in opt_in]
    assert BUILTIN_MONITORS == ("gradient_spike", "entropy", "norm_drift", "attention_reversal",
                                "spectral_spread", "saturation", "kl_acceleration",
                                "entropy_slope", "length_drift", "reward_length_corr",
                                "sample_quality_drop", "advantage_concentration",
                                "reward_hacking")  # fmt: skip
    assert all(m.action == "log" for m in monitors)
    assert monitors[0].factor == 2.0
    assert default_monitors(preset="source")[0].factor == 1.5
    with pytest.raises(UnknownNameError, match="monitor preset"):
        default_monitors(preset="paper")
    spike = default_monitors(
        gradient_spike={"factor": 3.0, "action": "skip"}, attention_reversal=False
    )
    assert len(spike) == len(monitors) - 1
    assert spike[0].factor == 3.0 and spike[0].action == "skip"


def test_default_monitors_rejects_unsupported_action_and_unknown_name() -> None:
    with pytest.raises(ConfigError, match="monitor 'norm_drift' cannot 'skip'"):
        default_monitors(action="skip")
    with pytest.raises(UnknownNameError, match="unknown monitor 'entropie'; did you mean"):
        default_monitors(entropie={})


def test_make_monitors_from_mapping_and_list() -> None:
    monitors = make_monitors(
        {"gradient_spike": {"factor": 1.5, "action": "skip"}, "entropy": None, "saturation": False}
    )
    assert [m.name for m in monitors] == ["gradient_spike", "entropy"]
    listed = make_monitors(["norm_drift", {"spectral_spread": {"every": 5}}])
    assert [m.name for m in listed] == ["norm_drift", "spectral_spread"] and listed[1].every == 5
    assert make_monitors(None) == []


def test_make_monitors_rejects_unknown_names_and_options() -> None:
    with pytest.raises(UnknownNameError, match="unknown monitor 'gradient_spikes'; did you mean"):
        make_monitors({"gradient_spikes": {}})
    with pytest.raises(
        ConfigError, match="monitor 'gradient_spike' has no option 'facter'. Did you mean 'factor'?"
    ):
        make_monitors({"gradient_spike": {"facter": 2.0}})
    with pytest.raises(ConfigError, match="monitors list entry must be a name or a one-key"):
        make_monitors([{"entropy": {}, "saturation": {}}])


def test_monitors_combine_in_a_callback_list(ctx: TrainContext) -> None:
    callbacks = CallbackList(
        [GradientSpikeMonitor(min_history=1, action="skip"), NormDriftMonitor(action="rollback")]
    )
    callbacks.on_train_start(ctx)
    ctx.update = 0
    assert callbacks.on_before_step(ctx, {"grad_norm": 1.0}) == "step"
    with torch.no_grad():
        ctx.model.model.layers[0].mlp.up_proj.weight.mul_(2.0)
    ctx.update = 1
    assert callbacks.on_before_step(ctx, {"grad_norm": 9.0}) == "rollback"  # strongest wins
    assert {a["monitor"] for a in ctx.alerts} == {"gradient_spike", "norm_drift"}


# -- state across a resume ----------------------------------------------------------------

# Thresholds every check crosses, so each alert's value and threshold show the state behind it.
FIRING: dict[str, Callable[[], Monitor]] = {
    "gradient_spike": lambda: GradientSpikeMonitor(factor=1.0, window=4, min_history=1),
    "entropy": lambda: EntropyMonitor(max_bits=2.0, floor_bits=1.0),
    "norm_drift": lambda: NormDriftMonitor(max_drift=0.0, max_window_drift=0.0, window=2),
    "spectral_spread": lambda: SpectralSpreadMonitor(factor=1.0, every=1),
    "saturation": lambda: SaturationMonitor(min_share=0.0, max_share=0.01, every=1),
    "attention_reversal": lambda: AttentionReversalMonitor(max_flip_share=0.0, every=1),
    "reward_hacking": lambda: RewardHackingMonitor(window=3, proxy_margin=0.0, gold_margin=0.0),
}


def _perturb(model: torch.nn.Module, update: int) -> None:
    """The same change to any copy of the weights at a given update: growth, noise, one row."""
    gen = torch.Generator().manual_seed(update)
    with torch.no_grad():
        matrices = [p for p in model.parameters() if p.ndim == 2]
        for p in matrices:
            p.mul_(1.03).add_(0.05 * p.std() * torch.randn(p.shape, generator=gen))
        matrices[1][0].mul_(1.3)  # spreads that matrix's singular values


def _started(monitor: Monitor, model: torch.nn.Module, update: int) -> TrainContext:
    ctx = TrainContext(model=model, config=None, run_dir=None, update=update)
    monitor.on_train_start(ctx)
    return ctx


def _updates(monitor: Monitor, ctx: TrainContext, updates: range) -> list[list[dict]]:
    """Drive the monitor through ``updates`` as the trainer does; each update's alerts."""
    found = []
    for update in updates:
        _perturb(ctx.model, update)
        draws = torch.rand(4, generator=torch.Generator().manual_seed(1000 + update)).tolist()
        ctx.update, ctx.alerts = update, []
        stats = {"grad_norm": 1.0 + draws[0], "entropy_bits": 3.0 * draws[1], "loss": 0.0}
        monitor.on_before_step(ctx, stats)
        if update % 2:  # proxy up, BLEU down: reward hacking once the window is full
            evaluation = {
                "eval/reward": 0.1 * update + 0.05 * draws[2],
                "eval/quality": 30.0 - update,
            }
            monitor.on_eval_end(ctx, evaluation)
        monitor.on_update_end(ctx, {})
        found.append(ctx.alerts)
    return found


def _saved_and_loaded(state: dict) -> dict:
    """What a checkpoint gives back: through torch.save and torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", list(FIRING))
def test_a_restored_monitor_carries_on_as_the_uninterrupted_one(name: str) -> None:
    uninterrupted = FIRING[name]()
    ctx = _started(uninterrupted, _llama(), update=0)
    _updates(uninterrupted, ctx, range(6))
    state = _saved_and_loaded(uninterrupted.state_dict())

    # the resumed run starts on the weights of update 6, then gets the saved state back
    restored = FIRING[name]()
    restored_ctx = _started(restored, copy.deepcopy(ctx.model), update=6)
    restored.load_state_dict(state)
    forgetful = FIRING[name]()
    forgetful_ctx = _started(forgetful, copy.deepcopy(ctx.model), update=6)

    expected = _updates(uninterrupted, ctx, range(6, 12))
    assert any(expected), "no alert to compare"
    assert _updates(restored, restored_ctx, range(6, 12)) == expected
    assert restored.n_alerts == uninterrupted.n_alerts
    torch.testing.assert_close(restored.state_dict(), uninterrupted.state_dict(), rtol=0, atol=0)
    if name != "entropy":  # its findings need no memory of earlier updates
        assert _updates(forgetful, forgetful_ctx, range(6, 12)) != expected


def test_monitor_state_holds_only_what_weights_only_loading_accepts() -> None:
    for name, make in FIRING.items():
        monitor = make()
        _updates(monitor, _started(monitor, _llama(), update=0), range(3))
        state = monitor.state_dict()
        torch.testing.assert_close(_saved_and_loaded(state), state, rtol=0, atol=0, msg=name)


def test_a_monitor_rejects_state_from_another_model() -> None:
    saved = NormDriftMonitor()
    _started(saved, _llama(), update=0)
    other = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4)
    )
    monitor = NormDriftMonitor()
    _started(monitor, other, update=0)
    with pytest.raises(CheckpointError, match=r"norm_drift: start norms of shape \(\d+,\) in"):
        monitor.load_state_dict(saved.state_dict())


def test_callback_list_state_is_keyed_by_name_and_rank(ctx: TrainContext) -> None:
    callbacks = CallbackList(
        [GradientSpikeMonitor(), GradientSpikeMonitor(factor=2.0), NormDriftMonitor()]
    )
    callbacks.on_train_start(ctx)
    assert list(callbacks.state_dict()) == ["gradient_spike:0", "gradient_spike:1", "norm_drift:0"]


def test_resume_with_other_monitors_restores_the_matching_ones_and_warns(
    ctx: TrainContext,
) -> None:
    saved = CallbackList([GradientSpikeMonitor(min_history=1), NormDriftMonitor()])
    saved.on_train_start(ctx)
    _updates(saved, ctx, range(4))
    resumed = CallbackList([NormDriftMonitor(), EntropyMonitor()])
    resumed.on_train_start(ctx)
    with pytest.warns(UserWarning) as caught:
        resumed.load_state_dict(_saved_and_loaded(saved.state_dict()))
    (warning,) = caught
    assert "no saved state for ['entropy:0']" in str(warning.message)
    assert "saved state for ['gradient_spike:0'] has no callback" in str(warning.message)
    norm_drift = resumed.callbacks[0]
    assert norm_drift.n_alerts == saved.callbacks[1].n_alerts > 0


def test_malformed_monitor_state_is_a_checkpoint_error(ctx: TrainContext) -> None:
    callbacks = CallbackList([GradientSpikeMonitor()])
    callbacks.on_train_start(ctx)
    with pytest.raises(
        CheckpointError, match=r"state for callback 'gradient_spike:0' does not fit it \(KeyError"
    ):
        callbacks.load_state_dict({"gradient_spike:0": {"n_alerts": 1}})


# -- through the real trainer --------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + BPE tokenizer saved as a local model directory."""
    from rewardgym.agents.policy import LMPolicy
    from rewardgym.agents.tiny import TinyConfig, build_model, train_tokenizer
    from rewardgym.envs.tasks import make_task

    task = make_task("arithmetic")
    texts = [f"{ex.prompt} {ex.reference}" for ex in task.split("train")[:500]]
    tokenizer = train_tokenizer(texts, vocab_size=300)
    config = TinyConfig.from_overrides(d_model=32, n_layers=2, n_heads=2, d_ff=64, vocab_size=300)
    policy = LMPolicy(
        build_model(config, tokenizer, seed=0),
        tokenizer,
        name="monitor-test",
        add_bos=True,
        completion_prefix=" ",
    )
    return policy.save(tmp_path_factory.mktemp("monitor_model") / "model")


def _train(
    model_dir: Path, out: Path, lr: float, monitors, updates: int = 4, resume: bool = False, **kw
) -> list[dict]:
    from rewardgym.agents.trainer import train

    settings = dict(
        {"reward": "chrf", "updates": updates, "lr": lr, "out": str(out)},
        prompts_per_update=8,
        group_size=4,
        max_new_tokens=8,
        checkpoint_every=0,
        tensorboard=False,
    )
    config = small_train_config(str(model_dir), **{**settings, **kw})
    train(config, callbacks=monitors, resume=resume)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_huge_learning_rate_spike_lands_in_metrics_jsonl(model_dir: Path, tmp_path: Path) -> None:
    spike = GradientSpikeMonitor(min_history=1)
    records = _train(model_dir, tmp_path / "run", lr=1.0, updates=6, monitors=[spike])
    norms = [r["grad_norm"] for r in records]
    alerts = [a for r in records for a in r.get("alerts", []) if a["monitor"] == "gradient_spike"]
    assert alerts, norms
    first = alerts[0]
    update = first["update"]
    earlier = sorted(n for n in norms[:update] if n > 0)
    assert first["action"] == "log" and "gradient norm" in first["message"]
    assert first["value"] == pytest.approx(norms[update])
    assert first["threshold"] == pytest.approx(spike.factor * statistics.median(earlier))


@pytest.mark.slow
def test_healthy_short_run_stays_quiet(model_dir: Path, tmp_path: Path) -> None:
    monitors = make_monitors(
        {
            "gradient_spike": {"min_history": 2},
            "norm_drift": None,
            "spectral_spread": {"every": 1},
            "saturation": {"every": 1},
            "attention_reversal": {"every": 1},
            "reward_hacking": None,
        }
    )
    records = _train(model_dir, tmp_path / "run", lr=3e-4, monitors=monitors)
    assert len(records) == 4
    assert [a for r in records for a in r.get("alerts", [])] == []
    assert all(m.n_alerts == 0 for m in monitors)


@pytest.mark.slow
def test_a_resumed_run_raises_the_alerts_of_the_uninterrupted_one(
    model_dir: Path, tmp_path: Path
) -> None:
    """The trainer checkpoints the monitors' state and gives it back on resume."""

    def firing() -> list[Monitor]:
        return [make() for make in FIRING.values()]

    whole = _train(model_dir, tmp_path / "whole", 3e-3, firing(), updates=6, checkpoint_every=1)
    _train(model_dir, tmp_path / "split", 3e-3, firing(), updates=3, checkpoint_every=1)
    split = _train(
        model_dir, tmp_path / "split", 3e-3, firing(), updates=6, resume=True, checkpoint_every=1
    )
    alerts = [r.get("alerts", []) for r in whole]
    assert {"gradient_spike", "norm_drift"} <= {a["monitor"] for r in alerts[3:] for a in r}
    assert [r.get("alerts", []) for r in split] == alerts


def test_a_users_monitor_is_registered_in_one_place(tmp_path, monkeypatch) -> None:
    """A decorated class is built by name; a 'module:Class' spec works from a config file."""
    from rewardgym.evaluation.monitors import base, register_monitor

    monkeypatch.setattr(base, "MONITORS", dict(base.MONITORS))
    from rewardgym.evaluation.monitors import registry

    monkeypatch.setattr(registry, "MONITORS", base.MONITORS)

    @register_monitor
    class LossCeiling(Monitor):
        name = "loss_ceiling"

        def __init__(self, ceiling: float = 10.0, **kw) -> None:
            super().__init__(**kw)
            self.ceiling = ceiling

    assert make_monitors({"loss_ceiling": {"ceiling": 3.0}})[0].ceiling == 3.0
    defaults = [n for n in BUILTIN_MONITORS if not base.MONITORS[n].opt_in]
    assert [m.name for m in default_monitors()] == defaults  # defaults unchanged
    with pytest.raises(ConfigError, match=r"'loss_ceiling' is already registered by"):
        register_monitor(type("Other", (Monitor,), {"name": "loss_ceiling"}))
    with pytest.raises(ConfigError, match=r"needs its own name"):
        register_monitor(type("Nameless", (Monitor,), {}))
    (tmp_path / "mymonitors_cwd.py").write_text(
        "from rewardgym.evaluation.monitors import Monitor\n"
        "class Quiet(Monitor):\n"
        "    name = 'quiet'\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    assert make_monitors(["mymonitors_cwd:Quiet"])[0].name == "quiet"
    with pytest.raises(ConfigError, match=r"cannot import module 'no_such_mod' for monitor"):
        make_monitors(["no_such_mod:X"])
    with pytest.raises(UnknownNameError, match=r"unknown monitor 'entropi'; did you mean"):
        make_monitors(["entropi"])
