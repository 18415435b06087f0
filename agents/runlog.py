"""metrics.jsonl: one JSON object per update, appended line by line and flushed.

A process killed mid-write can leave a torn last line; readers skip it with a warning. On resume
the log is cut back to the updates the checkpoint covers, so each update index appears once.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from rewardgym.errors import RunDataError

#: the training samples of every update, one JSON line each (``rewardgym replay`` reads them)
SAMPLES_FILE = "samples.jsonl"


def _jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats to None (JSON has no NaN)."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class MetricsLog:
    """Appends records to ``metrics.jsonl``; each line is flushed and fsynced as it is written.

    Example:
        >>> log = MetricsLog(tmp_dir / "metrics.jsonl")
        >>> log.append({"update": 0, "reward/mean": 0.5})
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(_jsonable(record), sort_keys=True, allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def truncate_to(self, n_updates: int) -> None:
        """Keep only records of updates ``< n_updates`` (and non-update records before them)."""
        if not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path) if r.get("update", -1) < n_updates]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in kept:
                fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a metrics file; a torn last line is skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                warnings.warn(f"{path}: skipped a torn last line ({number})", stacklevel=2)
                continue
            raise RunDataError(
                f"{path}: line {number} is not valid JSON and is not the last line; the file is "
                "corrupt (restore it or rerun the run)"
            ) from None
    return records


def write_scalars(writer: Any, record: dict[str, Any], step: int) -> None:
    """An update's finite numbers as TensorBoard scalars (flags, text and NaN are left out)."""
    for key, value in record.items():
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and math.isfinite(value):
            writer.add_scalar(key, value, step)
