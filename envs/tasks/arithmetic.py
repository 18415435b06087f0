"""The ``arithmetic`` task: a one- or two-sentence word problem into a number.

Problems add, subtract or multiply two small numbers; answers are never negative. The
reference is the answer in digits, e.g. ``"8"``; ``meta`` holds the operation and operands,
so any answer can be recomputed.

Example:
    >>> ex = make_arithmetic(0).split("test")[0]
    >>> ex.reference == str(ex.meta["answer"])
    True
"""

from __future__ import annotations

import random
from typing import Any

from rewardgym.envs.tasks.base import Example, Task, generate_splits, register_task, split_sizes

DESCRIPTION = "Solve a short word problem (add, subtract or multiply small numbers)."
OPERATIONS = ("add", "subtract", "multiply")

NAMES = (
    "Tom", "Ana", "Ben", "Mia", "Leo", "Sara", "Omar", "Lena", "Paul", "Nina", "Ivan", "Zoe",
    "Max", "Eva", "Sam", "Rosa", "Hugo", "Ines", "Karl", "Lucy", "Felix", "Clara", "Noah", "Emma",
)  # fmt: skip
ITEMS = (
    "apples", "pencils", "marbles", "stickers", "coins", "books", "cookies", "cards", "stamps",
    "shells", "balloons", "oranges", "candles", "buttons", "eggs",
)  # fmt: skip

ADD_TEMPLATES = (
    "{n} has {a} {item} and buys {b} more. How many {item} does {n} have now?",
    "{n} had {a} {item}. Then {n} found {b} more. How many {item} does {n} have?",
    "There are {a} {item} in a box. {n} puts in {b} more. How many {item} are in the box?",
    "{n} has {a} {item}. {m} gives {n} {b} more. How many {item} does {n} have?",
)
SUBTRACT_TEMPLATES = (
    "{n} has {a} {item} and gives {b} to {m}. How many {item} does {n} have left?",
    "{n} had {a} {item} and lost {b}. How many {item} are left?",
    "There are {a} {item} on a table. {n} takes {b} away. How many {item} are on the table?",
    "{n} has {a} {item} and uses {b} of them. How many {item} remain?",
)
MULTIPLY_TEMPLATES = (
    "{n} has {a} bags with {b} {item} in each bag. How many {item} does {n} have?",
    "{n} buys {a} packs of {item}. Each pack holds {b} {item}. How many {item} does {n} buy?",
    "There are {a} rows of {item} with {b} {item} in each row. How many {item} are there?",
)
TEMPLATES = {"add": ADD_TEMPLATES, "subtract": SUBTRACT_TEMPLATES, "multiply": MULTIPLY_TEMPLATES}


def solve(op: str, a: int, b: int) -> int:
    """The answer to ``a <op> b``.

    Example:
        >>> solve("subtract", 9, 4)
        5
    """
    return {"add": a + b, "subtract": a - b, "multiply": a * b}[op]


def _operands(rng: random.Random, op: str) -> tuple[int, int]:
    if op == "multiply":
        return rng.randint(2, 12), rng.randint(2, 12)
    a = rng.randint(2, 50)
    b = rng.randint(1, 50) if op == "add" else rng.randint(1, a)  # keeps answers >= 0
    return a, b


def sample_example(rng: random.Random) -> Example:
    """One arithmetic example: ``solve: <problem> =>`` with the answer as reference."""
    op = rng.choice(OPERATIONS)
    a, b = _operands(rng, op)
    name, other = rng.sample(NAMES, 2)
    problem = rng.choice(TEMPLATES[op]).format(n=name, m=other, a=a, b=b, item=rng.choice(ITEMS))
    answer = solve(op, a, b)
    meta = {"input": problem, "op": op, "operands": [a, b], "answer": answer}
    return Example(f"solve: {problem} =>", str(answer), meta)


@register_task("arithmetic")
def make_arithmetic(seed: int = 0, **kw: Any) -> Task:
    """Build the arithmetic task (options: n_train, n_validation, n_test).

    Example:
        >>> make_arithmetic(0).split("train")[0].reference.isdigit()
        True
    """
    sizes = split_sizes("arithmetic", kw)
    splits = generate_splits("arithmetic", seed, sample_example, sizes)
    # Worked answers ("13 - 6 = 7 cards left") are read for their last number and scored by
    # exact match: corpus BLEU of one-token references is degenerate.
    return Task(
        "arithmetic",
        splits,
        seed=seed,
        description=DESCRIPTION,
        answer_format="number",
        primary_metric="exact_match",
    )
