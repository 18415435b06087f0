"""Noise sweep, robustness ratio and the change formulas: exact numbers, undefined cases."""

from __future__ import annotations

import doctest
import math

import pytest

from rewardgym.agents.meters.text_metrics import corpus_bleu
from rewardgym.envs.noise import NOISE_TYPES, apply_noise, noisy_example
from rewardgym.envs.tasks import Example
from rewardgym.errors import ConfigError, UnknownNameError
from rewardgym.evaluation import robustness
from rewardgym.evaluation.robustness import (
    DEFAULT_SEVERITIES,
    bleu_improvement_pct,
    check_noise,
    forgetting_pct,
    noise_sweep,
    noisy_examples,
    robustness_change_pct,
    robustness_ratio,
    severity_key,
    undefined_reason,
)

INPUTS = [
    "the quick brown fox jumps over the lazy dog",
    "my two red cats sleep near the old river bank",
    "a small green bird sings in the tall tree today",
    "her ten blue books fall from the high shelf",
]
EXAMPLES = [Example(f"say {i}: {text} =>", text, {"input": text}) for i, text in enumerate(INPUTS)]


def echo(prompts: list[str], condition: int) -> list[str]:
    """Answers with the prompt's input part: BLEU measures exactly how much noise hurt."""
    return [p.split(": ", 1)[1].removesuffix(" =>") for p in prompts]


def test_docstring_examples() -> None:
    assert doctest.testmod(robustness).failed == 0


def test_defaults_cover_the_design() -> None:
    assert {"char_swap", "char_drop", "keyboard_typo", "word_drop"} <= set(NOISE_TYPES)
    assert {0.05, 0.1, 0.2} <= set(DEFAULT_SEVERITIES)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [(40.0, 50.0, 25.0), (20.0, 10.0, -50.0), (12.5, 12.5, 0.0), (8.0, 0.0, -100.0)],
)
def test_bleu_improvement_by_hand(before: float, after: float, expected: float) -> None:
    assert bleu_improvement_pct(before, after) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [(0.8, 0.6, -25.0), (0.5, 0.75, 50.0), (1.0, 1.0, 0.0), (0.9, 0.0, -100.0)],
)
def test_robustness_change_by_hand(before: float, after: float, expected: float) -> None:
    assert robustness_change_pct(before, after) == pytest.approx(expected, abs=1e-12)


def test_forgetting_by_hand() -> None:
    assert forgetting_pct(40.0, 30.0) == 25.0
    assert forgetting_pct(30.0, 45.0) == -50.0  # negative: the retention score went up


@pytest.mark.parametrize("fn", [bleu_improvement_pct, robustness_change_pct, forgetting_pct])
@pytest.mark.parametrize(("before", "after"), [(0.0, 5.0), (0, 0), (None, 1.0), (1.0, None)])
def test_changes_are_none_when_undefined(fn, before, after) -> None:
    assert fn(before, after) is None


@pytest.mark.parametrize("fn", [bleu_improvement_pct, robustness_change_pct, forgetting_pct])
@pytest.mark.parametrize("bad", [math.nan, math.inf, "12", True])
def test_changes_reject_non_finite_numbers(fn, bad) -> None:
    with pytest.raises(ConfigError, match=r"must be a finite number or None, got"):
        fn(bad, 1.0)


def test_undefined_reason_says_why() -> None:
    assert undefined_reason("BLEU improvement", 0.0, 3.0) == (
        "BLEU improvement is undefined: the value before is 0 "
        "(a relative change from 0 has no value)"
    )
    assert undefined_reason("x", None, 1.0) == "x is undefined: the value before is missing"
    assert undefined_reason("x", 1.0, None) == "x is undefined: the value after is missing"
    assert undefined_reason("x", 2.0, 1.0) is None


def test_robustness_ratio_by_hand() -> None:
    noisy = {"char_drop": {"0.1": 40.0, "0.2": 20.0}, "word_drop": {"0.1": 50.0, "0.2": 10.0}}
    # (0.8 + 0.4 + 1.0 + 0.2) / 4
    assert robustness_ratio(50.0, noisy) == pytest.approx(0.6, abs=1e-12)


def test_robustness_ratio_undefined() -> None:
    assert robustness_ratio(0.0, {"char_drop": {"0.1": 3.0}}) is None
    assert robustness_ratio(0.01, {"char_drop": {"0.1": 0.3}}) is None  # near-empty output
    assert robustness_ratio(30.0, {}) is None
    with pytest.raises(ConfigError, match=r"BLEU under char_drop at severity 0.1 must be a finite"):
        robustness_ratio(30.0, {"char_drop": {"0.1": math.nan}})


def test_severity_key_reads_back_exactly() -> None:
    assert [severity_key(s) for s in (0.05, 0.1, 0.2, 1)] == ["0.05", "0.1", "0.2", "1.0"]
    assert float(severity_key(0.3)) == 0.3


def test_check_noise_dedupes_and_defaults() -> None:
    assert check_noise(None, [0.1]) == ((), ())
    assert check_noise([], None) == ((), ())
    assert check_noise("word_drop", None) == (("word_drop",), DEFAULT_SEVERITIES)
    assert check_noise(["char_drop", "char_drop"], [0.2, 0.2, 0.1]) == (("char_drop",), (0.2, 0.1))


def test_check_noise_errors() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown noise type 'char_dorp'; did you mean"):
        check_noise(["char_dorp"], [0.1])
    with pytest.raises(ConfigError, match=r"needs at least one severity"):
        check_noise(["char_drop"], [])
    for bad in (0, 0.0, 1.5, -0.1, math.nan, True):
        with pytest.raises(ConfigError, match=r"noise severity must be a number in \(0, 1\]"):
            check_noise(["char_drop"], [bad])


def test_noisy_examples_use_one_fixed_seed_per_index() -> None:
    noisy = noisy_examples(EXAMPLES, "char_swap", 0.2, noise_seed=5)
    for i, (clean, ex) in enumerate(zip(EXAMPLES, noisy, strict=True)):
        assert ex == noisy_example(clean, "char_swap", 0.2, seed=5 + i)
        assert ex.reference == clean.reference
        assert ex.prompt.startswith(f"say {i}: ")  # only the input part is noised
    assert noisy != EXAMPLES


def test_sweep_matches_bleu_computed_from_the_noise_model() -> None:
    sweep = noise_sweep(echo, EXAMPLES, ["char_drop", "word_drop"], [0.1, 0.2])
    assert list(sweep.bleu) == ["char_drop", "word_drop"]
    for kind in ("char_drop", "word_drop"):
        for level in (0.1, 0.2):
            noisy_inputs = [apply_noise(t, kind, level, seed=i) for i, t in enumerate(INPUTS)]
            expected = corpus_bleu(noisy_inputs, INPUTS)
            assert sweep.bleu[kind][severity_key(level)] == expected
            assert sweep.hyps[(kind, level)] == noisy_inputs
            assert 0 < expected < 100
    ratio = robustness_ratio(100.0, sweep.bleu)
    assert ratio == pytest.approx(sum(sum(b.values()) for b in sweep.bleu.values()) / 400)


def test_sweep_is_deterministic_and_numbers_conditions() -> None:
    seen: list[int] = []

    def answer(prompts: list[str], condition: int) -> list[str]:
        seen.append(condition)
        return echo(prompts, condition)

    first = noise_sweep(answer, EXAMPLES, NOISE_TYPES, DEFAULT_SEVERITIES)
    second = noise_sweep(echo, EXAMPLES, NOISE_TYPES, DEFAULT_SEVERITIES)
    assert first.bleu == second.bleu and first.prompts == second.prompts
    assert seen == list(range(1, len(NOISE_TYPES) * len(DEFAULT_SEVERITIES) + 1))
    other_seed = noise_sweep(echo, EXAMPLES, NOISE_TYPES, DEFAULT_SEVERITIES, noise_seed=1)
    assert other_seed.prompts != first.prompts


def test_sweep_that_noise_cannot_touch_gives_ratio_one() -> None:
    by_id = {f"say {i}:": text for i, text in enumerate(INPUTS)}

    def oracle(prompts: list[str], condition: int) -> list[str]:
        return [by_id[" ".join(p.split()[:2])] for p in prompts]

    sweep = noise_sweep(oracle, EXAMPLES, NOISE_TYPES, DEFAULT_SEVERITIES)
    clean = corpus_bleu(INPUTS, INPUTS)  # 100 up to rounding
    assert all(b == clean for by_level in sweep.bleu.values() for b in by_level.values())
    assert clean == pytest.approx(100.0)
    assert robustness_ratio(clean, sweep.bleu) == 1.0


def test_no_sweep() -> None:
    sweep = noise_sweep(echo, EXAMPLES, None, DEFAULT_SEVERITIES)
    assert sweep.bleu == {} and sweep.hyps == {}
