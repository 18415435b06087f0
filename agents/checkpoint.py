"""Atomic, pickle-free checkpoints (docs/guarantees.md, docs/security.md).

A checkpoint is a folder ``RUN_DIR/checkpoints/step-NNNNNN/`` holding

- ``model.safetensors``: the model's ``state_dict`` (tied tensors stored once, as
  ``safetensors.torch.save_model`` does, and re-tied on load); or, for a model with a LoRA
  adapter (:mod:`rewardgym.agents.lora`), the adapter alone as ``adapter_model.safetensors``
  and ``adapter_config.json`` in peft's format: the frozen base weights are the run's model;
- ``optimizer.pt``: ``{"optimizer": optimizer.state_dict() | None, "rng": {...} | None}`` with
  tensors and plain containers only, read back with ``torch.load(..., weights_only=True)``;
- ``state.json``: ``{"format_version": 1, "step": N, "saved_at": ..., "state": {...}}``;
- ``callbacks.pt``: the callbacks' (monitors') ``state_dict``, tensors and plain containers only,
  read back with ``weights_only=True``; absent when none was given (and in older checkpoints);
- ``COMPLETE``: written last; a folder without it is not a checkpoint.

Writing goes to a hidden temporary folder beside the target (``.step-NNNNNN.<random>.tmp`` in the
same parent), every file and the folder are fsynced, the folder is renamed into place and the
parent is fsynced. A crash at any point leaves either the old set of checkpoints or the new one,
never a half-written folder that resume would pick up; leftover ``.tmp`` folders are ignored and
removed by the next save. Only after the new checkpoint is in place are the oldest complete ones
beyond ``keep_last`` deleted.

Nothing is unpickled: a weights file that is not safetensors, or an ``optimizer.pt`` carrying
objects ``weights_only`` refuses, raises ``CheckpointError`` without running any of its code.

Example:
    >>> import tempfile, torch
    >>> model = torch.nn.Linear(2, 2)
    >>> path = save_checkpoint(Path(tempfile.mkdtemp()), 3, model, state={"update": 3})
    >>> path.name, load_checkpoint(path, model)
    ('step-000003', {'update': 3})
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from rewardgym.agents import lora
from rewardgym.errors import CheckpointError, ConfigError
from rewardgym.fileio import fsync_dir, fsync_file, replace_dir

__all__ = [
    "FORMAT_VERSION",
    "capture_rng_state",
    "checkpoint_step",
    "list_checkpoints",
    "last_healthy_checkpoint",
    "latest_checkpoint",
    "load_callbacks_state",
    "load_checkpoint",
    "read_state",
    "restore_rng_state",
    "save_checkpoint",
]

FORMAT_VERSION = 1
WEIGHTS, OPTIMIZER, STATE, COMPLETE = "model.safetensors", "optimizer.pt", "state.json", "COMPLETE"
CALLBACKS = "callbacks.pt"
# scalars torch.load(weights_only=True) reads back; exact types, since numpy's float64 is a float
_PLAIN_SCALARS = (str, int, float, bool, type(None))
CHECKPOINTS_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{6,})$")

#: Test hook: called with the temporary folder after everything is written and fsynced, just
#: before the rename that publishes the checkpoint. A fault test sets it to raise or to kill the
#: process. ``None`` in normal use.
_before_commit: Callable[[Path], None] | None = None


# -- RNG streams ------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Capture the python ``random``, numpy global and torch (CPU, CUDA) RNG states.

    The result holds tensors, ints, floats, strings and None only, so it travels through
    ``torch.save`` / ``torch.load(weights_only=True)``.

    Example:
        >>> state = capture_rng_state(); a = random.random()
        >>> restore_rng_state(state); random.random() == a
        True
    """
    version, internal, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=True)
    out: dict[str, Any] = {
        "python": {
            "version": version,
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "bit_generator": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available():
        out["cuda"] = list(torch.cuda.get_rng_state_all())
    return out


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states captured by ``capture_rng_state``.

    CUDA states are restored when CUDA is available with the same number of devices; otherwise
    they are skipped with a warning (e.g. resuming a GPU run on a CPU machine).

    Example:
        >>> state = capture_rng_state(); a = torch.rand(1)
        >>> restore_rng_state(state); bool(torch.rand(1) == a)
        True
    """
    try:
        py = state["python"]
        random.setstate((py["version"], tuple(int(x) for x in py["internal"]), py["gauss_next"]))
        npy = state["numpy"]
        np.random.set_state(
            (
                npy["bit_generator"],
                npy["keys"].numpy().astype(np.uint32),
                npy["pos"],
                npy["has_gauss"],
                npy["cached_gaussian"],
            )
        )
        torch.set_rng_state(state["torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"the checkpoint's RNG state is malformed ({type(exc).__name__}: {exc}); "
            "load it with restore_rng=False to keep the current RNG streams"
        ) from exc
    cuda = state.get("cuda")
    if cuda:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(
                f"checkpoint has CUDA RNG states for {len(cuda)} device(s) but this machine has "
                f"{torch.cuda.device_count() if torch.cuda.is_available() else 0}; "
                "CUDA random streams are not restored",
                stacklevel=2,
            )


# -- file-system helpers ----------------------------------------------------------------------


def _is_tmp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def checkpoint_step(path: str | os.PathLike[str]) -> int | None:
    """Return the step a checkpoint folder name encodes, or None if it is not one.

    Example:
        >>> checkpoint_step("runs/a/checkpoints/step-000120")
        120
    """
    match = _NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Return the run's complete checkpoints, oldest step first.

    Folders without a ``COMPLETE`` marker and temporary folders are not checkpoints.

    Example:
        >>> list_checkpoints("no/such/run")
        []
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and checkpoint_step(p) is not None and (p / COMPLETE).is_file()
    ]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """Return the complete checkpoint with the highest step, or None when there is none.

    Example:
        >>> latest_checkpoint("no/such/run") is None
        True
    """
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


# -- saving -----------------------------------------------------------------------------------


def last_healthy_checkpoint(
    run_dir: str | os.PathLike[str], at_most: int | None = None
) -> Path | None:
    """The newest checkpoint written after updates that raised no alert, at or before update
    ``at_most`` when given (else, if all kept ones are later, the oldest healthy one kept)."""
    healthy = [p for p in list_checkpoints(run_dir) if read_state(p)["state"].get("healthy", True)]
    if not healthy:
        return None
    if at_most is not None:
        early = [p for p in healthy if (checkpoint_step(p) or 0) <= at_most]
        return early[-1] if early else healthy[0]
    return healthy[-1]


def _state_json(step: int, state: dict[str, Any]) -> str:
    payload = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "state": state,
    }
    try:
        return json.dumps(payload, indent=1, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"trainer state for step {step} is not JSON-serialisable: {exc}; keep only numbers, "
            "strings, bools, None, lists and dicts with string keys in it (tensors go in the "
            "model or optimizer)"
        ) from exc


def _check_plain(value: Any, where: str) -> None:
    """Refuse what ``torch.load(weights_only=True)`` would refuse, before anything is written."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(
                    f"{where} has a {type(key).__name__} key {key!r}; use str or int keys"
                )
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, torch.Tensor) and type(value) not in _PLAIN_SCALARS:
        raise CheckpointError(
            f"{where} is a {type(value).__name__}, which loading with "
            "weights_only=True refuses; keep only tensors, numbers, strings, bools, None, lists, "
            "tuples and dicts in a state_dict (a deque becomes a list)"
        )


def _write_files(
    tmp: Path,
    final: Path,
    model: torch.nn.Module,
    optimizer: Any,
    state_text: str,
    rng: bool,
    callbacks_state: dict[str, Any] | None,
) -> None:
    names = [_write_weights(tmp, model), OPTIMIZER, STATE]
    payload = {
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": capture_rng_state() if rng else None,
    }
    torch.save(payload, tmp / OPTIMIZER)
    (tmp / STATE).write_text(state_text, encoding="utf-8")
    if callbacks_state is not None:
        torch.save(callbacks_state, tmp / CALLBACKS)
        names.append(CALLBACKS)
    for name in names:
        fsync_file(tmp / name)
    # The marker goes last: its presence proves every other file was written and synced.
    (tmp / COMPLETE).write_text(f"{final.name}\n", encoding="utf-8")
    fsync_file(tmp / COMPLETE)
    fsync_dir(tmp)


def _write_weights(tmp: Path, model: torch.nn.Module) -> str:
    """The model's weights, or only its adapter when it has one; the file name written."""
    if not lora.has_adapter(model):
        save_model(model, str(tmp / WEIGHTS))
        return WEIGHTS
    save_file(lora.adapter_state(model), str(tmp / lora.ADAPTER_WEIGHTS), {"format": "pt"})
    config = json.dumps(lora.adapter_config(model), indent=2, sort_keys=True, default=sorted)
    (tmp / lora.ADAPTER_CONFIG).write_text(config, encoding="utf-8")
    fsync_file(tmp / lora.ADAPTER_CONFIG)
    return lora.ADAPTER_WEIGHTS


def _remove_stale_tmp(root: Path) -> None:
    for path in root.iterdir():
        if path.is_dir() and _is_tmp(path) and path.name.startswith(".step-"):
            shutil.rmtree(path, ignore_errors=True)


def _commit(tmp: Path, final: Path) -> None:
    if _before_commit is not None:
        _before_commit(tmp)
    replace_dir(tmp, final)  # re-saving a step after a rollback replaces the old folder


def _prune(root: Path, keep_last: int, newest: Path) -> None:
    complete = list_checkpoints(root.parent)
    keep = set(complete[-keep_last:]) | {newest}
    for path in complete:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)
    fsync_dir(root)


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    state: dict[str, Any] | None = None,
    rng: bool = True,
    keep_last: int | None = 2,
    callbacks_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically into ``run_dir/checkpoints/step-{step:06d}``.

    Args:
        run_dir: the run directory.
        step: the update index; names the folder.
        model: the model whose ``state_dict`` is saved (tied weights stored once).
        optimizer: optional optimizer whose ``state_dict`` is saved.
        state: JSON-serialisable trainer state (returned by ``load_checkpoint``).
        rng: also save the python, numpy and torch RNG states.
        keep_last: how many complete checkpoints to keep (the new one always stays);
            None keeps all.
        callbacks_state: the callbacks' ``state_dict`` (tensors and plain containers), returned
            by ``load_callbacks_state``; None writes no ``callbacks.pt``.

    Returns:
        The checkpoint folder.

    Raises:
        CheckpointError: the state is not JSON-serialisable, the callback state holds an
            object ``weights_only`` loading refuses, or the folder cannot be written (full disk,
            read-only directory); earlier checkpoints are left intact.
        ConfigError: a negative step or a keep_last below 1.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> save_checkpoint(run, 7, torch.nn.Linear(1, 1), state={}).name
        'step-000007'
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"checkpoint step must be an int >= 0, got {step!r}")
    if keep_last is not None and (isinstance(keep_last, bool) or keep_last < 1):
        raise ConfigError(
            f"keep_last must be an int >= 1 or None (keep all), got {keep_last!r}; "
            "keep at least 2 so a rollback has a previous checkpoint"
        )
    state_text = _state_json(step, dict(state or {}))
    if callbacks_state is not None:
        _check_plain(callbacks_state, "callbacks_state")
    root = Path(run_dir) / CHECKPOINTS_DIR
    final = root / f"step-{step:06d}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(root)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.", suffix=".tmp"))
    except OSError as exc:
        raise CheckpointError(
            f"cannot write checkpoint {str(final)!r}: {exc.strerror or exc}; make the run "
            "directory writable or choose another --out"
        ) from exc
    tmp.chmod(0o755)  # mkdtemp makes it private; a published checkpoint is an ordinary folder
    try:
        _write_files(tmp, final, model, optimizer, state_text, rng, callbacks_state)
        _commit(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"cannot write checkpoint {str(final)!r}: {exc.strerror or exc}; free disk space or "
            "make the run directory writable, then resume (earlier checkpoints are intact)"
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep_last is not None:
        _prune(root, keep_last, final)
    return final


# -- loading ----------------------------------------------------------------------------------


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint's ``state.json`` (the whole record, not only ``state``).

    Raises:
        CheckpointError: incomplete checkpoint, unreadable JSON, or an unknown format version.

    Example:
        >>> import tempfile
        >>> path = save_checkpoint(Path(tempfile.mkdtemp()), 1, torch.nn.Linear(1, 1), state={})
        >>> read_state(path)["format_version"]
        1
    """
    path = Path(path)
    if not (path / COMPLETE).is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} is incomplete (no {COMPLETE} marker): it was interrupted "
            "while being written; use latest_checkpoint(run_dir) to find the last complete one"
        )
    try:
        record = json.loads((path / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {str(path / STATE)!r}: {exc}") from exc
    if not isinstance(record, dict) or "format_version" not in record:
        raise CheckpointError(
            f"{str(path / STATE)!r} has no format_version: it is not a rewardgym checkpoint"
        )
    version = record["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format_version {version!r}, but this rewardgym reads "
            f"format_version {FORMAT_VERSION}; upgrade rewardgym (pip install -U rewardgym) to "
            "load it"
        )
    return record


def _load_weights(path: Path, model: torch.nn.Module) -> None:
    adapter = (path / lora.ADAPTER_WEIGHTS).is_file()
    if adapter != lora.has_adapter(model):
        held, wanted = ("a LoRA adapter", "with") if adapter else ("full weights", "without")
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds {held}: load it into the run's model {wanted} an "
            "adapter (rewardgym.agents.runs.load_run_policy builds it from the run's config)"
        )
    weights = path / (lora.ADAPTER_WEIGHTS if adapter else WEIGHTS)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    try:
        if adapter:
            lora.load_adapter_state(model, load_file(weights, device=str(device)))
        else:
            load_model(model, weights, strict=True, device=str(device))
    except SafetensorError as exc:
        raise CheckpointError(
            f"{str(weights)!r} is not a valid safetensors file ({exc}); it was not loaded. "
            "rewardgym never unpickles weights: re-save them with safetensors"
        ) from exc
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot load {str(weights)!r} into {type(model).__name__}: "
            f"{' '.join(str(exc).split())}; build the model with the same config as the run "
            "that saved the checkpoint (the model may be partly overwritten)"
        ) from exc


def _load_safely(file: Path) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(
            f"{str(file)!r} cannot be loaded safely (torch.load weights_only=True refused it: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); it was not "
            "executed. Only load checkpoints written by rewardgym"
        ) from exc


def _load_payload(path: Path) -> dict[str, Any]:
    file = path / OPTIMIZER
    payload = _load_safely(file)
    if not isinstance(payload, dict) or not {"optimizer", "rng"} <= payload.keys():
        raise CheckpointError(f"{str(file)!r} is not a rewardgym optimizer/RNG file")
    return payload


def load_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``), restore RNG streams, return state.

    Args:
        path: a checkpoint folder (e.g. from ``latest_checkpoint``).
        model: a model built with the same config; its parameters are overwritten in place
            (on the model's device; tied weights stay tied).
        optimizer: an optimizer over ``model``'s parameters to restore, if any.
        restore_rng: restore the python, numpy and torch RNG states saved with the checkpoint.

    Returns:
        The trainer state passed to ``save_checkpoint``.

    Raises:
        CheckpointError: incomplete, corrupt, unsafe (pickle) or newer-format checkpoint, a
            model or optimizer that does not match, or an optimizer requested but not saved.

    Example:
        >>> import tempfile
        >>> model = torch.nn.Linear(1, 1)
        >>> path = save_checkpoint(Path(tempfile.mkdtemp()), 2, model, state={"lr": 0.1})
        >>> load_checkpoint(path, torch.nn.Linear(1, 1))
        {'lr': 0.1}
    """
    path = Path(path)
    record = read_state(path)
    # Validate the payload before touching the model, so a bad file changes nothing.
    payload = _load_payload(path)
    if optimizer is not None and payload["optimizer"] is None:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has no optimizer state; load it with optimizer=None and "
            "start a fresh optimizer"
        )
    _load_weights(path, model)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"optimizer state in {str(path)!r} does not fit {type(optimizer).__name__}: "
                f"{exc}; build the same optimizer over the same parameters"
            ) from exc
    if restore_rng and payload["rng"] is not None:
        restore_rng_state(payload["rng"])
    state = record.get("state", {})
    return state if isinstance(state, dict) else {}


def load_callbacks_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the callbacks' state saved with a checkpoint; empty when it has none.

    Checkpoints written without ``callbacks_state`` (older ones among them) have no
    ``callbacks.pt`` and load as ``{}``.

    Raises:
        CheckpointError: incomplete checkpoint, or a ``callbacks.pt`` that is corrupt, unsafe
            (pickle) or not a mapping.

    Example:
        >>> import tempfile
        >>> model = torch.nn.Linear(1, 1)
        >>> path = save_checkpoint(Path(tempfile.mkdtemp()), 1, model, callbacks_state={"a:0": {}})
        >>> load_callbacks_state(path)
        {'a:0': {}}
    """
    path = Path(path)
    read_state(path)  # refuses an incomplete checkpoint
    file = path / CALLBACKS
    if not file.is_file():
        return {}
    state = _load_safely(file)
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{str(file)!r} holds a {type(state).__name__}, not a mapping of callback states; "
            "it is not a rewardgym file"
        )
    return state
