"""The measured kernel choice (packed oneDNN weights or the model's own layers).

Checks that the choice is timed once and then reused (in the process, and from the choice file
by a later process), that its cache key holds the CPU model and library versions, that an
explicit ``FastPathOptions.packed_weights`` wins over it, that packing is never chosen where it
measured slower, and that a corrupt choice file is measured again rather than crashed on.
The timing is replaced by a counting fake except in one bounded real run. Seeded random Llama
models only (no training); the size threshold is lowered so they qualify.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import random_llama

import rewardgym.agents.decoding as decoding
import rewardgym.agents.kernels as kernels
from rewardgym.agents.decoding import (
    FastPathOptions,
    PackedWeights,
    StaticCacheDecoder,
    choose_linear,
    plain_linear,
)
from rewardgym.machine import cpu_model


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A private cache root, nothing remembered in the process, test models qualify."""
    monkeypatch.setenv("REWARDGYM_CACHE", str(tmp_path))
    monkeypatch.setattr(decoding, "PACK_MIN_PARAMS", 0)
    monkeypatch.setattr(kernels, "machine_busy", lambda: False)  # whatever else runs here
    kernels.forget()
    yield tmp_path
    kernels.forget()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return random_llama(96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


class FakeTiming:
    """Stands in for ``time_linear_kernels``: returns fixed seconds, counts its calls."""

    def __init__(self, packed: float, plain: float) -> None:
        self.seconds = {"packed": packed, "plain": plain}
        self.calls: list[int] = []

    def __call__(self, model, rows: int, budget_s: float = 1.0) -> dict[str, float]:
        self.calls.append(rows)
        return dict(self.seconds)


def fake(monkeypatch: pytest.MonkeyPatch, packed: float, plain: float) -> FakeTiming:
    timing = FakeTiming(packed, plain)
    monkeypatch.setattr(decoding, "time_linear_kernels", timing)
    return timing


def test_the_choice_is_timed_once_then_reused_in_and_across_processes(
    model, monkeypatch: pytest.MonkeyPatch
) -> None:
    timing = fake(monkeypatch, packed=1.0, plain=2.0)
    first = choose_linear(model, 8)
    assert (first.packed, first.reason, first.measured.source) == (True, "measured", "measured")
    assert choose_linear(model, 7).measured.source == "memo"  # same bucket (8): no timing
    kernels.forget()  # as a new process would start: the answer comes from the file
    again = choose_linear(model, 5)
    assert again.measured.source == "cache" and again.packed
    assert again.measured.seconds == first.measured.seconds
    assert timing.calls == [8]
    choose_linear(model, 64)  # another batch bucket is another question
    assert timing.calls == [8, 64]
    if PackedWeights.available(torch.zeros(1, dtype=torch.bfloat16)):  # another dtype, too
        half = random_llama(96, num_hidden_layers=2).to(torch.bfloat16)
        assert choose_linear(half, 8).measured.question.startswith("packed_weights/bfloat16/")
        assert timing.calls == [8, 64, 8]


def test_the_cache_key_holds_the_cpu_model_and_library_versions(
    model, monkeypatch: pytest.MonkeyPatch, fresh_cache
) -> None:
    key = kernels.machine_key()
    assert key["cpu"] == cpu_model() and key["torch"] == torch.__version__
    assert key["threads"] == torch.get_num_threads()
    build = torch.__config__.show()
    assert (key["mkl"] is not None) == ("Math Kernel Library Version" in build)
    assert (key["onednn"] is not None) == bool(re.search(r"(MKL-DNN|oneDNN) v", build))
    for name in ("mkl", "onednn"):
        assert key[name] is None or key[name] in build
    timing = fake(monkeypatch, packed=1.0, plain=2.0)
    choose_linear(model, 8)
    path = kernels.choice_path()
    assert path.parent == fresh_cache / "kernels"
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["machine"] == key and stored["version"] == kernels.FORMAT_VERSION
    (question,) = stored["choices"]
    assert question.startswith("packed_weights/float32/rows8/")
    # another CPU (or library build) has its own file, and measures for itself
    kernels.forget()
    monkeypatch.setattr(kernels, "cpu_model", lambda: "Some Other CPU")
    assert kernels.choice_path() != path
    choose_linear(model, 8)
    assert timing.calls == [8, 8]


def test_packing_is_never_the_default_where_it_measured_slower(
    model, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake(monkeypatch, packed=1.1, plain=1.0)
    assert not choose_linear(model, 8).packed
    kernels.forget()
    (kernels.choice_path()).unlink()
    fake(monkeypatch, packed=1.0, plain=1.01)  # faster, but by less than PACKED_MIN_GAIN
    assert decoding.PACKED_MIN_GAIN > 1.01
    assert not choose_linear(model, 8).packed


def test_an_explicit_option_wins_over_the_measured_choice(
    model, monkeypatch: pytest.MonkeyPatch
) -> None:
    timing = fake(monkeypatch, packed=1.0, plain=2.0)
    assert choose_linear(model, 8, packed_weights=False) == decoding.LinearChoice(False, "option")
    assert timing.calls == []  # an override needs no timing
    fake(monkeypatch, packed=2.0, plain=1.0)
    assert choose_linear(model, 8, packed_weights=True) == decoding.LinearChoice(True, "option")
    prompts = [[1, 5, 6, 7, 8, 9], [1, 5, 6, 7, 8, 10, 11]]
    forced = StaticCacheDecoder(model, prompts, 2, 0, FastPathOptions(packed_weights=True))
    assert isinstance(forced.linear, PackedWeights)
    measured = StaticCacheDecoder(model, prompts, 2, 0)  # default: measured, plain was faster
    assert measured.linear is plain_linear and measured.kernel_choice.reason == "measured"


def test_small_models_and_other_devices_are_not_timed(
    model, monkeypatch: pytest.MonkeyPatch
) -> None:
    timing = fake(monkeypatch, packed=1.0, plain=2.0)
    monkeypatch.setattr(decoding, "PACK_MIN_PARAMS", 10**12)
    assert choose_linear(model, 8) == decoding.LinearChoice(False, "unavailable")
    assert timing.calls == []


@pytest.mark.parametrize(
    "content",
    ["{not json", "[]", '{"version": 1, "machine": {}, "choices": {}}', "CORRUPT-ENTRY"],
)
def test_a_corrupt_choice_file_is_measured_again(
    model, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    timing = fake(monkeypatch, packed=1.0, plain=2.0)
    path = kernels.choice_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "CORRUPT-ENTRY":  # right machine, but the entry lacks its timings
        choose_linear(model, 8)
        data = json.loads(path.read_text(encoding="utf-8"))
        (question,) = data["choices"]
        data["choices"][question] = {"choice": "packed"}
        path.write_text(json.dumps(data), encoding="utf-8")
        kernels.forget()
        timing.calls.clear()
    else:
        path.write_text(content, encoding="utf-8")
    choice = choose_linear(model, 8)
    assert choice.packed and choice.measured.source == "measured" and timing.calls == [8]
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert list(stored["choices"].values()) == [
        {"choice": "packed", "seconds": {"packed": 1.0, "plain": 2.0}}
    ]


def test_an_unwritable_cache_still_answers(model, monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, packed=1.0, plain=2.0)

    def refuse(*args, **kwargs):
        raise OSError("read-only")

    monkeypatch.setattr(kernels, "write_json_atomic", refuse)
    assert choose_linear(model, 8).packed
    assert choose_linear(model, 8).measured.source == "memo"


def test_the_real_timing_times_both_ways_and_decides_by_the_rule(model) -> None:
    seconds = decoding.time_linear_kernels(model, 8, budget_s=0.2)
    assert set(seconds) == {"packed", "plain"} and all(s > 0 for s in seconds.values())
    choice = choose_linear(model, 8)
    assert choice.reason == "measured" and choice.packed == (
        choice.measured.seconds["plain"]
        >= decoding.PACKED_MIN_GAIN * choice.measured.seconds["packed"]
    )
    assert choice.describe().startswith(("packed (", "plain ("))


class _Clock:
    """A fake ``time.perf_counter`` that moves ``tick`` seconds at every reading."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.parametrize(
    ("tick", "repeats"),
    [(1.0, decoding.MIN_KERNEL_REPEATS), (0.0, decoding.MAX_KERNEL_REPEATS)],
    ids=["budget-spent-at-once", "budget-never-spent"],
)
def test_the_timing_is_bounded_by_its_budget_and_repeat_limits(
    model, monkeypatch: pytest.MonkeyPatch, tick: float, repeats: int
) -> None:
    """Whatever the clock says, each option runs at least MIN and at most MAX timed times
    (plus one untimed warm-up call): the timing cannot run away on a loaded machine."""
    calls = []
    layer = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    hook = layer.register_forward_hook(lambda *_: calls.append(1))
    monkeypatch.setattr(decoding.time, "perf_counter", _Clock(tick))
    try:
        decoding.time_linear_kernels(model, 8, budget_s=0.5)
    finally:
        hook.remove()
    assert len(calls) == 1 + repeats  # the plain path calls each layer once per run


def test_a_choice_measured_on_a_busy_machine_is_not_cached(
    model, monkeypatch: pytest.MonkeyPatch
) -> None:
    timing = fake(monkeypatch, packed=1.0, plain=2.0)
    monkeypatch.setattr(kernels, "machine_busy", lambda: True)
    first = choose_linear(model, 8)
    assert first.packed and first.measured.source == "measured (busy: not cached)"
    assert not kernels.choice_path().exists()
    assert choose_linear(model, 8).measured.source == "memo"  # this process keeps it
    kernels.forget()
    monkeypatch.setattr(kernels, "machine_busy", lambda: False)
    assert choose_linear(model, 8).measured.source == "measured"  # a quiet process measures
    assert timing.calls == [8, 8] and kernels.choice_path().exists()
