"""The "tiny" model: a few-million-parameter Llama, its own BPE tokenizer, a cached warm start.

``load_tiny`` trains a byte-level BPE tokenizer on the task's training text, builds a small
Llama causal LM, warm-starts it by supervised training on the train split (loss on completion
tokens only) and caches the result on disk under
``$REWARDGYM_CACHE/tiny/<hash>/`` (default ``~/.cache/rewardgym``). The hash covers everything
that decides the weights: model and tokenizer config, training config, task names, a content
hash of each task's splits, the seeds, the versions of torch, transformers and tokenizers, and
:data:`CACHE_VERSION`. Later calls load the cache instead of training.

Example:
    >>> policy = load_tiny(task="translate")  # trains once, showing a progress bar; then cached
    >>> sorted(policy.info["train_log"]["bleu"])
    ['translate']
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rewardgym import machine
from rewardgym.agents.cache import cache_root
from rewardgym.agents.meters.text_metrics import corpus_bleu
from rewardgym.agents.policy import LMPolicy, resolve_device
from rewardgym.agents.sft import SFTConfig, demonstrations, train_sft
from rewardgym.envs.tasks import extract_answer
from rewardgym.errors import ConfigError
from rewardgym.fileio import atomic_dir
from rewardgym.locks import exclusive_lock

if TYPE_CHECKING:
    from rewardgym.envs.tasks import Task

__all__ = [
    "CACHE_VERSION",
    "KEY_LIBRARIES",
    "TinyConfig",
    "build_tiny",
    "evaluate_bleu",
    "load_tiny",
    "task_data_hash",
    "tiny_cache_dir",
    "train_tokenizer",
]

# Bump when the build recipe changes in a way the config hash does not see.
CACHE_VERSION = 3
# The libraries whose numerics or tokenizer training decide the weights; part of the cache key.
KEY_LIBRARIES = ("torch", "transformers", "tokenizers")
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}
COMPLETE = "COMPLETE"


@dataclass(frozen=True)
class TinyConfig:
    """Architecture, tokenizer and warm-start settings of the tiny model.

    Attributes:
        vocab_size: BPE vocabulary size (256 byte tokens + merges + 3 special tokens).
        min_frequency: a merge needs this many occurrences in the training text.
        d_model: hidden size.
        n_layers: transformer blocks.
        n_heads: attention heads (``d_model`` must divide evenly).
        d_ff: SwiGLU inner size.
        max_positions: context length in tokens (prompt + completion).
        rope_theta: RoPE base.
        sft: the warm start's supervised training settings.
        eval_max_new_tokens: generation limit when the warm start measures BLEU.

    Example:
        >>> TinyConfig(d_model=128, n_heads=4).d_model
        128
    """

    vocab_size: int = 1024
    min_frequency: int = 2
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    d_ff: int = 384
    max_positions: int = 128
    rope_theta: float = 10000.0
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval_max_new_tokens: int = 48

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "min_frequency",
            "d_model",
            "n_layers",
            "n_heads",
            "d_ff",
            "max_positions",
            "eval_max_new_tokens",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"TinyConfig.{name} must be an int >= 1, got {value!r}")
        if self.vocab_size < 260:
            raise ConfigError(
                f"TinyConfig.vocab_size must be >= 260 (256 byte tokens + 3 special), "
                f"got {self.vocab_size}"
            )
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"TinyConfig.d_model ({self.d_model}) must be a multiple of "
                f"n_heads ({self.n_heads})"
            )

    @classmethod
    def from_overrides(cls, **overrides: Any) -> TinyConfig:
        """Build from keyword overrides; keys may name TinyConfig or SFTConfig fields.

        Example:
            >>> TinyConfig.from_overrides(d_model=128, n_heads=4, steps=50).sft.steps
            50
        """
        own = {f.name for f in fields(cls)} - {"sft"}
        sft_names = {f.name for f in fields(SFTConfig)}
        unknown = sorted(set(overrides) - own - sft_names - {"sft"})
        if unknown:
            from rewardgym.errors import did_you_mean

            valid = sorted(own | sft_names)
            raise ConfigError(
                f"unknown tiny-model option(s) {unknown}.{did_you_mean(unknown[0], valid)} "
                f"Valid options: {', '.join(valid)}."
            )
        sft = overrides.pop("sft", None) or SFTConfig()
        sft_kw = {k: overrides.pop(k) for k in list(overrides) if k in sft_names}
        return cls(sft=replace(sft, **sft_kw), **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def _task_names(task: str | Sequence[str]) -> tuple[str, ...]:
    names = (task,) if isinstance(task, str) else tuple(task)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"task must be a task name or a non-empty tuple of names, got {task!r}")
    return names


def task_data_hash(task: Task) -> str:
    """sha256 (hex) of a canonical JSON of every split's prompts, references and meta, in order.

    Two tasks with the same name but different data hash differently, so a task re-registered
    with new data never reuses a warm start trained on the old data.

    Example:
        >>> from rewardgym.envs.tasks import make_task
        >>> len(task_data_hash(make_task("translate")))
        64
    """
    from rewardgym.envs.tasks import SPLITS

    content = {
        split: [[ex.prompt, ex.reference, ex.meta] for ex in task.split(split)] for split in SPLITS
    }
    # meta JSON cannot hold is hashed by its repr: meta never reaches the weights, so an
    # unstable repr can only cost a cache miss, never return stale weights.
    blob = json.dumps(
        content, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _task_data_hashes(tasks: tuple[str, ...], task_seed: int) -> dict[str, str]:
    from rewardgym.envs.tasks import make_task

    return {name: task_data_hash(make_task(name, seed=task_seed)) for name in tasks}


def config_key(
    config: TinyConfig, tasks: tuple[str, ...], task_seed: int, seed: int, device: str = "cpu"
) -> dict:
    """Everything that decides the warm-started weights (the cache key's content).

    ``config`` holds the tokenizer, model and SFT settings; ``task_data`` the content hash of
    each task's splits (the data, not just the name); ``libraries`` the versions of the
    libraries whose numerics or tokenizer training the weights depend on; ``device`` (a device
    type) and ``threads`` where and how the training runs, which changes its arithmetic.
    """
    return {
        "version": CACHE_VERSION,
        "architecture": "LlamaForCausalLM",
        "config": config.to_dict(),
        "tasks": list(tasks),
        "task_data": _task_data_hashes(tasks, task_seed),
        "task_seed": task_seed,
        "seed": seed,
        "libraries": machine.library_versions(KEY_LIBRARIES),
        "device": device,
        "threads": default_threads(),
    }


def tiny_cache_dir(
    config: TinyConfig,
    tasks: tuple[str, ...],
    task_seed: int = 0,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
) -> Path:
    """Where a warm start with these settings lives: ``<root>/tiny/<sha256[:16]>``.

    Example:
        >>> tiny_cache_dir(TinyConfig(), ("translate",)).parent.name
        'tiny'
    """
    blob = json.dumps(config_key(config, tasks, task_seed, seed, device), sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return cache_root(cache_dir) / "tiny" / digest


def train_tokenizer(texts: Sequence[str], vocab_size: int, min_frequency: int = 2) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, as a ``PreTrainedTokenizerFast``.

    Has ``<pad>``, ``<s>`` (bos) and ``</s>`` (eos) special tokens and pads on the left (for
    batched generation). Byte-level means any text encodes, even characters never seen.

    Example:
        >>> tok = train_tokenizer(["translate: a dog => dogi"] * 10, vocab_size=300)
        >>> tok.decode(tok("a dog").input_ids)
        'a dog'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.padding_side = "left"
    return fast


def build_model(config: TinyConfig, tokenizer: Any, seed: int) -> Any:
    """A freshly initialised Llama causal LM (seeded) sized by ``config``.

    Example:
        >>> model = build_model(TinyConfig(), tokenizer, seed=0)
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.d_model,
        intermediate_size=config.d_ff,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=config.max_positions,
        rope_theta=config.rope_theta,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(model_config)


def _train_texts(examples: Sequence[Any]) -> list[str]:
    return [ex.prompt for ex in examples] + [ex.reference for ex in examples]


def evaluate_bleu(
    policy: LMPolicy,
    examples: Sequence[Any],
    max_new_tokens: int = 64,
    batch_size: int = 128,
    *,
    answer: Callable[[str], str] = extract_answer,
) -> float:
    """Corpus BLEU of the answers (``answer`` of each greedy completion) against the references.

    Example:
        >>> evaluate_bleu(policy, make_task("translate").split("test")) >= 50
        True
    """
    hyps: list[str] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        gen = policy.generate([ex.prompt for ex in chunk], max_new_tokens, greedy=True)
        hyps.extend(answer(c) for c in gen.completions)
    return corpus_bleu(hyps, [ex.reference for ex in examples])


def build_tiny(
    config: TinyConfig,
    tasks: tuple[str, ...],
    *,
    task_seed: int = 0,
    seed: int = 0,
    device: str | torch.device | None = None,
    evaluate: bool = True,
    progress: bool = False,
) -> tuple[LMPolicy, dict]:
    """Train tokenizer and model from scratch; return the policy and its train log.

    Args:
        config: model, tokenizer and training settings.
        tasks: task names; the warm start trains on the union of their train splits and
            reports BLEU per task.
        task_seed: seed the tasks are made with.
        seed: seeds initialisation and batch order.
        device: where to train (None: CUDA when available).
        evaluate: measure greedy BLEU on the test splits afterwards.
        progress: show a progress bar over the training steps and a line when the BLEU
            measurement starts (on stderr).

    Example:
        >>> policy, log = build_tiny(TinyConfig.from_overrides(steps=20), ("translate",))
    """
    from rewardgym.envs.tasks import make_task

    start = time.perf_counter()
    task_objs = [make_task(name, seed=task_seed) for name in tasks]
    train = [ex for t in task_objs for ex in t.split("train")]
    tokenizer = train_tokenizer(_train_texts(train), config.vocab_size, config.min_frequency)
    model = build_model(config, tokenizer, seed)
    policy = LMPolicy(
        model, tokenizer, name="tiny", device=device, add_bos=True, completion_prefix=" "
    )
    demos = demonstrations(train, config.sft, seed)  # the flaws the config asks for, if any
    _check_lengths(policy, demos, config.max_positions)
    label = _warm_start_label(tasks)
    result = train_sft(policy, demos, config.sft, seed=seed, progress=progress, label=label)
    log: dict[str, Any] = {
        "cache_version": CACHE_VERSION,
        "key": config_key(config, tasks, task_seed, seed, policy.device.type),
        "n_params": policy.n_params,
        "losses": result.losses,
        "steps": result.steps,
        "completion_tokens": result.completion_tokens,
        "positions": result.positions,
        "train_s": round(result.wall_s, 3),
        "torch_threads": torch.get_num_threads(),
        "device": str(policy.device),
        "seed": seed,
        "machine": machine.machine_record(),
    }
    if evaluate:
        _say(progress, f"{label}: measuring greedy BLEU on the test split")
        eval_start = time.perf_counter()
        # Test BLEU per task: what the warm start reached (benchmarks/learning.py measures it).
        log["bleu"] = {
            name: round(
                evaluate_bleu(policy, t.split("test"), config.eval_max_new_tokens, answer=t.answer),
                3,
            )
            for name, t in zip(tasks, task_objs, strict=True)
        }
        log["eval_s"] = round(time.perf_counter() - eval_start, 3)
    log["wall_s"] = round(time.perf_counter() - start, 3)
    return policy, log


def _warm_start_label(tasks: Sequence[str]) -> str:
    """The title of the warm start's progress output.

    Example:
        >>> _warm_start_label(("translate", "qa"))
        'warm start tiny (translate, qa)'
    """
    return f"warm start tiny ({', '.join(tasks)})"


def _say(enabled: bool, message: str) -> None:
    """One line on stderr, beside the progress bar (stdout may be a result being piped)."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


def _check_lengths(policy: LMPolicy, examples: Sequence[Any], max_positions: int) -> None:
    prompts = policy.encode_prompts([ex.prompt for ex in examples])
    completions = policy.encode_completions([ex.reference for ex in examples])
    longest = max(len(p) + len(c) for p, c in zip(prompts, completions, strict=True))
    if longest > max_positions:
        raise ConfigError(
            f"the longest training example is {longest} tokens but max_positions is "
            f"{max_positions}; raise max_positions or vocab_size"
        )


# The warm start's matrices are 128 wide: intra-op threads pay on an idle machine up to about
# two, so wider machines do not spread the warm start thinner than that.
MAX_WARM_START_THREADS = 2


def default_threads() -> int:
    """Intra-op threads for the warm start: ``$REWARDGYM_THREADS``, else the CPUs this process
    may use, at most :data:`MAX_WARM_START_THREADS`.

    The warm start runs before anything else of a study or a training run, so it has the
    machine to itself and its threads pay. The count is part of the cache key (another count
    adds in another order and gives other weights), so it comes from the machine and the
    environment, never from torch's current setting: a study's runs, which train under their
    own thread count, find the warm start their driver built. Where something else keeps the
    cores busy (a test suite on every core), set ``REWARDGYM_THREADS=1``: spinning threads
    that wait on each other make a shared machine slower, not faster.
    """
    env = os.environ.get("REWARDGYM_THREADS")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ConfigError(f"REWARDGYM_THREADS must be an int >= 1, got {env!r}") from None
        if value < 1:
            raise ConfigError(f"REWARDGYM_THREADS must be an int >= 1, got {env!r}")
        return value
    return max(1, min(MAX_WARM_START_THREADS, machine.usable_cpus()))


def _write_atomically(policy: LMPolicy, log: dict, target: Path) -> None:
    """Save into a temporary folder beside ``target``, then rename; ``COMPLETE`` goes last."""
    with atomic_dir(target) as tmp:
        policy.save(tmp)
        (tmp / "train_log.json").write_text(json.dumps(log, indent=2))
        (tmp / COMPLETE).write_text(json.dumps({"version": CACHE_VERSION}))


def _load_cached(
    path: Path, device: str | torch.device | None, dtype: str | torch.dtype
) -> LMPolicy:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    model = LlamaForCausalLM.from_pretrained(path, local_files_only=True, use_safetensors=True)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    tokenizer.padding_side = "left"
    log = json.loads((path / "train_log.json").read_text())
    return LMPolicy(
        model,
        tokenizer,
        name="tiny",
        device=device,
        dtype=dtype,
        add_bos=True,
        completion_prefix=" ",
        info={"cache_dir": str(path), "train_log": log, "cached": True},
    )


def load_tiny(
    task: str | Sequence[str] = "translate",
    *,
    seed: int = 0,
    task_seed: int = 0,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    cache_dir: str | os.PathLike | None = None,
    config: TinyConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> LMPolicy:
    """The warm-started tiny model for ``task``, from the cache or built (and cached) now.

    Args:
        task: a task name, or a tuple of names for a multi-task warm start.
        seed: seeds tokenizer-independent randomness: initialisation and batch order.
        task_seed: seed of the task splits the model trains on.
        device: None picks CUDA when available. The warm start trains there too.
        dtype: dtype of the returned policy (training is float32).
        cache_dir: cache root (default ``$REWARDGYM_CACHE`` or ``~/.cache/rewardgym``).
        config: full settings; ``overrides`` (TinyConfig or SFTConfig field names) change it.
        progress: when the warm start has to be trained, show a progress bar with its ETA on
            stderr (a cache hit prints nothing). Not a config field: it leaves the weights, and
            so the cache key, as they are.

    Returns:
        An :class:`LMPolicy`; ``policy.info["train_log"]`` holds the cache key, loss curve,
        BLEU reached, wall time and seed of the warm start and the machine and library
        versions it was built with, and ``policy.info["cached"]`` says whether it was loaded
        rather than trained.

    Example:
        >>> policy = load_tiny("translate")
        >>> policy.info["cached"]
        True
    """
    if config is not None and overrides:
        config = TinyConfig.from_overrides(sft=config.sft, **{**_own_fields(config), **overrides})
    elif config is None:
        config = TinyConfig.from_overrides(**overrides)
    tasks = _task_names(task)
    train_device = resolve_device(device)
    target = tiny_cache_dir(config, tasks, task_seed, seed, cache_dir, train_device.type)
    built = False
    with exclusive_lock(target.parent / f"{target.name}.lock"):
        if not (target / COMPLETE).exists():
            with machine.torch_threads(default_threads()):
                policy, log = build_tiny(
                    config,
                    tasks,
                    task_seed=task_seed,
                    seed=seed,
                    device=train_device,
                    progress=progress,
                )
            _write_atomically(policy, log, target)
            built = True
    policy = _load_cached(target, device, dtype)
    policy.info["cached"] = not built
    return policy


def _own_fields(config: TinyConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in fields(config) if f.name != "sft"}
