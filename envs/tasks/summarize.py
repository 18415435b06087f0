"""The ``summarize`` task: a short paragraph of facts into a one-line summary.

Each paragraph has 3 to 5 sentences about a person or a company, phrased with varied
templates in varied order, sometimes with a distractor sentence the summary leaves out. The
summary has a fixed shape:

- person: ``"Ana, 34, baker in Paris, likes chess"`` (plus ``", has a cat"`` when a pet is
  mentioned);
- company: ``"Nordwind, founded 1998, makes bicycles in Oslo, 120 employees"``.

Example:
    >>> ex = make_summarize(0).split("test")[0]
    >>> ex.prompt.startswith("summarize: ") and ex.prompt.endswith(" =>")
    True
"""

from __future__ import annotations

import random
from typing import Any

from rewardgym.envs.tasks.base import Example, Task, generate_splits, register_task, split_sizes

DESCRIPTION = "Summarize a 3-5 sentence paragraph about a person or company in one line."
MAX_SENTENCES = 5

FEMALE_NAMES = (
    "Ana", "Maria", "Lena", "Sofia", "Emma", "Julia", "Nina", "Clara", "Eva", "Mia",
    "Laura", "Sara", "Alice", "Hanna", "Rosa", "Ines", "Olga", "Zoe", "Lucy", "Grace",
)  # fmt: skip
MALE_NAMES = (
    "Tom", "Ben", "Leo", "Max", "Paul", "Omar", "Ivan", "Luca", "Felix", "Hugo",
    "Jonas", "Karl", "Marco", "Noah", "Oscar", "Pedro", "Sam", "Victor", "Yusuf", "Adam",
)  # fmt: skip
JOBS = (
    "baker", "teacher", "nurse", "pilot", "engineer", "farmer", "painter", "doctor", "lawyer",
    "chef", "plumber", "architect", "writer", "dentist", "librarian", "carpenter", "gardener",
    "pharmacist", "journalist", "electrician", "tailor", "barber", "photographer", "musician",
    "accountant", "mechanic", "designer", "veterinarian", "translator", "florist",
)  # fmt: skip
CITIES = (
    "Paris", "Oslo", "Lisbon", "Vienna", "Prague", "Dublin", "Madrid", "Berlin", "Rome",
    "Athens", "Warsaw", "Helsinki", "Zurich", "Lyon", "Porto", "Krakow", "Seville", "Bergen",
    "Munich", "Milan", "Ghent", "Bristol", "Riga", "Tallinn", "Naples", "Valencia", "Hamburg",
    "Geneva", "Malmo", "Turin",
)  # fmt: skip
HOBBIES = (
    "chess", "painting", "hiking", "jazz", "tennis", "cooking", "gardening", "photography",
    "running", "poetry", "football", "knitting", "cycling", "swimming", "birdwatching", "yoga",
    "sailing", "pottery", "reading", "fishing", "climbing", "baking", "dancing", "board games",
    "old films",
)  # fmt: skip
PETS = ("dog", "cat", "parrot", "rabbit", "turtle", "hamster", "goldfish", "horse")
WEATHER = ("rainy", "sunny", "windy", "foggy", "mild", "cold")
DRINKS = ("coffee", "green tea", "orange juice", "cocoa", "lemonade")
COMPANY_PARTS = (
    ("Nord", "Blue", "Silver", "Red", "Green", "Sun", "Iron", "Star", "Oak", "River", "Stone",
     "Bright", "Cloud", "Gold", "Swift"),
    ("wind", "peak", "works", "line", "field", "gate", "leaf", "bay", "forge", "path"),
)  # fmt: skip
PRODUCTS = (
    "bicycles", "software", "furniture", "toys", "shoes", "solar panels", "coffee machines",
    "boats", "medicine", "chocolate", "video games", "tea", "glass bottles", "bread", "paper",
)  # fmt: skip
COLOURS = ("green", "orange", "purple", "blue", "red", "yellow")


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _person(rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    female = rng.random() < 0.5
    name = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
    he, his = ("She", "her") if female else ("He", "his")
    facts = {
        "name": name,
        "age": rng.randint(19, 70),
        "job": rng.choice(JOBS),
        "city": rng.choice(CITIES),
        "hobby": rng.choice(HOBBIES),
    }
    age, job, city, hobby = facts["age"], facts["job"], facts["city"], facts["hobby"]
    job_in_intro = rng.random() < 0.4
    intro = f"{name} is {_a(f'{age}-year-old {job}')}." if job_in_intro else f"{name} is {age}."
    if not job_in_intro and rng.random() < 0.5:
        intro = f"{name} is {age} years old."
    rest = [
        rng.choice((f"{he} lives in {city}.", f"{he} has a home in {city}.")),
        rng.choice((f"{he} likes {hobby}.", f"In {his} free time, {he.lower()} enjoys {hobby}.")),
    ]
    if not job_in_intro:
        rest.append(
            rng.choice((f"{he} works as {_a(job)}.", f"By trade, {he.lower()} is {_a(job)}."))
        )
    summary = f"{name}, {age}, {job} in {city}, likes {hobby}"
    if rng.random() < 0.4:
        facts["pet"] = rng.choice(PETS)
        rest.append(
            rng.choice((f"{he} has a pet {facts['pet']}.", f"{he} owns {_a(facts['pet'])}."))
        )
        summary += f", has {_a(facts['pet'])}"
    if rng.random() < 0.5:
        rest.append(
            rng.choice(
                (
                    f"The weather in {city} is often {rng.choice(WEATHER)}.",
                    f"{he} drinks {rng.choice(DRINKS)} every morning.",
                    f"{he} usually wakes up at {rng.randint(5, 9)} o'clock.",
                )
            )
        )
    return _paragraph(rng, intro, rest), summary, facts


def _company(rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    name = rng.choice(COMPANY_PARTS[0]) + rng.choice(COMPANY_PARTS[1])
    facts = {
        "name": name,
        "city": rng.choice(CITIES),
        "year": rng.randint(1950, 2020),
        "product": rng.choice(PRODUCTS),
        "employees": rng.randint(5, 5000),
    }
    city, year, product, staff = facts["city"], facts["year"], facts["product"], facts["employees"]
    rest = [
        rng.choice((f"It makes {product}.", f"Its main product is {product}.")),
        rng.choice((f"It employs {staff} people.", f"It has {staff} employees.")),
    ]
    if rng.random() < 0.4:
        intro = f"{name} was founded in {year} in {city}."
    else:
        intro = rng.choice(
            (f"{name} is a company based in {city}.", f"{name} has its office in {city}.")
        )
        rest.append(rng.choice((f"It was founded in {year}.", f"It started in {year}.")))
    if rng.random() < 0.5:
        rest.append(f"Its logo is {rng.choice(COLOURS)}.")
    summary = f"{name}, founded {year}, makes {product} in {city}, {staff} employees"
    return _paragraph(rng, intro, rest), summary, facts


def _paragraph(rng: random.Random, intro: str, rest: list[str]) -> str:
    """The intro first, then the other sentences shuffled; the last (a distractor) is
    dropped when there are more than MAX_SENTENCES."""
    rest = rest[: MAX_SENTENCES - 1]
    rng.shuffle(rest)
    return " ".join([intro, *rest])


def sample_example(rng: random.Random) -> Example:
    """One summarize example: ``summarize: <paragraph> =>`` with the summary as reference."""
    kind = "person" if rng.random() < 0.7 else "company"
    paragraph, summary, facts = (_person if kind == "person" else _company)(rng)
    meta = {"input": paragraph, "kind": kind, "facts": facts, "language": "en"}
    return Example(f"summarize: {paragraph} =>", summary, meta)


@register_task("summarize")
def make_summarize(seed: int = 0, **kw: Any) -> Task:
    """Build the summarize task (options: n_train, n_validation, n_test).

    Example:
        >>> make_summarize(0).split("train")[0].reference.count(",") >= 3
        True
    """
    sizes = split_sizes("summarize", kw)
    splits = generate_splits("summarize", seed, sample_example, sizes)
    return Task("summarize", splits, seed=seed, description=DESCRIPTION)
