"""The policy-gradient algorithms: one registry of how each turns rewards into advantages.

An algorithm is an :class:`AlgorithmSpec`: its advantage function, whether it reuses each batch
for several epochs (``ppo_epochs``; the losses' clip then matters), and the smallest group it
needs. The trainer reads only the spec, so a new algorithm is one :func:`register_algorithm`
call. PPO here has no value network (as in most LM RL): its advantages are group-normalised
rewards like GRPO's when ``group_size > 1``, batch-normalised otherwise.

Example:
    >>> list_algorithms()
    ['grpo', 'ppo', 'reinforce']
    >>> get_algorithm("ppo").reuses_batch
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rewardgym.errors import ConfigError, UnknownNameError

__all__ = [
    "AGGREGATIONS",
    "AlgorithmSpec",
    "RunningBaseline",
    "batch_advantages",
    "component_shares",
    "compute_advantages",
    "decoupled_advantages",
    "get_algorithm",
    "group_advantages",
    "list_algorithms",
    "register_algorithm",
]

EPS = 1e-6
#: how the per-token terms become a loss (agents/losses.aggregate_loss), TRL's names
LOSS_TYPES = ("dr_grpo", "grpo", "dapo", "bnpo")
#: what group advantages are divided by: each group's std, the batch's std, or nothing
SCALE_REWARDS = ("group", "batch", "none")


def group_advantages(rewards: np.ndarray, group_size: int, scale: str = "group") -> np.ndarray:
    """GRPO: each reward minus its group's mean, over the group's standard deviation
    (``scale="batch"``: the whole batch's; ``"none"``: not divided, as in Dr. GRPO).

    A group whose samples all scored the same gets zero advantage (no learning signal).

    Example:
        >>> group_advantages(np.array([1.0, 0.0, 0.5, 0.5]), group_size=2).round(3).tolist()
        [1.0, -1.0, 0.0, 0.0]
        >>> group_advantages(np.array([1.0, 0.0, 0.5, 0.5]), 2, scale="none").tolist()
        [0.5, -0.5, 0.0, 0.0]
    """
    groups = rewards.reshape(-1, group_size)
    centred = groups - groups.mean(axis=1, keepdims=True)
    if scale == "none":
        return centred.reshape(-1)
    if scale == "batch":
        std = np.full((groups.shape[0], 1), rewards.std())
    else:
        std = groups.std(axis=1, keepdims=True)
    adv = np.where(std > EPS, centred / np.maximum(std, EPS), 0.0)
    return adv.reshape(-1)


def batch_advantages(rewards: np.ndarray) -> np.ndarray:
    """Rewards centred and scaled over the whole batch (zero when all rewards are equal)."""
    std = rewards.std()
    if std <= EPS:
        return np.zeros_like(rewards)
    return (rewards - rewards.mean()) / std


@dataclass
class RunningBaseline:
    """REINFORCE's baseline: an exponential moving average of the mean batch reward."""

    momentum: float = 0.9
    value: float | None = None

    def advantages(self, rewards: np.ndarray) -> np.ndarray:
        """``rewards − baseline`` (the first batch is its own baseline), then update it."""
        baseline = float(rewards.mean()) if self.value is None else self.value
        adv = rewards - baseline
        mean = float(rewards.mean())
        self.value = (
            mean if self.value is None else self.momentum * self.value + (1 - self.momentum) * mean
        )
        return adv


# -- aggregating the components of a composite reward -----------------------------------------

#: sum_then_normalize: weighted sum, then the algorithm's normalisation (GRPO's default);
#: normalize_then_sum: each component normalised within its group, weighted, summed, and the sum
#: normalised over the batch (GDPO), so a component with a wide spread cannot drown the others
AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")


def decoupled_advantages(
    components: dict[str, np.ndarray],
    weights: dict[str, float],
    group_size: int,
    scale: str = "group",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """GDPO's advantages and each component's part in them (before the batch normalisation).

    A component that does not apply to a sample (NaN) counts as 0 there; weight-0 components
    take no part.

    Example:
        >>> adv, parts = decoupled_advantages(
        ...     {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 10.0])}, {"a": 1.0, "b": 1.0}, 2)
        >>> adv.tolist(), parts["b"].tolist()
        ([0.0, 0.0], [-1.0, 1.0])
    """
    parts = {
        name: weights[name] * group_advantages(np.nan_to_num(values, nan=0.0), group_size, scale)
        for name, values in components.items()
        if weights.get(name)
    }
    n = len(next(iter(components.values()))) if components else 0
    total = np.sum(list(parts.values()), axis=0) if parts else np.zeros(n)
    return batch_advantages(total), parts


def component_shares(
    components: dict[str, np.ndarray],
    weights: dict[str, float],
    totals: np.ndarray,
    group_size: int,
) -> dict[str, np.ndarray]:
    """Each component's part of GRPO's group-normalised advantage of the weighted sum:
    ``w_k (r_k − mean_group r_k) / std_group(total)``; the parts add up to the advantage
    wherever every component applies."""
    std = totals.reshape(-1, group_size).std(axis=1, keepdims=True)
    shares = {}
    for name, values in components.items():
        if not weights.get(name):
            continue
        groups = np.nan_to_num(values, nan=0.0).reshape(-1, group_size)
        centred = weights[name] * (groups - groups.mean(axis=1, keepdims=True))
        shares[name] = np.where(std > EPS, centred / np.maximum(std, EPS), 0.0).reshape(-1)
    return shares


#: ``advantages(rewards, group_size, baseline) -> one advantage per sample``
AdvantageFn = Callable[[np.ndarray, int, "RunningBaseline"], np.ndarray]


@dataclass(frozen=True)
class AlgorithmSpec:
    """A registered algorithm.

    Attributes:
        name: the ``algo`` option's value.
        advantages: rewards of one batch (grouped ``group_size`` samples per prompt, in order)
            and the run's :class:`RunningBaseline` -> one advantage per sample.
        reuses_batch: True if each rollout is optimised for ``ppo_epochs`` epochs, else once.
        min_group_size: the smallest ``group_size`` the advantages make sense for.
        needs_groups_because: why, said in the error for a smaller group.
        normalises_groups: its advantages are :func:`group_advantages` when ``group_size > 1``
            (so ``scale_rewards`` applies to it).
    """

    name: str
    advantages: AdvantageFn
    reuses_batch: bool = False
    min_group_size: int = 1
    needs_groups_because: str = ""
    normalises_groups: bool = False

    def check_group_size(self, group_size: int) -> None:
        """Raise ConfigError if ``group_size`` is below what this algorithm needs."""
        if group_size < self.min_group_size:
            raise ConfigError(
                f"{self.name} {self.needs_groups_because}: group_size must be >= "
                f"{self.min_group_size}, got {group_size}; raise group_size or use "
                "algo='reinforce'"
            )


_REGISTRY: dict[str, AlgorithmSpec] = {}


def register_algorithm(
    name: str,
    advantages: AdvantageFn,
    *,
    reuses_batch: bool = False,
    min_group_size: int = 1,
    needs_groups_because: str = "",
    normalises_groups: bool = False,
    overwrite: bool = False,
) -> AlgorithmSpec:
    """Register an algorithm under ``name`` (``algo=name`` then selects it).

    Raises:
        ConfigError: ``name`` is taken (pass ``overwrite=True`` to replace it) or not a name.

    Example:
        >>> register_algorithm("mean_baseline", lambda r, g, b: r - r.mean())
        AlgorithmSpec(name='mean_baseline', ...)
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"an algorithm name must be an identifier, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ConfigError(
            f"algorithm {name!r} is already registered; pass overwrite=True to replace it"
        )
    if not callable(advantages):
        raise ConfigError(f"advantages of algorithm {name!r} must be callable, got {advantages!r}")
    spec = AlgorithmSpec(
        name, advantages, reuses_batch, min_group_size, needs_groups_because, normalises_groups
    )
    _REGISTRY[name] = spec
    return spec


def get_algorithm(name: str) -> AlgorithmSpec:
    """The spec registered as ``name``; UnknownNameError (with "did you mean") otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownNameError("algorithm", name, _REGISTRY) from None


def list_algorithms() -> list[str]:
    """The registered algorithm names, sorted."""
    return sorted(_REGISTRY)


def compute_advantages(
    algo: str,
    rewards: np.ndarray,
    group_size: int,
    baseline: RunningBaseline,
    scale: str = "group",
) -> np.ndarray:
    """The advantage of every sample under the algorithm registered as ``algo``; ``scale`` is
    what a group-normalising algorithm divides by (see :func:`group_advantages`)."""
    spec = get_algorithm(algo)
    if scale != "group" and spec.normalises_groups and group_size > 1:
        return group_advantages(rewards, group_size, scale)
    return spec.advantages(rewards, group_size, baseline)


def _normalised(rewards: np.ndarray, group_size: int, baseline: RunningBaseline) -> np.ndarray:
    if group_size > 1:
        return group_advantages(rewards, group_size)
    return batch_advantages(rewards)


register_algorithm("reinforce", lambda rewards, _group, baseline: baseline.advantages(rewards))
register_algorithm(
    "grpo",
    lambda rewards, group_size, _baseline: group_advantages(rewards, group_size),
    min_group_size=2,
    needs_groups_because="normalises advantages within groups",
    normalises_groups=True,
)
register_algorithm("ppo", _normalised, reuses_batch=True, normalises_groups=True)
