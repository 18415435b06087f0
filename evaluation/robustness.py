"""Noise robustness and the change formulas of a report (docs/definitions.md).

- **Noise sweep**: for each noise type ``n`` and severity ``s``, every prompt of the split is
  noised with :func:`rewardgym.envs.noise.noisy_example` (example ``i`` with seed
  ``noise_seed + i``, so the sweep is deterministic and the same for every policy), the policy
  answers, and ``B(n, s)`` is the corpus BLEU of those answers against the clean references.
- **Robustness ratio** ``R = mean over (n, s) of B(n, s) / B_clean`` (None when ``B_clean == 0``).
- **BLEU improvement (%)** ``= (BLEU_after − BLEU_before) / BLEU_before × 100``.
- **Robustness change (%)** ``= (R_after / R_before − 1) × 100``.
- **Forgetting (%)** ``= (score_before − score_after) / score_before × 100``.

Every formula returns None where it is undefined (a zero or missing denominator), never NaN or
inf, so results stay valid JSON; :func:`undefined_reason` says why in words.

Example:
    >>> robustness_ratio(50.0, {"char_drop": {"0.1": 40.0, "0.2": 30.0}})
    0.7
    >>> bleu_improvement_pct(40.0, 50.0), robustness_change_pct(0.8, 0.4)
    (25.0, -50.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rewardgym.agents.meters.text_metrics import corpus_scores
from rewardgym.envs.noise import NOISE_TYPES, noisy_example
from rewardgym.envs.tasks import Example, get_quality_metric
from rewardgym.errors import ConfigError, UnknownNameError

__all__ = [
    "DEFAULT_SEVERITIES",
    "NOISE_TYPES",
    "NoiseSweep",
    "bleu_improvement_pct",
    "check_noise",
    "forgetting_pct",
    "noise_sweep",
    "noisy_examples",
    "robustness_change_pct",
    "robustness_ratio",
    "severity_key",
    "undefined_reason",
]

DEFAULT_SEVERITIES = (0.05, 0.1, 0.2)

#: answers prompts: ``answer(prompts, condition_index) -> completions`` (one per prompt)
AnswerFn = Callable[[list[str], int], list[str]]


def severity_key(severity: float) -> str:
    """The JSON key of a severity: ``repr`` of the float, so it reads back exactly.

    Example:
        >>> severity_key(0.05), severity_key(1)
        ('0.05', '1.0')
    """
    return repr(float(severity))


def check_noise(
    noise: Iterable[str] | str | None, severities: Iterable[float] | float | None
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Validate a sweep's noise types and severities; duplicates are dropped, order kept.

    ``noise=None`` or ``[]`` means no sweep (severities are then ignored).

    Raises:
        UnknownNameError: a noise type that does not exist (with "did you mean").
        ConfigError: no severity for a sweep, or a severity outside (0, 1].

    Example:
        >>> check_noise(["word_drop", "word_drop"], [0.2, 0.1])
        (('word_drop',), (0.2, 0.1))
    """
    if noise is None:
        return (), ()
    kinds = (noise,) if isinstance(noise, str) else tuple(noise)
    for kind in kinds:
        if kind not in NOISE_TYPES:
            raise UnknownNameError("noise type", kind, NOISE_TYPES)
    kinds = tuple(dict.fromkeys(kinds))
    if not kinds:
        return (), ()
    if severities is None:
        severities = DEFAULT_SEVERITIES
    levels = (severities,) if isinstance(severities, (int, float)) else tuple(severities)
    if not levels:
        raise ConfigError(
            f"a noise sweep over {list(kinds)} needs at least one severity; pass e.g. "
            f"severities={DEFAULT_SEVERITIES}, or noise=None for no sweep"
        )
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level <= 1:
            raise ConfigError(
                f"noise severity must be a number in (0, 1] (the share of characters or words "
                f"touched), got {level!r}; severity 0 is the clean evaluation itself"
            )
    return kinds, tuple(dict.fromkeys(float(level) for level in levels))


def noisy_examples(
    examples: Sequence[Example], kind: str, severity: float, noise_seed: int = 0
) -> list[Example]:
    """The examples with noisy prompts: example ``i`` is noised with seed ``noise_seed + i``.

    Example:
        >>> ex = Example("solve: 2 plus 3 =>", "5", {"input": "2 plus 3"})
        >>> noisy_examples([ex], "word_drop", 0.3)[0].prompt
        'solve: 2 3 =>'
    """
    return [noisy_example(ex, kind, severity, seed=noise_seed + i) for i, ex in enumerate(examples)]


@dataclass
class NoiseSweep:
    """What :func:`noise_sweep` measured.

    Attributes:
        bleu: ``{noise type: {severity_key: B(n, s)}}``.
        chrf: the same layout, corpus chrF.
        quality: the same layout, the task's primary metric (what R is computed from).
        prompts: ``{(noise type, severity): noisy prompts}``.
        hyps: ``{(noise type, severity): completions}``.
    """

    bleu: dict[str, dict[str, float]] = field(default_factory=dict)
    chrf: dict[str, dict[str, float]] = field(default_factory=dict)
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    prompts: dict[tuple[str, float], list[str]] = field(default_factory=dict)
    hyps: dict[tuple[str, float], list[str]] = field(default_factory=dict)


def noise_sweep(
    answer: AnswerFn,
    examples: Sequence[Example],
    noise: Iterable[str] | None = NOISE_TYPES,
    severities: Iterable[float] | None = DEFAULT_SEVERITIES,
    noise_seed: int = 0,
    metric: str = "bleu",
) -> NoiseSweep:
    """BLEU, chrF and ``metric`` of ``answer`` on noisy prompts, per (noise type, severity).

    Args:
        answer: ``answer(prompts, condition) -> completions``; ``condition`` numbers the
            (noise type, severity) pairs from 1, so a sampling policy can seed each one apart.
        examples: the split to noise (references stay clean).
        noise: noise types (see :data:`NOISE_TYPES`); None or ``[]`` for no sweep.
        severities: shares of characters (words for ``word_drop``) touched, each in (0, 1].
        noise_seed: example ``i`` is noised with seed ``noise_seed + i``.
        metric: the task's primary quality metric (a name ``get_quality_metric`` knows).

    Example:
        >>> echo = lambda prompts, condition: [p.split(": ")[1][:-3] for p in prompts]
        >>> ex = [Example("say: a b c d =>", "a b c d", {"input": "a b c d"})]
        >>> noise_sweep(echo, ex, ["word_drop"], [0.25]).bleu
        {'word_drop': {'0.25': 0.0}}
    """
    kinds, levels = check_noise(noise, severities)
    metric = get_quality_metric(metric)
    sweep = NoiseSweep()
    refs = [ex.reference for ex in examples]
    meta = [ex.meta for ex in examples]  # the clean examples': a scorer reads their entries
    condition = 0
    for kind in kinds:
        for level in levels:
            condition += 1
            prompts = [ex.prompt for ex in noisy_examples(examples, kind, level, noise_seed)]
            hyps = list(answer(prompts, condition))
            sweep.prompts[(kind, level)] = prompts
            sweep.hyps[(kind, level)] = hyps
            scores, key = corpus_scores(hyps, refs), severity_key(level)
            sweep.bleu.setdefault(kind, {})[key] = scores.bleu
            sweep.chrf.setdefault(kind, {})[key] = scores.chrf
            sweep.quality.setdefault(kind, {})[key] = metric.value(hyps, refs, scores, meta)
    return sweep


def _finite(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number or None, got {value!r}")
    return float(value)


# Below this clean BLEU the ratio B(n, s) / B_clean measures noise in near-empty output, not
# robustness (a collapsed agent's ratio of two near-zero BLEUs swings by tens of percent).
MIN_CLEAN_BLEU = 10.0


def robustness_ratio(
    clean_bleu: float | None, noisy_bleu: Mapping[str, Mapping[str, float]]
) -> float | None:
    """``R = mean over (n, s) of B(n, s) / B_clean``; None without a sweep or when B_clean is
    below ``MIN_CLEAN_BLEU`` (10 BLEU points: the ratio would be dominated by noise).

    Example:
        >>> robustness_ratio(0.0, {"char_drop": {"0.1": 5.0}}) is None
        True
    """
    clean = _finite(clean_bleu, "clean BLEU")
    values = [
        _finite(bleu, f"BLEU under {kind} at severity {level}")
        for kind, by_level in noisy_bleu.items()
        for level, bleu in by_level.items()
    ]
    if clean is None or clean < MIN_CLEAN_BLEU or not values or any(v is None for v in values):
        return None
    return sum(v / clean for v in values) / len(values)  # type: ignore[operator]


def _defined_pair(
    before: float | None, after: float | None, what: str
) -> tuple[float, float] | None:
    """``(before, after)`` checked finite, or None when a relative change has no value
    (either is missing, or ``before`` is 0)."""
    b, a = _finite(before, f"{what} before"), _finite(after, f"{what} after")
    if b is None or a is None or b == 0:
        return None
    return b, a


def bleu_improvement_pct(before: float | None, after: float | None) -> float | None:
    """``(BLEU_after − BLEU_before) / BLEU_before × 100``; None when BLEU_before is 0 or missing.

    Example:
        >>> bleu_improvement_pct(20.0, 30.0)
        50.0
    """
    pair = _defined_pair(before, after, "BLEU")
    return None if pair is None else (pair[1] - pair[0]) / pair[0] * 100


def robustness_change_pct(before: float | None, after: float | None) -> float | None:
    """``(R_after / R_before − 1) × 100``; None when either R is missing or R_before is 0.

    Negative means training made the agent more brittle.

    Example:
        >>> robustness_change_pct(0.5, 0.75)
        50.0
    """
    pair = _defined_pair(before, after, "R")
    return None if pair is None else (pair[1] / pair[0] - 1) * 100


def forgetting_pct(before_score: float | None, after_score: float | None) -> float | None:
    """``(score_before − score_after) / score_before × 100`` on a retention task.

    Positive means the agent forgot; None when the score before is 0 or missing.

    Example:
        >>> forgetting_pct(40.0, 30.0)
        25.0
    """
    pair = _defined_pair(before_score, after_score, "score")
    return None if pair is None else (pair[0] - pair[1]) / pair[0] * 100


def undefined_reason(name: str, before: float | None, after: float | None) -> str | None:
    """Why a change figure is undefined (the text of a ``notes`` entry), or None if defined.

    Example:
        >>> undefined_reason("R change", 0.0, 0.5)
        'R change is undefined: the value before is 0 (a relative change from 0 has no value)'
    """
    if before is None:
        return f"{name} is undefined: the value before is missing"
    if after is None:
        return f"{name} is undefined: the value after is missing"
    if before == 0:
        return f"{name} is undefined: the value before is 0 (a relative change from 0 has no value)"
    return None
