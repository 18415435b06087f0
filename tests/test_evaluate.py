"""The evaluation harness: exact numbers with fake policies, end to end with a tiny real model.

Fake policies (an oracle, an echo, a half-right one) make every figure computable by hand; a
random-initialised 1-layer Llama saved as a local Hugging Face directory checks the real path:
loading a run's checkpoint, the files on disk, and the sacrebleu command line reproducing BLEU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_random_model

from rewardgym.agents.checkpoint import save_checkpoint
from rewardgym.agents.config import TrainConfig
from rewardgym.agents.meters.text_metrics import corpus_bleu, corpus_chrf
from rewardgym.agents.policy import Generation
from rewardgym.agents.registry import load_policy
from rewardgym.cli import main as cli_main
from rewardgym.envs.noise import apply_noise
from rewardgym.envs.tasks import Example, Task
from rewardgym.envs.text_env import TextTaskEnv
from rewardgym.errors import CheckpointError, ConfigError, RunDataError, UnknownNameError
from rewardgym.evaluation.evaluate import (
    EvalConfig,
    EvalResult,
    compare,
    evaluate,
    evaluate_run,
    format_summary,
)
from rewardgym.evaluation.robustness import forgetting_pct
from rewardgym.rewards import make_reward

SACREBLEU = Path(sys.executable).parent / "sacrebleu"
WORDS = "the red dog saw a big cat near my old house on two blue hills today".split()


def toy_task(name: str = "toy", n: int = 10) -> Task:
    """Prompts ``id<i>: <input> =>`` whose reference is the input reversed (meta input set)."""
    examples = []
    for i in range(n):
        words = [WORDS[(i * 3 + j) % len(WORDS)] for j in range(4 + i % 4)]
        text = " ".join(words)
        examples.append(Example(f"id{i}: {text} =>", " ".join(reversed(words)), {"input": text}))
    return Task.from_examples(name, {"train": examples, "validation": examples, "test": examples})


def prompt_input(prompt: str) -> str:
    return prompt.split(": ", 1)[1].removesuffix(" =>")


class FakePolicy:
    """Answers with ``answer(prompt)``; one token per word plus eos; records each call."""

    name = "fake"
    n_params = 0

    def __init__(self, answer, wall_s: float = 0.0, finished: bool = True) -> None:
        self.answer, self.wall_s, self.finished = answer, wall_s, finished
        self.calls: list[dict] = []

    def generate(
        self, prompts, max_new_tokens=48, temperature=1.0, top_p=1.0, greedy=False, seed=None
    ) -> Generation:
        self.calls.append(
            {
                "n": len(prompts),
                "greedy": greedy,
                "seed": seed,
                "max_new_tokens": max_new_tokens,
                "prompts": list(prompts),
            }
        )
        texts = [self.answer(p) for p in prompts]
        ids = [list(range(len(t.split()) + int(self.finished))) for t in texts]
        return Generation(
            completions=texts,
            token_ids=ids,
            logprobs=[np.zeros(len(i)) for i in ids],
            entropy_bits=[np.full(len(i), 1.5) for i in ids],
            finished=[self.finished] * len(texts),
            prompt_ids=[[0] for _ in texts],
            wall_s=self.wall_s,
        )


def oracle_for(task: Task, split: str = "test") -> FakePolicy:
    """Knows every answer by the prompt's id, so noise (which only touches the input) is moot."""
    by_id = {ex.prompt.split(":")[0]: ex.reference for ex in task.split(split)}
    return FakePolicy(lambda p: by_id[p.split(":")[0]])


def reverse_input(prompt: str) -> str:
    return " ".join(reversed(prompt_input(prompt).split()))


def half_right(prompt: str) -> str:
    words = reverse_input(prompt).split()
    return " ".join(words[: max(1, len(words) // 2)] + ["zzz"])


def sacrebleu_cli(refs: Path, hyps: Path) -> float:
    out = subprocess.run(
        [str(SACREBLEU), str(refs), "-i", str(hyps), "-b"],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip())


# -- exact numbers with fake policies ----------------------------------------------------------


def test_metrics_read_the_answer_and_token_counts_read_everything(tmp_path: Path) -> None:
    task = toy_task()
    oracle = oracle_for(task)
    wordy = FakePolicy(lambda p: f"note: sure, here is my answer answer: {oracle.answer(p)}")
    plain, noted = (
        evaluate(
            p,
            task,
            EvalConfig(noise=["word_drop"], severities=[0.1]),
            reward="task_only",
            out_dir=d,
        )
        for p, d in ((oracle, tmp_path / "plain"), (wordy, tmp_path / "noted"))
    )
    assert noted.bleu == plain.bleu == pytest.approx(100.0)
    assert noted.exact_match == plain.exact_match == 1.0 and noted.noise == plain.noise
    assert noted.reward["total"] == plain.reward["total"]
    assert noted.completion_tokens == plain.completion_tokens + 7  # note: sure, ... answer:
    hyps = (tmp_path / "noted" / "test.hyps.txt").read_text()
    assert hyps == (tmp_path / "plain" / "test.hyps.txt").read_text()  # sacrebleu reproduces
    assert noted.samples[0]["completion"].startswith("note: sure")  # the report shows it all


def test_arithmetic_reads_the_last_number_and_headlines_exact_match() -> None:
    from rewardgym.envs.tasks import make_task

    task = make_task("arithmetic")
    examples = task.split("test")[:20]
    answers = {ex.prompt: ex.meta["answer"] for ex in examples}
    # right on even examples, off by one on odd ones; worked prose around every number
    worked = {
        ex.prompt: f"{ex.meta['operands'][0]} and {ex.meta['operands'][1]} make "
        f"{answers[ex.prompt] + i % 2} in all."
        for i, ex in enumerate(examples)
    }
    noised_away = "no idea"  # a noised prompt is not in ``worked``
    result = evaluate(
        FakePolicy(lambda p: worked.get(p, noised_away)),
        task,
        EvalConfig(n_examples=20, noise=["word_drop"], severities=[0.1]),
    )
    assert result.metric == "exact_match"
    assert result.exact_match == 0.5 and result.quality == 50.0
    assert result.samples[0]["completion"] == worked[examples[0].prompt]  # stored whole
    assert any(
        "corpus BLEU is degenerate" in note and "exact match" in note for note in result.notes
    )
    assert set(result.noise_quality) == {"word_drop"}
    noisy = result.noise_quality["word_drop"]["0.1"]
    assert result.robustness == pytest.approx(noisy / result.quality)
    later = evaluate(
        FakePolicy(lambda p: str(answers[p])), task, EvalConfig(n_examples=20, noise=None)
    )
    change = compare(
        evaluate(FakePolicy(worked.__getitem__), task, EvalConfig(n_examples=20, noise=None)), later
    )
    assert change["metric"] == "exact_match"
    assert (change["quality_before"], change["quality_after"]) == (50.0, 100.0)
    assert change["quality_improvement_pct"] == pytest.approx(100.0)
    assert "primary metric: exact match 100.00" in format_summary(later)


def test_bleu_degeneracy_is_noted_for_one_word_references() -> None:
    refs = ["alpha", "beta", "gamma"]
    examples = [Example(f"id{i}: {r} =>", r, {"input": r}) for i, r in enumerate(refs)]
    task = Task.from_examples(
        "short", {"train": examples, "validation": examples, "test": examples}
    )
    result = evaluate(oracle_for(task), task, EvalConfig(noise=None))
    (note,) = [n for n in result.notes if "degenerate" in n]
    assert "shorter than 4 tokens (median 1)" in note and "declare another primary_metric" in note
    assert result.metric == "bleu" and result.quality == result.bleu
    assert not any(
        "degenerate" in n
        for n in evaluate(oracle_for(toy_task()), toy_task(), EvalConfig(noise=None)).notes
    )


def test_oracle_scores_bleu_100_and_robustness_1() -> None:
    task = toy_task()
    result = evaluate(oracle_for(task), task, EvalConfig(n_examples=None))
    refs = [ex.reference for ex in task.split("test")]
    assert result.bleu == corpus_bleu(refs, refs) == pytest.approx(100.0)
    assert result.chrf == pytest.approx(100.0)
    assert result.exact_match == 1.0
    assert result.robustness == 1.0
    assert len(result.noise) == 4 and all(len(v) == 3 for v in result.noise.values())
    assert result.notes == []


def test_echo_policy_matches_hand_computed_noise_bleu() -> None:
    task = toy_task()
    result = evaluate(
        FakePolicy(reverse_input),
        task,
        EvalConfig(noise=["char_drop", "word_drop"], severities=[0.1, 0.2]),
    )
    refs = [ex.reference for ex in task.split("test")]
    inputs = [ex.meta["input"] for ex in task.split("test")]
    expected = {}
    for kind in ("char_drop", "word_drop"):
        for level in (0.1, 0.2):
            noisy = [apply_noise(t, kind, level, seed=i) for i, t in enumerate(inputs)]
            hyps = [" ".join(reversed(t.split())) for t in noisy]
            expected.setdefault(kind, {})[repr(level)] = corpus_bleu(hyps, refs)
    assert result.noise == expected
    ratios = [b / result.bleu for v in expected.values() for b in v.values()]
    assert result.robustness == pytest.approx(sum(ratios) / 4, abs=1e-12)
    assert 0 < result.robustness < 1


def test_lengths_finished_latency_and_entropy() -> None:
    task = toy_task()
    policy = FakePolicy(reverse_input, wall_s=0.8)
    greedy = evaluate(policy, task, EvalConfig(noise=None, batch_size=4))
    words = [len(ex.reference.split()) for ex in task.split("test")]
    assert greedy.completion_tokens == pytest.approx(np.mean(words))  # eos not counted
    assert greedy.tokens_per_sample == pytest.approx(np.mean(words) + 1)
    assert greedy.completion_chars == pytest.approx(
        np.mean([len(ex.reference) for ex in task.split("test")])
    )
    assert greedy.finished_share == 1.0
    # batches of 4, 4, 2 prompts, each taking 0.8 s: per sample 0.2, 0.2, 0.4
    assert greedy.latency_s_per_sample == pytest.approx((8 * 0.2 + 2 * 0.4) / 10)
    assert greedy.entropy_bits is None
    sampled = evaluate(
        FakePolicy(reverse_input), task, EvalConfig(noise=None, greedy=False, seed=3)
    )
    assert sampled.entropy_bits == 1.5
    unfinished = evaluate(FakePolicy(reverse_input, finished=False), task, EvalConfig(noise=None))
    assert unfinished.finished_share == 0.0
    assert unfinished.completion_tokens == unfinished.tokens_per_sample == np.mean(words)


def test_batching_and_n_examples() -> None:
    task = toy_task()
    policy = FakePolicy(reverse_input)
    result = evaluate(
        policy, task, EvalConfig(noise=["char_swap"], severities=[0.1], n_examples=7, batch_size=3)
    )
    assert [c["n"] for c in policy.calls] == [3, 3, 1, 3, 3, 1]
    assert all(c["greedy"] for c in policy.calls)
    assert result.n_examples == 7
    assert policy.calls[0]["prompts"][0] == task.split("test")[0].prompt
    assert result.samples[0] == {
        "prompt": task.split("test")[0].prompt,
        "reference": task.split("test")[0].reference,
        "completion": task.split("test")[0].reference,
    }
    assert len(result.samples) == 5


def test_sampling_seeds_are_deterministic_and_distinct() -> None:
    task = toy_task()
    runs = []
    for seed in (0, 0, 1):
        policy = FakePolicy(reverse_input)
        evaluate(
            policy,
            task,
            EvalConfig(
                noise=["word_drop"], severities=[0.2], greedy=False, seed=seed, batch_size=4
            ),
        )
        runs.append([c["seed"] for c in policy.calls])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert len(set(runs[0])) == len(runs[0])  # every (condition, batch) has its own stream


def test_reward_equals_what_the_env_pays() -> None:
    task = toy_task()
    reward = make_reward({"composite": {"speed": 0.5, "bleu": 0.5}})
    policy = FakePolicy(half_right, wall_s=0.5)
    result = evaluate(policy, task, EvalConfig(noise=None, batch_size=5), reward=reward)
    env = TextTaskEnv(task, reward=reward, split="test")
    paid, components = [], {"speed": [], "bleu": []}
    for i, ex in enumerate(task.split("test")):
        env.reset(options={"index": i})
        text = half_right(ex.prompt)
        action = {
            "text": text,
            "n_tokens": len(text.split()) + 1,
            "finished": True,
            "latency_s": 0.1,
        }
        _, r, *_, info = env.step(action)
        paid.append(r)
        for name in components:
            components[name].append(info[f"reward/{name}"])
    assert result.reward["total"] == pytest.approx(np.mean(paid), abs=1e-12)
    for name, values in components.items():
        assert result.reward["components"][name] == pytest.approx(np.mean(values), abs=1e-12)
    assert result.reward["applies_share"] == 1.0
    assert evaluate(policy, task, EvalConfig(noise=None)).reward is None


def test_zero_bleu_gives_none_and_valid_json(tmp_path: Path) -> None:
    task = toy_task()
    result = evaluate(
        FakePolicy(lambda p: "", finished=False),
        task,
        EvalConfig(noise=["char_drop"], severities=[0.1], greedy=False),
        out_dir=tmp_path,
    )
    assert result.bleu == 0.0 and result.robustness is None
    assert result.entropy_bits is None  # no tokens at all
    assert result.notes == [
        "entropy is None: no tokens were generated",
        "robustness R is None: clean BLEU 0.00 is below 10, so B(n, s) / B_clean is undefined "
        "(or meaningless)",
    ]

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in JSON")

    data = json.loads((tmp_path / "test.json").read_text(), parse_constant=no_constants)
    assert data["robustness"] is None


def test_saved_files_reproduce_bleu_with_sacrebleu_cli(tmp_path: Path) -> None:
    task = toy_task()
    result = evaluate(
        FakePolicy(half_right),
        task,
        EvalConfig(noise=["word_drop"], severities=[0.2]),
        out_dir=tmp_path,
    )
    assert 0 < result.bleu < 100
    assert sorted(os.listdir(tmp_path)) == [
        "test.hyps.txt",
        "test.json",
        "test.noise",
        "test.refs.txt",
    ]
    assert sacrebleu_cli(tmp_path / "test.refs.txt", tmp_path / "test.hyps.txt") == round(
        result.bleu, 1
    )
    noisy_hyps = tmp_path / result.files["noise/word_drop/0.2/hyps"]
    noisy_refs = tmp_path / result.files["noise/word_drop/0.2/refs"]
    assert noisy_hyps == tmp_path / "test.noise" / "word_drop-0.2.hyps.txt"
    assert sacrebleu_cli(noisy_refs, noisy_hyps) == round(result.noise["word_drop"]["0.2"], 1)
    hyps = (tmp_path / "test.hyps.txt").read_text().splitlines()
    refs = (tmp_path / "test.refs.txt").read_text().splitlines()
    assert corpus_bleu(hyps, refs) == result.bleu and corpus_chrf(hyps, refs) == result.chrf


def test_json_round_trip_and_atomic_save(tmp_path: Path) -> None:
    task = toy_task()
    result = evaluate(
        FakePolicy(half_right),
        task,
        EvalConfig(noise=["keyboard_typo"], severities=[0.05], retention_task=toy_task("other")),
        reward="speed_only",
        out_dir=tmp_path,
    )
    again = EvalResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert EvalResult.load(tmp_path / "test.json") == result
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert result.to_dict()["format_version"] == 1
    path = result.save(tmp_path / "sub" / "copy.json")
    assert EvalResult.load(path) == result


def test_from_dict_errors(tmp_path: Path) -> None:
    data = evaluate(FakePolicy(half_right), toy_task(), EvalConfig(noise=None)).to_dict()
    with pytest.raises(RunDataError, match=r"has format_version 9, but this rewardgym reads"):
        EvalResult.from_dict({**data, "format_version": 9})
    with pytest.raises(RunDataError, match=r"unknown fields \['blue'\], missing fields \[\]"):
        EvalResult.from_dict({**data, "blue": 1.0})
    del data["bleu"]
    with pytest.raises(RunDataError, match=r"unknown fields \[\], missing fields \['bleu'\]"):
        EvalResult.from_dict(data)
    with pytest.raises(RunDataError, match=r"no evaluation result at"):
        EvalResult.load(tmp_path / "missing.json")


def _result(bleu: float, robustness: float | None, **kw) -> EvalResult:
    kw.setdefault("noise", {"char_drop": {"0.1": 1.0}} if robustness is not None else {})
    return EvalResult(
        "toy", "test", 10, bleu, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.0, robustness=robustness, **kw
    )


def test_compare_by_hand() -> None:
    out = compare(_result(40.0, 0.8), _result(50.0, 0.6))
    assert out["bleu_improvement_pct"] == pytest.approx(25.0)
    assert out["robustness_change_pct"] == pytest.approx(-25.0)
    assert out["notes"] == [] and "forgetting_pct" not in out
    assert (out["bleu_before"], out["bleu_after"]) == (40.0, 50.0)


def test_compare_undefined_values_are_none_with_notes() -> None:
    out = compare(_result(0.0, None), _result(10.0, 0.5))
    assert out["bleu_improvement_pct"] is None and out["robustness_change_pct"] is None
    assert out["notes"][0] == (
        "BLEU improvement is undefined: the value before is 0 (a relative change from 0 has no "
        "value)"
    )
    assert out["notes"][1].startswith("robustness change is undefined: the two results swept")
    out = compare(_result(0.0, None, noise={"char_drop": {"0.1": 0.0}}), _result(10.0, 0.5))
    assert out["notes"][1] == "robustness change is undefined: the value before is missing"
    json.dumps(out, allow_nan=False)


def test_compare_forgetting_from_retention() -> None:
    def ret(bleu: float) -> dict:
        return {
            "task": "other",
            "split": "test",
            "n_examples": 10,
            "bleu": bleu,
            "chrf": 0.0,
            "exact_match": 0.0,
        }

    out = compare(_result(40.0, 0.8, retention=ret(40.0)), _result(50.0, 0.8, retention=ret(30.0)))
    assert out["forgetting_pct"] == forgetting_pct(40.0, 30.0) == 25.0
    out = compare(_result(40.0, 0.8, retention=ret(0.0)), _result(50.0, 0.8, retention=ret(3.0)))
    assert out["forgetting_pct"] is None
    assert out["notes"] == [
        "forgetting is undefined: the value before is 0 (a relative change from 0 has no value)"
    ]


def test_compare_refuses_different_splits() -> None:
    other = _result(50.0, 0.6)
    other.split = "validation"
    with pytest.raises(ConfigError, match=r"cannot compare evaluations with different split"):
        compare(_result(40.0, 0.8), other)


def test_retention_task_measured_on_real_answers() -> None:
    task, other = toy_task(), toy_task("other", n=6)
    # The echo policy reverses any toy input, so it is right on both tasks.
    result = evaluate(FakePolicy(reverse_input), task, EvalConfig(noise=None, retention_task=other))
    assert result.retention["task"] == "other" and result.retention["n_examples"] == 6
    assert result.retention["bleu"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"split": "tset"}, UnknownNameError, r"unknown split 'tset'; did you mean 'test'"),
        ({"noise": ["char_dorp"]}, UnknownNameError, r"did you mean 'char_drop'"),
        ({"severities": [0.0]}, ConfigError, r"noise severity must be a number in \(0, 1\]"),
        ({"batch_size": 0}, ConfigError, r"batch_size must be an int >= 1, got 0"),
        ({"n_examples": -1}, ConfigError, r"n_examples must be an int >= 1, got -1"),
        ({"max_new_tokens": 0}, ConfigError, r"max_new_tokens must be an int >= 1, got 0"),
        ({"seed": -2}, ConfigError, r"seed must be an int >= 0, got -2"),
        (
            {"temperature": 0},
            ConfigError,
            r"temperature must be a finite number in \(0.0, inf\], got 0",
        ),
        ({"top_p": 1.5}, ConfigError, r"top_p must be a finite number in \(0.0, 1.0\], got 1.5"),
        ({"retention_split": "dev"}, UnknownNameError, r"unknown split 'dev'"),
        ({"greedy": "no"}, ConfigError, r"greedy must be true or false, got 'no'"),
    ],
)
def test_bad_eval_config_fails_when_built(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        EvalConfig(**kwargs)


@pytest.mark.parametrize(
    ("task", "config", "error", "match"),
    [
        (3, None, ConfigError, r"task must be a task name or a Task, got int"),
        ("translat", None, UnknownNameError, r"did you mean 'translate'"),
        (None, {"noise": None}, ConfigError, r"config must be an EvalConfig, got dict"),
        (None, EvalConfig(retention_task="translat"), UnknownNameError, r"did you mean"),
    ],
)
def test_bad_arguments_fail_before_generating(task, config, error, match) -> None:
    policy = FakePolicy(reverse_input)
    with pytest.raises(error, match=match):
        evaluate(policy, toy_task() if task is None else task, config)
    assert policy.calls == []


def test_policy_answering_too_few_prompts() -> None:
    class Short(FakePolicy):
        def generate(self, prompts, **kw):
            return super().generate(list(prompts)[:-1], **kw)

    with pytest.raises(ConfigError, match=r"Short.generate returned 9 completions for 10"):
        evaluate(Short(reverse_input), toy_task(), EvalConfig(noise=None))


def same_words(hyps, refs):
    """Share of answers with the reference's words in any order, 0-100 (a user's metric)."""
    same = [sorted(h.split()) == sorted(r.split()) for h, r in zip(hyps, refs, strict=True)]
    return 100.0 * sum(same) / len(same)


def test_a_registered_quality_metric_is_a_tasks_primary_metric(monkeypatch) -> None:
    from rewardgym.envs.tasks import quality

    monkeypatch.setattr(quality, "_REGISTRY", dict(quality._REGISTRY))
    quality.register_quality_metric("same_words", same_words, label="same words")
    base = toy_task()
    splits = {name: base.split(name) for name in ("train", "validation", "test")}
    task = Task("toy_words", splits, primary_metric="same_words")
    result = evaluate(
        FakePolicy(prompt_input), task, EvalConfig(noise=["word_drop"], severities=0.5)
    )
    refs = [ex.reference for ex in task.split("test")]
    assert result.metric == "same_words" and result.exact_match == 0.0
    assert result.quality == same_words([prompt_input(e.prompt) for e in task.split("test")], refs)
    assert result.quality == 100.0  # the input holds the reference's words, reversed
    assert 0 <= result.noise_quality["word_drop"]["0.5"] < 100.0
    assert "same words" in format_summary(result)
    with pytest.raises(UnknownNameError, match=r"unknown quality metric 'same_wrds'; did you"):
        Task("t", splits, primary_metric="same_wrds")
    with pytest.raises(ConfigError, match=r"is a built-in quality metric"):
        quality.register_quality_metric("bleu", same_words)
    with pytest.raises(ConfigError, match=r"'same_words' is already registered; pass overwrite"):
        quality.register_quality_metric("same_words", same_words)
    quality.register_quality_metric("broken", lambda h, r: 250.0)
    with pytest.raises(ConfigError, match=r"'broken' returned 250.0; it must return a number"):
        evaluate(FakePolicy(prompt_input), Task("t", splits, primary_metric="broken"),
                 EvalConfig(noise=None))  # fmt: skip


# -- end to end with a tiny real model ---------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer Llama with a byte-level BPE tokenizer, saved as a local HF directory."""
    from rewardgym.envs.tasks import make_task

    texts = [f"{ex.prompt} {ex.reference}" for ex in make_task("translate").split("train")[:200]]
    return save_random_model(tmp_path_factory.mktemp("tiny-llama"), texts, vocab_size=300)


@pytest.fixture(scope="session")
def tiny_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory: config.json naming the tiny model, one checkpoint with changed weights."""
    run = tmp_path_factory.mktemp("run")
    config = TrainConfig(
        task="translate",
        model=str(tiny_model_dir),
        reward="speed_only",
        max_new_tokens=6,
        tensorboard=False,
        progress=False,
        device="cpu",
    )
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    policy = load_policy(str(tiny_model_dir), device="cpu")
    torch.manual_seed(1)
    with torch.no_grad():
        for param in policy.model.parameters():
            param.add_(torch.randn_like(param))
    save_checkpoint(run, 3, policy.model, state={"update": 3})
    (run / "checkpoints" / "step-000009").mkdir()  # interrupted: no COMPLETE marker
    return run


def test_tiny_model_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    policy = load_policy(str(tiny_model_dir), device="cpu")
    config = EvalConfig(
        noise=["char_swap"], severities=[0.2], n_examples=12, max_new_tokens=6, batch_size=5
    )
    result = evaluate(policy, "translate", config, out_dir=tmp_path, reward="speed_only")
    assert result.n_examples == 12 and 0 < result.tokens_per_sample <= 6
    assert sacrebleu_cli(tmp_path / "test.refs.txt", tmp_path / "test.hyps.txt") == round(
        result.bleu, 1
    )
    noisy = tmp_path / "test.noise"
    assert sacrebleu_cli(noisy / "char_swap-0.2.refs.txt", noisy / "char_swap-0.2.hyps.txt") == (
        round(result.noise["char_swap"]["0.2"], 1)
    )
    assert EvalResult.load(tmp_path / "test.json") == result
    assert result.settings["policy"] == str(tiny_model_dir)
    # greedy is deterministic; seeded sampling repeats itself
    again = evaluate(policy, "translate", config)
    assert again.samples == result.samples and again.noise == result.noise
    one = evaluate(
        policy,
        "translate",
        EvalConfig(greedy=False, seed=4, noise=None, n_examples=12, max_new_tokens=6),
    )
    two = evaluate(
        policy,
        "translate",
        EvalConfig(greedy=False, seed=4, noise=None, n_examples=12, max_new_tokens=6),
    )
    assert one.samples == two.samples and one.entropy_bits == two.entropy_bits > 0


def test_evaluate_run_loads_the_latest_complete_checkpoint(
    tiny_run: Path, tiny_model_dir: Path
) -> None:
    result = evaluate_run(
        tiny_run, EvalConfig(noise=["word_drop"], severities=[0.1], n_examples=8, batch_size=8)
    )
    assert result.settings["checkpoint_step"] == 3
    assert result.settings["max_new_tokens"] == 6  # the run's setting
    assert result.reward["spec"] == "speed_only"
    eval_dir = tiny_run / "eval"
    assert EvalResult.load(eval_dir / "test.json") == result
    assert (eval_dir / "test.noise" / "word_drop-0.1.hyps.txt").is_file()
    # the answers are the checkpoint's, not the base model's
    base = evaluate(
        load_policy(str(tiny_model_dir), device="cpu"),
        "translate",
        EvalConfig(noise=None, n_examples=8, max_new_tokens=6),
    )
    assert [s["completion"] for s in base.samples] != [s["completion"] for s in result.samples]


def test_evaluate_run_errors(tmp_path: Path, tiny_run: Path) -> None:
    with pytest.raises(RunDataError, match=r"does not exist; pass the --out folder"):
        evaluate_run(tmp_path / "nope")
    with pytest.raises(RunDataError, match=r"is not a run directory: it has no config.json"):
        evaluate_run(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RunDataError, match=r"cannot read the run's config"):
        evaluate_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"task": "translate", "updatez": 3}))
    with pytest.raises(RunDataError, match=r"unknown option 'updatez'; did you mean 'updates'"):
        evaluate_run(tmp_path)
    (tmp_path / "config.json").write_text((tiny_run / "config.json").read_text())
    (tmp_path / "checkpoints" / "step-000001").mkdir(parents=True)  # no COMPLETE marker
    with pytest.raises(CheckpointError, match=r"has no complete checkpoint in"):
        evaluate_run(tmp_path)
    with pytest.raises(UnknownNameError, match=r"did you mean 'char_drop'"):
        evaluate_run(tiny_run, EvalConfig(noise=["char_drp"]))


def test_script_main(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "eval"
    argv = ["evaluate", str(tiny_run), "--split", "validation", "--noise", "none",
            "--n-examples", "4", "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("translate/validation (4 examples): BLEU ")
    assert f"saved {out / 'validation.json'}" in printed
    assert EvalResult.load(out / "validation.json").noise == {}
    assert format_summary(EvalResult.load(out / "validation.json")) in printed
    assert cli_main(["evaluate", str(tmp_path / "nope")]) == 2
    assert "error: run directory" in capsys.readouterr().err


def test_another_reward_is_written_beside_the_runs_own_result(
    tiny_run: Path, capsys: pytest.CaptureFixture
) -> None:
    from rewardgym.evaluation.evaluate import eval_dir

    common = ["--split", "validation", "--noise", "none", "--n-examples", "4"]
    assert cli_main(["evaluate", str(tiny_run), *common]) == 0
    own = (tiny_run / "eval" / "validation.json").read_bytes()
    assert cli_main(["evaluate", str(tiny_run), *common, "--reward", "balanced"]) == 0
    beside = tiny_run / "eval" / "reward-balanced" / "validation.json"
    assert f"saved {beside}" in capsys.readouterr().out
    assert (tiny_run / "eval" / "validation.json").read_bytes() == own  # never written over
    assert EvalResult.load(beside).reward is not None
    assert eval_dir(tiny_run, {"composite": {"bleu": 1.0}}).name.startswith("reward-spec-")
