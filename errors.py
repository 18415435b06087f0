"""Typed errors for everything a user can get wrong.

Every error a user can cause is a ``ValueError`` subclass defined here, so callers can catch
``RewardGymError`` for all of them, and every message names the bad value and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RewardGymError(ValueError):
    """Base class of every user-facing error in rewardgym."""


# Beside a close match, a list longer than this buries it: only its length is given then.
_LISTED_WITH_A_MATCH = 12


class UnknownNameError(RewardGymError, KeyError):
    """A task, reward, model, algorithm or option name that is not registered."""

    def __init__(self, kind: str, name: object, choices: Iterable[str], hint: str = "") -> None:
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        message = f"unknown {kind} {name!r}"
        close = difflib.get_close_matches(str(name), self.choices, n=1)
        message += f"; did you mean {close[0]!r}?" if close else "."
        if close and len(self.choices) > _LISTED_WITH_A_MATCH:  # the match is the answer
            message += f" ({len(self.choices)} valid {kind}s.)"
        else:
            message += f" Valid {kind}s: {', '.join(self.choices) or '(none registered)'}."
        if hint:
            message += f" {hint}"
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class ConfigError(RewardGymError):
    """A config file or config value that fails validation."""


class TaskDataError(RewardGymError):
    """A task data file (JSONL) that cannot be loaded; names the file, line and problem."""


class RewardError(RewardGymError):
    """A reward function broke its contract: wrong length, non-finite value, or an exception."""


class ModelLoadError(RewardGymError):
    """A model spec that cannot be loaded: missing package, missing weights, bad directory."""


class CheckpointError(RewardGymError):
    """A checkpoint that is incomplete, corrupt, unsafe or from an unknown format version."""


class RunDataError(RewardGymError):
    """A run or study directory whose files are corrupt or from a newer format version."""


class RunLockedError(RewardGymError):
    """A run directory that another process is writing now; names that process."""


class EnvInputError(RewardGymError):
    """An action or option passed to an environment that it cannot accept."""


class TrainingDivergedError(RewardGymError):
    """A training run whose loss or gradient stayed non-finite for ``max_nonfinite_updates``
    updates in a row; names those updates, how many updates stepped, the last healthy
    checkpoint and the fix."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""`` when none is close.

    Example:
        >>> did_you_mean("balancd", ["balanced", "speed"])
        " Did you mean 'balanced'?"
    """
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""
