"""Counterfactual replay: a run's training samples re-scored under another reward, no model."""

from __future__ import annotations

import json

import pytest
from conftest import small_train_config

from rewardgym.agents import train
from rewardgym.cli import main as cli_main
from rewardgym.errors import RunDataError
from rewardgym.evaluation.replay import kendall_tau, replay_run


def test_kendall_tau_and_opposite_pairs_by_hand() -> None:
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == (1.0, 0.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == (-1.0, 1.0)
    tau, opposite = kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])  # one of 6 pairs swapped
    assert tau == pytest.approx((5 - 1) / 6) and opposite == pytest.approx(1 / 6)
    assert kendall_tau([1, 1], [0, 1]) == (None, 0.0)  # no order to agree on


@pytest.fixture(scope="module")
def run(random_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "run"
    reward = {"composite": {"exact_match": 0.5, "speed": 0.5}}
    config = small_train_config(random_model_dir, reward=reward, updates=3, out=str(out))
    result = train(config)
    return out, result


def test_every_update_saves_its_samples(run) -> None:
    out, result = run
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [line["update"] for line in lines] == [0, 1, 2]
    for line, metrics in zip(lines, result.metrics, strict=True):
        assert len(line["completion"]) == len(line["reward"]) == 4 * 2  # prompts x group
        assert line["index"][0::2] == line["index"][1::2]  # a group's samples are adjacent
        assert sum(line["reward"]) / 8 == pytest.approx(metrics["reward/mean"])
        assert set(line["components"]) == {"exact_match", "speed"}


def test_replaying_the_runs_own_reward_agrees_with_itself(run) -> None:
    out, result = run
    replay = replay_run(out, {"composite": {"exact_match": 0.5, "speed": 0.5}}, name="own")
    for update, metrics in zip(replay["updates"], result.metrics, strict=True):
        assert update["replayed_mean"] == pytest.approx(metrics["reward/mean"], abs=1e-12)
        assert update["own_mean"] == pytest.approx(metrics["reward/mean"], abs=1e-12)
        assert update["opposite_share"] == 0.0
        assert update["kendall_tau"] in (None, pytest.approx(1.0))
    assert json.loads((out / "replay" / "own.json").read_text()) == replay


def test_replay_under_another_reward_from_the_command_line(run, capsys) -> None:
    out, _ = run
    assert cli_main(["replay", str(out), "--reward", "completion", "--name", "done"]) == 0
    replay = json.loads((out / "replay" / "done.json").read_text())
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for update, line in zip(replay["updates"], lines, strict=True):  # completion = finished
        assert update["replayed_mean"] == pytest.approx(sum(line["finished"]) / 8)
    assert "replayed 3 updates" in capsys.readouterr().out


def test_a_run_without_samples_says_so(run, tmp_path) -> None:
    out, _ = run
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((out / "config.json").read_text())
    with pytest.raises(RunDataError, match=r"has no samples.jsonl: runs save their training"):
        replay_run(old, "exact_match")


def test_a_resumed_run_saves_each_updates_samples_once(random_model_dir, tmp_path) -> None:
    out = tmp_path / "run"
    train(small_train_config(random_model_dir, updates=2, checkpoint_every=1, out=str(out)))
    with open(out / "samples.jsonl", "a", encoding="utf-8") as log:  # an update lost in a crash
        log.write(json.dumps({"update": 2, "index": [], "completion": []}) + "\n")
    config = small_train_config(random_model_dir, updates=3, checkpoint_every=1, out=str(out))
    train(config, resume=True)
    updates = [json.loads(line)["update"] for line in (out / "samples.jsonl").open()]
    assert updates == [0, 1, 2]
