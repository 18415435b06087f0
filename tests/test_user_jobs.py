"""A user's own task, reward and model, from the command line as from Python: task files and
plugins, gym ids for registered tasks, re-evaluating runs with another reward, reward modules
beside the user, and command-line options that behave as documented."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import gymnasium as gym
import pytest

from rewardgym import __version__
from rewardgym.cli import TRAIN_OPTION_GROUPS, build_parser
from rewardgym.cli import main as cli_main
from rewardgym.envs.tasks import Example, Task, base, load_task_jsonl, make_task, register_task
from rewardgym.errors import ConfigError, UnknownNameError

REVERSE = [("a b c", "c b a"), ("one two", "two one"), ("red blue green", "green blue red")]


def write_reverse_task(path: Path, n: int = 24, newline: str = "\n", bom: bool = False) -> Path:
    """A word-reversal task as JSONL: ``rev: <words> =>`` with the words reversed."""
    lines = []
    for i in range(n):
        words, reversed_words = REVERSE[i % len(REVERSE)]
        prompt = f"rev{i}: {words} =>"
        lines.append(json.dumps({"prompt": prompt, "reference": reversed_words}))
    data = newline.join(lines).encode("utf-8")
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + data)
    return path


def _train(model_dir: str, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", model_dir, "--out", str(out), "--updates", "1",
            "--set", "max_new_tokens=4", "--set", "eval_examples=2",
            "--set", "prompts_per_update=2", "--set", "group_size=2",
            "--set", "progress=false", "--monitors", "none", *extra]  # fmt: skip


# -- tasks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("newline", "bom"), [("\n", False), ("\r\n", True)])
def test_jsonl_with_a_byte_order_mark_and_crlf_loads(tmp_path, newline, bom) -> None:
    path = write_reverse_task(tmp_path / "rev.jsonl", newline=newline, bom=bom)
    task = load_task_jsonl(path)
    assert sum(task.sizes().values()) == 24
    assert all(ex.reference in {r for _, r in REVERSE} for ex in task.split("train"))


def test_make_task_takes_a_jsonl_path(tmp_path) -> None:
    path = write_reverse_task(tmp_path / "rev.jsonl")
    task = make_task(str(path), primary_metric="exact_match")
    assert task.name == "rev" and task.primary_metric == "exact_match"
    assert make_task(str(path), primary_metric="exact_match") is task  # cached
    with pytest.raises(Exception, match="task data file not found"):
        make_task(str(tmp_path / "missing.jsonl"))


def test_a_registered_task_gets_its_gym_ids() -> None:
    examples = [Example(f"say {i} =>", str(i)) for i in range(3)]

    @register_task("say_number", override=True)
    def make_say(seed: int = 0) -> Task:
        return Task("say_number", {"train": examples, "validation": examples, "test": examples})

    from rewardgym.envs import env_ids

    try:
        assert {"rewardgym/SayNumber-v0", "rewardgym/SayNumber-Token-v0"} <= set(env_ids())
        env = gym.make("rewardgym/SayNumber-v0", reward="exact_match")
        obs, info = env.reset(seed=0)
        assert obs.startswith("say ")
        env.close()
    finally:  # other tests list the registered tasks
        base._REGISTRY.pop("say_number", None)


class _FakeEntryPoint:
    def __init__(self, name: str, value: str, target) -> None:
        self.name, self.value, self._target = name, value, target

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


def test_task_plugins_load_lazily_by_entry_point(monkeypatch) -> None:
    examples = [Example(f"plug {i} =>", str(i)) for i in range(3)]

    def make_plugged(seed: int = 0) -> Task:
        return Task("plugged", {"train": examples, "validation": examples, "test": examples})

    points = {
        "plugged": _FakeEntryPoint("plugged", "mypkg.tasks:make_plugged", make_plugged),
        "broken": _FakeEntryPoint("broken", "mypkg.broken:make", ImportError("no module mypkg")),
    }
    monkeypatch.setattr(base, "_plugin_entry_points", lambda: points)
    try:
        assert {"plugged", "broken"} <= set(base.list_tasks())
        assert "plugged" not in base._REGISTRY  # nothing imported until it is asked for
        assert make_task("plugged").split("test")[0].reference == "0"
        with pytest.raises(ConfigError, match=r"task plugin 'broken' \(mypkg.broken:make.*fail"):
            make_task("broken")
    finally:
        base._REGISTRY.pop("plugged", None)


def test_the_entry_point_group_is_read_from_installed_metadata(monkeypatch) -> None:
    seen = []

    def entry_points(group: str):
        seen.append(group)
        return []

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    assert "translate" in base.list_tasks()
    assert seen == ["rewardgym.tasks"]


# -- quality metrics ---------------------------------------------------------------------------


def reversed_words(hyps, refs):
    """Share of answers whose words are the reference's, in any order, 0-100."""
    same = [sorted(h.split()) == sorted(r.split()) for h, r in zip(hyps, refs, strict=True)]
    return 100.0 * sum(same) / len(same)


def test_a_quality_metric_module_spec_works_from_the_command_line(
    random_model_dir, tmp_path, monkeypatch, capsys
) -> None:
    (tmp_path / "mymetrics_cwd.py").write_text(
        "def same_words(hyps, refs):\n"
        "    same = [sorted(h.split()) == sorted(r.split()) for h, r in zip(hyps, refs)]\n"
        "    return 100.0 * sum(same) / len(same)\n",
        encoding="utf-8",
    )
    write_reverse_task(tmp_path / "rev.jsonl")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    metric = "mymetrics_cwd:same_words"
    argv = _train(random_model_dir, out, "--task", "rev.jsonl", "--reward", "chrf",
                  "--set", f"task_kwargs={{primary_metric: '{metric}'}}")  # fmt: skip
    assert cli_main(argv) == 0
    argv = ["evaluate", str(out), "--noise", "none", "--n-examples", "3", "--max-new-tokens", "4"]
    assert cli_main(argv) == 0
    result = json.loads((out / "eval" / "test.json").read_text(encoding="utf-8"))
    hyps = (out / "eval" / "test.hyps.txt").read_text(encoding="utf-8").splitlines()
    refs = (out / "eval" / "test.refs.txt").read_text(encoding="utf-8").splitlines()
    assert result["metric"] == metric and result["quality"] == reversed_words(hyps, refs)
    with pytest.raises(ConfigError, match=r"cannot import module 'nomodule_here'"):
        make_task(str(tmp_path / "rev.jsonl"), primary_metric="nomodule_here:f")


# -- the command line --------------------------------------------------------------------------


def test_train_on_a_task_file_and_evaluate_it_from_elsewhere(
    random_model_dir, tmp_path, monkeypatch, capsys
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_reverse_task(data / "rev.jsonl")
    monkeypatch.chdir(data)
    out = tmp_path / "runs" / "rev"
    assert cli_main(_train(random_model_dir, out, "--task", "rev.jsonl", "--reward", "chrf")) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["task"] == str((data / "rev.jsonl").resolve())
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    argv = ["evaluate", str(out), "--noise", "none", "--n-examples", "2", "--max-new-tokens", "4"]
    assert cli_main(argv) == 0
    assert "rev/test (2 examples)" in capsys.readouterr().out


def test_evaluate_rescores_with_another_reward(random_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert cli_main(_train(random_model_dir, out, "--task", "arithmetic")) == 0
    capsys.readouterr()
    argv = ["evaluate", str(out), "--noise", "none", "--n-examples", "2", "--max-new-tokens", "4",
            "--reward", '{"composite": {"exact_match": 0.5, "completion": 0.5}}']  # fmt: skip
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    (written,) = (out / "eval").glob("reward-spec-*/test.json")  # beside the run's own result
    assert f"saved {written}" in printed
    result = json.loads(written.read_text())
    assert set(result["reward"]["components"]) == {"exact_match", "completion"}


def test_a_reward_module_in_the_current_folder_is_found(
    random_model_dir, tmp_path, monkeypatch, capsys
) -> None:
    (tmp_path / "myrewards_cwd.py").write_text(
        "def short(prompts, completions, **kw):\n"
        "    return [1.0 / (1 + len(c)) for c in completions]\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    argv = _train(random_model_dir, out, "--task", "arithmetic", "--reward", "myrewards_cwd:short")
    assert cli_main(argv) == 0
    assert str(tmp_path) not in sys.path  # searched for the import only


def test_audit_takes_a_json_composite(capsys) -> None:
    spec = '{"composite": {"bleu": 0.5, "speed": 0.5}}'
    argv = ["audit", "--task", "translate", "--reward", spec, "--n-examples", "8", "--json"]
    assert cli_main(argv) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["n_examples"] == 8


def test_set_and_a_flag_for_the_same_option_is_an_error(tmp_path, capsys) -> None:
    argv = ["train", "--updates", "2", "--set", "updates=1", "--out", str(tmp_path / "o")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "--updates and --set updates=... both set updates; give each option once" in err
    assert not (tmp_path / "o").exists()


def test_resume_reuses_the_saved_config(random_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    first = _train(random_model_dir, out, "--task", "arithmetic", "--reward", "length")
    assert cli_main(first) == 0
    resume = ["train", "--out", str(out), "--resume", "--monitors", "none"]
    assert cli_main([*resume, "--updates", "2"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["updates"], saved["reward"], saved["model"]) == (2, "length", random_model_dir)
    capsys.readouterr()
    assert cli_main([*resume, "--reward", "chrf"]) == 2
    assert "['reward'] differ from config.json" in capsys.readouterr().err


def test_train_help_lists_every_option_with_its_default(capsys) -> None:
    import dataclasses

    from rewardgym.agents.config import TrainConfig

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        assert f"  {f.name} (default " in text, f.name
    for title in TRAIN_OPTION_GROUPS:
        assert f"\n{title}:\n" in text


def test_version_and_python_dash_m() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rewardgym", "--version"], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == f"rewardgym {__version__}"


def test_bare_study_prints_its_plan_and_runs_nothing(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["study"]) == 0
    text = capsys.readouterr().out
    assert "study speed_vs_balanced: 9 runs" in text and "--yes" in text
    assert not (tmp_path / "studies").exists()


def test_list_models_reads_the_registry(capsys) -> None:
    assert cli_main(["list", "models"]) == 0
    assert capsys.readouterr().out.split()[:2] == ["smollm2-135m", "tiny"]


def test_unknown_task_names_the_file_option() -> None:
    with pytest.raises(UnknownNameError) as info:
        make_task("reverse")
    assert str(info.value).startswith("unknown task 'reverse'. Valid tasks: ")
    assert str(info.value).endswith(". Or give the path of a .jsonl task file.")
