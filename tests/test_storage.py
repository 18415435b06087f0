"""Study storage: mirroring run folders, and bad storage or Ray addresses failing up front."""

from __future__ import annotations

import os
import socket

import pytest

pytest.importorskip("pyarrow")

from rewardgym.errors import ConfigError, UnknownNameError  # noqa: E402
from rewardgym.evaluation.study import run_study  # noqa: E402
from rewardgym.evaluation.study_config import load_study_config  # noqa: E402
from rewardgym.storage import Storage, StorageError  # noqa: E402


def _tree(folder) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_push_mirrors_a_run_folder_and_pull_brings_it_back(tmp_path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints" / "step-000001").mkdir(parents=True)
    (run / "checkpoints" / "step-000001" / "model.bin").write_bytes(b"one")
    (run / "checkpoints" / "step-000001" / "COMPLETE").write_text("")
    (run / "metrics.jsonl").write_text('{"update": 0}\n')
    (run / ".lock").write_text("pid")  # hidden: locks and half-written checkpoints stay behind
    storage = Storage(tmp_path / "storage")
    storage.push(run, "runs/a/t/0")
    expected = {k: v for k, v in _tree(run).items() if k != ".lock"}
    assert _tree(tmp_path / "storage" / "runs/a/t/0") == expected
    # the trainer prunes step 1 and writes step 2; metrics grow
    (run / "checkpoints" / "step-000002").mkdir()
    (run / "checkpoints" / "step-000002" / "model.bin").write_bytes(b"two")
    (run / "checkpoints" / "step-000002" / "COMPLETE").write_text("")
    for name in ("model.bin", "COMPLETE"):
        (run / "checkpoints" / "step-000001" / name).unlink()
    (run / "checkpoints" / "step-000001").rmdir()
    (run / "metrics.jsonl").write_text('{"update": 0}\n{"update": 1}\n')
    storage.push(run, "runs/a/t/0")
    mirrored = tmp_path / "storage" / "runs/a/t/0"
    assert _tree(mirrored) == {k: v for k, v in _tree(run).items() if k != ".lock"}
    assert not (mirrored / "checkpoints" / "step-000001").exists()
    back = tmp_path / "back"
    assert storage.pull("runs/a/t/0", back) and _tree(back) == _tree(mirrored)
    assert not storage.pull("runs/none", tmp_path / "none")
    storage.write_text("records/x.json", "{}")
    assert storage.exists("records/x.json") and storage.read_text("records/x.json") == "{}"


def test_an_unknown_storage_scheme_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(StorageError, match=r"cannot use study storage 's4://bucket/x'.*s3://"):
        Storage("s4://bucket/x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: no read-only folder")
def test_a_read_only_storage_is_refused(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with pytest.raises(StorageError, match=r"is not writable"):
        Storage(folder).check_writable()


def test_a_storage_that_cannot_be_written_fails_before_any_run(random_model_dir, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # storage below a file cannot be created, even by root
    study = _tiny_study(random_model_dir, storage=str(blocker / "storage"))
    with pytest.raises(StorageError, match=r"study storage .* is not writable"):
        run_study(study, out=tmp_path / "s", log=lambda line: None)
    assert not (tmp_path / "s" / "before").exists()  # nothing was evaluated or trained


def test_an_unreachable_ray_address_fails_in_seconds(random_model_dir, tmp_path) -> None:
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    study = _tiny_study(random_model_dir, executor="ray", ray_address=f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match=rf"cannot reach Ray at ray_address '127.0.0.1:{port}'"):
        run_study(study, out=tmp_path / "s", log=lambda line: None)
    assert not (tmp_path / "s" / "before").exists()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"ray_num_cpus": 2}, ConfigError, r"ray_num_cpus 2 differs from threads 1"),
        ({"ray_resources": {"slot": 0}}, ConfigError, r"ray_resources must map custom"),
        ({"storage": ""}, ConfigError, r"storage must be a folder path or a URI"),
        ({"storag": "x"}, UnknownNameError, r"did you mean 'storage'"),
    ],
)
def test_bad_cluster_options(random_model_dir, options, error, match) -> None:
    with pytest.raises(error, match=match):
        load_study_config(_tiny_study(random_model_dir, **options))


def _tiny_study(model: str, **options) -> dict:
    return {
        "name": "tiny",
        "tasks": ["arithmetic"],
        "model": model,
        "seeds": [0],
        "baseline": "a",
        "schemes": {"a": "speed_only"},
        "train": {"updates": 1, "prompts_per_update": 4, "group_size": 2, "max_new_tokens": 4},
        "evaluation": {"n_examples": 4, "noise": []},
        **options,
    }
