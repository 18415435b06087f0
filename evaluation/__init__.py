"""Evaluation: the monitors and the harness (evaluate, audit, studies, reports, folders of runs).

It sits above agents and drives them; the meters it reads (text metrics, gradient noise,
FLOPs) live in ``agents/meters``, below everything that measures with them. pyproject.toml's
import-linter contracts enforce the order. Names are imported lazily.

Example:
    >>> import rewardgym
    >>> result = rewardgym.run_study("speed_vs_balanced", out="studies/svb")
"""

from __future__ import annotations

from rewardgym._lazy import lazy_getattr

# `evaluate` is deliberately not here: it is also a submodule's name (rewardgym.evaluate is
# the function; rewardgym.evaluation.evaluate is the module).
_EXPORTS = {
    "EvalConfig": "rewardgym.evaluation.eval_config",
    "EvalResult": "rewardgym.evaluation.evaluate",
    "run_study": "rewardgym.evaluation.study",
    "StudyResult": "rewardgym.evaluation.study",
    "write_report": "rewardgym.evaluation.report",
    "write_folder_report": "rewardgym.evaluation.run_folder",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
