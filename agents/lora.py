"""LoRA adapters through the ``peft`` package: add one to a model, save it, load it, merge it.

:func:`add_lora` injects low-rank adapters into a transformers causal LM *in place* (the model
stays a ``LlamaForCausalLM`` and so on, so the fast decoder and every caller of ``policy.model``
keep working) and freezes every other weight, so an optimizer over the parameters that require
gradients trains the adapter alone. The adapter's ``B`` matrices start at zero: the adapted
model computes exactly what the base model did until the first update.

A checkpoint of an adapted model holds the adapter, not the model: ``adapter_model.safetensors``
and ``adapter_config.json`` in peft's own format (:func:`adapter_state`, :func:`adapter_config`),
so ``peft.PeftModel.from_pretrained(base_model, checkpoint_dir)`` loads it too.

Example:
    >>> model = add_lora(policy.model, r=8, alpha=16)
    >>> has_adapter(model), sum(p.numel() for p in model.parameters() if p.requires_grad)
    (True, 12288)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from rewardgym.errors import CheckpointError, ConfigError

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "ALL_LINEAR",
    "PEFT_INSTALL",
    "adapter_config",
    "adapter_state",
    "add_lora",
    "check_lora_options",
    "has_adapter",
    "linear_layer_names",
    "load_adapter_state",
    "merged_state_dict",
]

ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"
ALL_LINEAR = "all-linear"  # peft's shorthand: every linear layer except the output projection
PEFT_INSTALL = "pip install peft"
ADAPTER = "default"  # peft's adapter name; a model carries one adapter here
# peft.PeftModel.save_pretrained writes its keys under this prefix; ours match them
PEFT_PREFIX = "base_model.model."


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError(
            f"LoRA (lora_r > 0) needs the peft package, which is not installed; `{PEFT_INSTALL}`"
        ) from None
    return peft


def check_lora_options(
    r: Any, alpha: Any, dropout: Any, target_modules: Any, *, where: str = ""
) -> None:
    """ConfigError unless the options describe a LoRA adapter (``r == 0``: no adapter).

    Example:
        >>> check_lora_options(8, 16.0, 0.05, ["q_proj", "v_proj"])
    """
    prefix = f"{where}: " if where else ""
    if isinstance(r, bool) or not isinstance(r, int) or r < 0:
        raise ConfigError(f"{prefix}lora_r must be an int >= 0 (0: no adapter), got {r!r}")
    for name, value, bounds, ok in (
        ("lora_alpha", alpha, "> 0", lambda v: v > 0),
        ("lora_dropout", dropout, "in [0, 1)", lambda v: 0 <= v < 1),
    ):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not ok(value):
            raise ConfigError(f"{prefix}{name} must be a finite number {bounds}, got {value!r}")
    names_ok = (
        target_modules is None
        or target_modules == ALL_LINEAR
        or (
            isinstance(target_modules, (list, tuple))
            and target_modules
            and all(isinstance(n, str) and n.strip() for n in target_modules)
        )
    )
    if not names_ok:
        raise ConfigError(
            f"{prefix}lora_target_modules must be a non-empty list of layer names (e.g. "
            f"[q_proj, v_proj]), {ALL_LINEAR!r}, or null for peft's default, got "
            f"{target_modules!r}"
        )


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """The distinct last names of ``model``'s linear layers, which LoRA can target.

    Example:
        >>> linear_layer_names(policy.model)
        ['down_proj', 'gate_proj', 'k_proj', 'lm_head', 'o_proj', 'q_proj', 'up_proj', 'v_proj']
    """
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
    )


def _check_targets(model: torch.nn.Module, target_modules: Sequence[str] | str | None) -> None:
    if target_modules is None or target_modules == ALL_LINEAR:
        return
    available = linear_layer_names(model)
    missing = [name for name in target_modules if name not in available]
    if missing:
        raise ConfigError(
            f"lora_target_modules {missing} are not linear layers of {type(model).__name__}; "
            f"it has {available} (or use {ALL_LINEAR!r})"
        )
    output = model.get_output_embeddings()
    tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
    output_names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if m is output}
    if tied and output_names & set(target_modules):
        raise ConfigError(
            f"lora_target_modules includes {sorted(output_names)}, the output projection, which "
            "this model ties to its input embeddings: an adapter there cannot be merged into "
            "one weight; leave it out"
        )


def add_lora(
    model: torch.nn.Module,
    *,
    r: int,
    alpha: float = 16.0,
    dropout: float = 0.0,
    target_modules: Sequence[str] | str | None = None,
) -> torch.nn.Module:
    """Inject a LoRA adapter into ``model`` in place, freeze the rest, and return ``model``.

    Args:
        r: rank of the adapter's matrices (>= 1).
        alpha: scale numerator: the adapter's output is multiplied by ``alpha / r``.
        dropout: dropout on the adapter's input while training.
        target_modules: last names of the linear layers to adapt, ``"all-linear"``, or None
            for peft's default for the architecture (``q_proj`` and ``v_proj`` for Llama).

    Raises:
        ConfigError: bad options, a target the model doesn't have, peft missing, or a model
            that already has an adapter.

    Example:
        >>> add_lora(policy.model, r=4, target_modules=["q_proj"]) is policy.model
        True
    """
    check_lora_options(r, alpha, dropout, target_modules)
    if r == 0:
        raise ConfigError("add_lora needs r >= 1 (r == 0 means no adapter)")
    if has_adapter(model):
        raise ConfigError(f"{type(model).__name__} already has a LoRA adapter; add only one")
    _check_targets(model, target_modules)
    peft = _peft()
    config = peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules)
        if isinstance(target_modules, (list, tuple))
        else target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    except ValueError as exc:  # e.g. no default targets for this architecture
        raise ConfigError(
            f"peft could not add a LoRA adapter to {type(model).__name__}: {exc}; name the "
            f"layers with lora_target_modules (it has {linear_layer_names(model)})"
        ) from None
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name)
    return model


def has_adapter(model: torch.nn.Module) -> bool:
    """Whether ``model`` carries a LoRA adapter (from :func:`add_lora`)."""
    return isinstance(getattr(model, "peft_config", None), dict) and any(
        hasattr(m, "lora_A") for m in model.modules()
    )


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors, keyed as ``peft.PeftModel.save_pretrained`` keys them.

    Example:
        >>> next(iter(adapter_state(model)))
        'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'
    """
    state = _peft().get_peft_model_state_dict(model, adapter_name=ADAPTER)
    return {PEFT_PREFIX + key: value.detach().contiguous() for key, value in state.items()}


def adapter_config(model: torch.nn.Module) -> dict[str, Any]:
    """The adapter's ``LoraConfig`` as the JSON ``adapter_config.json`` holds."""
    config = model.peft_config[ADAPTER].to_dict()
    config["target_modules"] = sorted(config["target_modules"] or [])
    return config


def load_adapter_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy :func:`adapter_state`'s tensors back into ``model``'s adapter, checking every key.

    Raises:
        CheckpointError: a tensor is missing, extra or of another shape (the adapter was built
            with other options than the checkpoint's).
    """
    own = adapter_state(model)
    missing, extra = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    wrong = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        raise CheckpointError(
            f"the saved adapter does not fit this model's (missing {missing[:3]}, unexpected "
            f"{extra[:3]}, other shape {wrong[:3]}); build the adapter with the run's lora_r "
            "and lora_target_modules"
        )
    stripped = {key.removeprefix(PEFT_PREFIX): value for key, value in state.items()}
    with torch.no_grad():
        _peft().set_peft_model_state_dict(model, stripped, adapter_name=ADAPTER)


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base model's ``state_dict`` with each adapter folded into its layer's weight.

    Keys are those of the model without an adapter, so the result loads into a fresh copy of
    the base model (``base.load_state_dict(merged_state_dict(adapted))``).
    """
    merged: dict[str, torch.Tensor] = {}
    deltas: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "get_delta_weight"):
            deltas[f"{name}.base_layer.weight"] = module.get_delta_weight(ADAPTER).detach()
    for key, value in model.state_dict().items():
        if ".lora_" in key:
            continue
        if key in deltas:
            value = value + deltas[key].to(value.dtype)
        merged[key.replace(".base_layer.", ".")] = value.detach()
    return merged
