"""What a new user meets first: the package ships its data, and the warm start shows progress.

The first ``load_tiny`` trains for minutes; without a progress line it looks hung. Only the
training shows it: the flag is no config field, so it cannot change the warm start's cache key.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from conftest import SMALL_TINY

from rewardgym.agents.registry import load_policy
from rewardgym.agents.sft import SFTConfig, train_sft
from rewardgym.agents.tiny import load_tiny
from rewardgym.envs.tasks import make_task
from rewardgym.evaluation.study_config import shipped_studies

ROOT = Path(__file__).resolve().parent.parent
SMALL = {k: v for k, v in SMALL_TINY.items() if k != "steps"}  # these tests set their own
SFT_STEPS = 3


def _setuptools_table() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; 3.10 lacks a TOML reader
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subfolder_of_a_package_is_declared() -> None:
    """A folder under a package that is not listed is a namespace package setuptools warns it
    would ignore, and its data files would leave the wheel with it."""
    table = _setuptools_table()
    packages = set(table["packages"])
    missing = []
    for package in packages - {"rewardgym"}:  # the root maps to the repository itself
        folder = ROOT.joinpath(*package.split(".")[1:])
        for child in folder.iterdir():
            if child.is_dir() and child.name != "__pycache__":
                if f"{package}.{child.name}" not in packages:
                    missing.append(f"{package}.{child.name}")
    assert not missing, f"add these to [tool.setuptools] packages: {sorted(missing)}"
    assert set(table["package-data"]) <= packages


def test_study_yamls_and_template_are_package_data() -> None:
    evaluation = resources.files("rewardgym.evaluation")
    assert "speed_vs_balanced" in shipped_studies()
    assert (evaluation / "templates" / "report.html.j2").is_file()


def _sft(policy, progress: bool) -> None:
    examples = make_task("arithmetic").split("train")[:32]
    config = SFTConfig(steps=SFT_STEPS, batch_size=4, warmup_steps=1, log_every=1)
    train_sft(policy, examples, config, progress=progress, label="warm start check")


def test_train_sft_shows_a_progress_line_when_asked(random_model_dir, capsys) -> None:
    policy = load_policy(random_model_dir, device="cpu")
    _sft(policy, progress=True)
    err = capsys.readouterr().err
    assert "warm start check" in err
    assert f"{SFT_STEPS}/{SFT_STEPS}" in err
    assert "loss=" in err


def test_train_sft_is_silent_without_progress(random_model_dir, capsys) -> None:
    policy = load_policy(random_model_dir, device="cpu")
    capsys.readouterr()  # transformers draws its own bar while loading the weights
    _sft(policy, progress=False)
    assert capsys.readouterr() == ("", "")


def test_load_tiny_shows_progress_by_default_but_not_on_a_cache_hit(tmp_path, capsys) -> None:
    first = load_tiny("translate", cache_dir=tmp_path, device="cpu", steps=2, **SMALL)
    err = capsys.readouterr().err
    assert "warm start tiny (translate)" in err and "2/2" in err
    assert "BLEU" in err
    again = load_tiny("translate", cache_dir=tmp_path, device="cpu", steps=2, **SMALL)
    assert again.info["cached"] and "warm start" not in capsys.readouterr().err
    # progress is load_tiny's own argument, not a config override, so the key is the same
    quiet = load_tiny(
        "translate", cache_dir=tmp_path, device="cpu", steps=2, progress=False, **SMALL
    )
    assert quiet.info["cache_dir"] == first.info["cache_dir"]
