"""The reward registry and the boundary checks: specs, composites, plugins, errors."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rewardgym.errors import ConfigError, RewardError, UnknownNameError
from rewardgym.rewards import (
    Reward,
    describe_rewards,
    fill_reward_kwargs,
    list_rewards,
    make_reward,
    register_composite,
    register_reward,
    reward_spec,
)
from rewardgym.rewards import registry as registry_module

PROMPTS = ["p0", "p1"]
COMPLETIONS = ["a b", ""]
REFS = ["a b", "c"]


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees its own copy of the registry; plugins count as already read."""
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    monkeypatch.setattr(registry_module, "_PLUGINS_LOADED", True)


@pytest.fixture
def plugin_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def returning(value):
    """A reward function that returns ``value`` whatever it is given."""

    def fn(prompts, completions, **kwargs):
        return value

    fn.needs_references = False
    return fn


# --- boundary checks ---------------------------------------------------------------------------

BAD_RESULTS = [
    (
        [1.0],
        "reward 'bad' returned 1 values for 2 completions; "
        "return one value (a float or None) per completion",
    ),
    (
        [1.0, float("nan")],
        "reward 'bad' returned nan for sample 1: expected a finite float; "
        "return None for 'does not apply'",
    ),
    ([float("inf"), 1.0], "reward 'bad' returned inf for sample 0: expected a finite float"),
    (
        [0.5, "0.7"],
        "reward 'bad' returned '0.7' for sample 1: expected a finite float or None, got str",
    ),
    ([True, 0.0], "reward 'bad' returned True for sample 0: a bool is not a reward; return float"),
    (0.5, "reward 'bad' returned 0.5 (float); return a list of 2 values"),
]


@pytest.mark.parametrize(("result", "message"), BAD_RESULTS)
def test_bad_results_raise_reward_error(result, message):
    reward = make_reward(returning(result))
    reward.name = "bad"  # the message names the reward
    with pytest.raises(RewardError, match=re.escape(message)):
        reward(PROMPTS, COMPLETIONS)


def test_valid_values_pass_numpy_ints_and_none():
    reward = make_reward(returning([np.float32(0.5), None]))
    assert reward(PROMPTS, COMPLETIONS) == [0.5, None]
    assert make_reward(returning((3, np.int64(-1))))(PROMPTS, COMPLETIONS) == [3.0, -1.0]


def divide(prompts, completions, **kwargs):
    return [1.0 / len(c) for c in completions]


divide.needs_references = False


def test_exception_names_the_failing_sample_and_chains():
    reward = make_reward(divide)
    message = (
        "reward 'divide' raised ZeroDivisionError: float division by zero on sample 1 "
        "(completion '')"
    )
    with pytest.raises(RewardError, match=re.escape(message)) as info:
        reward(PROMPTS, COMPLETIONS)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def batch_only_failure(prompts, completions, **kwargs):
    if len(completions) > 1:
        raise RuntimeError("batch too big")
    return [1.0]


def test_exception_of_the_batch_as_a_whole():
    reward = make_reward(batch_only_failure, on_error="skip")
    assert reward(["a", "b"], ["x", "y"], references=["r", "r"]) == [1.0, 1.0]
    strict = make_reward(batch_only_failure)
    message = (
        "reward 'batch_only_failure' raised RuntimeError: batch too big on a batch of 2 samples "
        "(no single sample fails alone)"
    )
    with pytest.raises(RewardError, match=re.escape(message)):
        strict(["a", "b"], ["x", "y"], references=["r", "r"])


def test_skip_turns_bad_samples_into_none_and_counts():
    reward = make_reward(returning([1.0, float("nan")]), on_error="skip")
    assert reward(PROMPTS, COMPLETIONS) == [1.0, None]
    assert reward.n_skipped == 1
    reward(PROMPTS, COMPLETIONS)
    assert reward.n_skipped == 2


def test_skip_of_wrong_length_makes_all_none():
    reward = make_reward(returning([1.0]), on_error="skip")
    output = reward.score(PROMPTS, COMPLETIONS)
    assert reward(PROMPTS, COMPLETIONS) == [None, None]
    assert reward.n_skipped == 4
    assert output.total.tolist() == [0.0, 0.0] and not output.applies.any()


def test_skip_of_exception_keeps_the_samples_that_work():
    reward = make_reward(divide, on_error="skip")
    assert reward(PROMPTS, COMPLETIONS) == [pytest.approx(1 / 3), None]
    assert reward.n_skipped == 1


def test_on_error_must_be_raise_or_skip():
    with pytest.raises(
        ConfigError, match=re.escape("on_error='ignore' is not valid; choose one of raise, skip")
    ):
        make_reward("bleu", on_error="ignore")


def test_reward_spec_keeps_or_changes_on_error():
    reward = make_reward("bleu", on_error="skip")
    assert make_reward(reward) is reward
    strict = make_reward(reward, on_error="raise")
    assert strict is not reward and strict.on_error == "raise"


# --- fill_reward_kwargs -------------------------------------------------------------------------


def test_fill_reward_kwargs_defaults():
    kw = fill_reward_kwargs(
        ["p", "q"],
        ["Hello, world!", "x"],
        references=["r", "s"],
        completion_ids=[[], [5, 6]],
        max_new_tokens=8,
    )
    assert kw["n_tokens"] == [4, 2]  # regex estimate, then len(completion_ids)
    assert kw["finished"] == [True, True]
    assert kw["latency_s"] == [0.0, 0.0]
    assert kw["meta"] == [{}, {}]
    assert kw["max_new_tokens"] == 8


def test_fill_reward_kwargs_requires_references():
    with pytest.raises(ConfigError, match=re.escape("this reward needs references=[...]")):
        fill_reward_kwargs(["p"], ["c"])
    assert fill_reward_kwargs(["p"], ["c"], require_references=False)["references"] == [""]


def test_fill_reward_kwargs_checks_lengths():
    with pytest.raises(
        ConfigError, match=re.escape("reward kwarg finished= has 1 entries for 2 completions")
    ):
        fill_reward_kwargs(PROMPTS, COMPLETIONS, references=REFS, finished=[True])
    with pytest.raises(ConfigError, match=re.escape("got 1 prompts but 2 completions")):
        fill_reward_kwargs(["p"], COMPLETIONS, references=REFS)
    with pytest.raises(ConfigError, match=re.escape("reward kwarg turns= has 3 entries")):
        fill_reward_kwargs(PROMPTS, COMPLETIONS, references=REFS, turns=[1, 1, 1])


def test_bleu_reward_without_references_is_a_config_error():
    with pytest.raises(ConfigError, match="needs references"):
        make_reward("balanced")(["p"], ["c"])
    assert make_reward("speed_only")(["p"], [""]) == [1.0]  # speed needs none


# --- names, registration, describe -------------------------------------------------------------


def test_unknown_name_suggests_the_closest():
    # beside a close match the many rewards are counted, not listed (other test modules may
    # register rewards of their own, so the count is not pinned)
    message = "unknown reward 'balancd'; did you mean 'balanced'? ("
    with pytest.raises(UnknownNameError, match=re.escape(message) + r"\d+ valid rewards\.\)"):
        make_reward("balancd")
    # without a close match, the whole list says what there is
    with pytest.raises(UnknownNameError, match=r"Valid rewards: .*balanced, bleu, chrf,"):
        make_reward("zzzzzz")


def test_register_function_and_duplicate(monkeypatch):
    @register_reward("always_half", needs_references=False)
    def always_half(prompts, completions, **kwargs):
        """r = 0.5"""
        return [0.5] * len(completions)

    assert "always_half" in list_rewards()
    assert reward_spec("always_half").kind == "function"
    assert reward_spec("always_half").formula == "r = 0.5"
    assert make_reward("always_half")(["p"], ["c"]) == [0.5]
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "reward 'always_half' is already registered; pick another name or pass override=True"
        ),
    ):
        register_reward("always_half")(one)
    register_reward("always_half")(always_half)  # the same definition again (module re-imported)
    register_reward("always_half", override=True, needs_references=False)(one)
    assert make_reward("always_half")(["p"], ["c"]) == [1.0]


@pytest.mark.usefixtures("plugin_path")
def test_register_class_and_parameters():
    from plugin_rewards import Keyword

    register_reward("keyword")(Keyword)
    assert reward_spec("keyword").kind == "class"
    reward = make_reward("keyword", word="ok")
    assert reward(["p", "p"], ["is ok", "no"]) == [1.0, 0.0]
    with pytest.raises(ConfigError, match=re.escape("reward 'keyword' does not accept colour")):
        make_reward("keyword", colour="red")
    with pytest.raises(ConfigError, match=re.escape("reward 'bleu' takes no parameters, got n")):
        make_reward("bleu", n=4)


@pytest.mark.parametrize("name", ["", "a:b", " padded", 3])
def test_invalid_names(name):
    with pytest.raises(ConfigError, match="is not valid; use a non-empty string"):
        register_reward(name)


def test_describe_rewards_lists_every_reward():
    table = describe_rewards()
    lines = table.splitlines()
    assert lines[0].split() == ["name", "kind", "formula"]
    assert len(lines) == len(list_rewards()) + 1
    assert any(line.split()[:2] == ["speed_only", "composite"] for line in lines)
    assert "0.25·completion + 0.6·fidelity + 0.15·speed" in table


# --- "module:function" specs ------------------------------------------------------------------


@pytest.mark.usefixtures("plugin_path")
def test_module_function_spec():
    reward = make_reward("plugin_rewards:shout")
    assert reward.__name__ == "plugin_rewards:shout"
    assert reward(["p", "p", "p"], ["AB", "Ab", "12"]) == [1.0, 0.5, None]
    keyword = make_reward("plugin_rewards:Keyword", word="hi")
    assert keyword(["p"], ["hi there"]) == [1.0]


@pytest.mark.usefixtures("plugin_path")
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "no_such_module_xyz:fn",
            "reward spec 'no_such_module_xyz:fn': cannot import module 'no_such_module_xyz' "
            "(No module named 'no_such_module_xyz'); run from the folder that holds it (the "
            "current directory is searched first), install it, or put its folder on PYTHONPATH",
        ),
        (
            "plugin_rewards:shoot",
            "reward spec 'plugin_rewards:shoot': 'plugin_rewards' has no attribute 'shoot'. "
            "Did you mean 'shout'? Fix the name after ':'",
        ),
        (
            "plugin_rewards:NOT_CALLABLE",
            "reward spec 'plugin_rewards:NOT_CALLABLE' names a int, not a reward function or class",
        ),
        (
            "plugin_rewards:",
            "reward spec 'plugin_rewards:' is not valid; write 'package.module:function'",
        ),
    ],
)
def test_bad_module_specs(spec, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_reward(spec)


# --- composites -------------------------------------------------------------------------------


def one(prompts, completions, **kwargs):
    return [1.0] * len(completions)


def only_first(prompts, completions, **kwargs):
    return [2.0] + [None] * (len(completions) - 1)


def nowhere(prompts, completions, **kwargs):
    return [None] * len(completions)


def test_composite_totals_without_renormalisation():
    register_reward("one", needs_references=False)(one)
    register_reward("only_first", needs_references=False)(only_first)
    register_reward("nowhere", needs_references=False)(nowhere)
    reward = make_reward({"composite": {"one": 0.5, "only_first": 0.25, "nowhere": 3.0}})
    out = reward.score(["a", "b"], ["x", "y"])
    assert out.total.tolist() == [0.5 + 0.25 * 2.0, 0.5]  # None contributes nothing
    assert out.applies.tolist() == [True, True]
    assert set(out.components) == {"one", "only_first", "nowhere"}
    assert np.isnan(out.components["only_first"][1]) and np.isnan(out.components["nowhere"]).all()
    lone = make_reward({"composite": {"only_first": 1.0, "nowhere": 1.0}})
    out = lone.score(["a", "b"], ["x", "y"])
    assert out.total.tolist() == [2.0, 0.0] and out.applies.tolist() == [True, False]
    assert lone(["a", "b"], ["x", "y"]) == [2.0, None]


def test_composite_label_in_errors_and_weight_zero_is_reported_not_paid():
    register_reward("one", needs_references=False)(one)
    register_reward("bad", needs_references=False)(returning([float("nan")]))
    reward = make_reward({"composite": {"one": 1.0, "bad": 1.0}})
    with pytest.raises(
        RewardError, match=re.escape("reward 'composite/bad' returned nan for sample 0")
    ):
        reward(["p"], ["c"])
    register_reward("two", needs_references=False)(lambda p, c, **kw: [2.0] * len(c))
    logged = make_reward({"composite": {"one": 1.0, "two": 0}})
    out = logged.score(["p"], ["c"])
    assert out.total.tolist() == [1.0] and out.components["two"].tolist() == [2.0]


def test_composite_overrides_and_params():
    reward = make_reward("balanced", speed=0.2)
    assert [t.weight for t in reward.terms] == [0.25, 0.6, 0.2]
    custom = make_reward({"composite": {"speed": {"weight": 0.5, "max_tokens": 10}}})
    assert custom(["p"], ["x"], n_tokens=[2]) == [pytest.approx(0.5 * 0.8)]
    register_composite("fast", {"speed": {"weight": 1.0, "max_tokens": 4}})
    assert make_reward("fast", speed=2.0)(["p"], ["x"], n_tokens=[1]) == [1.5]  # keeps max_tokens
    nested = make_reward({"composite": {"speed_only": 1.0, "exact_match": 1.0}})
    assert nested(["p"], ["a"], references=["a"], n_tokens=[0]) == [2.0]


@pytest.mark.parametrize(
    ("spec", "kw", "message"),
    [
        ({"composite": {}}, {}, "composite reward 'composite' needs a non-empty mapping"),
        (
            {"composite": {"speed": "high"}},
            {},
            "composite reward 'composite': weight of 'speed' is 'high'; use a finite number",
        ),
        ({"composite": {"speed": float("nan")}}, {}, "weight of 'speed' is nan"),
        ({"composite": {"speed": True}}, {}, "weight of 'speed' is True"),
        (
            {"weights": {"speed": 1}},
            {},
            "a reward spec dict must be {'composite': {name: weight, ...}}, got keys ['weights']",
        ),
        (
            "balanced",
            {"sped": 0.1},
            "composite reward 'balanced' has no component 'sped'. Did you mean 'speed'? "
            "Its components: completion, fidelity, speed",
        ),
        (42, {}, "reward spec 42 (int) is not valid"),
    ],
)
def test_bad_composites(spec, kw, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_reward(spec, **kw)


def test_unknown_component_of_composite():
    with pytest.raises(
        UnknownNameError, match=re.escape("unknown reward 'bleuu'; did you mean 'bleu'?")
    ):
        make_reward({"composite": {"bleuu": 1.0}})


# --- entry-point plugins ----------------------------------------------------------------------


class FakeEntryPoint(SimpleNamespace):
    def load(self):
        return self.loader()


def fake_entry_points(calls, *eps):
    def entry_points(*, group):
        calls.append(group)
        return list(eps)

    return entry_points


@pytest.mark.usefixtures("plugin_path")
def test_plugins_read_lazily_on_first_unknown_name(monkeypatch):
    import importlib.metadata

    import plugin_rewards

    calls: list[str] = []
    eps = [
        FakeEntryPoint(
            name="shouting", value="plugin_rewards:shout", loader=lambda: plugin_rewards.shout
        ),
        FakeEntryPoint(
            name="kw", value="plugin_rewards:Keyword", loader=lambda: plugin_rewards.Keyword
        ),
        FakeEntryPoint(name="broken", value="nowhere:fn", loader=lambda: 1 / 0),
        FakeEntryPoint(name="bleu", value="other:bleu", loader=lambda: plugin_rewards.shout),
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points(calls, *eps))
    monkeypatch.setattr(registry_module, "_PLUGINS_LOADED", False)
    make_reward("bleu")  # a known name reads no plugin
    assert calls == []
    with pytest.warns(RuntimeWarning) as record:
        reward = make_reward("shouting")
    messages = [str(w.message) for w in record]
    assert (
        "reward plugin 'broken' (nowhere:fn) failed to load: ZeroDivisionError: division by zero"
        in messages
    )
    assert "reward plugin 'bleu' (other:bleu) ignored: that name is already registered" in messages
    assert calls == ["rewardgym.rewards"]
    assert reward(["p"], ["AB"]) == [1.0]
    assert make_reward("kw", word="x")(["p"], ["x"]) == [1.0]
    with pytest.raises(UnknownNameError, match="unknown reward 'missing'"):
        make_reward("missing")
    assert calls == ["rewardgym.rewards"]  # read once per process


def test_importing_rewards_reads_no_plugins():
    import subprocess
    import sys

    code = (
        "import importlib.metadata as m\n"
        "calls = []\n"
        "orig = m.entry_points\n"
        "m.entry_points = lambda *a, **k: calls.append(k) or orig(*a, **k)\n"
        "import rewardgym.rewards\n"
        "print(len(calls))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_reward_objects_are_trl_functions():
    reward = make_reward("exact_match")
    assert isinstance(reward, Reward) and reward.__name__ == "exact_match"
    # TRL calls with keywords and passes extra columns and state
    out = reward(prompts=["p"], completions=["a"], references=["a"], trainer_state=None)
    assert out == [1.0]
    restored = pickle.loads(pickle.dumps(reward))
    assert restored(["p"], ["a"], references=["b"]) == [0.0]
