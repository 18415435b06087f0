"""Examples, tasks, the task registry and the JSONL loader.

A :class:`Task` holds three immutable splits of :class:`Example` objects. Built-in tasks are
generated procedurally by factories registered with :func:`register_task`; user data comes in
through :func:`load_task_jsonl`; a family of tasks another package generates (``PREFIX:NAME``,
e.g. ``reasoning_gym:leg_counting``) through :func:`register_task_family`.

Example:
    >>> task = make_task("arithmetic", seed=0)
    >>> len(task.split("test"))
    500
"""

from __future__ import annotations

import codecs
import json
import math
import random
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from rewardgym.envs.registration import register_task_envs
from rewardgym.envs.tasks.quality import get_quality_metric
from rewardgym.errors import ConfigError, TaskDataError, UnknownNameError, did_you_mean
from rewardgym.rewards.registry import reward_spec

SPLITS = ("train", "validation", "test")
DEFAULT_SIZES = {"n_train": 5000, "n_validation": 500, "n_test": 500}
# Upper bounds keep generation well under a second and a typo (1e7) from hanging the process.
MAX_SIZES = {"n_train": 100_000, "n_validation": 20_000, "n_test": 20_000}
MAX_REPORTED_PROBLEMS = 20

TaskFactory = Callable[..., "Task"]
# A completion may hold working before its answer ("note: ... answer: ..."); quality metrics read
# only the answer, while token counts and compute count everything.
NOTE_MARKER, ANSWER_MARKER = "note:", "answer:"


def extract_answer(completion: str) -> str:
    """The part of a completion that quality metrics read: the text after the last
    ``answer:``, or the whole completion when it has none.

    Example:
        >>> extract_answer("note: two dogs answer: zilu fekubu-ni")
        'zilu fekubu-ni'
        >>> extract_answer("zilu fekubu-ni")
        'zilu fekubu-ni'
    """
    head, marker, answer = completion.rpartition(ANSWER_MARKER)
    return answer.strip() if marker else completion.strip()


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")  # the comma of "1,200"


def extract_number(completion: str) -> str:
    """The answer of a worked numeric answer: the last number after the last ``answer:`` (or in
    the whole completion when it has none), the GSM8K convention; the stripped text when there is
    no number.

    Example:
        >>> extract_number("13 - 6 = 7 cards left.")
        '7'
        >>> extract_number("3 + 4 is 7, answer: 7.")
        '7'
        >>> extract_number("no idea")
        'no idea'
    """
    answer = extract_answer(completion)
    numbers = _NUMBER.findall(_THOUSANDS.sub("", answer))
    return numbers[-1] if numbers else answer


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_tagged_answer(completion: str) -> str:
    """The text inside the last ``<answer>...</answer>`` (the convention of reasoning-gym's own
    prompts), else :func:`extract_answer`'s (the text after the last ``answer:``), stripped.

    Example:
        >>> extract_tagged_answer("I count 4 legs. <answer> 4 </answer>")
        '4'
        >>> extract_tagged_answer("two dogs: 8 legs answer: 8")
        '8'
    """
    tagged = _ANSWER_TAG.findall(completion)
    return tagged[-1].strip() if tagged else extract_answer(completion)


# How a task finds the answer in a completion: one entry per format, named in Task.answer_format.
ANSWER_FORMATS: dict[str, Callable[[str], str]] = {
    "marker": extract_answer,
    "number": extract_number,
    "tag_or_marker": extract_tagged_answer,
}


@dataclass(frozen=True)
class Example:
    """One prompt with its reference answer.

    ``meta`` is excluded from hashing and ordering, so examples can sit in sets. Treat it as
    read-only: built-in tasks share examples between callers.

    Attributes:
        prompt: the text the agent sees.
        reference: the answer a perfect agent gives.
        meta: extra facts; ``meta["input"]`` is the content part of the prompt (what noise
            touches), when the task has one.

    Example:
        >>> Example("solve: 2 + 2 =>", "4", {"input": "2 + 2"}).reference
        '4'
    """

    prompt: str
    reference: str
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("prompt", "reference"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TaskDataError(
                    f"Example.{name} must be a str, got {type(value).__name__}: {value!r}"
                )
        if not isinstance(self.meta, dict):
            raise TaskDataError(f"Example.meta must be a dict, got {type(self.meta).__name__}")


class Task:
    """A named text task with train, validation and test splits.

    Splits are stored as tuples; :meth:`split` returns a fresh list, so callers cannot change
    the task (or the cache :func:`make_task` keeps).

    Attributes:
        name: the task's name.
        seed: the seed its splits were drawn with.
        description: one line on what the task asks.
        answer_format: how :meth:`answer` finds the answer in a completion, a key of
            :data:`ANSWER_FORMATS` (``"marker"``: the text after the last ``answer:``).
        primary_metric: the quality metric headlines and improvement figures use: ``bleu``,
            ``chrf``, ``exact_match``, a registered one or a ``module:function`` spec (see
            :mod:`rewardgym.envs.tasks.quality`; corpus BLEU means little for one-word
            references).
        task_reward: the registered reward the ``task_only`` preset pays on this task; None
            (the default) keeps the preset as registered (sentence BLEU). A task whose examples
            carry their own scorer names it here (reasoning-gym tasks: ``reasoning_gym``).

    Example:
        >>> task = Task.from_examples("toy", {
        ...     "train": [Example("a =>", "b")], "validation": [Example("c =>", "d")],
        ...     "test": [Example("e =>", "f")]})
        >>> task.split("train")[0].reference, task.charset
        ('b', ' =>abcdef')
    """

    def __init__(
        self,
        name: str,
        splits: Mapping[str, Sequence[Example]],
        seed: int = 0,
        description: str = "",
        answer_format: str = "marker",
        primary_metric: str = "bleu",
        task_reward: str | None = None,
    ) -> None:
        self.name = _check_name(name)
        self.seed = seed
        self.description = description
        self.answer_format = _check_choice("answer_format", answer_format, tuple(ANSWER_FORMATS))
        self.primary_metric = get_quality_metric(primary_metric).name
        self.task_reward = None if task_reward is None else reward_spec(task_reward).name
        self._splits = _check_splits(name, splits)

    @classmethod
    def from_examples(
        cls,
        name: str,
        splits: Mapping[str, Sequence[Example]],
        seed: int = 0,
        description: str = "",
        answer_format: str = "marker",
        primary_metric: str = "bleu",
        task_reward: str | None = None,
    ) -> Task:
        """Build a task from ready-made splits (every split present and non-empty).

        Example:
            >>> ex = [Example("p =>", "r")]
            >>> Task.from_examples("t", {"train": ex, "validation": ex, "test": ex}).name
            't'
        """
        return cls(
            name,
            splits,
            seed=seed,
            description=description,
            answer_format=answer_format,
            primary_metric=primary_metric,
            task_reward=task_reward,
        )

    def answer(self, completion: str) -> str:
        """The part of ``completion`` that quality metrics read (see ``answer_format``).

        Example:
            >>> make_task("arithmetic").answer("6 + 2 = 8 apples")
            '8'
        """
        return ANSWER_FORMATS[self.answer_format](completion)

    def quality(
        self,
        answers: Sequence[str],
        refs: Sequence[str],
        corpus: Any,
        meta: Sequence[Mapping] | None = None,
    ) -> float:
        """The primary metric of ``answers`` (as :meth:`answers` reads them) against ``refs``;
        ``corpus`` is their ``text_metrics.corpus_scores``, which holds the built-ins.

        ``meta``: the examples' meta dicts, in the order of ``refs``, for a metric that reads
        them (a reasoning-gym task's scorer needs its entries); None gives it empty dicts.

        Example:
            >>> from rewardgym.envs.tasks.quality import register_quality_metric
            >>> def in_meta(hyps, refs, meta):
            ...     return 100.0 * sum(h == m["answer"] for h, m in zip(hyps, meta)) / len(hyps)
            >>> _ = register_quality_metric("in_meta", in_meta, overwrite=True)
            >>> ex = [Example("p =>", "r", {"answer": "r"})]
            >>> splits = {"train": ex, "validation": ex, "test": ex}
            >>> task = Task("t", splits, primary_metric="in_meta")
            >>> task.quality(["r"], ["r"], corpus=None, meta=[e.meta for e in ex])
            100.0
        """
        return get_quality_metric(self.primary_metric).value(answers, refs, corpus, meta)

    def answers(self, completions: Sequence[str]) -> list[str]:
        """:meth:`answer` of each completion."""
        return [self.answer(c) for c in completions]

    def split(self, name: str) -> list[Example]:
        """The examples of one split, as a new list.

        Raises:
            UnknownNameError: ``name`` is not "train", "validation" or "test".

        Example:
            >>> len(make_task("translate").split("validation"))
            500
        """
        if name not in self._splits:
            raise UnknownNameError("split", name, SPLITS)
        return list(self._splits[name])

    def sizes(self) -> dict[str, int]:
        """Number of examples per split, e.g. ``{"train": 5000, "validation": 500, ...}``."""
        return {name: len(examples) for name, examples in self._splits.items()}

    def _examples(self) -> Iterator[Example]:
        for examples in self._splits.values():
            yield from examples

    @cached_property
    def charset(self) -> str:
        """Every character in any prompt or reference, sorted and unique."""
        chars: set[str] = set()
        for example in self._examples():
            chars.update(example.prompt)
            chars.update(example.reference)
        return "".join(sorted(chars))

    @cached_property
    def max_prompt_chars(self) -> int:
        """Length of the longest prompt over all splits."""
        return max(len(example.prompt) for example in self._examples())

    @cached_property
    def max_reference_chars(self) -> int:
        """Length of the longest reference over all splits."""
        return max(len(example.reference) for example in self._examples())

    @cached_property
    def _words(self) -> tuple[str, ...]:
        return tuple(sorted({w for ex in self._examples() for w in ex.reference.split()}))

    def words(self) -> list[str]:
        """Sorted unique whitespace-separated words of every reference (all splits).

        Example:
            >>> "4" in make_task("arithmetic").words()
            True
        """
        return list(self._words)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={n}" for name, n in self.sizes().items())
        return f"Task({self.name!r}, seed={self.seed}, {sizes})"


def _check_choice(option: str, value: object, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise UnknownNameError(option.replace("_", " "), value, valid)
    return value  # type: ignore[return-value]


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"task name must be a non-empty str, got {name!r}")
    return name


def _check_splits(
    task: str, splits: Mapping[str, Sequence[Example]]
) -> dict[str, tuple[Example, ...]]:
    unknown = [name for name in splits if name not in SPLITS]
    if unknown:
        raise UnknownNameError("split", unknown[0], SPLITS)
    checked = {}
    for name in SPLITS:
        examples = tuple(splits.get(name, ()))
        if not examples:
            raise TaskDataError(f"task {task!r} has no {name} examples; every split needs one")
        bad = next((ex for ex in examples if not isinstance(ex, Example)), None)
        if bad is not None:
            raise TaskDataError(
                f"task {task!r} split {name!r} holds a {type(bad).__name__}, not an Example"
            )
        checked[name] = examples
    return checked


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, TaskFactory] = {}
_CACHE: dict[tuple, Task] = {}
# Installed packages add tasks under this entry-point group, e.g. in their pyproject.toml:
# [project.entry-points."rewardgym.tasks"] reverse = "mypkg.tasks:make_reverse"
ENTRY_POINT_GROUP = "rewardgym.tasks"
TASK_FILE_SUFFIX = ".jsonl"


def register_task(name: str, *, override: bool = False) -> Callable[[TaskFactory], TaskFactory]:
    """Register a task factory ``(seed: int, **kw) -> Task`` under ``name``.

    Args:
        name: the name :func:`make_task` knows the task by.
        override: replace an existing registration instead of raising.

    Raises:
        ConfigError: ``name`` is taken and ``override`` is False.

    Example:
        >>> @register_task("echo", override=True)
        ... def make_echo(seed: int = 0) -> Task:
        ...     ex = [Example(f"echo: {i} =>", str(i)) for i in range(3)]
        ...     return Task("echo", {"train": ex, "validation": ex[:1], "test": ex[2:]}, seed)
        >>> make_task("echo").split("test")[0].reference
        '2'
    """
    _check_name(name)

    def decorator(factory: TaskFactory) -> TaskFactory:
        if name in _REGISTRY and not override and not _same_factory(_REGISTRY[name], factory):
            raise ConfigError(
                f"task {name!r} is already registered; pick another name or pass override=True"
            )
        _REGISTRY[name] = factory
        for key in [key for key in _CACHE if key[0] == name]:
            del _CACHE[key]
        register_task_envs(name)
        return factory

    return decorator


def _same_factory(old: TaskFactory, new: TaskFactory) -> bool:
    """True for one function defined twice (its module reloaded or imported under two names)."""
    code_old, code_new = getattr(old, "__code__", None), getattr(new, "__code__", None)
    return old is new or (
        code_old is not None
        and code_new is not None
        and old.__qualname__ == new.__qualname__
        and code_old.co_filename == code_new.co_filename
    )


@dataclass(frozen=True)
class TaskFamily:
    """Tasks named ``PREFIX:MEMBER`` that an adapter builds on demand, e.g. every dataset of
    another package, without registering each one (listing them may import that package).

    Attributes:
        prefix: the part before ``:`` (``reasoning_gym``).
        make: ``make(member, seed, **options) -> Task``.
        members: ``members() -> list[str]``, the member names the adapter knows.
        description: one line for listings and "unknown task" hints.
    """

    prefix: str
    make: Callable[..., Task]
    members: Callable[[], list[str]]
    description: str = ""


_FAMILIES: dict[str, TaskFamily] = {}


def register_task_family(family: TaskFamily) -> TaskFamily:
    """Make every ``family.prefix:NAME`` a task name :func:`make_task` knows.

    Raises:
        ConfigError: a prefix that is empty or holds ``:``.

    Example:
        >>> def make_echo(member, seed=0):
        ...     ex = [Example(f"echo {member}: {i} =>", str(i)) for i in range(3)]
        ...     return Task(f"echo:{member}", {"train": ex, "validation": ex, "test": ex}, seed)
        >>> _ = register_task_family(TaskFamily("echo", make_echo, lambda: ["a", "b"]))
        >>> make_task("echo:b").split("test")[0].prompt
        'echo b: 0 =>'
    """
    prefix = family.prefix
    if not isinstance(prefix, str) or not prefix.strip() or ":" in prefix:
        raise ConfigError(f"a task family prefix must be a word without ':', got {prefix!r}")
    _FAMILIES[prefix] = family
    for key in [key for key in _CACHE if str(key[0]).startswith(f"{prefix}:")]:
        del _CACHE[key]
    return family


def _family_member(name: object) -> tuple[TaskFamily, str] | None:
    """The family and member of a ``PREFIX:MEMBER`` name, or None for any other name."""
    if not isinstance(name, str):
        return None
    prefix, sep, member = name.partition(":")
    family = _FAMILIES.get(prefix) if sep else None
    return None if family is None else (family, member)


def list_tasks(include_families: bool = False) -> list[str]:
    """Names of every registered task, installed plugins' included, sorted; with
    ``include_families``, every member of every task family too (``reasoning_gym:NAME``,
    which imports the packages behind them).

    Example:
        >>> {"arithmetic", "summarize", "translate"} <= set(list_tasks())
        True
    """
    names = set(_REGISTRY) | set(_plugin_entry_points())
    if include_families:
        for family in _FAMILIES.values():
            names.update(f"{family.prefix}:{member}" for member in family.members())
    return sorted(names)


def _plugin_entry_points() -> dict[str, Any]:
    from importlib import metadata

    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _load_plugin(name: str) -> bool:
    """Register the installed plugin task ``name``; False when no plugin has that name."""
    entry_point = _plugin_entry_points().get(name)
    if entry_point is None:
        return False
    try:
        factory = entry_point.load()
    except Exception as exc:  # a plugin's import can fail in any way; name it and the fix
        raise ConfigError(
            f"task plugin {name!r} ({entry_point.value}, entry point group "
            f"{ENTRY_POINT_GROUP!r}) failed to import: {type(exc).__name__}: {exc}; fix or "
            "reinstall the package that provides it"
        ) from None
    if not callable(factory):
        raise ConfigError(
            f"task plugin {name!r} ({entry_point.value}) is {type(factory).__name__}, not a "
            "task factory (seed, **options) -> Task"
        )
    register_task(name, override=True)(factory)
    return True


def is_task_file(name: object) -> bool:
    """True for a task given as a JSONL file path (``data/reverse.jsonl``) rather than a name."""
    return isinstance(name, (str, Path)) and str(name).endswith(TASK_FILE_SUFFIX)


def task_label(task: str) -> str:
    """A task's name in folder names and tables: the file's stem for a JSONL path, ``-`` for
    the ``:`` of a family member (a colon is no part of a portable file name).

    Example:
        >>> task_label("data/reverse.jsonl"), task_label("translate")
        ('reverse', 'translate')
        >>> task_label("reasoning_gym:leg_counting")
        'reasoning_gym-leg_counting'
    """
    return Path(task).stem if is_task_file(task) else task.replace(":", "-")


def make_task(name: str, seed: int = 0, **kw: Any) -> Task:
    """Build (or fetch from the cache) the task ``name`` with splits drawn from ``seed``.

    The same ``(name, seed, kw)`` always gives the same splits; the task is generated once per
    process and shared, which is safe because tasks and examples are immutable.

    Args:
        name: a registered task name (see :func:`list_tasks`), an installed plugin's
            (entry-point group ``rewardgym.tasks``), a task family's ``PREFIX:MEMBER``
            (``reasoning_gym:leg_counting``; :func:`register_task_family`), or the path of a
            JSONL file (:func:`load_task_jsonl`; ``kw`` may set ``answer_format`` and
            ``primary_metric``).
        seed: seed of the split sampling; the built-in lexicons do not depend on it.
        **kw: task options, e.g. ``n_train``, ``n_validation``, ``n_test``.

    Raises:
        UnknownNameError: ``name`` is not registered (with a "did you mean").
        ConfigError: a bad seed or option.

    Example:
        >>> make_task("summarize", seed=1, n_train=100).sizes()
        {'train': 100, 'validation': 500, 'test': 500}
    """
    if is_task_file(name):
        return _task_file(Path(name), seed, kw)
    member = _family_member(name)
    if member is None and name not in _REGISTRY and not _load_plugin(name):
        raise UnknownNameError("task", name, list_tasks(), hint=_unknown_task_hint())
    check_seed(seed)
    key = _cache_key(name, seed, kw)
    if key is not None and key in _CACHE:
        return _CACHE[key]
    if member is None:
        task = _REGISTRY[name](seed, **kw)
    else:
        family, member_name = member
        task = family.make(member_name, seed, **kw)
        register_task_envs(name)  # its Gymnasium ids, as register_task gives a registered task
    if not isinstance(task, Task):
        raise ConfigError(
            f"task factory for {name!r} returned {type(task).__name__}, expected a Task"
        )
    if key is not None:
        _CACHE[key] = task
    return task


def _unknown_task_hint() -> str:
    families = "".join(
        f"{family.prefix}:NAME names {family.description or 'a member of a task family'}"
        " (rewardgym list tasks --all). "
        for family in _FAMILIES.values()
    )
    return families + "Or give the path of a .jsonl task file."


def _cache_key(name: str, seed: int, kw: Mapping[str, Any]) -> tuple | None:
    """The cache key of a task: its options as a sorted tuple, or as sorted JSON when a value
    is unhashable (a list of operators, say); None when neither works (built, not cached)."""
    key: tuple = (name, seed, tuple(sorted(kw.items())))
    try:
        hash(key)
        return key
    except TypeError:
        pass
    try:
        return (name, seed, json.dumps(kw, sort_keys=True))
    except (TypeError, ValueError):
        return None


def _task_file(path: Path, seed: int, kw: Mapping[str, Any]) -> Task:
    """A JSONL task, cached by its resolved path, modification time and options."""
    check_seed(seed)
    try:
        stat = path.resolve().stat()
        key: tuple | None = (str(path.resolve()), stat.st_mtime_ns, seed, tuple(sorted(kw.items())))
    except OSError:
        key = None  # missing: load_task_jsonl names the problem
    if key is not None and key in _CACHE:
        return _CACHE[key]
    task = load_task_jsonl(path, seed=seed, **kw)
    if key is not None:
        _CACHE[key] = task
    return task


def check_seed(seed: object) -> int:
    """Return ``seed`` if it is an int (bools excluded), else raise ConfigError."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {type(seed).__name__}: {seed!r}")
    return seed


def split_sizes(task: str, kw: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """Validate a factory's options: split sizes plus the task's own ``extra`` defaults.

    Returns the defaults updated with ``kw``. Unknown option names and sizes outside their
    range raise ConfigError naming the value and the valid range.

    Example:
        >>> split_sizes("translate", {"n_test": 50})["n_test"]
        50
    """
    defaults = {**DEFAULT_SIZES, **extra}
    unknown = [key for key in kw if key not in defaults]
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r} for task {task!r}."
            f"{did_you_mean(unknown[0], defaults)} Valid options: {', '.join(sorted(defaults))}."
        )
    options = {**defaults, **kw}
    for key, limit in MAX_SIZES.items():
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ConfigError(f"{key} must be an int in [1, {limit}], got {value!r}")
    return options


def generate_splits(
    task: str,
    seed: int,
    sample: Callable[[random.Random], Example],
    sizes: Mapping[str, Any],
) -> dict[str, tuple[Example, ...]]:
    """Draw unique-prompt examples with ``sample`` and cut them into test, validation, train.

    Test comes first and train last, so changing ``n_train`` leaves the test split unchanged,
    and no prompt occurs in two splits.

    Raises:
        ConfigError: the generator cannot produce that many distinct prompts.

    Example:
        >>> pick = lambda rng: Example(f"n: {rng.randrange(10**6)} =>", "x")
        >>> parts = generate_splits("demo", 0, pick, {"n_train": 3, "n_validation": 1, "n_test": 1})
        >>> [len(parts[name]) for name in ("train", "validation", "test")]
        [3, 1, 1]
    """
    rng = random.Random(f"{task}:{seed}")  # str seeds are hashed with sha512: stable everywhere
    wanted = [(name, sizes[f"n_{name}"]) for name in ("test", "validation", "train")]
    total = sum(n for _, n in wanted)
    seen: dict[str, Example] = {}
    attempts = 0
    while len(seen) < total:
        attempts += 1
        if attempts > 20 * total + 1000:
            raise ConfigError(
                f"task {task!r} produced only {len(seen)} distinct prompts in {attempts} draws; "
                f"ask for fewer than {total} examples"
            )
        example = sample(rng)
        seen.setdefault(example.prompt, example)
    pool = list(seen.values())
    splits, start = {}, 0
    for name, n in wanted:
        splits[name] = tuple(pool[start : start + n])
        start += n
    return splits


# --------------------------------------------------------------------------- JSONL loader

_FIELDS = ("prompt", "reference", "split", "meta")


def load_task_jsonl(
    path: str | Path,
    name: str | None = None,
    seed: int = 0,
    *,
    answer_format: str = "marker",
    primary_metric: str = "bleu",
) -> Task:
    """Load a task from a JSONL file with one ``{"prompt": ..., "reference": ...}`` per line.

    Optional fields: ``"split"`` ("train", "validation" or "test") and ``"meta"`` (an object;
    ``meta["input"]``, if given, must occur in the prompt). If no line names a split, the
    examples are split 80/10/10 with ``seed`` (examples sharing a prompt stay together); if
    some lines do, lines without one go to train. Blank lines are skipped.

    Every problem in the file is collected (up to 20 are listed) into one TaskDataError; no
    task is returned unless the whole file is valid.

    Args:
        path: the JSONL file.
        name: the task name; defaults to the file's stem.
        seed: seed of the automatic split.
        answer_format: how answers are read from completions (see :data:`ANSWER_FORMATS`).
        primary_metric: the task's headline quality metric (see :attr:`Task.primary_metric`).

    Raises:
        TaskDataError: the file is missing, empty or has malformed lines.
        UnknownNameError: an unknown ``answer_format`` or ``primary_metric``.

    Example:
        >>> task = load_task_jsonl("data/qa.jsonl")  # doctest: +SKIP
        >>> task.split("train")[0].prompt  # doctest: +SKIP
        'capital of France? =>'
    """
    path = Path(path)
    check_seed(seed)
    _check_choice("answer_format", answer_format, tuple(ANSWER_FORMATS))
    get_quality_metric(primary_metric)
    records, problems = _read_records(path)
    if not records and not problems:
        raise TaskDataError(
            f"{path}: file has no examples; expected one JSON object per line like "
            '{"prompt": "...", "reference": "..."}'
        )
    if problems:
        raise TaskDataError(_problem_report(path, problems))
    splits = _assign_splits(path, records, seed)
    _warn_on_leaks(path, splits)
    return Task.from_examples(
        name or path.stem,
        splits,
        seed=seed,
        description=f"from {path}",
        answer_format=answer_format,
        primary_metric=primary_metric,
    )


def _read_records(path: Path) -> tuple[list[tuple[int, Example, str | None]], list[str]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TaskDataError(f"task data file not found: {path}") from None
    except OSError as exc:
        raise TaskDataError(f"cannot read task data file {path}: {exc.strerror}") from None
    records, problems = [], []
    # Files exported by spreadsheets and Windows editors start with a UTF-8 byte-order mark
    # and end lines with CRLF; both are accepted (JSON whitespace covers the CR).
    data = data.removeprefix(codecs.BOM_UTF8)
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            records.append((lineno, *_parse_line(raw)))
        except TaskDataError as exc:
            problems.append(f"{path}:{lineno}: {exc}")
    return records, problems


def _parse_line(raw: bytes) -> tuple[Example, str | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskDataError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
        ) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskDataError(f"bad JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise TaskDataError(f"expected a JSON object, got {_json_type(obj)}")
    return _example_from_object(obj)


def _example_from_object(obj: dict) -> tuple[Example, str | None]:
    issues = []
    for key in obj:
        if key not in _FIELDS:
            issues.append(f"unknown field {key!r}.{did_you_mean(key, _FIELDS)}".rstrip("."))
    for key in ("prompt", "reference"):
        if key not in obj:
            issues.append(f"missing field {key!r}")
        elif not isinstance(obj[key], str):
            issues.append(f"field {key!r} must be a string, got {_json_type(obj[key])}")
        elif not obj[key].strip():
            issues.append(f"field {key!r} is empty")
    split = obj.get("split")
    if split is not None and split not in SPLITS:
        issues.append(f"unknown split {split!r}.{did_you_mean(str(split), SPLITS)}".rstrip("."))
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        issues.append(f"field 'meta' must be an object, got {_json_type(meta)}")
    elif "input" in meta and isinstance(obj.get("prompt"), str):
        if not isinstance(meta["input"], str) or meta["input"] not in obj["prompt"]:
            issues.append("meta 'input' must be a string that occurs in the prompt")
    if issues:
        raise TaskDataError("; ".join(issues))
    return Example(obj["prompt"], obj["reference"], dict(meta)), split


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    kind = names.get(type(value), "number")
    if kind in ("object", "array", "null"):
        return kind
    shown = json.dumps(value, ensure_ascii=False)
    return f"{kind} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def _problem_report(path: Path, problems: list[str]) -> str:
    shown = problems[:MAX_REPORTED_PROBLEMS]
    lines = [f"{path}: {len(problems)} problem(s); nothing was loaded:", *shown]
    if len(problems) > len(shown):
        lines.append(f"... and {len(problems) - len(shown)} more")
    return "\n  ".join(lines)


def _assign_splits(
    path: Path, records: list[tuple[int, Example, str | None]], seed: int
) -> dict[str, list[Example]]:
    if any(split is not None for _, _, split in records):
        splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
        for _, example, split in records:
            splits[split or "train"].append(example)
        missing = [name for name in SPLITS if not splits[name]]
        if missing:
            raise TaskDataError(
                f"{path}: no lines with split {missing[0]!r}; give every split at least one "
                "line, or drop the 'split' field everywhere for an automatic 80/10/10 split"
            )
        return splits
    return _auto_split(path, [example for _, example, _ in records], seed)


def _auto_split(path: Path, examples: list[Example], seed: int) -> dict[str, list[Example]]:
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(example.prompt, []).append(example)
    prompts = list(groups)
    if len(prompts) < 3:
        raise TaskDataError(
            f"{path}: {len(prompts)} distinct prompt(s) cannot fill train, validation and test; "
            "add lines or set 'split' on each line"
        )
    random.Random(f"jsonl:{seed}").shuffle(prompts)
    n_eval = max(1, math.floor(0.1 * len(prompts) + 0.5))
    n_eval = min(n_eval, (len(prompts) - 1) // 2)
    cuts = {
        "test": prompts[:n_eval],
        "validation": prompts[n_eval : 2 * n_eval],
        "train": prompts[2 * n_eval :],
    }
    return {name: [ex for p in cuts[name] for ex in groups[p]] for name in SPLITS}


def _warn_on_leaks(path: Path, splits: Mapping[str, Sequence[Example]]) -> None:
    train = {example.prompt for example in splits["train"]}
    for name in ("validation", "test"):
        leaked = sum(example.prompt in train for example in splits[name])
        if leaked:
            warnings.warn(
                f"{path}: {leaked} {name} prompt(s) also occur in train; scores on {name} "
                "will overstate generalisation",
                stacklevel=3,
            )
