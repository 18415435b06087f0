"""Compute accounting in FLOPs (docs/definitions.md).

A token through a forward pass costs 2·N FLOPs (generation, prompt included; reference-model and
old-policy passes); a token trained (forward + backward) costs 6·N, where N is the model's
parameter count from ``count_params`` (each unique parameter counted once, so a tied input
embedding / output projection counts once). ``FlopCounter`` keeps exact integer token counts per
category and kind, so every figure is reproducible from the token counts and N.

Wasted FLOPs are a subset of the total: the caller counts padding positions in the tokens it adds
and reports their cost again with ``add_wasted("padding", ...)``; likewise for samples with an
advantage of exactly zero, and for updates that monitors skipped or rolled back. Compute waste (%)
= wasted / total × 100.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from rewardgym.errors import ConfigError, UnknownNameError

__all__ = [
    "CATEGORIES",
    "FORWARD_FLOPS_PER_PARAM",
    "KINDS",
    "TRAIN_FLOPS_PER_PARAM",
    "WASTE_REASONS",
    "FlopCounter",
    "count_params",
]

FORWARD_FLOPS_PER_PARAM = 2
TRAIN_FLOPS_PER_PARAM = 6
KINDS: dict[str, int] = {"forward": FORWARD_FLOPS_PER_PARAM, "train": TRAIN_FLOPS_PER_PARAM}
CATEGORIES = ("generation_prompt", "generation_new", "reference", "old_policy", "train", "replay")
WASTE_REASONS = ("padding", "zero_advantage", "skipped_update", "rolled_back")
_STATE_VERSION = 1

Kind = Literal["forward", "train"]


def count_params(model: torch.nn.Module) -> int:
    """Count the model's unique parameters: tied or shared tensors are counted once.

    Parameters are deduplicated by identity and by the memory they view, so an input embedding
    tied to the output projection counts once. Buffers are not parameters.

    Example:
        >>> emb = torch.nn.Embedding(10, 4); head = torch.nn.Linear(4, 10, bias=False)
        >>> head.weight = emb.weight
        >>> count_params(torch.nn.ModuleList([emb, head]))
        40
    """
    seen: set[tuple[int, int, tuple[int, ...], tuple[int, ...]]] = set()
    total = 0
    for _, param in model.named_parameters(remove_duplicate=False):
        key = (
            param.untyped_storage().data_ptr(),
            param.storage_offset(),
            tuple(param.shape),
            tuple(param.stride()),
        )
        if key in seen:
            continue
        seen.add(key)
        total += param.numel()
    return total


def _check_tokens(tokens: int) -> int:
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ConfigError(
            f"token count must be a non-negative int, got {tokens!r}; pass the number of "
            "token positions processed (padding included)"
        )
    return tokens


class FlopCounter:
    """Accumulates FLOPs by category and wasted FLOPs by reason.

    Args:
        n_params: N, the model's parameter count (``count_params(model)``).

    Example:
        >>> c = FlopCounter(n_params=1_000)
        >>> c.add_forward("generation_new", 10)     # 2 · 1000 · 10
        >>> c.add_train("train", 10)                 # 6 · 1000 · 10
        >>> c.add_wasted("padding", 20_000)
        >>> c.total, c.wasted, c.waste_pct
        (80000.0, 20000.0, 25.0)
    """

    def __init__(self, n_params: int) -> None:
        if isinstance(n_params, bool) or not isinstance(n_params, int) or n_params <= 0:
            raise ConfigError(
                f"n_params must be a positive int, got {n_params!r}; "
                "use rewardgym.agents.meters.compute.count_params(model)"
            )
        self.n_params = n_params
        self._tokens: dict[str, dict[str, int]] = {c: dict.fromkeys(KINDS, 0) for c in CATEGORIES}
        self._wasted: dict[str, float] = dict.fromkeys(WASTE_REASONS, 0.0)

    # -- adding ---------------------------------------------------------------------------

    def flops_for(self, tokens: int, kind: Kind = "forward") -> int:
        """Return the FLOPs of ``tokens`` positions: 2·N each forward, 6·N each trained.

        Example:
            >>> FlopCounter(100).flops_for(3, "train")
            1800
        """
        if kind not in KINDS:
            raise UnknownNameError("FLOP kind", kind, KINDS)
        return KINDS[kind] * self.n_params * _check_tokens(tokens)

    def add(self, category: str, tokens: int, kind: Kind = "forward") -> None:
        """Add ``tokens`` positions of ``kind`` ("forward" or "train") to ``category``.

        Example:
            >>> c = FlopCounter(10); c.add("reference", 5); c.total
            100.0
        """
        if category not in self._tokens:
            raise UnknownNameError("FLOP category", category, CATEGORIES)
        if kind not in KINDS:
            raise UnknownNameError("FLOP kind", kind, KINDS)
        self._tokens[category][kind] += _check_tokens(tokens)

    def add_forward(self, category: str, tokens: int) -> None:
        """Add ``tokens`` forward-pass positions (2·N FLOPs each) to ``category``.

        Example:
            >>> c = FlopCounter(10); c.add_forward("generation_prompt", 4); c.total
            80.0
        """
        self.add(category, tokens, "forward")

    def add_train(self, category: str, tokens: int) -> None:
        """Add ``tokens`` trained positions (6·N FLOPs each) to ``category``.

        Example:
            >>> c = FlopCounter(10); c.add_train("replay", 4); c.total
            240.0
        """
        self.add(category, tokens, "train")

    def add_wasted(self, reason: str, flops: float) -> None:
        """Record ``flops`` (already counted in some category) as wasted for ``reason``.

        Reasons: "padding", "zero_advantage", "skipped_update", "rolled_back".

        Example:
            >>> c = FlopCounter(10); c.add_train("train", 4); c.add_wasted("skipped_update", 240)
            >>> c.waste_pct
            100.0
        """
        if reason not in self._wasted:
            raise UnknownNameError("waste reason", reason, WASTE_REASONS)
        if isinstance(flops, bool) or not isinstance(flops, (int, float)):
            raise ConfigError(f"wasted FLOPs must be a number, got {flops!r}")
        if not math.isfinite(flops) or flops < 0:
            raise ConfigError(
                f"wasted FLOPs must be finite and >= 0, got {flops!r}; "
                "compute them with FlopCounter.flops_for(tokens, kind)"
            )
        self._wasted[reason] += float(flops)

    # -- reading --------------------------------------------------------------------------

    def _category_flops(self, category: str) -> int:
        return sum(KINDS[k] * self.n_params * t for k, t in self._tokens[category].items())

    @property
    def total(self) -> float:
        """All FLOPs counted, wasted ones included."""
        return float(sum(self._category_flops(c) for c in CATEGORIES))

    @property
    def wasted(self) -> float:
        """FLOPs recorded as wasted, over all reasons."""
        return float(sum(self._wasted.values()))

    @property
    def waste_pct(self) -> float:
        """wasted / total × 100; 0.0 when nothing has been counted."""
        total = self.total
        return 0.0 if total == 0 else self.wasted / total * 100.0

    def tokens(self, category: str, kind: Kind) -> int:
        """Return the token positions of ``kind`` counted in ``category``.

        Example:
            >>> c = FlopCounter(10); c.add_train("train", 7); c.tokens("train", "train")
            7
        """
        if category not in self._tokens:
            raise UnknownNameError("FLOP category", category, CATEGORIES)
        if kind not in KINDS:
            raise UnknownNameError("FLOP kind", kind, KINDS)
        return self._tokens[category][kind]

    def by_category(self) -> dict[str, float]:
        """Return FLOPs per category (every category, zeros included).

        Example:
            >>> FlopCounter(10).by_category()["train"]
            0.0
        """
        return {c: float(self._category_flops(c)) for c in CATEGORIES}

    def wasted_by_reason(self) -> dict[str, float]:
        """Return wasted FLOPs per reason (every reason, zeros included).

        Example:
            >>> FlopCounter(10).wasted_by_reason()["padding"]
            0.0
        """
        return dict(self._wasted)

    def flops_per_bleu_point(self, bleu_gain: float) -> float | None:
        """Return total FLOPs per BLEU point gained, or None when the gain is not positive.

        A run that gained nothing (or lost BLEU) has no meaningful cost per point, so None is
        returned rather than a negative or infinite figure; reports print it as "n/a".

        Example:
            >>> c = FlopCounter(10); c.add_train("train", 5)
            >>> c.flops_per_bleu_point(2.0), c.flops_per_bleu_point(0.0)
            (150.0, None)
        """
        if not math.isfinite(bleu_gain) or bleu_gain <= 0:
            return None
        return self.total / bleu_gain

    flops_per_bleu = flops_per_bleu_point  # contract name

    def record_fields(self) -> dict[str, float]:
        """The figures each update's record in metrics.jsonl carries, whichever trainer ran it.

        Example:
            >>> FlopCounter(10).record_fields()["compute_waste_pct"]
            0.0
        """
        out: dict[str, float] = {f"flops/{c}": v for c, v in self.by_category().items()}
        out.update({"flops/total": self.total, "flops/wasted": self.wasted})
        out["compute_waste_pct"] = self.waste_pct
        return out

    def undo_since(self, then: FlopCounter) -> None:
        """A rollback to a checkpoint whose counter was ``then``: everything computed since and
        not yet counted as waste is now waste (``rolled_back``)."""
        useful_since = (self.total - self.wasted) - (then.total - then.wasted)
        self.add_wasted("rolled_back", max(0.0, useful_since))

    def snapshot(self) -> dict[str, float]:
        """Return a flat, JSON-able dict of the current figures for metrics.jsonl.

        Example:
            >>> sorted(FlopCounter(10).snapshot())[:3]
            ['flops/generation_new', 'flops/generation_prompt', 'flops/old_policy']
        """
        out: dict[str, float] = {f"flops/{c}": v for c, v in self.by_category().items()}
        out.update({f"flops_wasted/{r}": v for r, v in self._wasted.items()})
        out.update(
            {"flops_total": self.total, "flops_wasted": self.wasted, "waste_pct": self.waste_pct}
        )
        return out

    # -- persistence and merging ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return the exact, JSON-able state (for checkpoints and resume).

        Example:
            >>> FlopCounter(10).state_dict()["n_params"]
            10
        """
        return {
            "version": _STATE_VERSION,
            "n_params": self.n_params,
            "tokens": {c: dict(k) for c, k in self._tokens.items()},
            "wasted": dict(self._wasted),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace this counter's figures with ``state`` (from ``state_dict``).

        Raises:
            ConfigError: a different version or N, or an unknown category, kind or reason.

        Example:
            >>> a = FlopCounter(10); a.add_train("train", 3)
            >>> b = FlopCounter(10); b.load_state_dict(a.state_dict()); b.total
            180.0
        """
        if state.get("version") != _STATE_VERSION:
            raise ConfigError(
                f"FlopCounter state version {state.get('version')!r} is not {_STATE_VERSION}; "
                "it was written by another rewardgym version"
            )
        if state.get("n_params") != self.n_params:
            raise ConfigError(
                f"FlopCounter state has n_params={state.get('n_params')!r} but this counter has "
                f"{self.n_params}; build the counter with the checkpoint's model"
            )
        fresh = FlopCounter(self.n_params)
        for category, kinds in state["tokens"].items():
            for kind, tokens in kinds.items():
                fresh.add(category, tokens, kind)
        for reason, flops in state["wasted"].items():
            fresh.add_wasted(reason, flops)
        self._tokens, self._wasted = fresh._tokens, fresh._wasted

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FlopCounter:
        """Build a counter from ``state_dict()`` output.

        Example:
            >>> FlopCounter.from_state_dict(FlopCounter(7).state_dict()).n_params
            7
        """
        counter = cls(state.get("n_params"))  # type: ignore[arg-type]
        counter.load_state_dict(state)
        return counter

    def merge(self, other: FlopCounter) -> FlopCounter:
        """Return a new counter holding both counters' figures (same N required).

        Example:
            >>> a = FlopCounter(10); a.add_train("train", 1)
            >>> a.merge(a).total
            120.0
        """
        if not isinstance(other, FlopCounter):
            raise ConfigError(f"can only merge a FlopCounter, got {type(other).__name__}")
        if other.n_params != self.n_params:
            raise ConfigError(
                f"cannot merge FlopCounters of different models (n_params {self.n_params} and "
                f"{other.n_params}); sum their snapshot()['flops_total'] figures instead"
            )
        merged = FlopCounter.from_state_dict(self.state_dict())
        for category, kinds in other._tokens.items():
            for kind, tokens in kinds.items():
                merged._tokens[category][kind] += tokens
        for reason, flops in other._wasted.items():
            merged._wasted[reason] += flops
        return merged

    def __add__(self, other: FlopCounter) -> FlopCounter:
        return self.merge(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlopCounter):
            return NotImplemented
        return self.state_dict() == other.state_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"FlopCounter(n_params={self.n_params}, total={self.total:.4g}, "
            f"wasted={self.wasted:.4g}, waste_pct={self.waste_pct:.2f})"
        )
