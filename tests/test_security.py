"""Security rules (docs/security.md): nothing we load is unpickled, YAML is
safe-loaded, remote code is never trusted implicitly, reports escape model output under a strict
CSP, local Ray starts no dashboard. Payload tests prove the payload never ran (its marker file
does not appear)."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from rewardgym.agents.checkpoint import load_checkpoint, save_checkpoint
from rewardgym.agents.config import TrainConfig
from rewardgym.cli import main as cli_main
from rewardgym.errors import CheckpointError, ConfigError, ModelLoadError
from rewardgym.evaluation.study_config import load_study_config

PACKAGE = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _checkpoint(tmp_path: Path) -> tuple[Path, torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    return save_checkpoint(tmp_path / "run", 1, model, opt, state={"update": 1}), model, opt


def test_optimizer_file_with_a_pickle_payload_is_refused(tmp_path) -> None:
    path, model, opt = _checkpoint(tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"optimizer": Payload(marker), "rng": None}, path / "optimizer.pt")
    with pytest.raises(CheckpointError, match=r"cannot be loaded safely \(torch.load weights_only"):
        load_checkpoint(path, model, opt)
    assert not marker.exists()


def test_raw_pickle_as_optimizer_file_is_refused(tmp_path) -> None:
    path, model, opt = _checkpoint(tmp_path)
    marker = tmp_path / "pwned"
    (path / "optimizer.pt").write_bytes(pickle.dumps(Payload(marker)))
    with (
        pytest.warns(UserWarning, match="pickle protocol"),
        pytest.raises(CheckpointError, match="it was not executed"),
    ):
        load_checkpoint(path, model, opt)
    assert not marker.exists()


def test_weights_file_with_a_pickle_payload_is_refused(tmp_path) -> None:
    path, model, opt = _checkpoint(tmp_path)
    marker = tmp_path / "pwned"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(Payload(marker), path / "model.safetensors")
    with pytest.raises(CheckpointError, match="is not a valid safetensors file"):
        load_checkpoint(path, model, opt)
    assert not marker.exists()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_trainer_state_file_with_a_pickle_payload_is_refused(tmp_path) -> None:
    path, model, opt = _checkpoint(tmp_path)
    marker = tmp_path / "pwned"
    (path / "state.json").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError, match=r"cannot read .*state.json"):
        load_checkpoint(path, model, opt)
    assert not marker.exists()


def test_sb3_weights_with_a_pickle_payload_are_refused(tmp_path) -> None:
    from rewardgym.agents.sb3 import WEIGHTS_FILE, _read_weights

    marker = tmp_path / "pwned"
    torch.save(Payload(marker), tmp_path / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="is not a safetensors file"):
        _read_weights(tmp_path, {})
    assert not marker.exists()


PYTHON_TAG = "task: !!python/object/apply:os.mkdir ['{marker}']\n"


def test_yaml_with_a_python_tag_is_refused(tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "cfg.yaml"
    path.write_text(PYTHON_TAG.format(marker=marker))
    with pytest.raises(ConfigError, match="YAML tags that build Python objects are forbidden"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ConfigError, match="python/object/apply:os.mkdir"):
        load_study_config(path)
    assert cli_main(["train", "--config", str(path)]) == 2
    assert "rewardgym train: error: config file" in capsys.readouterr().err
    path.write_text("name: !!python/object:os.mkdir {}\nschemes: {a: speed_only}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study_config(path)
    assert not marker.exists()


def test_command_line_set_values_are_safe_loaded(tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"
    argv = ["train", "--set", f"task=!!python/object/apply:os.mkdir ['{marker}']"]
    assert cli_main(argv) == 2  # refused with a one-line error, never constructed
    assert "YAML tags that build Python objects are forbidden" in capsys.readouterr().err
    assert not marker.exists()


def test_trust_remote_code_is_never_turned_on(random_model_dir, tmp_path, monkeypatch) -> None:
    """A model directory whose config asks for custom code: the code is never imported."""
    import transformers

    from rewardgym.agents.registry import load_policy

    seen: list[dict] = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer,
                transformers.AutoConfig):  # fmt: skip
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            seen.append(kwargs)
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    load_policy(random_model_dir)
    assert seen and all(kw.get("trust_remote_code", False) is False for kw in seen)

    evil = tmp_path / "evil-model"
    evil.mkdir()
    for item in Path(random_model_dir).iterdir():
        (evil / item.name).write_bytes(item.read_bytes())
    marker = tmp_path / "pwned"
    (evil / "evil.py").write_text(f"import os\nos.mkdir({str(marker)!r})\n")
    config = json.loads((evil / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.Evil"}
    (evil / "config.json").write_text(json.dumps(config))
    try:
        load_policy(str(evil))
    except ModelLoadError:
        pass  # refusing the directory is fine too; running its code is not
    assert not marker.exists()


def test_local_ray_starts_without_its_dashboard(random_model_dir, tmp_path, monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    from rewardgym.evaluation import study

    calls: list[dict] = []

    class Stop(Exception):
        pass

    def fake_init(*args, **kwargs):
        calls.append(kwargs)
        raise Stop

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    cfg = load_study_config(
        {"name": "s", "schemes": {"a": "task_only"}, "baseline": "a", "seeds": [0],
         "tasks": ["arithmetic"], "model": random_model_dir, "executor": "ray"}
    )  # fmt: skip
    units = study.expand_units(cfg)
    with pytest.raises(Stop):
        study._run_units(cfg, tmp_path, units, len(units), lambda line: None)
    assert calls == [
        {"address": None, "include_dashboard": False, "log_to_driver": False,
         "configure_logging": False}
    ]  # fmt: skip


# -- static rules over the package source ------------------------------------------------------


def _sources() -> list[Path]:
    skip = {".venv", "tests", ".cache", "build", "studies", "runs"}
    return [
        p
        for p in PACKAGE.rglob("*.py")
        if not skip & set(p.relative_to(PACKAGE).parts) and "egg-info" not in str(p)
    ]


@pytest.mark.parametrize(
    ("pattern", "rule"),
    [
        (r"pickle\.loads?\(|cloudpickle\.load|dill\.load|import dill", "no pickle loading"),
        (r"yaml\.load\(|yaml\.unsafe_load|yaml\.full_load|Loader=yaml\.(?!Safe)", "safe_load only"),
        (r"trust_remote_code\s*=\s*True", "trust_remote_code stays False"),
        (r"weights_only\s*=\s*False", "torch.load(weights_only=True) only"),
        (r"\b(PPO|A2C|DQN|SAC)\.load\(", "never PPO.load"),
        (r"include_dashboard\s*=\s*True", "no dashboard"),
        (r"(?<![.\w])(eval|exec)\(", "no eval/exec"),
    ],
)
def test_source_follows_the_security_rules(pattern, rule) -> None:
    hits = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in _sources()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(pattern, line) and not line.lstrip().startswith("#")
    ]
    assert not hits, f"{rule}: {hits}"


def test_every_torch_load_is_weights_only() -> None:
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in match.group(1), f"{path}: {match.group(0)}"


def test_templates_never_mark_text_safe() -> None:
    for path in PACKAGE.glob("evaluation/templates/*"):
        text = re.sub(r"\{#.*?#\}", "", path.read_text(encoding="utf-8"), flags=re.S)
        assert "|safe" not in text.replace(" ", ""), path
        assert "autoescape false" not in text, path


# -- the HTML report ---------------------------------------------------------------------------

XSS = "<script>alert(1)</script>"


def _poison(study_dir: Path) -> None:
    """Put an attack string into every completion and prompt the report could show."""
    for path in study_dir.rglob("*.json"):
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            continue
        for key in ("samples", "noisy_samples"):
            for sample in data.get(key) or []:
                for field in ("completion", "prompt", "reference"):
                    if field in sample:
                        sample[field] = f"{XSS} | {field}"
        path.write_text(json.dumps(data))


def test_html_report_escapes_model_output_and_sets_a_strict_csp(random_model_dir, tmp_path):
    report = pytest.importorskip("rewardgym.evaluation.report")
    from rewardgym.evaluation.study import run_study

    cfg = {
        "name": "xss", "tasks": ["arithmetic"], "model": random_model_dir, "seeds": [0],
        "baseline": "a", "schemes": {"a": "task_only"}, "monitors": "none",
        "train": {"updates": 1, "prompts_per_update": 4, "group_size": 2, "max_new_tokens": 4,
                  "eval_examples": 4, "tensorboard": False},
        "evaluation": {"n_examples": 4, "severities": [0.1], "noise": ["char_drop"],
                       "max_new_tokens": 4, "n_samples": 2},
    }  # fmt: skip
    result = run_study(cfg, out=tmp_path / "study", log=lambda line: None)
    _poison(result.study_dir)
    report.write_report(result.study_dir, tmp_path / "report")
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    csp = re.search(r'<meta[^>]+http-equiv="Content-Security-Policy"[^>]+content="([^"]+)"', html)
    assert csp, "no Content-Security-Policy meta tag"
    policy = csp.group(1)
    assert "default-src 'none'" in policy or "default-src 'self'" in policy
    assert "unsafe-eval" not in policy and "script-src 'unsafe-inline'" not in policy
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert XSS not in markdown
    for line in markdown.splitlines():
        if line.startswith("|") and "alert(1)" in line:
            assert "\\| completion" in line or "\\| prompt" in line or "\\| reference" in line
