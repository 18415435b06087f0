"""The headline metrics, one registry for the study and its report: the results.json key, the
label, the number format, and which direction is better (None: neither).

Adding a headline metric is one row here, its value in ``study.summarise_run`` and its source
in ``definitions.SOURCES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# -- what the headline table shows ---------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One headline row: results.json key, label, how its numbers are printed, and whether
    higher is better (True), lower is (False) or neither (None: no "beats baseline")."""

    key: str
    label: str
    fmt: Callable[[float], str]
    higher_is_better: bool | None = None


def _fixed(digits: int, sign: bool = False) -> Callable[[float], str]:
    def fmt(value: float) -> str:
        text = f"{value:{'+' if sign else ''}.{digits}f}"
        # "-0.0" reads as a sign error in a table
        return text.replace("-0." + "0" * digits, "0." + "0" * digits).replace(
            "+0." + "0" * digits, "0." + "0" * digits
        )

    return fmt


def _sci(value: float) -> str:
    return f"{value:.3g}"


HEADLINE: tuple[Metric, ...] = (
    # Rows on the task's primary metric, named after it; hidden when it is BLEU (rows below).
    Metric("quality_improvement_pct", "{metric} improvement (%)", _fixed(1, sign=True), True),
    Metric("final_quality", "Final {metric} (0-100)", _fixed(2), True),
    Metric("bleu_improvement_pct", "BLEU improvement (%)", _fixed(1, sign=True), True),
    Metric("robustness_change_pct", "Robustness change (%)", _fixed(1, sign=True), True),
    Metric(
        "grad_variance_change_pct",
        "Gradient variance change vs baseline (%)",
        _fixed(1, True),
        False,
    ),
    Metric("compute_waste_pct", "Compute waste (%)", _fixed(1), False),
    Metric("final_bleu", "Final BLEU", _fixed(2), True),
    Metric("final_chrf", "Final chrF", _fixed(2), True),
    Metric("completion_length", "Mean completion length (tokens)", _fixed(1)),
    Metric("entropy_bits", "Entropy (bits)", _fixed(2)),
    Metric("monitor_alerts", "Monitor alerts", _fixed(1), False),
    Metric("forgetting_pct", "Forgetting (%)", _fixed(1, sign=True), False),
    Metric("flops_per_bleu_point", "FLOPs per BLEU point gained", _sci, False),
    Metric("train_reward_last", "Training reward (last fifth)", _fixed(3)),
)
_LABELS = {m.key: m.label for m in HEADLINE}


PROBABILITY_NOTE = (
    "P(beats baseline): the share of (scheme seed, baseline seed) pairs in which the scheme is "
    "better, ties counting half; better means higher for BLEU improvement, robustness change, "
    "final BLEU and chrF, and lower for gradient variance change, compute waste, alerts, "
    "forgetting and FLOPs per BLEU point. 0.5 is a coin flip."
)
