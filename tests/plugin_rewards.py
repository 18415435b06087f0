"""A tiny reward module that tests load through "module:function" specs and entry points."""

from __future__ import annotations

from typing import Any


def shout(prompts: list[str], completions: list[str], **kwargs: Any) -> list[float | None]:
    """shout = share of upper-case letters (None for a completion without letters)."""
    out: list[float | None] = []
    for text in completions:
        letters = [ch for ch in text if ch.isalpha()]
        out.append(sum(ch.isupper() for ch in letters) / len(letters) if letters else None)
    return out


shout.needs_references = False  # type: ignore[attr-defined]


class Keyword:
    """keyword = 1[word in completion]; parameterised, so a small callable class."""

    needs_references = False

    def __init__(self, word: str = "yes") -> None:
        self.word = word

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        return [float(self.word in text.split()) for text in completions]


NOT_CALLABLE = 3
