"""Quality metrics a task can name as its primary one: the built-ins and the user's own.

BLEU, chrF and exact match are built in (``agents/meters/text_metrics`` computes them, once per
answer set). A user metric is a function ``score(hyps, refs) -> float`` on a 0–100 scale, higher
better, registered by name with :func:`register_quality_metric`, or named by a module spec
``"module:function"`` (imported from the current folder first, as rewards are), so a task file
can use it from the command line. A metric that also takes a ``meta`` keyword (or ``**kwargs``)
gets each example's ``meta`` dict, in the order of ``refs``: what it needs to score an answer
beyond the reference (a puzzle's own checker, say); a two-argument metric is called as before.

Example:
    >>> def word_accuracy(hyps, refs):
    ...     return 100 * sum(h.split() == r.split() for h, r in zip(hyps, refs)) / len(refs)
    >>> metric = register_quality_metric("word_accuracy", word_accuracy, label="word accuracy")
    >>> metric.label
    'word accuracy'
    >>> get_quality_metric("word_accuracy").value(["a b"], ["a b"], corpus=None)
    100.0
    >>> def in_range(hyps, refs, meta):
    ...     hits = [m["low"] <= int(h) <= m["high"] for h, m in zip(hyps, meta)]
    ...     return 100 * sum(hits) / len(hits)
    >>> metric = register_quality_metric("in_range", in_range)
    >>> metric.value(["4"], ["5"], corpus=None, meta=[{"low": 3, "high": 6}])
    100.0
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rewardgym._lazy import import_user_module
from rewardgym.errors import ConfigError, UnknownNameError

__all__ = [
    "QualityMetric",
    "get_quality_metric",
    "list_quality_metrics",
    "quality_label",
    "register_quality_metric",
    "takes_meta",
]

#: ``score(hyps, refs) -> 0..100``: the answers as the task reads them, and their references;
#: a metric may also take ``meta=`` (each example's meta dict, in the order of ``refs``)
ScoreFn = Callable[..., float]


def takes_meta(score: Callable[..., Any]) -> bool:
    """Whether ``score`` accepts a ``meta`` keyword: a parameter named so, or ``**kwargs``.

    Read from the signature, so a user's two-argument metric is called as it always was.

    Example:
        >>> takes_meta(lambda hyps, refs: 0.0), takes_meta(lambda hyps, refs, meta=None: 0.0)
        (False, True)
    """
    try:
        parameters = inspect.signature(score).parameters.values()
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return False
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any(
        (p.name == "meta" and p.kind in keyword) or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in parameters
    )


def check_meta(meta: Sequence[Mapping] | None, n: int) -> list[dict]:
    """``meta`` as a list of ``n`` dicts: empty dicts when None, else one mapping per reference.

    Raises:
        ConfigError: a meta list of another length, or an entry that is not a mapping.

    Example:
        >>> check_meta(None, 2)
        [{}, {}]
    """
    if meta is None:
        return [{} for _ in range(n)]
    if isinstance(meta, (str, bytes, Mapping)) or not isinstance(meta, Sequence):
        raise ConfigError(
            f"meta must be a list with one dict per reference, got {type(meta).__name__}"
        )
    if len(meta) != n:
        raise ConfigError(
            f"meta has {len(meta)} entries for {n} references; pass one example's meta per "
            "reference, in the same order"
        )
    bad = next((m for m in meta if not isinstance(m, Mapping)), None)
    if bad is not None:
        raise ConfigError(f"each meta entry must be a dict, got {type(bad).__name__}: {bad!r:.60}")
    return [dict(m) for m in meta]


@dataclass(frozen=True)
class QualityMetric:
    """A named corpus quality metric, 0–100, higher better.

    Attributes:
        name: the ``primary_metric`` value that selects it.
        label: how tables and plots name it.
        score: the user's function; None for a built-in (read from the corpus scores).
    """

    name: str
    label: str
    score: ScoreFn | None = None

    def value(
        self,
        hyps: Sequence[str],
        refs: Sequence[str],
        corpus: Any,
        meta: Sequence[Mapping] | None = None,
    ) -> float:
        """This metric on ``hyps`` against ``refs``; ``corpus`` holds the built-ins' scores of
        the same texts (``text_metrics.corpus_scores``), so a built-in costs nothing more.
        ``meta`` (each example's meta, in the order of ``refs``; None: empty dicts) reaches a
        metric that takes it (see :func:`takes_meta`)."""
        if self.score is None:
            return float(getattr(corpus, self.name))
        if takes_meta(self.score):
            value = self.score(list(hyps), list(refs), meta=check_meta(meta, len(refs)))
        else:
            value = self.score(list(hyps), list(refs))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"quality metric {self.name!r} returned {type(value).__name__} {value!r:.40}; "
                "it must return one number from 0 to 100"
            )
        if not math.isfinite(value) or not 0 <= value <= 100:
            raise ConfigError(
                f"quality metric {self.name!r} returned {value!r}; it must return a number from "
                "0 to 100 (scale a 0-1 score by 100)"
            )
        return float(value)


_REGISTRY: dict[str, QualityMetric] = {
    "bleu": QualityMetric("bleu", "BLEU"),
    "chrf": QualityMetric("chrf", "chrF"),
    "exact_match": QualityMetric("exact_match", "exact match"),
}
BUILTIN_QUALITY_METRICS = tuple(_REGISTRY)


def register_quality_metric(
    name: str, score: ScoreFn, *, label: str | None = None, overwrite: bool = False
) -> QualityMetric:
    """Register ``score`` as the quality metric ``name`` (``label`` defaults to the name).

    Raises:
        ConfigError: a bad name, a score that is not callable, a built-in's name, or a taken
            name without ``overwrite=True``.
    """
    if not isinstance(name, str) or not name or ":" in name or not name.strip() == name:
        raise ConfigError(f"a quality metric name must be a plain word, got {name!r}")
    if name in BUILTIN_QUALITY_METRICS:
        raise ConfigError(f"{name!r} is a built-in quality metric; register under another name")
    if name in _REGISTRY and not overwrite:
        raise ConfigError(
            f"quality metric {name!r} is already registered; pass overwrite=True to replace it"
        )
    if not callable(score):
        raise ConfigError(f"score of quality metric {name!r} must be callable, got {score!r:.60}")
    metric = QualityMetric(name, label or name, score)
    _REGISTRY[name] = metric
    return metric


def get_quality_metric(name: str) -> QualityMetric:
    """The metric registered as ``name``, or the function a ``"module:function"`` spec names.

    Raises:
        UnknownNameError: no such metric (with "did you mean").
        ConfigError: a module spec whose module or function cannot be loaded.
    """
    if not isinstance(name, str):
        raise ConfigError(f"a quality metric is named by a string, got {name!r}")
    if name not in _REGISTRY and ":" in name:
        module, _, attr = name.partition(":")
        try:
            loaded = import_user_module(module)
        except Exception as exc:  # a user's module may fail in any way; say which and why
            raise ConfigError(
                f"cannot import module {module!r} for quality metric {name!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        score = getattr(loaded, attr, None)
        if not callable(score):
            raise ConfigError(
                f"module {module!r} has no function {attr!r} (quality metric {name!r})"
            )
        _REGISTRY[name] = QualityMetric(name, attr, score)
    if name not in _REGISTRY:
        raise UnknownNameError(
            "quality metric",
            name,
            _REGISTRY,
            hint="Register one with register_quality_metric or name it as 'module:function'.",
        )
    return _REGISTRY[name]


def list_quality_metrics() -> list[str]:
    """The registered quality metric names, sorted."""
    return sorted(_REGISTRY)


def quality_label(name: str) -> str:
    """How tables name ``name``; the name itself when it is not registered in this process
    (a report read where the user's metric is not imported)."""
    metric = _REGISTRY.get(name)
    return metric.label if metric is not None else name
