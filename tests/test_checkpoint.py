"""Checkpoints: exact round trip, atomicity under faults, pruning, versioning, no unpickling."""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
import textwrap
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch

from rewardgym.agents import checkpoint as ckpt
from rewardgym.agents.checkpoint import (
    capture_rng_state,
    checkpoint_step,
    latest_checkpoint,
    list_checkpoints,
    load_callbacks_state,
    load_checkpoint,
    read_state,
    restore_rng_state,
    save_checkpoint,
)
from rewardgym.errors import CheckpointError, ConfigError


class TiedLM(torch.nn.Module):
    """A toy LM whose output projection is tied to its input embedding."""

    def __init__(self, vocab: int = 11, dim: int = 6) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.body = torch.nn.Linear(dim, dim)
        self.head = torch.nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(self.embed(ids))))


def _trained(seed: int = 0, steps: int = 3) -> tuple[TiedLM, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = TiedLM()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        _step(model, opt)
    return model, opt


def _step(model: TiedLM, opt: torch.optim.Optimizer) -> None:
    ids = torch.arange(10).reshape(2, 5) % 11
    loss = torch.nn.functional.cross_entropy(model(ids).reshape(-1, 11), ids.reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()


def _draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_round_trip_restores_parameters_optimizer_and_rng(tmp_path: Path) -> None:
    model, opt = _trained()
    state = {"update": 3, "best_bleu": 12.5, "history": [1, 2], "note": None}
    path = save_checkpoint(tmp_path, 3, model, opt, state=state)
    after_save = _draws()

    fresh = TiedLM()
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    random.seed(99)  # scramble every stream before loading
    np.random.seed(99)
    torch.manual_seed(99)
    assert load_checkpoint(path, fresh, fresh_opt) == state
    assert _draws() == after_save  # RNG streams continue exactly where they were saved

    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert fresh.head.weight is fresh.embed.weight  # still tied
    torch.testing.assert_close(fresh_opt.state_dict(), opt.state_dict(), rtol=0, atol=0)
    # one more identical step gives identical parameters
    _step(model, opt)
    _step(fresh, fresh_opt)
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_files_and_formats(tmp_path: Path) -> None:
    model, opt = _trained()
    path = save_checkpoint(tmp_path, 12, model, opt, state={"a": 1})
    assert path == tmp_path / "checkpoints" / "step-000012"
    assert sorted(p.name for p in path.iterdir()) == [
        "COMPLETE",
        "model.safetensors",
        "optimizer.pt",
        "state.json",
    ]
    record = json.loads((path / "state.json").read_text())
    assert record["format_version"] == 1 and record["step"] == 12 and record["state"] == {"a": 1}
    payload = torch.load(path / "optimizer.pt", weights_only=True)  # loads with weights_only
    assert set(payload) == {"optimizer", "rng"}
    from safetensors.torch import load_file

    assert set(load_file(path / "model.safetensors")) <= set(model.state_dict())
    assert read_state(path)["step"] == 12 and checkpoint_step(path) == 12


def test_restore_rng_false_keeps_current_streams(tmp_path: Path) -> None:
    model = TiedLM()
    path = save_checkpoint(tmp_path, 0, model, state={})
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    load_checkpoint(path, model, restore_rng=False)
    assert torch.equal(torch.rand(2), expected)


def test_rng_helpers_round_trip_gauss_cache() -> None:
    random.gauss(0, 1)  # leaves a cached second gaussian in python's state
    np.random.standard_normal()  # and in numpy's
    state = capture_rng_state()
    want = (random.gauss(0, 1), float(np.random.standard_normal()), torch.randn(2).tolist())
    restore_rng_state(state)
    assert (random.gauss(0, 1), float(np.random.standard_normal()), torch.randn(2).tolist()) == want


def test_latest_ignores_incomplete_and_tmp_dirs(tmp_path: Path) -> None:
    model = TiedLM()
    save_checkpoint(tmp_path, 5, model, state={})
    root = tmp_path / "checkpoints"
    torn = root / "step-000009"  # a later folder whose writing never finished
    torn.mkdir()
    (torn / "state.json").write_text('{"format_version": 1, "state": {}}')
    stale = root / ".step-000010.abc.tmp"  # left by a killed writer, complete inside
    stale.mkdir()
    (stale / "COMPLETE").write_text("")
    (root / "notes").mkdir()
    assert latest_checkpoint(tmp_path) == root / "step-000005"
    assert list_checkpoints(tmp_path) == [root / "step-000005"]
    with pytest.raises(CheckpointError, match=r"is incomplete \(no COMPLETE marker\)"):
        load_checkpoint(torn, model)
    save_checkpoint(tmp_path, 6, model, state={})
    assert not stale.exists()  # the next save clears leftovers
    assert latest_checkpoint(tmp_path / "nothing-here") is None


def test_crash_before_commit_leaves_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, opt = _trained()
    first = save_checkpoint(tmp_path, 1, model, opt, state={"update": 1})
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    _step(model, opt)

    def crash(tmp: Path) -> None:
        assert (tmp / "COMPLETE").is_file() and tmp.name.startswith(".") and _is_tmp(tmp)
        raise RuntimeError("simulated crash before commit")

    monkeypatch.setattr(ckpt, "_before_commit", crash)
    with pytest.raises(RuntimeError, match="simulated crash before commit"):
        save_checkpoint(tmp_path, 2, model, opt, state={"update": 2})
    assert latest_checkpoint(tmp_path) == first
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000001"]
    fresh = TiedLM()
    assert load_checkpoint(first, fresh) == {"update": 1}
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, saved[name])


def _is_tmp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def test_process_killed_before_commit(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from rewardgym.agents import checkpoint as ckpt
        model = torch.nn.Linear(3, 3)
        ckpt.save_checkpoint({str(tmp_path)!r}, 1, model, state={{"update": 1}})
        ckpt._before_commit = lambda tmp: os.kill(os.getpid(), signal.SIGKILL)
        ckpt.save_checkpoint({str(tmp_path)!r}, 2, model, state={{"update": 2}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    root = tmp_path / "checkpoints"
    leftovers = [p.name for p in root.iterdir() if p.name != "step-000001"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".step-000002.")
    assert leftovers[0].endswith(".tmp")
    assert latest_checkpoint(tmp_path) == root / "step-000001"
    assert load_checkpoint(root / "step-000001", torch.nn.Linear(3, 3)) == {"update": 1}


def test_keep_last_prunes_oldest_after_commit(tmp_path: Path) -> None:
    model = TiedLM()
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, state={"update": step}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000004", "step-000005"]
    save_checkpoint(tmp_path, 6, model, state={}, keep_last=None)
    save_checkpoint(tmp_path, 7, model, state={}, keep_last=None)
    assert len(list_checkpoints(tmp_path)) == 4
    # re-saving an existing step (after a rollback) replaces it and is never pruned itself
    path = save_checkpoint(tmp_path, 4, model, state={"again": True}, keep_last=1)
    assert load_checkpoint(path, model) == {"again": True}
    assert list_checkpoints(tmp_path)[-1] == tmp_path / "checkpoints" / "step-000007"
    assert (tmp_path / "checkpoints" / "step-000004").is_dir()
    assert not any(_is_tmp(p) for p in (tmp_path / "checkpoints").iterdir())


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, TiedLM(), state={})
    record = json.loads((path / "state.json").read_text())
    record["format_version"] = 2
    (path / "state.json").write_text(json.dumps(record))
    with pytest.raises(
        CheckpointError,
        match=r"has format_version 2, but this rewardgym reads format_version 1; upgrade rewardgym",
    ):
        load_checkpoint(path, TiedLM())


def _write_marker(path: str) -> None:
    Path(path).write_text("pwned")


class Evil:
    """Unpickling this object runs ``_write_marker``: the proof that a loader executed code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_write_marker, (str(self.marker),))


def test_pickle_payload_is_live(tmp_path: Path) -> None:
    """Control: the payload used below really writes its marker when unpickled."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Evil(marker)))  # noqa: S301 - deliberate, on our own object
    assert marker.read_text() == "pwned"


def test_pickled_weights_are_refused_unexecuted(tmp_path: Path) -> None:
    model = TiedLM()
    path = save_checkpoint(tmp_path, 1, model, state={})
    marker = tmp_path / "marker"
    torch.save({"weight": Evil(marker)}, path / "model.safetensors")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        CheckpointError, match=r"is not a valid safetensors file .* never unpickles"
    ):
        load_checkpoint(path, model)
    (path / "model.safetensors").write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(CheckpointError, match=r"is not a valid safetensors file"):
        load_checkpoint(path, model)
    assert not marker.exists()
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])


def test_pickled_optimizer_payload_is_refused_unexecuted(tmp_path: Path) -> None:
    model, opt = _trained()
    path = save_checkpoint(tmp_path, 1, model, opt, state={})
    marker = tmp_path / "marker"
    torch.save({"optimizer": Evil(marker), "rng": None}, path / "optimizer.pt")
    with pytest.raises(CheckpointError, match=r"cannot be loaded safely .* it was not executed"):
        load_checkpoint(path, TiedLM(), torch.optim.AdamW(TiedLM().parameters()))
    assert not marker.exists()


def test_mismatches_are_explained(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, TiedLM(), state={})
    with pytest.raises(CheckpointError, match=r"has no optimizer state; load it with optimizer"):
        model = TiedLM()
        load_checkpoint(path, model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match=r"into TiedLM: .* same config"):
        load_checkpoint(path, TiedLM(vocab=12))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"state for step 1 is not JSON-serialisable"):
        save_checkpoint(tmp_path, 1, TiedLM(), state={"t": torch.ones(1)})
    assert list_checkpoints(tmp_path) == []
    with pytest.raises(ConfigError, match=r"keep_last must be an int >= 1 or None .*, got 0"):
        save_checkpoint(tmp_path, 1, TiedLM(), state={}, keep_last=0)
    with pytest.raises(ConfigError, match=r"checkpoint step must be an int >= 0, got -1"):
        save_checkpoint(tmp_path, -1, TiedLM(), state={})


def test_published_folder_is_not_private(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, TiedLM(), state={})
    assert os.stat(path).st_mode & 0o755 == 0o755


# -- callback (monitor) state --------------------------------------------------------------


def test_callbacks_state_round_trips_in_its_own_file(tmp_path: Path) -> None:
    model, opt = _trained()
    callbacks = {
        "gradient_spike:0": {"n_alerts": 2, "rollback_pending": False, "history": [1.0, 1.5]},
        "norm_drift:0": {"start": torch.rand(3), "recent_updates": [4], "recent_norms": []},
        "attention_reversal:0": {"signs": torch.rand(2, 3) > 0.5, "pairs": [(0.1, 20.0)]},
    }
    path = save_checkpoint(tmp_path, 5, model, opt, state={"update": 5}, callbacks_state=callbacks)
    assert (path / "callbacks.pt").is_file()
    torch.load(path / "callbacks.pt", weights_only=True)  # loads with weights_only
    loaded = load_callbacks_state(path)
    torch.testing.assert_close(loaded, callbacks, rtol=0, atol=0)
    assert load_checkpoint(path, TiedLM()) == {"update": 5}


def test_checkpoint_without_callbacks_state_still_loads(tmp_path: Path) -> None:
    """Checkpoints written before callback state was saved have no callbacks.pt."""
    model, opt = _trained()
    path = save_checkpoint(tmp_path, 3, model, opt, state={"update": 3})
    assert not (path / "callbacks.pt").exists()
    assert load_callbacks_state(path) == {}
    fresh = TiedLM()
    assert load_checkpoint(path, fresh, torch.optim.AdamW(fresh.parameters())) == {"update": 3}


def test_callbacks_state_that_weights_only_refuses_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"callbacks_state\['gradient_spike:0'\]\['history'\] is a deque"
    ):
        save_checkpoint(
            tmp_path, 1, TiedLM(), callbacks_state={"gradient_spike:0": {"history": deque([1.0])}}
        )
    with pytest.raises(CheckpointError, match=r"\['value'\] is a float64"):
        save_checkpoint(tmp_path, 1, TiedLM(), callbacks_state={"a:0": {"value": np.float64(1)}})
    assert list_checkpoints(tmp_path) == []


def test_pickled_callbacks_state_is_refused_unexecuted(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, TiedLM(), state={}, callbacks_state={})
    marker = tmp_path / "marker"
    torch.save({"gradient_spike:0": Evil(marker)}, path / "callbacks.pt")
    with pytest.raises(CheckpointError, match=r"cannot be loaded safely .* it was not executed"):
        load_callbacks_state(path)
    assert not marker.exists()
    torch.save([1.0], path / "callbacks.pt")
    with pytest.raises(CheckpointError, match=r"holds a list, not a mapping of callback states"):
        load_callbacks_state(path)
