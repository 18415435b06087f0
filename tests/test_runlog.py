"""metrics.jsonl: torn last lines skipped, resume truncation, corrupt middle lines refused."""

from __future__ import annotations

import pytest

from rewardgym.agents.runlog import MetricsLog, read_metrics
from rewardgym.errors import RunDataError


def test_append_read_and_truncate(tmp_path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for u in range(5):
        log.append({"update": u, "value": float(u), "nan": float("nan")})
    records = read_metrics(log.path)
    assert [r["update"] for r in records] == [0, 1, 2, 3, 4]
    assert records[0]["nan"] is None
    log.truncate_to(3)
    assert [r["update"] for r in read_metrics(log.path)] == [0, 1, 2]


def test_torn_last_line_is_skipped_with_a_warning(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"update": 0}\n{"update": 1}\n{"upda')
    with pytest.warns(UserWarning, match="skipped a torn last line"):
        assert [r["update"] for r in read_metrics(path)] == [0, 1]


def test_corrupt_middle_line_is_an_error(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"update": 0}\nnot json\n{"update": 2}\n')
    with pytest.raises(RunDataError, match="line 2 is not valid JSON"):
        read_metrics(path)
