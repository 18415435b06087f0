"""The import layers of pyproject.toml's import-linter contracts hold (function-level imports
included): cli > evaluation > agents > envs > rewards > infrastructure, meters below agents,
no cycle between sibling modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), str(config), "--no-cache"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_every_contract_is_kept() -> None:
    done = _lint(ROOT / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 broken" in done.stdout


def test_a_contract_the_code_breaks_is_reported(tmp_path: Path) -> None:
    """The checker reads the real import graph: layers put upside down fail."""
    config = tmp_path / "contract.toml"
    config.write_text(
        "[tool.importlinter]\n"
        'root_package = "rewardgym"\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "inverted on purpose"\n'
        'type = "layers"\n'
        'layers = ["rewardgym.rewards", "rewardgym.agents"]\n',
        encoding="utf-8",
    )
    done = _lint(config)
    assert done.returncode != 0 and "BROKEN" in done.stdout
