"""Study configuration: a YAML file parsed into validated dataclasses.

A study is a grid of (reward scheme × seed × task) training runs plus the evaluation that
compares them. Unknown keys are rejected by name at every level, so a typo never silently
falls back to a default.

Example:
    >>> cfg = load_study_config("speed_vs_balanced")      # a shipped study, by name
    >>> [u.scheme for u in expand_units(cfg)][:3]
    ['task_only', 'task_only', 'task_only']
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rewardgym.agents.config import TrainConfig, load_yaml_mapping
from rewardgym.envs.tasks import task_label
from rewardgym.errors import ConfigError, RunDataError, UnknownNameError
from rewardgym.evaluation.eval_config import EvalConfig

STUDY_FORMAT_VERSION = 1
EXECUTORS = ("local", "ray")
# TrainConfig fields a study sets per run; the study's `train:` section may not set them
PER_RUN_FIELDS = ("task", "model", "model_options", "reward", "seed", "out", "progress", "threads")
# a study evaluates 200 examples unless its `evaluation:` section says otherwise: the whole test
# split, under every noise condition, would cost more than the training runs
STUDY_EVALUATION = {"n_examples": 200}


@dataclass
class SweepConfig:
    """Expand a composite reward over a grid of one component's weight."""

    base: str = "balanced"
    component: str = "speed"
    weights: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])


@dataclass
class StudyConfig:
    """A whole study. See ``evaluation/studies/speed_vs_balanced.yaml`` for a commented one."""

    name: str
    schemes: dict[str, Any]
    baseline: str
    description: str = ""
    tasks: list[str] = field(default_factory=lambda: ["translate"])
    model: str = "tiny"
    model_options: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    sweep: SweepConfig | None = None
    train: dict[str, Any] = field(default_factory=dict)
    evaluation: EvalConfig = field(default_factory=lambda: EvalConfig(**STUDY_EVALUATION))
    monitors: Any = "all"
    threads: int = 1
    executor: str = "local"
    workers: int | str = 1  # an int, or "auto": as many as the cores hold runs of `threads`
    ray_address: str | None = None
    ray_num_cpus: float | None = None
    ray_num_gpus: float = 0.0
    ray_resources: dict[str, float] = field(default_factory=dict)
    storage: str | None = None
    format_version: int = STUDY_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version > STUDY_FORMAT_VERSION:
            raise RunDataError(
                f"study format_version {self.format_version} is newer than this rewardgym "
                f"understands ({STUDY_FORMAT_VERSION}); upgrade rewardgym"
            )
        if not isinstance(self.schemes, dict) or not self.schemes:
            raise ConfigError("a study needs at least one scheme under 'schemes: {name: reward}'")
        if self.baseline not in self.schemes:
            raise UnknownNameError("baseline scheme", self.baseline, self.schemes)
        if self.executor not in EXECUTORS:
            raise UnknownNameError("executor", self.executor, EXECUTORS)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(
                f"seeds must be a non-empty list of distinct ints, got {self.seeds!r}"
            )
        if not self.tasks:
            raise ConfigError("tasks must name at least one task")
        for name in ("workers", "threads"):
            value = getattr(self, name)
            if name == "workers" and value == "auto":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                hint = ' or "auto"' if name == "workers" else ""
                raise ConfigError(f"{name} must be an int >= 1{hint}, got {value!r}")
        if self.ray_num_cpus is not None and self.ray_num_cpus != self.threads:
            raise ConfigError(
                f"ray_num_cpus {self.ray_num_cpus!r} differs from threads {self.threads}: each "
                "run uses as many torch threads as the CPUs it asks Ray for (as on the local "
                "executor), so set threads (ray_num_cpus follows it)"
            )
        resources = self.ray_resources
        if not isinstance(resources, dict) or not all(
            isinstance(k, str) and not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0
            for k, v in resources.items()
        ):
            raise ConfigError(
                f"ray_resources must map custom resource names to amounts > 0 (e.g. "
                f"{{gpu_node: 1}}), got {resources!r}"
            )
        if self.storage is not None and (not isinstance(self.storage, str) or not self.storage):
            raise ConfigError(
                f"storage must be a folder path or a URI (s3://, gs://, file://), got "
                f"{self.storage!r}"
            )
        clash = sorted(set(self.train) & set(PER_RUN_FIELDS))
        if clash:
            raise ConfigError(
                f"train: {clash} are set per run by the study; use the study's top-level "
                "'tasks', 'model', 'schemes', 'seeds' and 'threads' instead"
            )
        retention = self.evaluation.retention_task
        if retention is not None and task_label(retention) in {task_label(t) for t in self.tasks}:
            raise ConfigError(
                f"evaluation.retention_task {retention!r} is one of the study's training tasks "
                f"{self.tasks}: forgetting needs a task the runs do not train on with RL; choose "
                "another (e.g. a second task of warm_start_tasks)"
            )
        # validate every scheme's training options once, up front, not in the middle of the study
        for name, value in self.schemes.items():
            reward, train = scheme_parts(name, value)
            self.train_config(self.tasks[0], reward, self.seeds[0], None, overrides=train)

    def worker_count(self, units: int) -> int:
        """Processes that train this study's ``units`` runs side by side on the local executor.

        ``"auto"``: one per ``threads`` cores, never more than there are runs. Each run sets its
        own seeds and thread count, so the figures are the same however many run at once.

        Example:
            >>> StudyConfig("s", {"a": "bleu"}, "a", workers=3).worker_count(units=2)
            2
        """
        if self.workers == "auto":
            cores = os.cpu_count() or 1
            return max(1, min(units, cores // self.threads))
        return max(1, min(units, self.workers))

    def train_config(
        self,
        task: str,
        reward: Any,
        seed: int,
        out: str | None,
        progress: bool = False,
        overrides: dict[str, Any] | None = None,
    ) -> TrainConfig:
        """The TrainConfig of one run of this study (``overrides``: its scheme's own options)."""
        data = {
            **self._retention(),
            **self.train,
            **(overrides or {}),
            "task": task,
            "model": self.model,
            "model_options": self.model_options,
            "reward": reward,
            "seed": seed,
            "out": out,
            "progress": progress,
            "threads": self.threads,
        }
        return TrainConfig.from_dict(data, source=f"study {self.name!r} train section")

    def _retention(self) -> dict[str, Any]:
        """The evaluation's retention task, which each run also evaluates while it trains (the
        report's forgetting curves); a scheme or the train section may set another."""
        task = self.evaluation.retention_task
        return {} if task is None else {"retention_task": task}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunUnit:
    """One training run of a study (``train``: its scheme's own training options)."""

    scheme: str
    reward: Any
    task: str
    seed: int
    train: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.scheme}/{task_label(self.task)}/{self.seed}"


def expand_units(config: StudyConfig) -> list[RunUnit]:
    """Every run of the study: schemes (then sweep points) × tasks × seeds, in that order.

    Example:
        >>> cfg = StudyConfig(name="s", schemes={"a": "speed_only"}, baseline="a", seeds=[0, 1])
        >>> [u.key for u in expand_units(cfg)]
        ['a/translate/0', 'a/translate/1']
    """
    schemes = dict(config.schemes)
    if config.sweep is not None:
        schemes.update(sweep_schemes(config.sweep))
    parts = {scheme: scheme_parts(scheme, value) for scheme, value in schemes.items()}
    return [
        RunUnit(scheme, reward, task, seed, train)
        for scheme, (reward, train) in parts.items()
        for task in config.tasks
        for seed in config.seeds
    ]


def scheme_parts(name: str, value: Any) -> tuple[Any, dict[str, Any]]:
    """``(reward, training options)`` of a scheme: a reward spec, or ``{reward: SPEC, train:
    {option: value}}`` for a scheme that also trains differently (e.g. another loss_type).

    Example:
        >>> scheme_parts("g", {"reward": "balanced", "train": {"loss_type": "grpo"}})
        ('balanced', {'loss_type': 'grpo'})
    """
    if not (isinstance(value, dict) and "reward" in value):
        return value, {}
    unknown = sorted(set(value) - {"reward", "train"})
    train = value.get("train") or {}
    if unknown or not isinstance(train, dict):
        raise ConfigError(
            f"scheme {name!r}: a scheme is a reward spec or {{reward: SPEC, train: {{option: "
            f"value}}}}; got keys {sorted(value)}"
        )
    clash = sorted(set(train) & set(PER_RUN_FIELDS))
    if clash:
        raise ConfigError(f"scheme {name!r}: train: {clash} are set per run by the study")
    return value["reward"], dict(train)


def sweep_schemes(sweep: SweepConfig) -> dict[str, dict]:
    """The composite rewards of a weight sweep, named ``<base>@<component>=<weight>``.

    The swept component gets the weight and the others share what is left of the base's total
    weight in their base proportions, so every sweep point pays on the base's scale (0-1 for
    ``balanced``) and training rewards compare across points.

    Example:
        >>> sweep_schemes(SweepConfig("balanced", "speed", [0.0, 1.0]))["balanced@speed=1"]
        {'composite': {'completion': 0.0, 'fidelity': 0.0, 'speed': 1.0}}
    """
    from rewardgym.rewards import reward_spec

    spec = reward_spec(sweep.base)
    if spec.kind != "composite":
        raise ConfigError(
            f"sweep base {sweep.base!r} is a {spec.kind} reward; a sweep needs a composite "
            "(e.g. 'balanced') whose component weights it can vary"
        )
    weights = dict(spec.entry_point)
    if sweep.component not in weights:
        raise UnknownNameError(f"component of {sweep.base!r}", sweep.component, weights)
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights.values()):
        raise ConfigError(
            f"sweep base {sweep.base!r} has component parameters or schedules; a weight sweep "
            "needs a composite of plain weights (write the sweep points as schemes instead)"
        )
    total = sum(weights.values())
    others = total - weights[sweep.component]
    if others <= 0:
        raise ConfigError(
            f"sweep base {sweep.base!r} has no weight outside {sweep.component!r} to trade "
            "against; sweep a composite with at least two weighted components"
        )
    out = {}
    for w in sweep.weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= total:
            raise ConfigError(
                f"sweep weights must be numbers from 0 to {total:g} (the total weight of "
                f"{sweep.base!r}), got {w!r}"
            )
        scale = (total - w) / others
        point = {name: weight * scale for name, weight in weights.items()}
        out[f"{sweep.base}@{sweep.component}={w:g}"] = {
            "composite": {**point, sweep.component: float(w)}
        }
    return out


def load_study_config(
    source: str | Path | dict, backend: str | None = None, **overrides: Any
) -> StudyConfig:
    """A study from a YAML path, the name of a shipped study, or a mapping.

    ``overrides`` replace top-level keys (e.g. ``seeds=[0]``) before validation; ``backend``
    trains every run with that backend and names the study ``<name>_<backend>``.
    """
    if isinstance(source, dict):
        data, origin = dict(source), "study config"
    else:
        path = _locate(source)
        data, origin = load_yaml_mapping(path), str(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if backend is not None:
        data["train"] = {**(data.get("train") or {}), "backend": backend}
        data["name"] = f"{data.get('name', 'study')}_{backend}"
    return _build(StudyConfig, data, origin)


def shipped_studies() -> list[str]:
    """Names of the studies shipped as package data."""
    folder = resources.files("rewardgym.evaluation") / "studies"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _locate(source: str | Path) -> Path:
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"study config {str(path)!r} does not exist")
        return path
    names = shipped_studies()
    if str(source) not in names:
        raise UnknownNameError("study", str(source), names, hint="or a path to a YAML file")
    return Path(str(resources.files("rewardgym.evaluation") / "studies" / f"{source}.yaml"))


_NESTED = {"sweep": SweepConfig, "evaluation": EvalConfig}


def _build(cls: type, data: Any, origin: str, section: str = "") -> Any:
    where = f"{origin}{' section ' + section if section else ''}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise UnknownNameError("study option", key, names, hint=f"(in {where})")
    values = {**STUDY_EVALUATION, **data} if cls is EvalConfig else dict(data)
    if cls is StudyConfig and isinstance(values.get("format_version"), int):
        if values["format_version"] > STUDY_FORMAT_VERSION:
            raise RunDataError(
                f"{where}: study format_version {values['format_version']} is newer than this "
                f"rewardgym understands ({STUDY_FORMAT_VERSION}); upgrade rewardgym"
            )
    for key, nested in _NESTED.items():
        if cls is StudyConfig and values.get(key) is not None:
            values[key] = _build(nested, values[key], origin, key)
    try:
        return cls(**values)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:
        if cls is StudyConfig:
            raise
        raise ConfigError(f"{where}: {exc}") from None
