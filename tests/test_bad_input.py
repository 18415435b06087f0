"""Bad input, one test per row of docs/bad-input.md.

Every row checks the typed error, that its message names the bad value and the fix, and, where
the input reaches the command line, that ``rewardgym`` exits with status 2 and one ``error:`` line
(no traceback). Rows that could leave files behind also check that nothing was written.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import hold_run_in_subprocess, small_train_config

import rewardgym  # noqa: F401  (registers the environments)
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.registry import load_policy
from rewardgym.agents.trainer import train
from rewardgym.cli import main as cli_main
from rewardgym.envs.tasks import load_task_jsonl, make_task
from rewardgym.envs.vector_env import TextTaskVectorEnv
from rewardgym.errors import (
    ConfigError,
    EnvInputError,
    ModelLoadError,
    RewardError,
    RewardGymError,
    RunDataError,
    RunLockedError,
    TaskDataError,
    UnknownNameError,
)
from rewardgym.evaluation.study import run_study
from rewardgym.evaluation.study_config import load_study_config
from rewardgym.rewards import make_reward


def _cli_error(capsys, argv: list[str], command: str = "train") -> str:
    """Run ``rewardgym ARGV`` in-process; expect status 2 and one ``error:`` line; return it."""
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    prefix = f"rewardgym {command}: error: "
    assert prefix in err, err
    message = err[err.index(prefix) :].rstrip("\n")
    assert "\n" not in message, f"error message spans several lines:\n{message}"
    return message[len(prefix) :]


def _train_argv(model: str, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", model, "--task", "arithmetic", "--out", str(out), *extra]


# -- config files and values -------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["missing", "users_files"])
def test_resume_of_a_folder_that_is_not_a_run_is_refused_and_writes_nothing(
    random_model_dir, tmp_path, capsys, folder
) -> None:
    out = tmp_path / folder
    if folder == "users_files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    message = _cli_error(capsys, _train_argv(random_model_dir, out, "--resume"))
    what = "does not exist" if folder == "missing" else "holds no run (no config.json)"
    assert message == (
        f"cannot resume {str(out)!r}: it {what}; point --out at the folder of the run to "
        "continue, or drop --resume to start a new run"
    )
    if folder == "missing":
        assert not out.exists()
    else:  # the user's folder is exactly as it was
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
        assert (out / "notes.txt").read_text() == "mine"


def test_malformed_yaml(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("task: [arithmetic\n")
    with pytest.raises(ConfigError, match=r"config file '.*bad.yaml' is not valid YAML"):
        TrainConfig.from_yaml(path)


def test_malformed_yaml_on_the_command_line_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("task: [arithmetic\n")
    message = _cli_error(capsys, ["train", "--config", str(path), "--out", str(tmp_path / "o")])
    assert "line 2" in message and not (tmp_path / "o").exists()


def test_unknown_config_key(tmp_path, capsys) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("task: arithmetic\nupdate: 3\n")
    with pytest.raises(UnknownNameError, match=r"unknown option 'update'; did you mean 'updates'"):
        TrainConfig.from_yaml(path)
    message = _cli_error(capsys, _train_argv("tiny", tmp_path / "o", "--set", "lrr=0.1"))
    assert message.startswith("unknown option 'lrr'; did you mean 'lr'? (")  # no list of 50
    assert not (tmp_path / "o").exists()


def test_malformed_set_value_on_the_command_line(tmp_path, capsys) -> None:
    message = _cli_error(capsys, _train_argv("tiny", tmp_path / "o", "--set", "lr=[1"))
    assert "--set" in message and "lr" in message


def test_wrong_type(tmp_path, capsys) -> None:
    with pytest.raises(ConfigError, match=r"option 'updates' must be int, got str 'ten'"):
        TrainConfig.from_dict({"updates": "ten"})
    with pytest.raises(ConfigError, match=r"option 'tensorboard' must be bool, got int 1"):
        TrainConfig.from_dict({"tensorboard": 1})
    message = _cli_error(capsys, _train_argv("tiny", tmp_path / "o", "--set", "lr=fast"))
    assert message == "command line: option 'lr' must be float, got str 'fast'"


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("lr", -0.001, r"lr must be a finite number in \(0.0, inf\], got -0.001"),
        ("lr", math.nan, r"lr must be a finite number in \(0.0, inf\], got nan"),
        ("max_new_tokens", 0, r"max_new_tokens must be an int >= 1, got 0"),
        ("micro_batches", 2, r"micro_batches must be an int >= 4 \(gradient variance needs K"),
        ("top_p", 1.5, r"top_p must be a finite number in \(0.0, 1.0\], got 1.5"),
    ],
)
def test_out_of_range_value(key, value, match) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{key: value})


def test_out_of_range_value_on_the_command_line(tmp_path, capsys) -> None:
    out = tmp_path / "o"
    assert _cli_error(capsys, _train_argv("tiny", out, "--set", "lr=-0.001")) == (
        "lr must be a finite number in (0.0, inf], got -0.001"
    )
    assert _cli_error(capsys, _train_argv("tiny", out, "--set", "max_new_tokens=0")) == (
        "max_new_tokens must be an int >= 1, got 0"
    )
    assert not out.exists()


def test_zero_seeds(tmp_path, capsys) -> None:
    study = {"name": "s", "schemes": {"a": "speed_only"}, "baseline": "a", "seeds": []}
    with pytest.raises(ConfigError, match=r"seeds must be a non-empty list of distinct ints"):
        load_study_config(study)
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nschemes: {a: speed_only}\nbaseline: a\nseeds: []\n")
    message = _cli_error(capsys, ["study", str(path), "--out", str(tmp_path / "o")], "study")
    assert message == "seeds must be a non-empty list of distinct ints, got []"
    assert not (tmp_path / "o").exists()


# -- unknown names ("did you mean") ------------------------------------------------------------


def test_unknown_task(random_model_dir, tmp_path, capsys) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown task 'arithmetc'; did you mean 'arith"):
        make_task("arithmetc")
    argv = ["train", "--model", random_model_dir, "--task", "arithmetc"]
    assert _cli_error(capsys, argv + ["--out", str(tmp_path / "o")]).startswith(
        "unknown task 'arithmetc'; did you mean 'arithmetic'? Valid tasks: arithmetic, summarize,"
    )


def test_unknown_reward(random_model_dir, tmp_path, capsys) -> None:
    with pytest.raises(
        UnknownNameError, match=r"unknown reward 'balancd'; did you mean 'balanced'"
    ):
        make_reward("balancd")
    argv = _train_argv(random_model_dir, tmp_path / "o", "--reward", "balancd")
    assert re.match(  # other test modules register rewards too, so the count is not pinned
        r"unknown reward 'balancd'; did you mean 'balanced'\? \(\d+ valid rewards\.\)",
        _cli_error(capsys, argv),
    )


def test_unknown_model(tmp_path, capsys) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown model 'tinyy'; did you mean 'tiny'"):
        load_policy("tinyy")
    assert _cli_error(capsys, _train_argv("tinyy", tmp_path / "o")).startswith(
        "unknown model 'tinyy'; did you mean 'tiny'? Valid models: smollm2-135m, tiny."
    )


def test_unknown_algorithm(tmp_path, capsys) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown algorithm 'grop'; did you mean 'grpo'"):
        TrainConfig(algo="grop")
    argv = _train_argv("tiny", tmp_path / "o", "--algo", "grop")
    assert _cli_error(capsys, argv) == (
        "unknown algorithm 'grop'; did you mean 'grpo'? Valid algorithms: grpo, ppo, reinforce."
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "flags", [["--task", "arithmetc"], ["--reward", "balancd"], ["--model", "tinyy"]]
)
def test_a_bad_name_leaves_no_run_directory(random_model_dir, tmp_path, capsys, flags) -> None:
    out = tmp_path / "o"
    argv = ["train", "--model", random_model_dir, "--task", "arithmetic", "--out", str(out), *flags]
    _cli_error(capsys, argv)
    assert not out.exists()


# -- task data (JSONL) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b'{"prompt": "2+2 =>"}\n', r"bad.jsonl:1: missing field 'reference'"),
        (b'{"prompt": "a", "reference": "b"}\n{"prompt": "c", \n', r"bad.jsonl:2: bad JSON"),
        (
            b'{"prompt": "\xff\xfe", "reference": "x"}\n',
            r"bad.jsonl:1: not valid UTF-8 \(byte 0xff",
        ),
        (b"", r"bad.jsonl: file has no examples; expected one JSON object per line"),
        (b"\n  \n", r"bad.jsonl: file has no examples"),
        (b'["prompt", "reference"]\n', r"bad.jsonl:1: "),
    ],
    ids=["missing-field", "bad-json", "non-utf8", "empty", "blank", "not-an-object"],
)
def test_bad_jsonl(tmp_path, content, match) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(TaskDataError, match=match):
        load_task_jsonl(path)


def test_non_utf8_config(tmp_path, capsys) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"task: \xff\xfe\n")
    assert _cli_error(capsys, ["train", "--config", str(path)]) == (
        f"config file {str(path)!r} is not UTF-8 text: invalid start byte"
    )


# -- reward functions that break the contract --------------------------------------------------


def _raises(prompts, completions, **kw):
    raise ZeroDivisionError("boom")


def _nan(prompts, completions, **kw):
    return [0.5, float("nan")]


def _inf(prompts, completions, **kw):
    return [math.inf, 0.5]


def _string(prompts, completions, **kw):
    return [0.5, "1.0"]


def _short(prompts, completions, **kw):
    return [1.0]


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (
            _raises,
            r"reward '_raises' raised ZeroDivisionError: boom on sample 0 \(completion 'a'\)",
        ),
        (_nan, r"reward '_nan' returned nan for sample 1: expected a finite float; return None"),
        (_inf, r"reward '_inf' returned inf for sample 0: expected a finite float"),
        (_string, r"reward '_string' returned '1.0' for sample 1: expected a finite float or None"),
        (_short, r"reward '_short' returned 1 values for 2 completions; return one value"),
    ],
    ids=["raises", "nan", "inf", "string", "wrong-length"],
)
def test_broken_reward_function(fn, match) -> None:
    kwargs = {"references": ["a", "b"]}
    with pytest.raises(RewardError, match=match):
        make_reward(fn)(["p", "q"], ["a", "b"], **kwargs)
    skipping = make_reward(fn, on_error="skip")
    values = skipping(["p", "q"], ["a", "b"], **kwargs)
    assert None in values and skipping.n_skipped >= 1  # turned into "does not apply", counted
    out = skipping.score(["p", "q"], ["a", "b"], **kwargs)
    assert np.isfinite(out.total).all()


def _all_nan(prompts, completions, **kw):
    return [math.nan] * len(completions)


def test_broken_reward_in_an_environment() -> None:
    env = gym.make("rewardgym/Arithmetic-v0", reward=_all_nan)
    env.reset(seed=0)
    with pytest.raises(RewardError, match=r"reward '_all_nan' returned nan for sample 0"):
        env.step("4")


# -- environment actions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (5, r"action must be a str or a dict with a 'text' key, got int: 5"),
        (None, r"action must be a str or a dict with a 'text' key, got NoneType"),
        (b"4", r"action must be a str or a dict with a 'text' key, got bytes"),
        ({"text": 4}, r"a structured action needs 'text' as a str, got 4"),
        ({"text": "4", "tokens": 1}, r"unknown action key\(s\) \['tokens'\]"),
        ("x" * 10_000, r"action is 10000 characters, over the limit of \d+; truncate"),
    ],
    ids=["int", "none", "bytes", "dict-text-int", "dict-unknown-key", "over-long"],
)
def test_bad_env_action(action, match) -> None:
    env = gym.make("rewardgym/Arithmetic-v0", reward="task_only")
    env.reset(seed=0)
    with pytest.raises(EnvInputError, match=match):
        env.step(action)
    vec = TextTaskVectorEnv("arithmetic", "task_only", n_prompts=2)
    vec.reset(seed=0)
    with pytest.raises(EnvInputError, match=match):
        vec.step(["4", action])


def test_a_step_after_the_episode_ended() -> None:
    env = gym.make("rewardgym/Arithmetic-v0", reward="task_only")
    env.reset(seed=0)
    assert env.step("4")[2]  # terminated
    with pytest.raises(EnvInputError, match=r"^the episode has ended \(terminated or truncated\); "
                       r"call reset\(\) before step\(\)$"):  # fmt: skip
        env.step("4")


# -- models and run data -----------------------------------------------------------------------


def test_model_directory_without_weights(random_model_dir, tmp_path, capsys) -> None:
    folder = tmp_path / "no-weights"
    folder.mkdir()
    (folder / "config.json").write_text(Path(random_model_dir, "config.json").read_text())
    with pytest.raises(ModelLoadError, match=r"has no weight files \(\*.safetensors or pytorch_mo"):
        load_policy(str(folder))
    assert _cli_error(capsys, _train_argv(str(folder), tmp_path / "o")).endswith(
        "save the model with model.save_pretrained(dir)"
    )


def _newer_study_dir(tmp_path: Path) -> tuple[Path, Path]:
    study = tmp_path / "study"
    study.mkdir()
    body = "name: s\nschemes: {a: speed_only}\nbaseline: a\nseeds: [0]\n"
    (study / "study.yaml").write_text(body + "format_version: 99\n")
    config = tmp_path / "s.yaml"
    config.write_text(body)
    return study, config


def test_study_directory_from_a_newer_format_version(tmp_path, capsys) -> None:
    study, config = _newer_study_dir(tmp_path)
    before = sorted(p.name for p in study.iterdir())
    with pytest.raises(RunDataError, match=r"format_version 99 is newer than this rewardgym .*"
                       r"upgrade rewardgym"):  # fmt: skip
        run_study(str(config), out=study, log=lambda line: None)
    message = _cli_error(capsys, ["study", str(config), "--out", str(study)], "study")
    assert "format_version 99 is newer" in message
    assert sorted(p.name for p in study.iterdir()) == before  # nothing written into it
    assert "format_version: 99" in (study / "study.yaml").read_text()


def test_a_run_another_process_is_writing(random_model_dir, tmp_path, capsys) -> None:
    out, ready = tmp_path / "held", tmp_path / "ready"
    holder = hold_run_in_subprocess(out, ready)
    try:
        message = _cli_error(capsys, _train_argv(random_model_dir, out, "--updates", "1"))
    finally:
        holder.kill()
        holder.wait()
    assert message.startswith(f"run directory {str(out)!r} is being written by pid {holder.pid}")
    assert "wait for it to finish" in message and not (out / "config.json").exists()


def test_newer_format_version_error_names_the_file(tmp_path) -> None:
    study, config = _newer_study_dir(tmp_path)
    with pytest.raises(RunDataError, match="study.yaml"):
        run_study(str(config), out=study, log=lambda line: None)


def test_every_error_is_a_value_error_subclass() -> None:
    for cls in (ConfigError, TaskDataError, RewardError, ModelLoadError, RunDataError,
                RunLockedError, EnvInputError, UnknownNameError):  # fmt: skip
        assert issubclass(cls, RewardGymError) and issubclass(cls, ValueError)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--model", "tinyy", "--task", "arithmetic"], "unknown model 'tinyy'"),
        (["train", "--set", "max_new_tokens=0"], "max_new_tokens must be an int >= 1, got 0"),
    ],
)
@pytest.mark.slow
def test_command_line_exit_status_in_a_real_process(argv, expected) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rewardgym.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and expected in errors[0]


def test_out_into_a_folder_of_the_users_files(random_model_dir, tmp_path, capsys) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "thesis.txt").write_text("mine")
    config = small_train_config(random_model_dir, out=str(folder))
    with pytest.raises(RunDataError, match=r"is not empty and holds no run \(thesis.txt\)"):
        train(config)
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.txt"]  # nothing written
    message = _cli_error(capsys, _train_argv(random_model_dir, folder))
    assert "pass --into-existing" in message
    # a file named as one the run writes is refused even when the user says so
    (folder / "metrics.jsonl").write_text("my own log")
    with pytest.raises(RunDataError, match=r"holds \['metrics.jsonl'\], which a run writes"):
        train(config, into_existing=True)
    assert (folder / "metrics.jsonl").read_text() == "my own log"


@pytest.mark.slow
def test_into_existing_trains_beside_the_users_files(random_model_dir, tmp_path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "thesis.txt").write_text("mine")
    result = train(small_train_config(random_model_dir, out=str(folder)), into_existing=True)
    assert result.updates_done == 2 and (folder / "config.json").is_file()
    assert (folder / "thesis.txt").read_text() == "mine"
