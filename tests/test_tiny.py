"""The tiny model: tokenizer, config, cache (atomic, keyed, reused) and the warm start's BLEU.

Cache tests use a very small config (a few steps); the full warm start is ``slow`` and reads
the suite's shared cache ($REWARDGYM_CACHE, set in conftest), so it trains at most once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SMALL_TINY, assert_greedy_matches_hf

from rewardgym import machine
from rewardgym.agents import tiny
from rewardgym.agents.registry import load_policy
from rewardgym.agents.tiny import (
    CACHE_VERSION,
    COMPLETE,
    KEY_LIBRARIES,
    TinyConfig,
    evaluate_bleu,
    load_tiny,
    task_data_hash,
    tiny_cache_dir,
    train_tokenizer,
)
from rewardgym.envs.tasks import Example, Task, base, load_task_jsonl, register_task
from rewardgym.errors import ConfigError


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cache")
    policy = load_tiny("translate", cache_dir=root, device="cpu", **SMALL_TINY)
    return root, policy


def test_tokenizer_round_trip_and_special_tokens() -> None:
    tok = train_tokenizer(["translate: the dog => keli fekubu-ta"] * 5, vocab_size=280)
    assert tok.decode(tok("the dog ünïcode").input_ids) == "the dog ünïcode"
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
    assert tok.padding_side == "left" and len(tok) <= 280


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"d_model \(100\) must be a multiple of n_heads \(3\)"):
        TinyConfig(d_model=100, n_heads=3)
    with pytest.raises(ConfigError, match=r"vocab_size must be >= 260"):
        TinyConfig(vocab_size=100)
    with pytest.raises(
        ConfigError,
        match=r"unknown tiny-model option\(s\) \['stepz'\]\. "
        r"Did you mean 'steps'\?",
    ):
        TinyConfig.from_overrides(stepz=3)
    with pytest.raises(ConfigError, match=r"SFTConfig.lr must be in \(0, 1\), got 5"):
        TinyConfig.from_overrides(lr=5)
    assert TinyConfig.from_overrides(steps=5, d_model=64, n_heads=4).sft.steps == 5


def test_cache_key_covers_config_tasks_and_seeds(tmp_path) -> None:
    base = tiny_cache_dir(TinyConfig(), ("translate",), cache_dir=tmp_path)
    assert base.parent == tmp_path / "tiny" and len(base.name) == 16
    others = {
        tiny_cache_dir(TinyConfig(d_model=64, n_heads=4), ("translate",), cache_dir=tmp_path),
        tiny_cache_dir(TinyConfig.from_overrides(lr=1e-3), ("translate",), cache_dir=tmp_path),
        tiny_cache_dir(TinyConfig(), ("summarize",), cache_dir=tmp_path),
        tiny_cache_dir(TinyConfig(), ("translate",), task_seed=1, cache_dir=tmp_path),
        tiny_cache_dir(TinyConfig(), ("translate",), seed=1, cache_dir=tmp_path),
    }
    assert base not in others and len(others) == 5


def _write_jsonl(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """One example per line; the last two go to validation and test, the rest to train."""
    splits = ["train"] * (len(pairs) - 2) + ["validation", "test"]
    lines = [
        json.dumps({"prompt": p, "reference": r, "split": s})
        for (p, r), s in zip(pairs, splits, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _register_jsonl(name: str, path: Path) -> None:
    register_task(name, override=True)(lambda seed=0: load_task_jsonl(path, name=name, seed=seed))


def _state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_reregistered_task_with_new_data_gets_a_fresh_warm_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_CACHE", dict(base._CACHE))
    words = [f"w{i}" for i in range(24)]
    old = _write_jsonl(tmp_path / "old.jsonl", [(f"echo: {w} =>", w) for w in words])
    new = _write_jsonl(tmp_path / "new.jsonl", [(f"echo: {w} =>", w[::-1]) for w in words])
    cache = tmp_path / "cache"

    _register_jsonl("qa_cache_test", old)
    first = load_tiny("qa_cache_test", cache_dir=cache, device="cpu", **SMALL_TINY)
    _register_jsonl("qa_cache_test", new)  # same name, different references
    second = load_tiny("qa_cache_test", cache_dir=cache, device="cpu", **SMALL_TINY)
    again = load_tiny("qa_cache_test", cache_dir=cache, device="cpu", **SMALL_TINY)

    assert first.info["cached"] is False and second.info["cached"] is False
    assert second.info["cache_dir"] != first.info["cache_dir"]
    old_key, new_key = first.info["train_log"]["key"], second.info["train_log"]["key"]
    assert old_key["tasks"] == new_key["tasks"] == ["qa_cache_test"]
    assert old_key["task_data"] != new_key["task_data"]
    assert new_key["task_data"]["qa_cache_test"] == task_data_hash(load_task_jsonl(new))
    assert again.info["cached"] is True and again.info["cache_dir"] == second.info["cache_dir"]


def test_task_data_hash_covers_prompts_references_meta_and_order() -> None:
    examples = [Example("a =>", "b", {"k": 1}), Example("c =>", "d"), Example("e =>", "f")]

    def task(train: list[Example]) -> Task:
        return Task.from_examples("t", {"train": train, "validation": examples, "test": examples})

    base_hash = task_data_hash(task(examples))
    variants = [
        examples[::-1],
        [Example("a =>", "B", {"k": 1}), *examples[1:]],
        [Example("A =>", "b", {"k": 1}), *examples[1:]],
        [Example("a =>", "b", {"k": 2}), *examples[1:]],
    ]
    hashes = {task_data_hash(task(v)) for v in variants}
    assert task_data_hash(task(list(examples))) == base_hash
    assert base_hash not in hashes and len(hashes) == len(variants)


def test_same_key_on_the_same_machine_gives_identical_weights(tmp_path) -> None:
    first = load_tiny("translate", cache_dir=tmp_path / "a", device="cpu", **SMALL_TINY)
    second = load_tiny("translate", cache_dir=tmp_path / "b", device="cpu", **SMALL_TINY)
    assert first.info["cached"] is False and second.info["cached"] is False
    assert Path(first.info["cache_dir"]).name == Path(second.info["cache_dir"]).name
    assert first.tokenizer.get_vocab() == second.tokenizer.get_vocab()
    assert _state_dicts_equal(first.model, second.model)


def test_key_follows_library_versions_and_log_records_the_machine(
    small_cache, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    _, policy = small_cache
    log = policy.info["train_log"]
    installed = machine.library_versions(KEY_LIBRARIES)
    assert log["key"]["libraries"] == installed and all(installed.values())
    assert log["machine"]["cpu_model"] == machine.cpu_model() and log["machine"]["cpu_model"]
    for name in KEY_LIBRARIES:
        assert log["machine"]["versions"][name] == installed[name]

    config = TinyConfig.from_overrides(**SMALL_TINY)
    before = tiny_cache_dir(config, ("translate",), cache_dir=tmp_path)
    real = machine.library_versions
    seen = set()
    for name in KEY_LIBRARIES:

        def other_version(names, bumped=name):
            return {k: (f"{v}.other" if k == bumped else v) for k, v in real(names).items()}

        monkeypatch.setattr(machine, "library_versions", other_version)
        seen.add(tiny_cache_dir(config, ("translate",), cache_dir=tmp_path))
    assert before not in seen and len(seen) == len(KEY_LIBRARIES)


def test_cpu_model_falls_back_without_proc_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/cpuinfo")

    monkeypatch.setattr(machine, "open", no_proc, raising=False)
    monkeypatch.setattr(machine.platform, "processor", lambda: "")
    monkeypatch.setattr(machine.platform, "machine", lambda: "riscv64")
    assert machine.cpu_model() == "riscv64"


def test_cache_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("REWARDGYM_CACHE", str(tmp_path))
    assert tiny_cache_dir(TinyConfig(), ("translate",)).parent == tmp_path / "tiny"


def test_build_writes_a_complete_cache(small_cache) -> None:
    root, policy = small_cache
    path = tiny_cache_dir(TinyConfig.from_overrides(**SMALL_TINY), ("translate",), cache_dir=root)
    assert policy.info["cached"] is False and policy.info["cache_dir"] == str(path)
    names = {p.name for p in path.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "train_log.json",
        COMPLETE,
    } <= names
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # none left behind
    log = json.loads((path / "train_log.json").read_text())
    assert log["cache_version"] == CACHE_VERSION and log["seed"] == 0 and log["steps"] == 6
    assert [step for step, _ in log["losses"]] == [3, 6]
    assert set(log["bleu"]) == {"translate"} and log["wall_s"] > 0
    assert policy.n_params == log["n_params"]


def _must_not_train(*args, **kwargs):
    raise AssertionError("a cached warm start was trained again")


def test_second_load_reuses_the_cache(small_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    root, first = small_cache
    path = tiny_cache_dir(TinyConfig.from_overrides(**SMALL_TINY), ("translate",), cache_dir=root)
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(tiny, "build_tiny", _must_not_train)
    again = load_policy("tiny", task="translate", cache_dir=root, device="cpu", **SMALL_TINY)
    assert again.info["cached"] is True and again.info["train_log"] == first.info["train_log"]
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime
    for a, b in zip(first.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_incomplete_cache_dir_is_rebuilt(small_cache, tmp_path) -> None:
    _, first = small_cache
    path = tiny_cache_dir(
        TinyConfig.from_overrides(**SMALL_TINY), ("translate",), cache_dir=tmp_path
    )
    path.mkdir(parents=True)
    (path / "model.safetensors").write_text("torn write")  # no COMPLETE marker
    rebuilt = load_tiny("translate", cache_dir=tmp_path, device="cpu", **SMALL_TINY)
    assert rebuilt.info["cached"] is False and (path / COMPLETE).is_file()
    # same seed, same machine: same weights as the first build
    for a, b in zip(first.model.parameters(), rebuilt.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bad_task_argument(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"task must be a task name or a non-empty tuple"):
        load_tiny((), cache_dir=tmp_path)


@pytest.mark.slow
def test_the_default_warm_start_logs_what_it_measured() -> None:
    """Trains once into the suite's shared cache, then loads in a second. What BLEU the warm
    start reaches depends on the CPU that trained it: ``benchmarks/learning.py`` measures it."""
    from rewardgym.envs.tasks import make_task

    policy = load_policy("tiny", task="translate", device="cpu")
    log = policy.info["train_log"]
    test = make_task("translate", seed=0).split("test")
    assert evaluate_bleu(policy, test) == pytest.approx(log["bleu"]["translate"], abs=0.5)
    gen = policy.generate([ex.prompt for ex in test[:16]], greedy=True)
    for ids, done in zip(gen.token_ids, gen.finished, strict=True):
        assert (ids[-1] == policy.eos_id) == done and policy.eos_id not in ids[:-1]
    assert_greedy_matches_hf(policy, gen, max_new_tokens=48)


def test_replay_loss_and_lr_schedule(small_cache) -> None:
    from rewardgym.agents.sft import SFTConfig, lr_at, replay_loss
    from rewardgym.envs.tasks import make_task

    _, policy = small_cache
    clone = policy.copy()
    task = make_task("translate", seed=0)
    plain = replay_loss(clone, task.split("train"), n=4, seed=1)
    weighted = replay_loss(clone, task.split("train"), n=4, seed=1, confidence_weighting=True)
    assert plain.n_positions > 0 and 0 < weighted.loss.item() < plain.loss.item()
    plain.loss.backward()
    assert all(p.grad is not None for p in clone.model.parameters())
    config = SFTConfig(steps=100, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(1e-4) and lr_at(9, config) == pytest.approx(1e-3)
    assert lr_at(99, config) == pytest.approx(1e-4, rel=1e-2)
    with pytest.raises(ConfigError, match=r"replay_loss needs n >= 1 examples, got 0"):
        replay_loss(clone, task.split("train"), n=0, seed=0)


def test_warm_start_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardgym.agents.tiny import MAX_WARM_START_THREADS, default_threads

    monkeypatch.delenv("REWARDGYM_THREADS", raising=False)
    for cpus in (1, 2, 16):
        monkeypatch.setattr(machine, "usable_cpus", lambda cpus=cpus: cpus)
        assert default_threads() == min(cpus, MAX_WARM_START_THREADS)
    with machine.torch_threads(1):  # a run's own thread count does not move the cache key
        assert default_threads() == MAX_WARM_START_THREADS
    monkeypatch.setenv("REWARDGYM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("REWARDGYM_THREADS", "zero")
    with pytest.raises(ConfigError, match=r"REWARDGYM_THREADS must be an int >= 1, got 'zero'"):
        default_threads()


def test_flawed_demonstrations_are_seeded_and_keep_the_answer_readable() -> None:
    from rewardgym.agents.sft import STOCK_PREAMBLE, SFTConfig, demonstrations
    from rewardgym.envs.tasks import extract_answer, make_task

    train = make_task("translate", seed=0).split("train")[:2000]
    assert demonstrations(train, SFTConfig(), seed=0) == train  # no flaws asked for: untouched
    config = SFTConfig(loop_share=0.6, note_share=0.8)
    demos = demonstrations(train, config, seed=0)
    assert demos == demonstrations(train, config, seed=0) != demonstrations(train, config, seed=1)
    noted = [d for d in demos if d.reference.startswith(f"note: {STOCK_PREAMBLE} answer: ")]
    looped = 0
    for demo, ex in zip(demos, train, strict=True):
        answer = extract_answer(demo.reference)
        assert answer.startswith(ex.reference) and demo.prompt == ex.prompt
        extra = answer[len(ex.reference) :].split()
        assert extra == [ex.reference.split()[-1]] * len(extra) and len(extra) <= 3
        looped += bool(extra)
    # shares within 4 standard errors of the asked ones
    for count, share in ((len(noted), 0.8), (looped, 0.6)):
        assert abs(count / len(train) - share) < 4 * (share * (1 - share) / len(train)) ** 0.5
