"""Kernel choices measured on the machine that runs them, cached per CPU model and library versions.

Some optimisations pay on one CPU and cost on another: oneDNN over prepacked weights made fp32
rollouts 1.44x faster on an AMD EPYC and 0.96x (slower) on an Intel Xeon. So instead of a
hard-coded switch, the code that offers such a choice (:mod:`rewardgym.agents.decoding` for
packed weights) asks :func:`measured_choice` with a question (what is chosen, for which shapes,
dtype and batch bucket) and a ``measure`` function that times each option once, briefly, on
the real shapes. The fastest option is remembered:

* in this process (a dict), so later rollouts pay nothing;
* on disk, in ``<cache root>/kernels/<machine digest>.json`` (cache root ``$REWARDGYM_CACHE``,
  else ``~/.cache/rewardgym``), written atomically, so later processes on the same machine
  pay nothing either. The file's name and its ``machine`` entry come from :func:`machine_key`:
  CPU model, torch version, MKL and oneDNN versions, the CPU capability torch dispatches to and
  its thread count. Another CPU or another library build reads another file and measures again.

A measurement taken while the machine is busy (a 1-minute load average above its CPU count:
other processes compete for the cores, as when several trainings share them) is kept for this
process only, not written: timings under contention can invert the order (one such run timed
fp32 packed weights at 0.61x of plain at 64 rows, and 3.8x at 32), and a cached answer would
keep the wrong choice for good. A later, quieter process measures again.

A file that cannot be read (corrupt, truncated, written for another machine key or format) is
ignored and replaced after measuring again; two processes measuring at once both write, the
last one wins (each write is whole), and a lost entry is measured again later.

Example:
    >>> pick = measured_choice("linear/float32/rows64/abc", lambda: {"packed": 0.9, "plain": 1.0})
    >>> pick.choice, pick.source
    ('packed', 'measured')
    >>> measured_choice("linear/float32/rows64/abc", lambda: {}).source   # no timing again
    'memo'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rewardgym.agents.cache import cache_root
from rewardgym.fileio import write_json_atomic
from rewardgym.machine import cpu_model

__all__ = [
    "FORMAT_VERSION",
    "Measured",
    "choice_path",
    "forget",
    "machine_busy",
    "machine_key",
    "measured_choice",
    "rows_bucket",
]

FORMAT_VERSION = 1
# In-process memo: (choice file, question) -> the answer. Cleared by forget().
_MEMO: dict[tuple[str, str], Measured] = {}


@dataclass(frozen=True)
class Measured:
    """The answer to one question: which option was fastest, and the timings it rests on.

    Attributes:
        question: what was asked (e.g. ``"packed_weights/bfloat16/rows64/<shapes>"``).
        choice: the chosen option's name (a key of ``seconds``).
        seconds: measured seconds per option (smaller is faster).
        source: ``"measured"`` (timed just now; ``"measured (busy: not cached)"`` when the
            machine was busy, see above), ``"cache"`` (read from the choice file) or
            ``"memo"`` (answered earlier in this process).
        path: the choice file it is stored in.
    """

    question: str
    choice: str
    seconds: dict[str, float] = field(default_factory=dict)
    source: str = "measured"
    path: str = ""

    def describe(self) -> str:
        """One line for benchmark output, e.g. ``'plain (plain 10.1 ms, packed 11.3 ms; cache)'``.

        Example:
            >>> Measured("q", "plain", {"plain": 0.0101, "packed": 0.0113}, "cache").describe()
            'plain (plain 10.1 ms, packed 11.3 ms; cache)'
        """
        times = ", ".join(f"{name} {1e3 * s:.1f} ms" for name, s in self.seconds.items())
        return f"{self.choice} ({times}; {self.source})"


def _config_versions() -> dict[str, str | None]:
    """MKL and oneDNN versions from torch's build description (None where absent)."""
    try:
        text = torch.__config__.show()
    except Exception:  # pragma: no cover - every torch build has it
        return {"mkl": None, "onednn": None}
    mkl = re.search(r"Math Kernel Library Version ([\w.\-]+)", text)
    onednn = re.search(r"(?:MKL-DNN|oneDNN) v([\w.\-]+)", text)
    return {"mkl": mkl and mkl.group(1), "onednn": onednn and onednn.group(1)}


def machine_key() -> dict[str, Any]:
    """What a measured kernel choice depends on besides the shapes: the CPU, the libraries that
    run the products and torch's thread count.

    Example:
        >>> sorted(machine_key())
        ['cpu', 'cpu_capability', 'mkl', 'onednn', 'threads', 'torch']
    """
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - older torch
        capability = None
    return {
        "cpu": cpu_model(),
        "torch": torch.__version__,
        **_config_versions(),
        "cpu_capability": capability,
        "threads": torch.get_num_threads(),
    }


def choice_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The choice file of this machine key under the cache root.

    Example:
        >>> choice_path("/tmp/c").parent
        PosixPath('/tmp/c/kernels')
    """
    digest = hashlib.sha256(json.dumps(machine_key(), sort_keys=True).encode()).hexdigest()
    return cache_root(cache_dir) / "kernels" / f"{digest[:16]}.json"


def rows_bucket(rows: int, largest: int = 64) -> int:
    """The batch-size bucket a choice is measured for: the next power of two, at most
    ``largest`` (rows beyond it share its choice).

    Example:
        >>> [rows_bucket(n) for n in (1, 3, 8, 33, 500)]
        [1, 4, 8, 64, 64]
    """
    bucket = 1
    while bucket < rows and bucket < largest:
        bucket *= 2
    return bucket


def machine_busy() -> bool:
    """Whether other work competes for the CPUs: 1-minute load average above the CPU count
    (False where the load average is unknown).

    Example:
        >>> machine_busy() in (True, False)
        True
    """
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except (OSError, AttributeError):  # no load average (Windows)
        return False


def _read(path: Path, key: dict[str, Any]) -> dict[str, Any]:
    """The file's choices, or an empty dict when it is missing, unreadable or for another key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ok = (
        isinstance(data, dict)
        and data.get("version") == FORMAT_VERSION
        and data.get("machine") == key
        and isinstance(data.get("choices"), dict)
    )
    return data["choices"] if ok else {}


def _valid(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("seconds"), dict)
        and entry.get("choice") in entry["seconds"]
        and all(isinstance(s, (int, float)) for s in entry["seconds"].values())
    )


def measured_choice(
    question: str,
    measure: Callable[[], dict[str, float]],
    choose: Callable[[dict[str, float]], str] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Measured:
    """The option ``measure`` found fastest for ``question``, timed once per machine key.

    Args:
        question: names what is chosen and for what (shapes, dtype, batch bucket); one entry
            of the choice file per question.
        measure: times each option, returning seconds per option name. Called only when
            neither this process nor the choice file has an answer.
        choose: picks the option from the timings (default: the fastest).
        cache_dir: cache root (default ``$REWARDGYM_CACHE`` or ``~/.cache/rewardgym``).
    """
    path = choice_path(cache_dir)
    memo_key = (str(path), question)
    if memo_key in _MEMO:
        known = _MEMO[memo_key]
        return Measured(known.question, known.choice, known.seconds, "memo", known.path)
    key = machine_key()
    entry = _read(path, key).get(question)
    if _valid(entry):
        answer = Measured(question, entry["choice"], dict(entry["seconds"]), "cache", str(path))
    else:
        seconds = {name: float(s) for name, s in measure().items()}
        choice = (choose or (lambda t: min(t, key=t.__getitem__)))(seconds)
        busy = machine_busy()
        answer = Measured(
            question,
            choice,
            seconds,
            "measured (busy: not cached)" if busy else "measured",
            str(path),
        )
        if not busy:
            choices = _read(path, key)  # read again: another process may have added entries
            choices[question] = {"choice": choice, "seconds": seconds}
            data = {"version": FORMAT_VERSION, "machine": key, "choices": choices}
            try:
                write_json_atomic(path, data, sort_keys=True)
            except OSError:  # a read-only cache: the choice still holds for this process
                pass
    _MEMO[memo_key] = answer
    return answer


def forget() -> None:
    """Drop this process's remembered answers (the choice files stay)."""
    _MEMO.clear()
