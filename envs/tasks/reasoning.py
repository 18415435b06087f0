"""reasoning-gym's procedural datasets as rewardgym tasks: ``reasoning_gym:NAME``.

Every dataset of the reasoning-gym package (``rewardgym list tasks --all``) is a task wherever a
task name goes: ``make_task("reasoning_gym:leg_counting")``, ``--task``, a study's ``tasks:``,
and the Gymnasium ids ``rewardgym/ReasoningGymLegCounting-v0`` (registered when the task is
first made, or for every dataset by :func:`register_envs`). Nothing is downloaded: the package
generates its examples.

- **Splits**: test, validation and train are drawn from three seeds derived from the task seed
  and the split's name, in that order, and a question already drawn is skipped, so no question
  is in two splits and ``n_train`` does not change the test split. ``n_train``, ``n_validation``
  and ``n_test`` set the sizes; every other option is the dataset's own config
  (``make_task("reasoning_gym:leg_counting", min_animals=2)``).
- **Prompt**: the question as the dataset gives it, then :data:`INSTRUCTION`; ``meta["input"]``
  is the question, so prompt noise touches the question and not the instruction.
- **Answers** are read by the ``tag_or_marker`` format: the text inside the last
  ``<answer>...</answer>`` (reasoning-gym's own prompts ask for it), else after the last
  ``answer:`` (rewardgym's convention, which :data:`INSTRUCTION` asks for), else the whole
  completion.
- **Scoring**: ``meta["reasoning_gym"]`` keeps the entry (question, answer, metadata) with the
  dataset's name and config; the primary metric ``reasoning_gym`` is 100 × the mean of the
  dataset's own ``score_answer(answer, entry)``, and ``task_only`` pays the reward
  ``reasoning_gym`` (the same scorer, 0 to 1; see :mod:`rewardgym.rewards.reasoning`).

The entry is the one the generator returned, so in-process scoring is exactly the package's.
It is JSON-serialisable; written out and read back, lists replace tuples, which a few datasets'
scorers compare (``arc_agi``, ``rearc``).

Example:
    >>> from rewardgym.envs.tasks import make_task
    >>> task = make_task("reasoning_gym:leg_counting", n_train=5, n_validation=2, n_test=2)
    >>> example = task.split("test")[0]
    >>> example.prompt.endswith(INSTRUCTION), task.answer("12 legs in all. answer: 12")
    (True, '12')
    >>> task.quality([example.reference], [example.reference], None, [example.meta])
    100.0
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from rewardgym.envs.registration import register_task_envs
from rewardgym.envs.tasks.base import (
    SPLITS,
    Example,
    Task,
    TaskFamily,
    register_task_family,
    split_sizes,
)
from rewardgym.envs.tasks.quality import register_quality_metric
from rewardgym.errors import ConfigError, TaskDataError, UnknownNameError
from rewardgym.rewards.reasoning import (
    META_KEY,
    config_key,
    entry_info,
    require_reasoning_gym,
    score_entry,
)

PREFIX = "reasoning_gym"
#: appended to every question: rewardgym's answer convention (``tag_or_marker`` also reads
#: reasoning-gym's ``<answer>`` tags, for models prompted the package's way)
INSTRUCTION = "Give only the final answer after 'answer:'."
# Smaller than the built-in tasks' 5000 / 500 / 500: several generators solve or verify a
# puzzle per example (knight_swap, futoshiki, sokoban, zebra_puzzles), and 6000 of those take
# many minutes, while a run samples far fewer training prompts than 1000 and a study evaluates
# 200 test and 64 validation examples. Cheap generators make these in well under a second.
DEFAULT_SIZES = {"n_train": 1000, "n_validation": 100, "n_test": 200}
# The adapter sets these itself: seeds derive from the task seed, sizes from n_<split>.
_OWN_FIELDS = ("seed", "size")
# Draws per split before giving up: 3n + 100 finds n distinct questions while they are up to
# about 93 % of all the generator can make (coupon collecting), and stays bounded when it
# repeats itself.
_DRAW_FACTOR, _DRAW_SLACK = 3, 100


def dataset_names() -> list[str]:
    """Every dataset name reasoning-gym registers, sorted (imports the package).

    Example:
        >>> {"leg_counting", "spell_backward"} <= set(dataset_names())
        True
    """
    return sorted(require_reasoning_gym().DATASETS)


def task_names() -> list[str]:
    """Every dataset as a task name, ``reasoning_gym:NAME``.

    Example:
        >>> "reasoning_gym:chain_sum" in task_names()
        True
    """
    return [f"{PREFIX}:{name}" for name in dataset_names()]


def split_seed(name: str, seed: int, split: str) -> int:
    """The generator seed of one split: a hash of the dataset, the task seed and the split.

    Generators seed example ``i`` with ``seed + i``, so consecutive seeds would share examples
    between splits; hashed seeds are far apart. Below 2**31 so that ``seed + i`` stays a valid
    seed for generators that hand it to NumPy.

    Example:
        >>> split_seed("leg_counting", 0, "test") != split_seed("leg_counting", 0, "train")
        True
    """
    digest = hashlib.sha256(f"{PREFIX}:{name}:{seed}:{split}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def _config_fields(name: str) -> list[str]:
    """The config keys the dataset takes from the user (its config dataclass, less ours)."""
    _, config_cls = require_reasoning_gym().DATASETS[name]
    return [f.name for f in fields(config_cls) if f.name not in _OWN_FIELDS]


def _options(name: str, kw: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, Any]]:
    """Split ``kw`` into split sizes and the dataset's config, both checked."""
    task = f"{PREFIX}:{name}"
    own = [key for key in kw if key in _OWN_FIELDS]
    if own:
        raise ConfigError(
            f"option {own[0]!r} of task {task!r} is set by rewardgym: the splits' seeds derive "
            "from the task seed (task_seed) and their sizes are n_train, n_validation, n_test"
        )
    config_defaults = dict.fromkeys(_config_fields(name))
    options = split_sizes(task, kw, **DEFAULT_SIZES, **config_defaults)
    sizes = {key: options[key] for key in DEFAULT_SIZES}
    # a copy: examples keep it in their meta, and the caller may change its lists later
    config = copy.deepcopy({key: value for key, value in kw.items() if key not in DEFAULT_SIZES})
    try:
        config_key(config)
    except (TypeError, ValueError):
        raise ConfigError(
            f"the config of task {task!r} must be JSON values (numbers, strings, lists, "
            f"mappings), got {config!r:.120}"
        ) from None
    return sizes, config


def _dataset(name: str, config: Mapping[str, Any], seed: int, size: int) -> Any:
    """The reasoning-gym dataset ``name`` with ``config``; a config it rejects is a
    ConfigError naming the dataset's own message."""
    factory = require_reasoning_gym()
    try:
        return factory.create_dataset(name, seed=seed, size=size, **config)
    except (AssertionError, TypeError, ValueError) as exc:  # its config checks use all three
        raise ConfigError(
            f"reasoning-gym dataset {name!r} rejects the task options {dict(config)}: "
            f"{type(exc).__name__}: {exc}; fix them in task_kwargs (its options: "
            f"{', '.join(_config_fields(name))}), or ask for fewer examples if it names the "
            "size (n_train, n_validation, n_test)"
        ) from None


def _example(name: str, config: dict[str, Any], seed: int, index: int, entry: Any) -> Example:
    """One example from the generator's entry ``index`` of the split seeded ``seed``."""
    task = f"{PREFIX}:{name}"
    if not isinstance(entry, dict) or not isinstance(entry.get("question"), str):
        raise TaskDataError(f"{task}: entry {index} is not a dict with a question: {entry!r:.80}")
    if not isinstance(entry.get("answer"), str):
        raise ConfigError(
            f"{task} gives no reference answer (answer {entry.get('answer')!r}): its "
            "score_answer checks any valid answer, and a rewardgym task needs a reference per "
            "example; choose another reasoning-gym dataset"
        )
    try:
        json.dumps(entry)
    except (TypeError, ValueError) as exc:
        raise TaskDataError(f"{task}: entry {index} is not JSON-serialisable: {exc}") from None
    question = entry["question"].strip()
    info = {"dataset": name, "config": config, "seed": seed, "index": index, "entry": entry}
    meta = {"input": question, META_KEY: info}
    return Example(f"{question}\n{INSTRUCTION}", entry["answer"], meta)


def _draw(
    name: str, config: dict[str, Any], seed: int, split: str, n: int, seen: set[str]
) -> list[Example]:
    """``n`` examples of one split whose prompts are not in ``seen`` (which grows)."""
    budget = _DRAW_FACTOR * n + _DRAW_SLACK
    dataset = _dataset(name, config, seed, budget)
    drawn: list[Example] = []
    for index in range(budget):
        try:
            entry = dataset[index]
        except Exception as exc:  # a generator that runs out raises anything: say so, typed
            raise ConfigError(
                f"reasoning-gym dataset {name!r} failed at example {index} of the {split} split: "
                f"{type(exc).__name__}: {exc}; ask for fewer examples (n_{split}={n} now) or "
                "change its config"
            ) from None
        example = _example(name, config, seed, index, entry)
        if example.prompt not in seen:
            seen.add(example.prompt)
            drawn.append(example)
            if len(drawn) == n:
                return drawn
    raise ConfigError(
        f"reasoning-gym dataset {name!r} made only {len(drawn)} new distinct questions for the "
        f"{split} split in {budget} draws (with its config {config}); ask for fewer "
        f"(n_{split}={n} now) or widen its config"
    )


def make_reasoning_task(name: str, seed: int = 0, **kw: Any) -> Task:
    """The task ``reasoning_gym:<name>``: options ``n_train``, ``n_validation``, ``n_test``
    (defaults :data:`DEFAULT_SIZES`) and the dataset's own config keys.

    Raises:
        ConfigError: reasoning-gym is not installed, a config the dataset rejects, or more
            examples than the generator can make.
        UnknownNameError: no such dataset (with a "did you mean").

    Example:
        >>> task = make_reasoning_task("chain_sum", n_train=4, n_validation=2, n_test=2)
        >>> task.name, task.primary_metric, task.task_reward
        ('reasoning_gym:chain_sum', 'reasoning_gym', 'reasoning_gym')
    """
    factory = require_reasoning_gym()
    if name not in factory.DATASETS:
        raise UnknownNameError(
            f"{PREFIX} task",
            f"{PREFIX}:{name}",
            task_names(),
            hint="rewardgym list tasks --all lists every task.",
        )
    sizes, config = _options(name, kw)
    seen: set[str] = set()
    splits = {}
    for split in ("test", "validation", "train"):  # test first: n_train leaves it as it is
        splits[split] = _draw(
            name, config, split_seed(name, seed, split), split, sizes[f"n_{split}"], seen
        )
    return Task(
        f"{PREFIX}:{name}",
        {split: splits[split] for split in SPLITS},
        seed=seed,
        description=f"reasoning-gym's {name} dataset, scored by its own score_answer",
        answer_format="tag_or_marker",
        primary_metric=PREFIX,
        task_reward=PREFIX,
    )


def reasoning_gym_quality(hyps: list[str], refs: list[str], meta: list[dict]) -> float:
    """100 × the mean of each dataset's ``score_answer(answer, entry)``, the entry read from
    the example's ``meta["reasoning_gym"]``.

    Raises:
        ConfigError: an example without a reasoning-gym entry in its meta.

    Example:
        >>> info = {"dataset": "leg_counting", "config": {},
        ...         "entry": {"question": "...", "answer": "8", "metadata": {}}}
        >>> reasoning_gym_quality(["8", "9"], ["8", "8"], [{META_KEY: info}] * 2)
        50.0
    """
    infos = [entry_info(m) for m in meta]
    if any(info is None for info in infos):
        raise ConfigError(
            f"quality metric {PREFIX!r} scores an answer against its example's reasoning-gym "
            f"entry, but an example has no meta[{META_KEY!r}]: pass each example's meta "
            "(task.quality(answers, refs, corpus, [ex.meta for ex in examples])), or choose "
            "another primary_metric"
        )
    if not hyps:
        return 0.0
    return 100.0 * sum(score_entry(h, info) for h, info in zip(hyps, infos)) / len(hyps)


def register_envs() -> list[str]:
    """Register the Gymnasium ids of every reasoning-gym task (imports the package); return
    the sequence-level ones. Making a task registers its own ids without this.

    Example:
        >>> "rewardgym/ReasoningGymLegCounting-v0" in register_envs()
        True
    """
    return [register_task_envs(name)[0] for name in task_names()]


register_quality_metric(PREFIX, reasoning_gym_quality, label="reasoning-gym score", overwrite=True)
register_task_family(
    TaskFamily(PREFIX, make_reasoning_task, dataset_names, description="a reasoning-gym dataset")
)

__all__ = [
    "DEFAULT_SIZES",
    "INSTRUCTION",
    "PREFIX",
    "dataset_names",
    "make_reasoning_task",
    "reasoning_gym_quality",
    "register_envs",
    "split_seed",
    "task_names",
]
