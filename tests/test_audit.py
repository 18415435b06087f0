"""The reward audit on the real tasks: speed_only is gamed by the empty answer, balanced is not."""

from __future__ import annotations

import json

import pytest

from rewardgym.cli import main
from rewardgym.errors import ConfigError
from rewardgym.evaluation.audit import CANNED_POLICIES, audit_reward, format_audit

TASKS = ["translate", "summarize", "arithmetic"]


@pytest.mark.parametrize("task", TASKS)
def test_speed_only_is_won_by_the_empty_completion(task: str) -> None:
    result = audit_reward(task, "speed_only", n_examples=50)
    assert result.exploits[0] == "empty"
    assert result.verdict.startswith("EXPLOITABLE: empty")


@pytest.mark.parametrize("task", TASKS)
def test_balanced_reference_beats_every_exploit(task: str) -> None:
    result = audit_reward(task, "balanced", n_examples=50)
    assert result.exploits == []
    assert result.verdict == "OK: the reference beats every canned exploit"
    oracle = result.oracle.mean
    assert all(s.mean < oracle for s in result.scores if s.policy != "oracle")


def test_table_lists_every_policy_and_component() -> None:
    text = format_audit(audit_reward("translate", "balanced", n_examples=20))
    for name in [*CANNED_POLICIES, "completion", "fidelity", "speed"]:
        assert name in text
    assert text.splitlines()[0] == "reward 'balanced' on task 'translate' (20 examples)"


def test_audit_command_line(capsys) -> None:
    assert (
        main(["audit", "--task", "arithmetic", "--reward", "speed_only", "--n", "20", "--json"])
        == 0
    )
    (result,) = json.loads(capsys.readouterr().out)
    assert result["exploits"][0] == "empty" and result["n_examples"] == 20
    assert (
        main(["audit", "--task", "arithmetic", "--reward", "speed_only", "--n", "20", "--strict"])
        == 1
    )
    assert main(["audit", "--task", "arithmetc"]) == 2
    assert "did you mean 'arithmetic'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="n_examples must be a positive int, got 0"):
        audit_reward("translate", "balanced", n_examples=0)
