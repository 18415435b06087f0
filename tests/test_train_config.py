"""TrainConfig: validation messages, YAML loading, unknown keys."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from rewardgym.agents.config import TrainConfig
from rewardgym.errors import ConfigError, UnknownNameError


def test_defaults_are_valid_and_round_trip() -> None:
    cfg = TrainConfig()
    assert cfg.batch_size == cfg.prompts_per_update * cfg.group_size
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"lr": -1e-3}, ConfigError, r"lr must be a finite number in \(0.0, inf\], got -0.001"),
        ({"max_new_tokens": 0}, ConfigError, "max_new_tokens must be an int >= 1, got 0"),
        ({"micro_batches": 2}, ConfigError, r"micro_batches must be an int >= 4 \(gradient"),
        ({"algo": "grop"}, UnknownNameError, "unknown algorithm 'grop'; did you mean 'grpo'"),
        ({"prompts_per_update": 3, "group_size": 3}, ConfigError, "cannot be split into"),
        (
            {"algo": "grpo", "group_size": 1, "prompts_per_update": 8},
            ConfigError,
            "group_size must be >= 2",
        ),
        ({"replay_share": 1.0}, ConfigError, "replay_share must be a finite number in"),
        ({"temperature": float("nan")}, ConfigError, "temperature must be a finite number"),
        ({"lr_schedule": "cosin"}, UnknownNameError, "did you mean 'cosine'"),
    ],
)
def test_bad_values_are_rejected_with_the_fix(changes, error, message) -> None:
    with pytest.raises(error, match=message):
        TrainConfig(**changes)


def test_unknown_and_mistyped_keys_are_named() -> None:
    with pytest.raises(
        UnknownNameError,
        match=r"unknown option 'lr_shedule'; did you mean 'lr_schedule'\?.*\(in cfg.yaml\)",
    ):
        TrainConfig.from_dict({"lr_shedule": "cosine"}, source="cfg.yaml")
    with pytest.raises(ConfigError, match="option 'updates' must be int, got str '10'"):
        TrainConfig.from_dict({"updates": "10"}, source="cfg.yaml")
    with pytest.raises(ConfigError, match="option 'progress' must be bool, got int 1"):
        TrainConfig.from_dict({"progress": 1}, source="cfg.yaml")


def test_yaml_file_with_overrides(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("task: arithmetic\nupdates: 7\nreward:\n  composite: {bleu: 1.0}\n")
    cfg = TrainConfig.from_yaml(path, updates=9, seed=None)
    assert (cfg.task, cfg.updates, cfg.seed) == ("arithmetic", 9, 0)
    assert cfg.reward == {"composite": {"bleu": 1.0}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("task: [unclosed\n", "is not valid YAML"),
        ("- a\n- b\n", "must hold a mapping of options, got list"),
        ("!!python/object/apply:os.system ['echo hacked']\n", "YAML tags that build Python "),
    ],
)
def test_bad_yaml_files(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_yaml(path)


def test_missing_and_non_utf8_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"task: caf\xe9\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        TrainConfig.from_yaml(path)


@pytest.mark.parametrize(
    ("text", "value"), [("3e-5", 3e-5), ("1e-3", 1e-3), ("1.0e-4", 1e-4), ("2E+2", 200.0)]
)
def test_yaml_reads_exponent_floats_as_yaml_1_2_does(tmp_path, text: str, value: float) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"lr: {text}\n")
    assert TrainConfig.from_yaml(path).lr == value


def test_safe_yaml_keeps_ints_strings_and_refuses_object_tags() -> None:
    from rewardgym.agents.config import safe_yaml

    assert safe_yaml("a: -1e-2\nn: 3\ns: '1e-3'") == {"a": -0.01, "n": 3, "s": "1e-3"}
    with pytest.raises(yaml.constructor.ConstructorError):
        safe_yaml("x: !!python/object/apply:os.system ['true']")


def test_command_line_set_takes_an_exponent_float() -> None:
    from rewardgym.cli import _overrides

    assert _overrides(["lr=1e-3", "updates=2"]) == {"lr": 1e-3, "updates": 2}


def test_a_misspelt_option_gets_its_match_without_the_whole_list() -> None:
    from rewardgym.errors import UnknownNameError

    with pytest.raises(UnknownNameError) as caught:
        TrainConfig.from_dict({"lrr": 1e-3})
    message = str(caught.value)
    assert "did you mean 'lr'?" in message
    options = len(dataclasses.fields(TrainConfig))
    assert f"({options} valid options.)" in message and "mask_truncated_completions" not in message
