"""The headline metrics, one registry for the study and its report: per row the results.json
key, the label, the number format, which direction is better, the run file and field a reader
opens to check it, and what an n/a cell means when no data-specific reason applies.

Adding a headline metric is one row here plus its value in ``study.summarise_run``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# -- what the headline table shows ---------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a headline value comes from: the run file (``RUN`` = runs/<scheme>/<task>/<seed>,
    ``SPLIT`` = the evaluation split), the field, and how to recompute it."""

    file: str
    field: str
    recompute: str = ""


@dataclass(frozen=True)
class Metric:
    """One headline row.

    Attributes:
        key: the results.json key (per run and under "summary").
        label: the row's name; ``{metric}`` in it is the task's primary metric.
        fmt: how a value is printed.
        higher_is_better: True, False, or None (neither: no "beats baseline").
        source: the file and field behind the value.
        undefined: what an n/a cell means, unless the data gives a more specific reason.
        repeats_bleu_row: hide the row when the primary metric is BLEU (a BLEU row says it).
    """

    key: str
    label: str
    fmt: Callable[[float], str]
    higher_is_better: bool | None
    source: Source
    undefined: str = "no seed has a value"
    repeats_bleu_row: bool = False


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


_EVAL = "RUN/eval/SPLIT.json"
_BOTH_EVALS = "RUN/eval/SPLIT.json and before/<task>/SPLIT.json"
_METRICS = "RUN/metrics.jsonl"
_LAST_FIFTH = "mean over the last fifth of the updates"
_NO_RETENTION = "no retention task in the study: not measured"

HEADLINE: tuple[Metric, ...] = (
    # Rows on the task's primary metric, named after it; hidden when it is BLEU (rows below).
    Metric(
        "quality_improvement_pct",
        "{metric} improvement (%)",
        _fixed(1, sign=True),
        True,
        Source(
            _BOTH_EVALS,
            '"quality" (the task\'s primary metric, named in "metric") of each',
            "(after − before) / before × 100",
        ),
        repeats_bleu_row=True,
    ),
    Metric(
        "final_quality",
        "Final {metric} (0-100)",
        _fixed(2),
        True,
        Source(_EVAL, '"quality" (the metric named in "metric")'),
        repeats_bleu_row=True,
    ),
    Metric(
        "bleu_improvement_pct",
        "BLEU improvement (%)",
        _fixed(1, sign=True),
        True,
        Source(_BOTH_EVALS, '"bleu" of each', "(after − before) / before × 100"),
    ),
    Metric(
        "robustness_change_pct",
        "Robustness change (%)",
        _fixed(1, sign=True),
        True,
        Source(
            _BOTH_EVALS,
            '"robustness" of each (R; the B(n,s) are under "noise")',
            "(R_after / R_before − 1) × 100",
        ),
        undefined="no noise sweep (R missing): robustness change undefined",
    ),
    Metric(
        "grad_variance_change_pct",
        "Gradient variance change vs baseline (%)",
        _fixed(1, sign=True),
        False,
        Source(
            "RUN/metrics.jsonl and the baseline's metrics.jsonl (same task and seed)",
            '"grad/nu" of every update',
            "(median ν / baseline median ν − 1) × 100",
        ),
        undefined="no ν for this seed or its baseline seed, or baseline ν = 0: change undefined",
    ),
    Metric(
        "compute_waste_pct",
        "Compute waste (%)",
        _fixed(1),
        False,
        Source(_METRICS, '"compute_waste_pct" of the last update'),
    ),
    Metric(
        "flops_total",
        "Compute (FLOPs per run)",
        _sci,
        False,
        Source(_METRICS, '"flops/total" of the last update'),
    ),
    Metric(
        "final_bleu",
        "Final BLEU",
        _fixed(2),
        True,
        Source(_EVAL, '"bleu"', "sacrebleu RUN/eval/SPLIT.refs.txt -i RUN/eval/SPLIT.hyps.txt -b"),
    ),
    Metric(
        "final_chrf",
        "Final chrF",
        _fixed(2),
        True,
        Source(
            _EVAL,
            '"chrf"',
            "sacrebleu RUN/eval/SPLIT.refs.txt -i RUN/eval/SPLIT.hyps.txt -m chrf -b",
        ),
    ),
    Metric(
        "completion_length",
        "Mean completion length (tokens)",
        _fixed(1),
        None,
        Source(_EVAL, '"completion_tokens"'),
    ),
    Metric(
        "entropy_bits",
        "Entropy (bits)",
        _fixed(2),
        None,
        Source(_METRICS, '"entropy_bits"', _LAST_FIFTH),
        undefined="no entropy logged (greedy decoding or no tokens)",
    ),
    Metric(
        "monitor_alerts",
        "Monitor alerts",
        _fixed(1),
        False,
        Source(_METRICS, '"alerts"', "count over all updates"),
    ),
    Metric(
        "forgetting_pct",
        "Forgetting (%)",
        _fixed(1, sign=True),
        False,
        Source(
            _BOTH_EVALS,
            '"retention" → "quality" of each (the retention task\'s primary metric)',
            "(before − after) / before × 100",
        ),
        undefined=_NO_RETENTION,
    ),
    Metric(
        "retention_nll_change",
        "Retention NLL change (nats/token)",
        _fixed(3, sign=True),
        False,
        Source(
            _BOTH_EVALS,
            '"retention" → "nll" of each (the references\' mean per-token NLL)',
            "after − before",
        ),
        undefined=_NO_RETENTION,
    ),
    Metric(
        "mitigation_flops_pct",
        "Mitigation compute (% of FLOPs)",
        _fixed(1),
        False,
        Source(
            _METRICS,
            '"flops/replay" and "flops/reference" of the last update',
            "(replay + reference) / flops/total × 100",
        ),
    ),
    Metric(
        "grad_norm_spikes",
        "Gradient-norm spikes",
        _fixed(1),
        False,
        Source(_METRICS, '"alerts" of monitor gradient_spike', "count over all updates"),
        undefined="the gradient_spike monitor was not on",
    ),
    Metric(
        "flops_per_quality_point",
        "FLOPs per {metric} point gained",
        _sci,
        False,
        Source(
            f"{_METRICS} and {_EVAL}",
            '"flops/total" of the last update; "quality" after and before',
            "flops/total / (Q_after − Q_before)",
        ),
        undefined="no quality gained: FLOPs per point undefined",
    ),
    Metric(
        "train_reward_last",
        "Training reward (last fifth)",
        _fixed(3),
        None,
        Source(_METRICS, '"reward/mean"', _LAST_FIFTH),
    ),
)
_LABELS = {m.key: m.label for m in HEADLINE}


PROBABILITY_NOTE = (
    "P(beats baseline): the share of (scheme seed, baseline seed) pairs in which the scheme is "
    "better, ties counting half; better means higher for BLEU improvement, robustness change, "
    "final BLEU and chrF, and lower for gradient variance change, compute waste, compute, alerts, "
    "forgetting, retention NLL change, mitigation compute, gradient-norm spikes and FLOPs per "
    "point"
    " gained. 0.5 is a coin flip."
)
