"""The reward protocol: TRL-style reward functions, boundary checks and :class:`Reward`.

A reward function follows TRL's convention, so one function works in rewardgym and in TRL's
``GRPOTrainer``::

    fn(prompts: list[str], completions: list[str], **kwargs) -> list[float | None]

``kwargs`` always carry ``references``, ``completion_ids``, ``n_tokens``, ``finished``,
``latency_s`` and ``meta`` (lists, one entry per sample) and may carry more (``turns``,
``max_new_tokens``, TRL's ``trainer_state``...). ``None`` means "does not apply to this sample".

Every call of a reward function is checked at the boundary (:func:`call_reward_fn`): a result of
the wrong length, a value that is not a finite number or ``None``, or an exception raises
:class:`~rewardgym.errors.RewardError` naming the reward, the sample and the offending value.
Booleans are rejected too: ``True`` is almost always a predicate returned by mistake, and
``float(ok)`` states the intent. A float NaN is an error, never "does not apply" (TRL conflates
the two); return ``None`` for that.

Example:
    >>> def brevity(prompts, completions, **kwargs):
    ...     return [1.0 / (1 + len(c)) for c in completions]
    >>> reward = Reward("brevity", {"brevity": brevity})
    >>> reward(["p"], [""], references=["r"])
    [1.0]
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardgym.errors import ConfigError, RewardError
from rewardgym.rewards.schedules import WeightSchedule

RewardFn = Callable[..., Sequence[Any]]

#: Keyword arguments every reward function receives, one entry per sample.
STANDARD_KWARGS = ("references", "completion_ids", "n_tokens", "finished", "latency_s", "meta")
#: Optional per-sample keyword arguments that are length-checked when present.
OPTIONAL_PER_SAMPLE_KWARGS = ("turns",)
#: What a reward does with a sample whose value breaks the contract.
ON_ERROR_CHOICES = ("raise", "skip")

# A word or a single punctuation mark: a tokenizer-free stand-in for a token count.
TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")
_SHOW_CHARS = 60  # how much of a prompt/completion an error message quotes


def estimate_tokens(text: str) -> int:
    """Estimate the token count of ``text`` as its number of words and punctuation marks.

    Example:
        >>> estimate_tokens("Hello, world!")
        4
    """
    return len(TOKEN_PATTERN.findall(text))


def as_text(completion: Any) -> str:
    """The text of a completion: a string, or TRL's conversational form (a list of messages).

    Example:
        >>> as_text([{"role": "assistant", "content": "hi"}])
        'hi'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, dict) for m in completion):
        return "".join(str(m.get("content", "")) for m in completion)
    return str(completion)


def fill_reward_kwargs(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    *,
    require_references: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """Fill the standard reward kwargs a caller left out, and check one entry per sample.

    Defaults: ``n_tokens`` = ``len(completion_ids[i])`` where ids were given, else
    :func:`estimate_tokens` of the completion; ``finished`` = True; ``latency_s`` = 0.0;
    ``completion_ids`` = ``[]``; ``meta`` = ``{}``. ``references`` have no default: they are
    required unless ``require_references`` is False (then each is ``""``). Other kwargs pass
    through unchanged; ``turns`` is length-checked when present.

    Args:
        prompts: one prompt per sample.
        completions: one completion per sample.
        require_references: raise when ``references`` is missing (rewards that compare
            against a reference need it).
        **kwargs: what the caller has (TRL passes dataset columns and ``completion_ids``).

    Returns:
        A new dict with every standard kwarg present.

    Raises:
        ConfigError: references missing while required, or a per-sample list whose length is
            not the number of completions.

    Example:
        >>> kw = fill_reward_kwargs(["p"], ["a b."], references=["a b"])
        >>> kw["n_tokens"], kw["finished"], kw["latency_s"]
        ([3], [True], [0.0])
    """
    n = len(completions)
    if len(prompts) != n:
        raise ConfigError(
            f"got {len(prompts)} prompts but {n} completions; pass one prompt per completion"
        )
    out = dict(kwargs)
    if out.get("references") is None:
        if require_references:
            raise ConfigError(
                "this reward needs references=[...] (one reference per completion) but none "
                "were passed; pass references=, or in TRL add a 'references' column to the dataset"
            )
        out["references"] = [""] * n
    if out.get("completion_ids") is None:
        out["completion_ids"] = [[] for _ in range(n)]
    _check_lengths(out, n, ("references", "completion_ids"))
    if out.get("n_tokens") is None:
        out["n_tokens"] = [
            len(ids) if len(ids) else estimate_tokens(as_text(text))
            for ids, text in zip(out["completion_ids"], completions, strict=True)
        ]
    if out.get("finished") is None:
        out["finished"] = [True] * n
    if out.get("latency_s") is None:
        out["latency_s"] = [0.0] * n
    if out.get("meta") is None:
        out["meta"] = [{} for _ in range(n)]
    _check_lengths(out, n, STANDARD_KWARGS + OPTIONAL_PER_SAMPLE_KWARGS)
    return out


def _check_lengths(kwargs: Mapping[str, Any], n: int, keys: Sequence[str]) -> None:
    for key in keys:
        if key not in kwargs:
            continue
        value = kwargs[key]
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            raise ConfigError(
                f"reward kwarg {key}= must be a list with one entry per completion, "
                f"got {type(value).__name__}"
            )
        if len(value) != n:
            raise ConfigError(
                f"reward kwarg {key}= has {len(value)} entries for {n} completions; "
                "pass one entry per completion"
            )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 3] + "..."


def check_reward_values(
    name: str, values: Any, n: int, on_error: str = "raise"
) -> tuple[np.ndarray, int]:
    """Check what a reward function returned; convert it to floats with NaN for ``None``.

    Args:
        name: the reward's name, for messages.
        values: what the function returned.
        n: the number of completions it was given.
        on_error: ``"raise"`` or ``"skip"`` (a bad value becomes NaN, i.e. "does not apply",
            and is counted).

    Returns:
        ``(values as float64 array, number of samples skipped)``.

    Raises:
        RewardError: with ``on_error="raise"``, a result that is not a sequence of ``n`` finite
            numbers or ``None``.

    Example:
        >>> check_reward_values("r", [1, None], 2)
        (array([ 1., nan]), 0)
    """
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, (Sequence, np.ndarray)):
        return _bad_batch(
            f"reward {name!r} returned {_short(values)} ({type(values).__name__}); "
            f"return a list of {n} values (a float or None per completion)",
            n,
            on_error,
        )
    if len(values) != n:
        return _bad_batch(
            f"reward {name!r} returned {len(values)} values for {n} completions; "
            "return one value (a float or None) per completion",
            n,
            on_error,
        )
    out = np.full(n, np.nan, dtype=np.float64)
    skipped = 0
    for i, value in enumerate(values):
        problem = _value_problem(value)
        if problem is None:
            out[i] = np.nan if value is None else float(value)
        elif on_error == "skip":
            skipped += 1
        else:
            raise RewardError(f"reward {name!r} returned {_short(value)} for sample {i}: {problem}")
    return out, skipped


def _bad_batch(message: str, n: int, on_error: str) -> tuple[np.ndarray, int]:
    if on_error == "skip":
        return np.full(n, np.nan, dtype=np.float64), n
    raise RewardError(message)


def _value_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid per-sample reward, or None when it is."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "a bool is not a reward; return float(value) for 1.0/0.0"
    if not isinstance(value, numbers.Real):
        return f"expected a finite float or None, got {type(value).__name__}"
    if not math.isfinite(float(value)):
        return "expected a finite float; return None for 'does not apply'"
    return None


def call_reward_fn(
    name: str,
    fn: RewardFn,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    kwargs: Mapping[str, Any],
    on_error: str = "raise",
) -> tuple[np.ndarray, int]:
    """Call one reward function and check its result at the boundary.

    When the function raises, each sample is retried alone to name the one that fails; with
    ``on_error="skip"`` the samples that fail alone become NaN ("does not apply") and the
    others keep their values.

    Returns:
        ``(values as float64 array with NaN for "does not apply", number of samples skipped)``.

    Raises:
        RewardError: the function raised, or returned a bad result, with ``on_error="raise"``;
            an exception is chained with ``from``.

    Example:
        >>> call_reward_fn("one", lambda p, c, **kw: [1.0] * len(c), ["p"], ["c"], {})
        (array([1.]), 0)
    """
    n = len(completions)
    try:
        result = fn(list(prompts), list(completions), **kwargs)
    except Exception as exc:  # a user function may raise anything: report it, typed
        return _isolate_failures(name, fn, prompts, completions, kwargs, on_error, exc)
    return check_reward_values(name, result, n, on_error)


def _isolate_failures(
    name: str,
    fn: RewardFn,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    kwargs: Mapping[str, Any],
    on_error: str,
    batch_exc: Exception,
) -> tuple[np.ndarray, int]:
    n = len(completions)
    out = np.full(n, np.nan, dtype=np.float64)
    skipped = 0
    for i in range(n):
        one = _slice_kwargs(kwargs, i, n)
        try:
            result = fn([prompts[i]], [completions[i]], **one)
        except Exception as exc:
            if on_error == "skip":
                skipped += 1
                continue
            raise RewardError(
                f"reward {name!r} raised {type(exc).__name__}: {exc} on sample {i} "
                f"(completion {_short(completions[i])})"
            ) from exc
        values, bad = check_reward_values(name, result, 1, on_error)
        out[i], skipped = values[0], skipped + bad
    if on_error == "raise":
        # No sample fails alone: the failure belongs to the batch as a whole.
        raise RewardError(
            f"reward {name!r} raised {type(batch_exc).__name__}: {batch_exc} on a batch of {n} "
            "samples (no single sample fails alone)"
        ) from batch_exc
    return out, skipped


def _slice_kwargs(kwargs: Mapping[str, Any], i: int, n: int) -> dict[str, Any]:
    """The kwargs of sample ``i``: per-sample lists cut to one entry, the rest unchanged."""
    per_sample = set(STANDARD_KWARGS + OPTIONAL_PER_SAMPLE_KWARGS)
    out = {}
    for key, value in kwargs.items():
        is_column = isinstance(value, (list, tuple, np.ndarray)) and len(value) == n
        out[key] = [value[i]] if (key in per_sample or is_column) else value
    return out


def check_on_error(on_error: str) -> str:
    """Return ``on_error`` when it is a valid choice; raise ConfigError otherwise.

    Example:
        >>> check_on_error("skip")
        'skip'
    """
    if on_error not in ON_ERROR_CHOICES:
        raise ConfigError(
            f"on_error={on_error!r} is not valid; choose one of {', '.join(ON_ERROR_CHOICES)}"
        )
    return on_error


@dataclass
class RewardOutput:
    """The rewards of a batch, in total and per component.

    Attributes:
        total: float64, one per sample: the weighted sum of the components that apply
            (NaN never: a sample where nothing applies gets 0.0).
        components: component name -> float64 array, NaN where it does not apply.
        applies: bool, one per sample: whether any weighted component applies.

    Example:
        >>> out = RewardOutput(np.array([0.5]), {"a": np.array([0.5])}, np.array([True]))
        >>> out.as_list()
        [0.5]
    """

    total: np.ndarray
    components: dict[str, np.ndarray]
    applies: np.ndarray

    def __len__(self) -> int:
        return len(self.total)

    def as_list(self) -> list[float | None]:
        """The totals in TRL's form: a float per sample, ``None`` where nothing applies."""
        return [float(t) if a else None for t, a in zip(self.total, self.applies, strict=True)]


def weighted_formula(pairs: Sequence[tuple[str, float]]) -> str:
    """``"0.5·a + 0.5·b"`` for weighted components; just the name for one of weight 1.

    Example:
        >>> weighted_formula([("speed", 1.0)])
        'speed'
    """
    if len(pairs) == 1 and pairs[0][1] == 1.0:
        return pairs[0][0]
    return " + ".join(f"{w:g}·{name}" for name, w in pairs)


@dataclass(frozen=True)
class Term:
    """One weighted component of a :class:`Reward`; ``schedule`` (if any) sets its weight at
    each update (see :mod:`rewardgym.rewards.schedules`), ``weight`` is its value at update 0."""

    name: str
    fn: RewardFn
    weight: float = 1.0
    schedule: WeightSchedule | None = None


class Reward:
    """A checked, possibly composite, reward; itself a TRL reward function.

    ``total = Σ_k w_k · r_k`` over the components ``k`` that apply to the sample, with no
    renormalisation of the weights (as TRL's ``nansum`` of weighted rewards): a component
    returning ``None`` contributes nothing. Components of weight 0 are reported but neither
    paid nor counted in ``applies``.

    Args:
        name: the reward's name (also ``__name__``, which TRL uses for logging).
        terms: component name -> function, or a list of :class:`Term` (weighted).
        on_error: ``"raise"`` (default) or ``"skip"``: a bad value becomes ``None``, counted in
            :attr:`n_skipped` (one per component and sample).
        needs_references: whether calls must pass ``references``.
        formula: a one-line description (shown by ``describe_rewards``).

    Example:
        >>> def one(prompts, completions, **kw):
        ...     return [1.0] * len(completions)
        >>> r = Reward("two", [Term("a", one, 1.5), Term("b", one, 0.5)])
        >>> r.score(["p"], ["c"], references=["r"]).total
        array([2.])
    """

    def __init__(
        self,
        name: str,
        terms: Mapping[str, RewardFn] | Sequence[Term],
        *,
        on_error: str = "raise",
        needs_references: bool = True,
        formula: str = "",
    ) -> None:
        if isinstance(terms, Mapping):
            terms = [Term(key, fn) for key, fn in terms.items()]
        if not terms:
            raise ConfigError(f"reward {name!r} has no components; give at least one")
        self.name = name
        self.__name__ = name  # TRL logs rewards/<__name__>
        self.terms: tuple[Term, ...] = tuple(terms)
        self._weights = [t.weight for t in self.terms]
        self.on_error = check_on_error(on_error)
        self.needs_references = needs_references
        self.formula = formula or self._default_formula()
        self.n_skipped = 0

    def _default_formula(self) -> str:
        if any(t.schedule is not None for t in self.terms):
            return " + ".join(
                f"{t.schedule.describe() if t.schedule else f'{t.weight:g}'}·{t.name}"
                for t in self.terms
            )
        return weighted_formula([(t.name, t.weight) for t in self.terms])

    @property
    def component_names(self) -> list[str]:
        """The names of the components, in order."""
        return [t.name for t in self.terms]

    @property
    def weights(self) -> dict[str, float]:
        """Each component's weight now (at the update :meth:`set_progress` last set)."""
        return {t.name: w for t, w in zip(self.terms, self._weights, strict=True)}

    def set_progress(self, update: int, run_updates: int) -> None:
        """Move scheduled weights to ``update`` of a run of ``run_updates`` (nested composite
        components too); fixed weights stay as they are."""
        for i, term in enumerate(self.terms):
            if term.schedule is not None:
                self._weights[i] = term.schedule.value(update, run_updates)
            if isinstance(term.fn, Reward):
                term.fn.set_progress(update, run_updates)

    def score(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> RewardOutput:
        """Score a batch: the total and every component, checked at the boundary.

        Args:
            prompts: one prompt per sample.
            completions: one completion per sample.
            **kwargs: the standard reward kwargs; missing ones are filled by
                :func:`fill_reward_kwargs`.

        Raises:
            RewardError: a component broke its contract (with ``on_error="raise"``).
            ConfigError: missing references or per-sample lists of the wrong length.

        Example:
            >>> r = Reward("len", {"len": lambda p, c, **kw: [float(len(x)) for x in c]})
            >>> r.score(["p", "q"], ["ab", ""], references=["", ""]).components["len"]
            array([2., 0.])
        """
        kw = fill_reward_kwargs(
            prompts, completions, require_references=self.needs_references, **kwargs
        )
        components: dict[str, np.ndarray] = {}
        for term in self.terms:
            label = self.name if len(self.terms) == 1 else f"{self.name}/{term.name}"
            values, skipped = call_reward_fn(
                label, term.fn, prompts, completions, kw, self.on_error
            )
            self.n_skipped += skipped
            components[term.name] = values
        return self._combine(components, len(completions))

    def _combine(self, components: dict[str, np.ndarray], n: int) -> RewardOutput:
        paid = [w * components[t.name] for t, w in zip(self.terms, self._weights) if w != 0]
        if not paid:
            return RewardOutput(np.zeros(n), components, np.zeros(n, dtype=bool))
        stacked = np.vstack(paid)
        applies = ~np.isnan(stacked).all(axis=0)
        total = np.nansum(stacked, axis=0)  # all-NaN columns sum to 0.0
        return RewardOutput(total.astype(np.float64), components, applies)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list:
        """TRL's reward-function form: the total per sample, ``None`` where nothing applies."""
        return self.score(prompts, completions, **kwargs).as_list()

    def with_on_error(self, on_error: str) -> Reward:
        """A copy of this reward with another ``on_error`` policy and a fresh skip count."""
        return Reward(
            self.name,
            list(self.terms),
            on_error=on_error,
            needs_references=self.needs_references,
            formula=self.formula,
        )

    def __repr__(self) -> str:
        return f"Reward({self.name!r}, {self.formula!r}, on_error={self.on_error!r})"
