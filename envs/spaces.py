"""Spaces and action parsing shared by the sequence-level environments."""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Any

from gymnasium import spaces

from rewardgym.errors import ConfigError, EnvInputError

# Printable ASCII without the vertical tab and form feed, which no tokenizer or terminal wants.
PRINTABLE = "".join(sorted(set(string.printable) - {"\x0b", "\x0c"}))
# Gymnasium's convention: a finished episode takes no more steps until the next reset.
EPISODE_ENDED = "the episode has ended (terminated or truncated); call reset() before step()"


def text_charset(task_charset: str) -> str:
    """The characters a prompt or completion may hold: printable ASCII plus the task's own."""
    return "".join(sorted(set(PRINTABLE) | set(task_charset)))


def text_space(max_length: int, charset: str) -> spaces.Text:
    """A ``Text`` space that admits the empty string (the exploit a speed reward invites)."""
    return spaces.Text(max_length=max_length, min_length=0, charset=charset)


def sanitize(text: str, charset: frozenset[str], replacement: str = "?") -> str:
    """Replace characters outside ``charset`` so an observation stays inside its space."""
    return "".join(ch if ch in charset else replacement for ch in text)


_ACTION_KEYS = ("text", "n_tokens", "finished", "latency_s", "stop", "completion_ids")


@dataclass(frozen=True)
class Action:
    """One completion as the agent hands it over, with what the agent knows about it."""

    text: str
    n_tokens: int | None = None
    finished: bool | None = None
    latency_s: float | None = None
    stop: bool = False
    completion_ids: tuple[int, ...] | None = None


def parse_action(action: Any, max_chars: int) -> Action:
    """Turn a ``str`` or a structured ``dict`` action into an :class:`Action`, checking each field.

    Example:
        >>> parse_action({"text": "hi", "n_tokens": 2}, max_chars=10).n_tokens
        2
    """
    if isinstance(action, str):
        fields: dict[str, Any] = {"text": action}
    elif isinstance(action, dict):
        unknown = sorted(set(action) - set(_ACTION_KEYS))
        if unknown:
            raise EnvInputError(
                f"unknown action key(s) {unknown}; a structured action takes {list(_ACTION_KEYS)}"
            )
        if not isinstance(action.get("text"), str):
            raise EnvInputError(
                f"a structured action needs 'text' as a str, got {action.get('text')!r}"
            )
        fields = dict(action)
    else:
        raise EnvInputError(
            f"action must be a str or a dict with a 'text' key, got {type(action).__name__}: "
            f"{action!r:.80}"
        )
    if len(fields["text"]) > max_chars:
        raise EnvInputError(
            f"action is {len(fields['text'])} characters, over the limit of {max_chars}; "
            "truncate the completion or raise max_completion_chars"
        )
    return Action(
        text=fields["text"],
        n_tokens=_optional_count(fields.get("n_tokens"), "n_tokens"),
        finished=_optional_bool(fields.get("finished"), "finished"),
        latency_s=_optional_seconds(fields.get("latency_s")),
        stop=bool(_optional_bool(fields.get("stop"), "stop")),
        completion_ids=_optional_ids(fields.get("completion_ids")),
    )


def _optional_count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EnvInputError(f"action {name} must be a non-negative int, got {value!r}")
    return int(value)


def _optional_bool(value: Any, name: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise EnvInputError(f"action {name} must be True or False, got {value!r}")
    return value


def _optional_seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EnvInputError(f"action latency_s must be a finite number of seconds, got {value!r}")
    if value < 0:
        raise EnvInputError(f"action latency_s must be >= 0, got {value!r}")
    return float(value)


def _optional_ids(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(i) for i in value)
    except (TypeError, ValueError) as exc:
        raise EnvInputError(
            f"action completion_ids must be a sequence of ints, got {value!r:.80}"
        ) from exc


def positive_int(value: Any, name: str) -> int:
    """``value`` if it is an int >= 1, else a ``ConfigError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return value
