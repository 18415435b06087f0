"""How a policy is evaluated: one validated set of options, shared by Python, CLI and studies.

:func:`rewardgym.evaluation.evaluate.evaluate` and ``evaluate_run`` take an :class:`EvalConfig`,
and a study's ``evaluation:`` section is one, so an option means the same wherever it is set.
Every option is checked when the config is built, before any model is loaded.

Example:
    >>> EvalConfig(noise=["word_drop"], severities=0.1).severities
    [0.1]
    >>> EvalConfig(noise=None).noise
    []
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rewardgym.agents.config import require_int, require_number
from rewardgym.envs.tasks import SPLITS, Task
from rewardgym.errors import ConfigError, UnknownNameError
from rewardgym.evaluation.robustness import DEFAULT_SEVERITIES, NOISE_TYPES, check_noise

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "EvalConfig"]

#: the token limit of an answer when neither the config nor a run sets one
DEFAULT_MAX_NEW_TOKENS = 48


@dataclass
class EvalConfig:
    """The options of one evaluation.

    Attributes:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        n_examples: answer only the first n examples of the split (None: all of them).
        noise: noise types of the robustness sweep; None or ``[]`` for none.
        severities: severities of the sweep, each in (0, 1].
        max_new_tokens: token limit of each answer (None: the run's own limit when a run is
            evaluated, else ``DEFAULT_MAX_NEW_TOKENS``).
        greedy: argmax decoding (default); False samples, seeded by ``seed``.
        temperature: sampling temperature (when ``greedy`` is False).
        top_p: nucleus share (when ``greedy`` is False).
        seed: sampling seed; each (condition, batch) gets its own stream derived from it.
        batch_size: prompts per ``generate`` call.
        noise_seed: example ``i`` is noised with seed ``noise_seed + i``.
        n_samples: how many (prompt, reference, completion) samples the result keeps.
        retention_task: also measure quality on this task (a name, a task file or a Task), so
            forgetting can be computed from a before and an after result.
        retention_split: the retention task's split (None: ``split``).
    """

    split: str = "test"
    n_examples: int | None = None
    noise: list[str] = field(default_factory=lambda: list(NOISE_TYPES))
    severities: list[float] = field(default_factory=lambda: list(DEFAULT_SEVERITIES))
    max_new_tokens: int | None = None
    greedy: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 64
    noise_seed: int = 0
    n_samples: int = 5
    retention_task: str | Task | None = None
    retention_split: str | None = None

    def __post_init__(self) -> None:
        kinds, levels = check_noise(self.noise, self.severities)
        self.noise, self.severities = list(kinds), list(levels)
        for split in (self.split, self.retention_split):
            if split is not None and split not in SPLITS:
                raise UnknownNameError("split", split, SPLITS)
        for name, low in (("batch_size", 1), ("seed", 0), ("noise_seed", 0), ("n_samples", 0)):
            require_int(self, name, low)
        for name in ("n_examples", "max_new_tokens"):
            if getattr(self, name) is not None:
                require_int(self, name, 1)
        if not isinstance(self.greedy, bool):
            raise ConfigError(f"greedy must be true or false, got {self.greedy!r}")
        require_number(self, "temperature", low=0.0, low_inclusive=False)
        require_number(self, "top_p", low=0.0, high=1.0, low_inclusive=False)

    @property
    def token_limit(self) -> int:
        """``max_new_tokens``, or the default when it is None."""
        return self.max_new_tokens or DEFAULT_MAX_NEW_TOKENS

    def replace(self, **changes: Any) -> EvalConfig:
        """A copy with ``changes`` applied (and validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON values (a Task object is recorded by its name)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["noise"], data["severities"] = list(self.noise), list(self.severities)
        if isinstance(self.retention_task, Task):
            data["retention_task"] = self.retention_task.name
        return data
