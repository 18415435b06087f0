"""Tasks: built-in generators, the registry, and the JSONL loader."""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import pytest

import rewardgym
from rewardgym.envs.tasks import (
    Example,
    Task,
    arithmetic,
    base,
    list_tasks,
    load_task_jsonl,
    make_task,
    register_task,
    summarize,
    translate,
)
from rewardgym.envs.tasks.translate import Clause, NounPhrase
from rewardgym.errors import ConfigError, TaskDataError, UnknownNameError

BUILTINS = ("translate", "summarize", "arithmetic")


def prompts(task: Task, split: str) -> list[str]:
    return [example.prompt for example in task.split(split)]


# --------------------------------------------------------------------------- every built-in


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_split_sizes_and_formats(name: str) -> None:
    task = make_task(name)
    assert task.sizes() == {"train": 5000, "validation": 500, "test": 500}
    assert task.name == name and task.seed == 0 and task.description
    prefix = {"translate": "translate: ", "summarize": "summarize: ", "arithmetic": "solve: "}
    for example in task.split("train")[:200]:
        assert example.prompt == f"{prefix[name]}{example.meta['input']} =>"
        assert example.reference and example.reference == example.reference.strip()


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_splits_are_disjoint_and_unique(name: str) -> None:
    task = make_task(name)
    train, validation, test = (set(prompts(task, s)) for s in ("train", "validation", "test"))
    assert len(train) == 5000 and len(validation) == 500 and len(test) == 500
    assert not test & train and not validation & train and not test & validation


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_determinism_per_seed(name: str) -> None:
    # different sizes bypass the cache, so this really regenerates
    first = make_task(name, seed=3, n_train=300)
    again = make_task(name, seed=3, n_train=301)
    other = make_task(name, seed=4, n_train=300)
    assert prompts(first, "test") == prompts(again, "test")
    assert prompts(first, "train") == prompts(again, "train")[:300]
    assert [e.reference for e in first.split("test")] == [e.reference for e in again.split("test")]
    assert prompts(first, "test") != prompts(other, "test")


@pytest.mark.parametrize("name", BUILTINS)
def test_generation_is_cached(name: str) -> None:
    task = make_task(name, seed=987_654)
    assert make_task(name, seed=987_654) is task


@pytest.mark.parametrize("name", BUILTINS)
def test_task_attributes_match_the_examples(name: str) -> None:
    task = make_task(name)
    examples = [e for s in ("train", "validation", "test") for e in task.split(s)]
    chars = {ch for e in examples for ch in e.prompt + e.reference}
    assert task.charset == "".join(sorted(chars))
    assert task.max_prompt_chars == max(len(e.prompt) for e in examples)
    assert task.max_reference_chars == max(len(e.reference) for e in examples)
    assert task.words() == sorted({w for e in examples for w in e.reference.split()})


def test_split_returns_a_copy_the_caller_may_change() -> None:
    task = make_task("translate")
    mine = task.split("train")
    mine.clear()
    assert len(task.split("train")) == 5000
    assert make_task("translate").split("train")[0] == task.split("train")[0]


def test_example_is_frozen_and_hashable() -> None:
    example = Example("p =>", "r", {"input": "p"})
    with pytest.raises(AttributeError):
        example.prompt = "x"  # type: ignore[misc]
    assert example in {Example("p =>", "r")}
    with pytest.raises(TaskDataError, match="Example.prompt must be a str, got int: 3"):
        Example(3, "r")  # type: ignore[arg-type]


def test_public_names_are_reachable_from_the_top_package() -> None:
    assert rewardgym.make_task is make_task and rewardgym.load_task_jsonl is load_task_jsonl
    assert set(BUILTINS) <= set(rewardgym.list_tasks())


# --------------------------------------------------------------------------- errors


def test_unknown_task_and_split_suggest_the_right_name() -> None:
    with pytest.raises(UnknownNameError, match="unknown task 'translat'; did you mean 'translate'"):
        make_task("translat")
    with pytest.raises(UnknownNameError, match="unknown split 'tset'; did you mean 'test'"):
        make_task("arithmetic").split("tset")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_train": 0}, r"n_train must be an int in \[1, 100000\], got 0"),
        ({"n_test": -5}, r"n_test must be an int in \[1, 20000\], got -5"),
        ({"n_validation": 2.5}, r"n_validation must be an int in \[1, 20000\], got 2.5"),
        ({"n_train": True}, r"n_train must be an int in \[1, 100000\], got True"),
        ({"n_trian": 10}, "unknown option 'n_trian' for task 'summarize'. Did you mean 'n_train'"),
        ({"seed": "a"}, "seed must be an int, got str: 'a'"),
    ],
)
def test_bad_task_options_raise_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_task("summarize", **kwargs)


def test_register_task_adds_a_task_and_refuses_duplicates(monkeypatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    examples = [Example(f"echo: {i} =>", str(i)) for i in range(3)]

    @register_task("echo_test")
    def make_echo(seed: int = 0) -> Task:
        splits = {"train": examples, "validation": examples[:1], "test": examples[2:]}
        return Task.from_examples("echo_test", splits, seed=seed)

    assert "echo_test" in list_tasks()
    assert make_task("echo_test").split("test") == [examples[2]]
    with pytest.raises(ConfigError, match="task 'echo_test' is already registered"):
        register_task("echo_test")(lambda seed: None)
    register_task("echo_test", override=True)(lambda seed: "not a task")
    with pytest.raises(ConfigError, match="returned str, expected a Task"):
        make_task("echo_test")


def test_task_needs_every_split() -> None:
    with pytest.raises(TaskDataError, match="task 'x' has no test examples"):
        Task.from_examples("x", {"train": [Example("a", "b")], "validation": [Example("c", "d")]})
    with pytest.raises(UnknownNameError, match="unknown split 'dev'"):
        Task.from_examples("x", {"dev": [Example("a", "b")]})


# --------------------------------------------------------------------------- translate


def test_lexicon_is_large_and_unambiguous() -> None:
    table = translate.lexicon()
    assert len(table) >= 150
    assert len(set(table.values())) == len(table)
    assert set(table.values()).isdisjoint(table)  # no target word is also an English word
    assert all(re.fullmatch(r"(?:[bdfgklmnprstvz][aeiou])+", word) for word in table.values())


def test_lexicon_check_catches_ambiguous_words(monkeypatch) -> None:
    adverbs = dict(translate.ADVERBS)
    monkeypatch.setattr(translate, "ADVERBS", {**adverbs, "fast": "xo"})
    with pytest.raises(ConfigError, match="'fast' is both the adjective fast and the adverb fast"):
        translate._check_lexicon()
    monkeypatch.setattr(translate, "ADVERBS", {**adverbs, "saw": "xo"})
    with pytest.raises(ConfigError, match="'saw' is both the adverb saw and the verb see"):
        translate._check_lexicon()


def test_translate_is_verb_final_with_adjectives_after_nouns() -> None:
    clause = Clause(
        subject=NounPhrase("dog", plural=True, det="the", adjectives=("red",)),
        verb="see",
        tense="past",
        obj=NounPhrase("apple", det="a", adjectives=("old",)),
        prep=("in", NounPhrase("garden", det="my")),
        adverb="quickly",
    )
    assert clause.source() == "the red dogs saw an old apple in my garden quickly"
    assert clause.target() == "keli fekubu-ni biru beti sazimu fanebi muba lu kikenu motu mupa-ta"


@pytest.mark.parametrize(
    ("tense", "plural", "source", "verb"),
    [
        ("present", False, "the cat sleeps", "mevito-mo"),
        ("present", True, "the cats sleep", "mevito-mo"),
        ("future", False, "the cat will sleep", "mevito-ru"),
        ("past", True, "the cats slept", "mevito-ta"),
    ],
)
def test_translate_tense_suffixes(tense: str, plural: bool, source: str, verb: str) -> None:
    clause = Clause(NounPhrase("cat", plural=plural, det="the"), "sleep", tense)
    assert clause.source() == source
    assert clause.target() == f"keli tovi{'-ni' if plural else ''} {verb}"


def test_translate_sentences_are_compositional() -> None:
    task = make_task("translate")
    stems = set(translate.lexicon().values())
    lengths = []
    for example in task.split("train"):
        source, target = example.meta["input"].split(), example.reference.split()
        lengths.append(len(source))
        # one target word per source word, except "will" which becomes the future suffix
        assert len(target) == len(source) - source.count("will")
        assert all(word.split("-")[0] in stems for word in target)
        assert re.fullmatch(r"[a-z]+-(ta|mo|ru)", target[-1])  # verb-final
        assert example.meta["n_words"] == len(source)
    assert min(lengths) == 4 and max(lengths) == 15
    assert len(set(lengths)) == 12


def test_translate_has_morphology() -> None:
    words = make_task("translate").words()
    for suffix in ("-ni", "-ta", "-mo", "-ru"):
        assert any(word.endswith(suffix) for word in words), suffix


# --------------------------------------------------------------------------- summarize


def test_summaries_state_the_facts_of_the_paragraph() -> None:
    for example in make_task("summarize").split("test"):
        facts, paragraph = example.meta["facts"], example.meta["input"]
        assert 3 <= paragraph.count(". ") + 1 <= 5
        assert example.reference.startswith(f"{facts['name']}, ")
        for key in ("city", "job", "hobby", "product"):
            if key in facts:
                assert facts[key] in paragraph and facts[key] in example.reference
    kinds = {e.meta["kind"] for e in make_task("summarize").split("test")}
    assert kinds == {"person", "company"}


def test_summary_shapes() -> None:
    rng = __import__("random").Random(1)
    examples = [summarize.sample_example(rng) for _ in range(200)]
    person = re.compile(
        r"[A-Z][a-z]+, \d+, [a-z]+ in [A-Z][a-z]+, likes [a-z ]+(, has an? [a-z]+)?"
    )
    company = re.compile(r"[A-Z][a-z]+, founded \d{4}, makes [a-z ]+ in [A-Z][a-z]+, \d+ employees")
    for example in examples:
        shape = person if example.meta["kind"] == "person" else company
        assert shape.fullmatch(example.reference), example.reference


# --------------------------------------------------------------------------- arithmetic


def test_arithmetic_answers_are_correct() -> None:
    task = make_task("arithmetic")
    ops = set()
    for example in task.split("train") + task.split("test"):
        a, b = example.meta["operands"]
        numbers = [int(n) for n in re.findall(r"\d+", example.meta["input"])]
        assert numbers == [a, b]
        expected = {"add": a + b, "subtract": a - b, "multiply": a * b}[example.meta["op"]]
        assert example.reference == str(expected) and expected >= 0
        ops.add(example.meta["op"])
    assert ops == set(arithmetic.OPERATIONS)


@pytest.mark.parametrize(
    ("completion", "answer"),
    [
        ("note: sure, here is my answer answer: keli fekubu", "keli fekubu"),
        ("keli fekubu", "keli fekubu"),
        ("  answer: 7 ", "7"),
        ("answer: 3 answer: 4", "4"),  # the last one counts: a revised answer
        ("note: no answer yet", "note: no answer yet"),
        ("", ""),
    ],
)
def test_quality_metrics_read_the_answer_after_its_marker(completion: str, answer: str) -> None:
    from rewardgym.envs.tasks import extract_answer

    assert extract_answer(completion) == answer


def test_only_the_english_task_says_its_references_are_english() -> None:
    for name, english in (("summarize", True), ("translate", False), ("arithmetic", False)):
        example = make_task(name).split("train")[0]
        assert (example.meta.get("language") == "en") is english, name


def test_docstring_examples_run(monkeypatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # a doctest registers "echo"
    monkeypatch.setattr(base, "_FAMILIES", dict(base._FAMILIES))  # and a family "echo"
    for module in (base, translate, summarize, arithmetic):
        result = doctest.testmod(module, raise_on_error=False)
        assert result.failed == 0, module.__name__


# --------------------------------------------------------------------------- JSONL


def write_lines(path: Path, lines: list[object]) -> Path:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def test_jsonl_with_explicit_splits(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "qa.jsonl",
        [
            {"prompt": "capital of France? =>", "reference": "Paris", "split": "train"},
            "",
            {"prompt": "2 + 2 =>", "reference": "4", "meta": {"input": "2 + 2"}},
            "   ",
            {"prompt": "capital of Peru? =>", "reference": "Lima", "split": "validation"},
            {"prompt": "capital of Chad? =>", "reference": "N'Djamena", "split": "test"},
        ],
    )
    task = load_task_jsonl(path)
    assert task.name == "qa" and task.sizes() == {"train": 2, "validation": 1, "test": 1}
    assert task.split("train")[1] == Example("2 + 2 =>", "4")
    assert task.split("train")[1].meta == {"input": "2 + 2"}
    assert task.split("test")[0].reference == "N'Djamena"
    assert load_task_jsonl(path, name="custom").name == "custom"


def test_jsonl_without_splits_is_split_80_10_10_by_seed(tmp_path: Path) -> None:
    lines = [{"prompt": f"q{i} =>", "reference": f"a{i}"} for i in range(40)]
    lines.append({"prompt": "q0 =>", "reference": "another answer"})  # same prompt as line 1
    path = write_lines(tmp_path / "auto.jsonl", lines)
    task = load_task_jsonl(path, seed=1)
    assert task.sizes() in ({"train": 33, "validation": 4, "test": 4},
                            {"train": 32, "validation": 4, "test": 5},
                            {"train": 32, "validation": 5, "test": 4})  # fmt: skip
    same_prompt = [s for s in ("train", "validation", "test") if "q0 =>" in prompts(task, s)]
    assert len(same_prompt) == 1  # both q0 lines landed in one split
    assert prompts(load_task_jsonl(path, seed=1), "test") == prompts(task, "test")
    assert prompts(load_task_jsonl(path, seed=2), "test") != prompts(task, "test")


def test_jsonl_warns_when_eval_prompts_leak_into_train(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "leak.jsonl",
        [
            {"prompt": "a =>", "reference": "1", "split": "train"},
            {"prompt": "a =>", "reference": "1", "split": "validation"},
            {"prompt": "b =>", "reference": "2", "split": "test"},
        ],
    )
    with pytest.warns(UserWarning, match="1 validation prompt\\(s\\) also occur in train"):
        load_task_jsonl(path)


GOOD = '{"prompt": "p =>", "reference": "r"}'


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"prompt": "a"', "bad JSON (Expecting ',' delimiter at column 15)"),
        ("[1, 2]", "expected a JSON object, got array"),
        ('{"prompt": "a"}', "missing field 'reference'"),
        ('{"prompt": 3, "reference": "x"}', "field 'prompt' must be a string, got number 3"),
        ('{"prompt": "a", "reference": null}', "field 'reference' must be a string, got null"),
        ('{"prompt": " ", "reference": "x"}', "field 'prompt' is empty"),
        ('{"promt": "a", "reference": "x"}',
         "unknown field 'promt'. Did you mean 'prompt'?; missing field 'prompt'"),
        ('{"prompt": "a", "reference": "x", "split": "tset"}',
         "unknown split 'tset'. Did you mean 'test'?"),
        ('{"prompt": "a", "reference": "x", "meta": [1]}',
         "field 'meta' must be an object, got array"),
        ('{"prompt": "a", "reference": "x", "meta": {"input": "zz"}}',
         "meta 'input' must be a string that occurs in the prompt"),
    ],
)  # fmt: skip
def test_jsonl_malformed_line_is_reported_with_file_and_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, "", line, GOOD, GOOD])
    expected = f"{path}: 1 problem(s); nothing was loaded:\n  {path}:3: {problem}"
    with pytest.raises(TaskDataError, match=re.escape(expected)):
        load_task_jsonl(path)


def test_jsonl_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD.encode() + b'\n{"prompt": "caf\xe9 =>", "reference": "x"}\n')
    with pytest.raises(
        TaskDataError, match=re.escape(f"{path}:2: not valid UTF-8 (byte 0xe9 at column 16)")
    ):
        load_task_jsonl(path)


def test_jsonl_collects_every_problem_in_one_error(tmp_path: Path) -> None:
    lines = [GOOD] * 100 + ["{oops", '{"prompt": "a"}'] + [GOOD] * 10 + ["42"]
    path = write_lines(tmp_path / "many.jsonl", lines)
    with pytest.raises(TaskDataError) as info:
        load_task_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 3 problem(s); nothing was loaded:")
    assert f"{path}:101: bad JSON" in message
    assert f"{path}:102: missing field 'reference'" in message
    assert f"{path}:113: expected a JSON object, got number 42" in message


def test_jsonl_lists_at_most_20_problems(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "worse.jsonl", ["{"] * 25)
    with pytest.raises(
        TaskDataError, match=r"25 problem\(s\)(.|\n)*:20: bad JSON.*\n  \.\.\. and 5 more$"
    ):
        load_task_jsonl(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_jsonl_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(
        TaskDataError, match=re.escape(f"{path}: file has no examples; expected one")
    ):
        load_task_jsonl(path)


def test_jsonl_missing_file_and_missing_split(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="task data file not found: .*nope.jsonl"):
        load_task_jsonl(tmp_path / "nope.jsonl")
    path = write_lines(
        tmp_path / "nosplit.jsonl",
        [
            {"prompt": "a =>", "reference": "1", "split": "test"},
            {"prompt": "b =>", "reference": "2"},
        ],
    )
    with pytest.raises(TaskDataError, match="no lines with split 'validation'; give every split"):
        load_task_jsonl(path)
    tiny = write_lines(tmp_path / "tiny.jsonl", [GOOD, GOOD])
    with pytest.raises(
        TaskDataError, match=r"1 distinct prompt\(s\) cannot fill train, validation"
    ):
        load_task_jsonl(tiny)


def test_answer_formats_and_primary_metrics() -> None:
    from rewardgym.envs.tasks import ANSWER_FORMATS, extract_number

    assert extract_number("Nina has 13 - 6 = 7 cards left.") == "7"
    assert extract_number("so 1,200 in all") == "1200"
    assert extract_number("3,4 and 5") == "5"
    assert extract_number("12 rows of 3 answer: 36 stamps") == "36"
    assert extract_number("no number") == "no number"
    arithmetic = make_task("arithmetic")
    assert (arithmetic.answer_format, arithmetic.primary_metric) == ("number", "exact_match")
    assert arithmetic.answers(["2 + 2 = 4", "answer: 9"]) == ["4", "9"]
    translate = make_task("translate")
    assert (translate.answer_format, translate.primary_metric) == ("marker", "bleu")
    assert translate.answer("note: hi answer: dogi 3") == "dogi 3"
    assert set(ANSWER_FORMATS) == {"marker", "number", "tag_or_marker"}
    tagged = ANSWER_FORMATS["tag_or_marker"]
    assert tagged("so <answer>7</answer> then <answer> 8 </answer>") == "8"  # the last tag
    assert tagged("working answer: 8") == "8" and tagged(" 8 ") == "8"
    ex = [Example("p =>", "r")]
    splits = {"train": ex, "validation": ex, "test": ex}
    with pytest.raises(UnknownNameError, match=r"unknown quality metric 'bleu4'.*bleu, chrf"):
        Task.from_examples("t", splits, primary_metric="bleu4")
    with pytest.raises(UnknownNameError, match=r"unknown answer format 'numbr'; did you mean"):
        Task.from_examples("t", splits, answer_format="numbr")


def test_jsonl_task_declares_its_metric(tmp_path) -> None:
    path = tmp_path / "rev.jsonl"
    lines = [json.dumps({"prompt": f"rev: a{i} b =>", "reference": f"b a{i}"}) for i in range(10)]
    path.write_text("\n".join(lines), encoding="utf-8")
    task = load_task_jsonl(path, primary_metric="chrf")
    assert task.primary_metric == "chrf" and task.answer_format == "marker"
    with pytest.raises(UnknownNameError, match="unknown quality metric 'exact'"):
        load_task_jsonl(path, primary_metric="exact")


# --------------------------------------------------------------------------- metrics read meta


def _hits_in_meta(hyps, refs, meta):
    """A metric that ignores the reference: the share of answers that meta lists as right."""
    return 100.0 * sum(h in m.get("right", ()) for h, m in zip(hyps, meta)) / len(hyps)


def _two_argument_metric(hyps, refs):
    """A user's metric from before meta existed: two positional parameters, nothing more."""
    return 100.0 * sum(h == r for h, r in zip(hyps, refs)) / len(refs)


def _meta_by_kwargs(hyps, refs, **kwargs):
    return 100.0 * sum(h in m.get("right", ()) for h, m in zip(hyps, kwargs["meta"])) / len(hyps)


@pytest.fixture
def metric_registry(monkeypatch):
    from rewardgym.envs.tasks import quality

    monkeypatch.setattr(quality, "_REGISTRY", dict(quality._REGISTRY))
    quality.register_quality_metric("hits_in_meta", _hits_in_meta)
    quality.register_quality_metric("two_argument", _two_argument_metric)
    quality.register_quality_metric("meta_by_kwargs", _meta_by_kwargs)
    return quality


def _meta_task(primary_metric: str) -> Task:
    # every example accepts two answers, the reference and one only meta knows about
    examples = [Example(f"q{i} =>", f"r{i}", {"right": [f"r{i}", f"alt{i}"]}) for i in range(4)]
    splits = {"train": examples, "validation": examples, "test": examples}
    return Task("meta_toy", splits, primary_metric=primary_metric)


@pytest.mark.parametrize("metric", ["hits_in_meta", "meta_by_kwargs"])
def test_a_metric_that_takes_meta_reads_each_examples_meta(metric_registry, metric) -> None:
    from rewardgym.agents.held_out import batch_quality

    task = _meta_task(metric)
    examples = task.split("test")
    answers = ["alt0", "r1", "wrong", "alt3"]  # 3 of 4 in meta["right"], 1 equals its reference
    refs, meta = [ex.reference for ex in examples], [ex.meta for ex in examples]
    expected = 100.0 * sum(a in m["right"] for a, m in zip(answers, meta)) / len(answers)
    assert task.quality(answers, refs, None, meta) == expected == 75.0
    # batch_quality (what the trainer and the TRL recorder log) passes the examples' meta itself
    assert batch_quality(task, [f"note: x answer: {a}" for a in answers], examples) == expected
    # no meta: the metric gets an empty dict per example, so nothing is in meta["right"]
    assert task.quality(answers, refs, None) == 0.0
    with pytest.raises(ConfigError, match=r"meta has 3 entries for 4 references"):
        task.quality(answers, refs, None, meta[:3])


def test_a_two_argument_metric_is_called_as_before(metric_registry) -> None:
    from rewardgym.envs.tasks import takes_meta

    assert not takes_meta(_two_argument_metric) and takes_meta(_hits_in_meta)
    assert takes_meta(_meta_by_kwargs) and not takes_meta(len)  # a builtin: no signature
    task = _meta_task("two_argument")
    examples = task.split("test")
    answers = ["alt0", "r1", "wrong", "r3"]
    refs, meta = [ex.reference for ex in examples], [ex.meta for ex in examples]
    expected = 100.0 * sum(a == r for a, r in zip(answers, refs)) / len(refs)
    assert task.quality(answers, refs, None, meta) == expected == 50.0  # meta is not passed
    assert task.quality(answers, refs, None) == expected


def test_jsonl_meta_reaches_the_metric(metric_registry, tmp_path) -> None:
    lines = [
        {"prompt": f"capital {i} =>", "reference": f"c{i}", "meta": {"right": [f"c{i}", f"k{i}"]}}
        for i in range(10)
    ]
    path = write_lines(tmp_path / "caps.jsonl", lines)
    task = load_task_jsonl(path, primary_metric="hits_in_meta")
    examples = task.split("train")
    # answer with the meta-only alternative for even examples, something wrong for odd ones
    answers = [ex.meta["right"][1] if i % 2 == 0 else "nope" for i, ex in enumerate(examples)]
    refs, meta = [ex.reference for ex in examples], [ex.meta for ex in examples]
    expected = 100.0 * sum(i % 2 == 0 for i in range(len(examples))) / len(examples)
    assert task.quality(answers, refs, None, meta) == expected
