"""The source design's claims about its mitigations, next to what a study measured.

The design this gym follows claims that replaying 25 % of prior data gives 12 % higher
retention, and that confidence weighting the replay gives 27 % less knowledge drift. A study
whose schemes differ only in those options measures both; :func:`claim_rows` finds the pairs
of schemes from the study's own configuration, so any study that has them gets the table.

Example:
    >>> [row.claim for row in claim_rows(study)]
    ['replay 25 % of prior data: retention', 'confidence-weighted replay: knowledge drift']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rewardgym.evaluation.report.load import StudyFiles
from rewardgym.evaluation.report.tables import Table, _finite
from rewardgym.evaluation.stats import relative_change


@dataclass(frozen=True)
class ClaimRow:
    """One claim beside its measurement: ``change`` = (mean of ``scheme`` / mean of
    ``against`` − 1) × 100 with its 95 % CI, or None with ``why``."""

    claim: str
    figure: str
    claimed_pct: float
    scheme: str
    against: str
    change: tuple[float, float, float] | None
    why: str = ""

    @property
    def verdict(self) -> str:
        """held / same direction, CI spans 0 / reversed / not measured."""
        if self.change is None:
            return "not measured"
        mean, low, high = self.change
        same = (mean > 0) == (self.claimed_pct > 0)
        if low <= 0 <= high:
            return "same direction, CI spans 0" if same else "opposite direction, CI spans 0"
        return "held" if same else "reversed"


def _options(value: Any) -> dict[str, Any]:
    return (value.get("train") or {}) if isinstance(value, dict) and "reward" in value else {}


def _reward(value: Any) -> Any:
    return value.get("reward") if isinstance(value, dict) and "reward" in value else value


def _find(
    schemes: dict[str, Any], test: Callable[[dict[str, Any]], bool], reward: Any
) -> str | None:
    return next(
        (name for name, v in schemes.items() if _reward(v) == reward and test(_options(v))), None
    )


def _values(study: StudyFiles, scheme: str, key: str) -> list[float]:
    return [
        v
        for r in study.results.get("runs", [])
        if r.get("scheme") == scheme and (v := _finite(r.get(key))) is not None
    ]


def _row(
    study: StudyFiles, claim: str, figure: str, claimed: float, scheme: str, against: str,
    key: str,
) -> ClaimRow:  # fmt: skip
    ours, theirs = _values(study, scheme, key), _values(study, against, key)
    change = relative_change(ours, theirs)
    why = ""
    if change is None:
        why = (
            f"no {key} values"
            if not ours or not theirs
            else f"mean {key} of {against} is <= 0: no relative change"
        )
    return ClaimRow(claim, figure, claimed, scheme, against, change, why)


def claim_rows(study: StudyFiles) -> list[ClaimRow]:
    """The claims this study can test: each needs a retention task and the pair of schemes
    (same reward; replay_share 0 against 0.25; confidence weighting off against on)."""
    config = study.results.get("config") or {}
    if not (config.get("evaluation") or {}).get("retention_task"):
        return []
    schemes = config.get("schemes") or {}
    rows = []
    for reward in dict.fromkeys(_reward(v) for v in schemes.values()):
        plain = _find(schemes, lambda o: not o.get("replay_share") and not o.get("kl_coef"), reward)
        replay = _find(
            schemes,
            lambda o: o.get("replay_share") == 0.25 and not o.get("replay_confidence_weighting"),
            reward,
        )
        weighted = _find(
            schemes,
            lambda o: o.get("replay_share") == 0.25 and o.get("replay_confidence_weighting"),
            reward,
        )
        if plain and replay:
            rows.append(
                _row(study, "replay 25 % of prior data: retention",
                     "retention score after training", 12.0, replay, plain, "retention_after")
            )  # fmt: skip
        if replay and weighted:
            rows.append(
                _row(study, "confidence-weighted replay: knowledge drift",
                     "forgetting (%) of the retention task", -27.0, weighted, replay,
                     "forgetting_pct")
            )  # fmt: skip
    return rows


CLAIMS_NOTE = (
    "Change = (mean over the scheme's seeds / mean over the compared scheme's seeds − 1) × 100, "
    "95 % bootstrap CI resampling each scheme's seeds; held: the claimed direction with a CI "
    "that excludes 0."
)


def claims_table(study: StudyFiles) -> Table:
    """The claims beside the measured change (no rows when the study cannot test them)."""
    rows = []
    for row in claim_rows(study):
        if row.change is None:
            measured = f"n/a ({row.why})"
        else:
            mean, low, high = row.change
            measured = f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"
        rows.append([row.claim, row.figure, f"{row.scheme} vs {row.against}",
                     f"{row.claimed_pct:+.0f}", measured, row.verdict])  # fmt: skip
    columns = ["claim", "figure", "schemes", "claimed change (%)", "measured change (%)",
               "verdict"]  # fmt: skip
    return Table(columns, rows)
