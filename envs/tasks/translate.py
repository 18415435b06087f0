"""The ``translate`` task: English-like sentences into a synthetic verb-final language.

The target language is strictly compositional, so a small model can learn it and BLEU gives
partial credit:

- every English word form maps to one fixed target stem (the table below, the same for every
  seed; only the sentences sampled depend on the seed);
- nouns take the plural suffix ``-ni``; verbs take a tense suffix: ``-ta`` past, ``-mo``
  present, ``-ru`` future (English "will see" is one target word, ``mupa-ru``);
- word order: adjectives follow their noun, and the verb moves to the end of the sentence
  (subject, object, prepositional phrase, adverb, verb: SOV).

Example:
    >>> clause = Clause(NounPhrase("dog", plural=True, det="the", adjectives=("red",)),
    ...                 "see", "past", obj=NounPhrase("cat", det="a"))
    >>> clause.source(), clause.target()
    ('the red dogs saw a cat', 'keli fekubu-ni biru beti tovi mupa-ta')
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from rewardgym.envs.tasks.base import Example, Task, generate_splits, register_task, split_sizes
from rewardgym.errors import ConfigError

DESCRIPTION = (
    "Translate an English-like sentence into a synthetic verb-final language "
    "(fixed lexicon, plural and tense suffixes, adjectives after nouns)."
)
MIN_WORDS, MAX_WORDS = 4, 15
PLURAL_SUFFIX = "-ni"
TENSE_SUFFIXES = {"past": "-ta", "present": "-mo", "future": "-ru"}

# determiner -> (number it goes with: "sg", "pl" or "any"; target word)
DETERMINERS: dict[str, tuple[str, str]] = {
    "the": ("any", "keli"), "a": ("sg", "beti"), "this": ("sg", "za"), "that": ("sg", "lisu"),
    "every": ("sg", "fa"), "each": ("sg", "gi"), "some": ("pl", "zome"), "these": ("pl", "rime"),
    "those": ("pl", "tu"), "many": ("pl", "lime"), "few": ("pl", "pe"), "no": ("any", "sazo"),
    "my": ("any", "lu"), "your": ("any", "laso"), "his": ("any", "ladu"), "her": ("any", "sa"),
    "our": ("any", "tite"), "their": ("any", "ge"),
}  # fmt: skip
NUMERALS: dict[str, str] = {
    "two": "zilu", "three": "tota", "four": "pedi", "five": "zibu", "six": "toku",
    "seven": "rede", "eight": "zilo", "nine": "noba", "ten": "kefo",
}  # fmt: skip
# singular -> (plural, target stem)
NOUNS: dict[str, tuple[str, str]] = {
    "dog": ("dogs", "fekubu"), "cat": ("cats", "tovi"), "bird": ("birds", "mima"),
    "horse": ("horses", "bitefe"), "fox": ("foxes", "fovuza"), "child": ("children", "rimidu"),
    "man": ("men", "munu"), "woman": ("women", "kemufa"), "teacher": ("teachers", "zipefo"),
    "farmer": ("farmers", "levovo"), "doctor": ("doctors", "gadi"), "king": ("kings", "lule"),
    "queen": ("queens", "mububu"), "friend": ("friends", "nera"),
    "student": ("students", "pibo"), "baker": ("bakers", "gatoke"),
    "soldier": ("soldiers", "vizo"), "tree": ("trees", "vera"), "flower": ("flowers", "vifi"),
    "house": ("houses", "pini"), "city": ("cities", "vilefo"), "river": ("rivers", "seribo"),
    "mountain": ("mountains", "maseso"), "garden": ("gardens", "kikenu"),
    "book": ("books", "nuzilu"), "letter": ("letters", "budaza"), "song": ("songs", "zatu"),
    "apple": ("apples", "sazimu"), "cake": ("cakes", "piti"), "ball": ("balls", "fata"),
    "box": ("boxes", "bazife"), "car": ("cars", "lufani"), "boat": ("boats", "vonu"),
    "road": ("roads", "pozavo"), "door": ("doors", "loparu"), "window": ("windows", "raleto"),
    "table": ("tables", "silupi"), "chair": ("chairs", "zeno"), "cup": ("cups", "nime"),
    "key": ("keys", "nefi"), "hat": ("hats", "sefu"), "shoe": ("shoes", "runa"),
    "stone": ("stones", "tasate"), "star": ("stars", "gasona"), "moon": ("moons", "tivuna"),
    "field": ("fields", "fedu"), "village": ("villages", "kirugo"),
    "market": ("markets", "rafule"), "bridge": ("bridges", "sike"),
    "forest": ("forests", "nidu"), "lamp": ("lamps", "zope"), "ship": ("ships", "vifeko"),
    "girl": ("girls", "veva"), "boy": ("boys", "muni"), "wolf": ("wolves", "labanu"),
}  # fmt: skip
# base -> (third person singular, past, target stem)
TRANSITIVE_VERBS: dict[str, tuple[str, str, str]] = {
    "see": ("sees", "saw", "mupa"), "find": ("finds", "found", "salamo"),
    "take": ("takes", "took", "vazo"), "carry": ("carries", "carried", "nebi"),
    "love": ("loves", "loved", "rase"), "watch": ("watches", "watched", "benita"),
    "help": ("helps", "helped", "zarilo"), "follow": ("follows", "followed", "zago"),
    "build": ("builds", "built", "vapo"), "open": ("opens", "opened", "nalima"),
    "close": ("closes", "closed", "kasupa"), "paint": ("paints", "painted", "fite"),
    "hold": ("holds", "held", "lita"), "push": ("pushes", "pushed", "modala"),
    "pull": ("pulls", "pulled", "minige"), "cook": ("cooks", "cooked", "pulo"),
    "buy": ("buys", "bought", "tefido"), "sell": ("sells", "sold", "lebi"),
    "draw": ("draws", "drew", "late"), "throw": ("throws", "threw", "lavo"),
    "catch": ("catches", "caught", "siri"), "wash": ("washes", "washed", "kirino"),
    "visit": ("visits", "visited", "negonu"), "call": ("calls", "called", "zile"),
    "meet": ("meets", "met", "kena"),
}  # fmt: skip
INTRANSITIVE_VERBS: dict[str, tuple[str, str, str]] = {
    "sleep": ("sleeps", "slept", "mevito"), "run": ("runs", "ran", "nilize"),
    "walk": ("walks", "walked", "mapode"), "jump": ("jumps", "jumped", "fifu"),
    "sing": ("sings", "sang", "lifema"), "dance": ("dances", "danced", "vemasu"),
    "laugh": ("laughs", "laughed", "bevezu"), "swim": ("swims", "swam", "nakada"),
    "wait": ("waits", "waited", "zapiso"), "fall": ("falls", "fell", "delufi"),
    "smile": ("smiles", "smiled", "mabi"), "cry": ("cries", "cried", "foli"),
    "shout": ("shouts", "shouted", "vesadi"), "rest": ("rests", "rested", "nure"),
    "arrive": ("arrives", "arrived", "dibi"),
}  # fmt: skip
ADJECTIVES: dict[str, str] = {
    "big": "nini", "small": "duda", "red": "biru", "blue": "padi", "green": "saro",
    "old": "fanebi", "young": "riro", "happy": "dora", "sad": "gobi", "tall": "rafuti",
    "short": "dabufu", "fast": "faru", "slow": "viti", "quiet": "kakuru", "loud": "kobebu",
    "bright": "ligu", "dark": "gipora", "warm": "doratu", "cold": "deli", "new": "givabe",
    "strong": "kube", "weak": "tezome", "clever": "disuri", "kind": "zorufe", "brave": "futoso",
    "lazy": "tizopi", "hungry": "zafo", "tired": "kelu", "rich": "befegi", "poor": "zifamu",
    "dirty": "vifenu", "heavy": "gesa", "soft": "butaku", "wild": "bugu", "gentle": "dopu",
    "yellow": "sote", "white": "pimo", "black": "divevo",
}  # fmt: skip
ADVERBS: dict[str, str] = {
    "quickly": "motu", "slowly": "vasalo", "quietly": "lasuva", "loudly": "milaga",
    "happily": "mekalo", "sadly": "vofopi", "often": "fomiki", "always": "pifa", "again": "tote",
    "carefully": "zufisu", "gently": "nilime", "badly": "vavi", "together": "nuta",
    "alone": "sozaro", "early": "raki",
}  # fmt: skip
PREPOSITIONS: dict[str, str] = {
    "in": "muba", "on": "ripe", "near": "nolu", "under": "nome", "behind": "redu", "with": "du",
    "without": "pisu", "from": "kalo", "to": "kanu", "over": "rovo", "beside": "sabi",
    "across": "bima", "through": "nafa", "into": "keka",
}  # fmt: skip

VERBS = {**TRANSITIVE_VERBS, **INTRANSITIVE_VERBS}
# determiners that may stand before a numeral ("the two dogs", "my three cats")
_NUMERAL_DETERMINERS = ("the", "my", "your", "his", "her", "our", "their")


def lexicon() -> dict[str, str]:
    """Every English lemma mapped to its target word (one entry per lemma, all categories).

    Example:
        >>> lexicon()["dog"], len(lexicon()) >= 150
        ('fekubu', True)
    """
    table = {word: target for word, (_, target) in DETERMINERS.items()}
    table.update(NUMERALS)
    table.update({word: target for word, (_, target) in NOUNS.items()})
    table.update({word: entry[2] for word, entry in VERBS.items()})
    for words in (ADJECTIVES, ADVERBS, PREPOSITIONS):
        table.update(words)
    return table


@dataclass(frozen=True)
class NounPhrase:
    """A noun with optional determiner, numeral and adjectives.

    Example:
        >>> NounPhrase("apple", det="a", adjectives=("old",)).source_words()
        ['an', 'old', 'apple']
    """

    noun: str
    plural: bool = False
    det: str | None = None
    numeral: str | None = None
    adjectives: tuple[str, ...] = ()

    def source_words(self) -> list[str]:
        """English order: determiner, numeral, adjectives, noun."""
        noun = NOUNS[self.noun][0] if self.plural else self.noun
        words = [w for w in (self.det, self.numeral) if w] + [*self.adjectives, noun]
        if self.det == "a" and words[1][0] in "aeiou":
            words[0] = "an"
        return words

    def target_words(self) -> list[str]:
        """Target order: determiner, numeral, noun (plural suffix), adjectives."""
        words = [DETERMINERS[self.det][1]] if self.det else []
        words += [NUMERALS[self.numeral]] if self.numeral else []
        words.append(NOUNS[self.noun][1] + (PLURAL_SUFFIX if self.plural else ""))
        return words + [ADJECTIVES[adj] for adj in self.adjectives]


@dataclass(frozen=True)
class Clause:
    """One sentence: subject, verb with tense, optional object, prepositional phrase, adverb.

    English order is subject, verb, object, prepositional phrase, adverb; the target moves the
    verb to the end.
    """

    subject: NounPhrase
    verb: str
    tense: str
    obj: NounPhrase | None = None
    prep: tuple[str, NounPhrase] | None = None
    adverb: str | None = None

    def _verb_source(self) -> list[str]:
        third, past = VERBS[self.verb][:2]
        if self.tense == "past":
            return [past]
        if self.tense == "future":
            return ["will", self.verb]
        return [self.verb if self.subject.plural else third]

    def source(self) -> str:
        """The English sentence, e.g. ``"the dog will see a cat"``."""
        words = self.subject.source_words() + self._verb_source()
        words += self.obj.source_words() if self.obj else []
        words += [self.prep[0], *self.prep[1].source_words()] if self.prep else []
        words += [self.adverb] if self.adverb else []
        return " ".join(words)

    def target(self) -> str:
        """The target sentence: subject, object, prepositional phrase, adverb, verb."""
        words = self.subject.target_words()
        words += self.obj.target_words() if self.obj else []
        words += [PREPOSITIONS[self.prep[0]], *self.prep[1].target_words()] if self.prep else []
        words += [ADVERBS[self.adverb]] if self.adverb else []
        words.append(VERBS[self.verb][2] + TENSE_SUFFIXES[self.tense])
        return " ".join(words)


def _sample_noun_phrase(rng: random.Random) -> NounPhrase:
    plural = rng.random() < 0.4
    numeral = rng.choice(list(NUMERALS)) if plural and rng.random() < 0.3 else None
    if numeral:
        det = rng.choice([None, *_NUMERAL_DETERMINERS])
    elif plural and rng.random() < 0.15:
        det = None  # bare plural: "dogs run"
    else:
        number = "pl" if plural else "sg"
        det = rng.choice([d for d, (n, _) in DETERMINERS.items() if n in (number, "any")])
    n_adjectives = rng.choices((0, 1, 2), weights=(0.5, 0.35, 0.15))[0]
    adjectives = tuple(rng.sample(list(ADJECTIVES), n_adjectives))
    return NounPhrase(rng.choice(list(NOUNS)), plural, det, numeral, adjectives)


def sample_clause(rng: random.Random) -> Clause:
    """Draw a random sentence of MIN_WORDS to MAX_WORDS English words.

    Example:
        >>> 4 <= len(sample_clause(random.Random(0)).source().split()) <= 15
        True
    """
    while True:
        transitive = rng.random() < 0.6
        clause = Clause(
            subject=_sample_noun_phrase(rng),
            verb=rng.choice(list(TRANSITIVE_VERBS if transitive else INTRANSITIVE_VERBS)),
            tense=rng.choice(list(TENSE_SUFFIXES)),
            obj=_sample_noun_phrase(rng) if transitive else None,
            prep=(
                (rng.choice(list(PREPOSITIONS)), _sample_noun_phrase(rng))
                if rng.random() < 0.45
                else None
            ),
            adverb=rng.choice(list(ADVERBS)) if rng.random() < 0.35 else None,
        )
        if MIN_WORDS <= len(clause.source().split()) <= MAX_WORDS:
            return clause


def sample_example(rng: random.Random) -> Example:
    """One translate example: ``translate: <source> =>`` with the target as reference."""
    clause = sample_clause(rng)
    source = clause.source()
    meta = {"input": source, "n_words": len(source.split()), "tense": clause.tense}
    return Example(f"translate: {source} =>", clause.target(), meta)


@register_task("translate")
def make_translate(seed: int = 0, **kw: Any) -> Task:
    """Build the translate task (options: n_train, n_validation, n_test).

    Example:
        >>> make_translate(0).split("train")[0].prompt.startswith("translate: ")
        True
    """
    sizes = split_sizes("translate", kw)
    splits = generate_splits("translate", seed, sample_example, sizes)
    return Task("translate", splits, seed=seed, description=DESCRIPTION)


def _check_lexicon() -> None:
    """Each English word form must have one meaning, or the mapping is ambiguous."""
    forms: dict[str, str] = {"an": "determiner a", "will": "future marker"}
    entries = [(w, f"determiner {w}") for w in DETERMINERS]
    for kind, words in (
        ("numeral", NUMERALS),
        ("adjective", ADJECTIVES),
        ("adverb", ADVERBS),
        ("preposition", PREPOSITIONS),
    ):
        entries += [(w, f"{kind} {w}") for w in words]
    entries += [(f, f"noun {n}") for n, (plural, _) in NOUNS.items() for f in (n, plural)]
    entries += [(f, f"verb {v}") for v, (third, past, _) in VERBS.items() for f in (v, third, past)]
    for form, lemma in entries:
        if forms.setdefault(form, lemma) != lemma:
            raise ConfigError(
                f"translate lexicon: {form!r} is both the {forms[form]} and the {lemma}"
            )
    targets = list(lexicon().values())
    if len(set(targets)) != len(targets):
        raise ConfigError("translate lexicon: two English lemmas share a target word")


_check_lexicon()
