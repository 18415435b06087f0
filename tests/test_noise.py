"""Prompt noise: exact counts, determinism, properties on arbitrary text, typed errors."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardgym.envs import noise as noise_module
from rewardgym.envs.noise import (
    NOISE_TYPES,
    QWERTY_NEIGHBOURS,
    apply_noise,
    n_touched,
    noisy_example,
)
from rewardgym.envs.tasks import Example, make_task
from rewardgym.errors import ConfigError, UnknownNameError

TEXT = "The quick brown fox jumps over the lazy dog near the old river bank today"
kinds = st.sampled_from(NOISE_TYPES)
severities = st.floats(min_value=0.0, max_value=1.0)
seeds = st.integers(min_value=0, max_value=2**32)


def is_subsequence(short: list | str, long: list | str) -> bool:
    items = iter(long)
    return all(any(x == y for y in items) for x in short)


@pytest.mark.parametrize(
    ("severity", "n", "k"),
    [(0.0, 10, 0), (0.1, 0, 0), (0.01, 10, 1), (0.25, 10, 3), (0.2, 10, 2), (1.0, 7, 7)],
)
def test_n_touched_rounds_half_up_with_at_least_one(severity: float, n: int, k: int) -> None:
    assert n_touched(severity, n) == k


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_severity_zero_is_identity(kind: str) -> None:
    assert apply_noise(TEXT, kind, 0.0, seed=3) == TEXT
    assert apply_noise(TEXT, kind, 0, seed=3) == TEXT


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_noise_is_deterministic_and_seeded(kind: str) -> None:
    once = apply_noise(TEXT, kind, 0.2, seed=7)
    assert once != TEXT
    assert apply_noise(TEXT, kind, 0.2, seed=7) == once
    assert len({apply_noise(TEXT, kind, 0.2, seed=s) for s in range(5)}) > 1


def test_pinned_outputs_do_not_drift() -> None:
    # a change in the random stream would silently change every robustness number
    assert apply_noise("the red dog", "char_drop", 0.2, seed=0) == "the rd dg"
    assert apply_noise("hello world", "keyboard_typo", 0.1, seed=1) == "hello qorld"


def test_char_drop_removes_exactly_k_non_space_characters() -> None:
    out = apply_noise(TEXT, "char_drop", 0.1, seed=0)
    n = sum(not ch.isspace() for ch in TEXT)
    assert len(TEXT) - len(out) == n_touched(0.1, n) == 6
    assert out.count(" ") == TEXT.count(" ") and is_subsequence(out, TEXT)


def test_keyboard_typo_uses_qwerty_neighbours_and_keeps_case() -> None:
    text = "QWERTY keys Are Fun"
    out = apply_noise(text, "keyboard_typo", 0.5, seed=2)
    changed = [(a, b) for a, b in zip(text, out, strict=True) if a != b]
    assert len(changed) == n_touched(0.5, sum(ch.isalpha() for ch in text))
    for old, new in changed:
        assert new.lower() in QWERTY_NEIGHBOURS[old.lower()] and old.isupper() == new.isupper()


def test_word_drop_keeps_order_and_at_least_one_word() -> None:
    out = apply_noise(TEXT, "word_drop", 0.2, seed=0)
    assert len(out.split()) == 15 - 3 and is_subsequence(out.split(), TEXT.split())
    assert len(apply_noise("one two three", "word_drop", 1.0).split()) == 1
    assert apply_noise("alone", "word_drop", 1.0) == "alone"


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(text=st.text(), kind=kinds, severity=severities, seed=seeds)
def test_any_text_is_fine_and_deterministic(text: str, kind: str, severity: float, seed: int):
    out = apply_noise(text, kind, severity, seed)
    assert isinstance(out, str) and out == apply_noise(text, kind, severity, seed)
    if severity == 0:
        assert out == text


@settings(max_examples=200, deadline=None)
@given(text=st.text(), severity=severities, seed=seeds)
def test_char_drop_property(text: str, severity: float, seed: int) -> None:
    out = apply_noise(text, "char_drop", severity, seed)
    k = n_touched(severity, sum(not ch.isspace() for ch in text))
    assert len(out) == len(text) - k and is_subsequence(out, text)
    assert [c for c in out if c.isspace()] == [c for c in text if c.isspace()]


@settings(max_examples=200, deadline=None)
@given(text=st.text(), severity=severities, seed=seeds)
def test_char_swap_property(text: str, severity: float, seed: int) -> None:
    out = apply_noise(text, "char_swap", severity, seed)
    assert sorted(out) == sorted(text)
    assert [i for i, c in enumerate(out) if c.isspace()] == [
        i for i, c in enumerate(text) if c.isspace()
    ]


@settings(max_examples=200, deadline=None)
@given(text=st.text(), severity=severities, seed=seeds)
def test_keyboard_typo_property(text: str, severity: float, seed: int) -> None:
    out = apply_noise(text, "keyboard_typo", severity, seed)
    k = n_touched(severity, sum(c.lower() in QWERTY_NEIGHBOURS for c in text))
    assert len(out) == len(text)
    assert sum(a != b for a, b in zip(text, out, strict=True)) == k


@settings(max_examples=200, deadline=None)
@given(text=st.text(), severity=severities, seed=seeds)
def test_word_drop_property(text: str, severity: float, seed: int) -> None:
    out = apply_noise(text, "word_drop", severity, seed)
    words, kept = text.split(), out.split()
    if len(words) < 2 or severity == 0:
        assert out == text
    else:
        assert len(kept) == len(words) - min(n_touched(severity, len(words)), len(words) - 1)
        assert kept and is_subsequence(kept, words)


# --------------------------------------------------------------------------- errors


def test_unknown_noise_type_suggests_the_closest() -> None:
    with pytest.raises(
        UnknownNameError,
        match="unknown noise type 'char_dorp'; did you mean 'char_drop'\\? Valid noise types: "
        "char_drop, char_swap, keyboard_typo, word_drop.",
    ):
        apply_noise("text", "char_dorp", 0.1)


@pytest.mark.parametrize("severity", [1.5, -0.1, float("nan"), "0.1", True])
def test_bad_severity_is_a_config_error(severity: object) -> None:
    with pytest.raises(ConfigError, match=r"noise severity must be a number in \[0, 1\], got"):
        apply_noise("text", "char_drop", severity)  # type: ignore[arg-type]


def test_bad_seed_and_text_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="noise seed must be a non-negative int, got -1"):
        apply_noise("text", "char_drop", 0.1, seed=-1)
    with pytest.raises(ConfigError, match="noise text must be a str, got bytes: b'x'"):
        apply_noise(b"x", "char_drop", 0.1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- noisy_example


def test_noisy_example_touches_only_the_input() -> None:
    example = make_task("translate").split("test")[0]
    noisy = noisy_example(example, "char_drop", 0.3, seed=1)
    source = example.meta["input"]
    assert noisy.prompt.startswith("translate: ") and noisy.prompt.endswith(" =>")
    assert noisy.prompt == f"translate: {noisy.meta['input']} =>"
    assert noisy.meta["input"] == apply_noise(source, "char_drop", 0.3, seed=1) != source
    assert noisy.reference == example.reference
    assert noisy.meta["noise"] == {
        "kind": "char_drop",
        "severity": 0.3,
        "seed": 1,
        "clean_prompt": example.prompt,
    }
    assert example.meta["input"] == source and "noise" not in example.meta  # original untouched


def test_noisy_example_without_input_noises_the_whole_prompt() -> None:
    example = Example("tell me a story =>", "once")
    noisy = noisy_example(example, "word_drop", 0.5, seed=0)
    assert noisy.prompt == apply_noise(example.prompt, "word_drop", 0.5, seed=0)
    assert noisy_example(example, "word_drop", 0.0) is example


def test_noisy_example_replaces_the_last_occurrence_of_the_input() -> None:
    example = Example("a: a =>", "b", {"input": "a"})  # "a" also occurs in the prefix
    noisy = noisy_example(example, "keyboard_typo", 1.0, seed=0)
    assert noisy.prompt.startswith("a: ") and noisy.prompt[3] != "a"


def test_noisy_example_validates_like_apply_noise() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'word_drop'"):
        noisy_example(Example("p", "r"), "word_drp", 0.1)


def test_docstring_examples_run() -> None:
    assert doctest.testmod(noise_module, raise_on_error=False).failed == 0


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_lone_surrogates_do_not_crash(kind: str) -> None:
    assert isinstance(apply_noise("ab\ud800 cd ef", kind, 1.0, seed=0), str)
