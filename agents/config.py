"""Training configuration: one validated dataclass, loadable from YAML or the command line.

Like TRL's ``GRPOConfig`` and cleanrl's ``Args``: every field has a help text (its ``metadata``),
values are checked in ``__post_init__``, and the message of every check says the reason and the
fix. Unknown keys in a config file are rejected by name.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rewardgym.agents.algorithms import AGGREGATIONS, LOSS_TYPES, SCALE_REWARDS, get_algorithm
from rewardgym.agents.lora import check_lora_options
from rewardgym.agents.trl_options import check_trl_options
from rewardgym.envs.tasks import is_task_file
from rewardgym.errors import ConfigError, UnknownNameError

LR_SCHEDULES = ("constant", "linear", "cosine")
DTYPES = ("float32", "bfloat16")
BACKENDS = ("native", "trl")


def _field(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    """Everything one training run needs. ``TrainConfig.from_yaml(path)`` reads a file.

    Example:
        >>> cfg = TrainConfig(task="translate", reward="balanced", algo="grpo", updates=50)
        >>> cfg.batch_size
        32
    """

    task: str = _field("translate", "task name (rewardgym list tasks)")
    task_seed: int = _field(0, "seed of the generated task data")
    task_kwargs: dict = _field({}, "options of the task, e.g. {n_train: 64} (make_task keywords)")
    model: str = _field("tiny", "'tiny', 'smollm2-135m' or a local Hugging Face model directory")
    model_options: dict = _field(
        {}, "options of the model: for tiny, warm-start settings such as {loop_share: 0.5}"
    )
    reward: Any = _field(
        "balanced", "reward spec: a name, 'module:function' or {'composite': {...}}"
    )
    algo: str = _field(
        "grpo",
        "policy-gradient algorithm: reinforce, grpo, ppo or one registered with "
        "rewardgym.agents.algorithms.register_algorithm",
    )
    aggregation: str = _field(
        "sum_then_normalize",
        "how a composite reward's components become advantages: sum_then_normalize (weighted "
        "sum, then group normalisation) or normalize_then_sum (each component normalised within "
        "its group, then weighted and summed: GDPO)",
    )
    backend: str = _field(
        "native",
        "the trainer: native (rewardgym's) or trl (TRL's GRPOTrainer, on the device accelerate "
        "picks; options without a TRL counterpart are refused, see docs/trl.md)",
    )
    updates: int = _field(100, "optimizer updates to run")
    seed: int = _field(0, "seed of sampling, batches and initialisation")
    out: str | None = _field(None, "run directory (None: train in memory, write nothing)")

    prompts_per_update: int = _field(8, "distinct prompts per update")
    group_size: int = _field(4, "samples per prompt (GRPO's G; 1 for reinforce by default)")
    micro_batches: int = _field(4, "K equal micro-batches per update (K >= 4: gradient variance)")
    max_new_tokens: int = _field(32, "token limit of a completion")
    temperature: float = _field(1.0, "sampling temperature during rollouts")
    top_p: float = _field(1.0, "nucleus sampling share during rollouts")

    lr: float = _field(3e-4, "peak learning rate (AdamW)")
    lr_schedule: str = _field("constant", "constant, linear or cosine decay after warmup")
    warmup_updates: int = _field(0, "updates of linear warmup")
    weight_decay: float = _field(0.0, "AdamW weight decay")
    max_grad_norm: float = _field(1.0, "gradient clipping norm (0 turns clipping off)")
    kl_coef: float = _field(0.0, "KL penalty to a frozen copy of the starting policy (0: none)")
    measure_kl: bool = _field(
        False,
        "log the KL to the starting policy (kl) even with kl_coef 0, for the kl_acceleration "
        "hacking detector (one more forward per micro-batch)",
    )
    entropy_coef: float = _field(0.0, "entropy bonus weight")
    baseline_momentum: float = _field(0.9, "reinforce: momentum of the running-mean baseline")
    ppo_epochs: int = _field(2, "ppo: epochs over the same rollouts")
    clip_eps: float = _field(0.2, "ppo: clip range of the importance ratio")
    epsilon_high: float | None = _field(
        None, "upper clip range, >= clip_eps (DAPO's clip-higher; None: clip_eps)"
    )
    loss_type: str = _field(
        "dr_grpo",
        "how per-token terms become the loss: dr_grpo (sum / max_new_tokens, no length bias), "
        "grpo (each completion's token mean), dapo (token mean over the batch), bnpo (token "
        "mean over the micro-batch)",
    )
    scale_rewards: str = _field(
        "group",
        "what group advantages are divided by: group (each group's std), batch (the batch's "
        "std) or none (Dr. GRPO: centred only)",
    )
    mask_truncated_completions: bool = _field(
        False, "leave completions that hit max_new_tokens out of the loss"
    )

    lora_r: int = _field(
        0, "rank of a LoRA adapter trained instead of the full model (0: full fine-tuning)"
    )
    lora_alpha: float = _field(16.0, "LoRA scale numerator: the adapter's output × alpha / r")
    lora_dropout: float = _field(0.0, "dropout on the LoRA adapter's input while training")
    lora_target_modules: Any = _field(
        None,
        "linear layers the adapter wraps, by last name (e.g. [q_proj, v_proj]), 'all-linear', "
        "or None for peft's default for the architecture (q_proj, v_proj for Llama)",
    )

    warm_start_tasks: list | None = _field(
        None,
        "tasks a model warm-started here (tiny) learns before RL, e.g. [translate, arithmetic] "
        "(None: the run's task)",
    )
    token_budget: int | None = _field(
        None,
        "max tokens generated per update, >= max_new_tokens: the batch stops when it is spent "
        "(None: no budget)",
    )
    replay_share: float = _field(
        0.0, "share of each update's loss spent on supervised warm-start data, in [0, 1)"
    )
    replay_confidence_weighting: bool = _field(False, "weight replay tokens by (1 - p)")
    replay_tasks: list | None = _field(
        None,
        "tasks whose train splits replay draws from (None: the warm start's tasks, "
        "warm_start_tasks or else the run's task)",
    )
    retention_task: str | None = _field(
        None,
        "a task the run was not trained on with RL, evaluated beside the task at every "
        "evaluation (retention_* keys): forgetting over updates",
    )

    eval_every: int = _field(0, "evaluate on validation every E updates (0: only at the end)")
    eval_examples: int = _field(64, "validation examples per evaluation")
    checkpoint_every: int = _field(25, "checkpoint every C updates (0: only at the end)")
    keep_checkpoints: int = _field(2, "complete checkpoints kept on disk")
    max_faults: int = _field(3, "consecutive non-finite updates before rolling back")
    max_nonfinite_updates: int = _field(
        5,
        "consecutive updates with a non-finite loss or gradient before the run stops with "
        "TrainingDivergedError (a rollback does not reset the count)",
    )

    dtype: str = _field("float32", "float32 or bfloat16")
    device: str | None = _field(None, "torch device (None: CUDA when present, else CPU)")
    threads: int | None = _field(
        None,
        "torch intra-op threads while the run trains (None: leave torch's setting); results "
        "depend on it, so a study sets the same count for every run on every executor",
    )
    tensorboard: bool = _field(True, "write TensorBoard event files into the run directory")
    progress: bool = _field(True, "show a progress bar")

    def __post_init__(self) -> None:
        if is_task_file(self.task):
            # recorded by its absolute path, so the run's task is found again from any folder
            self.task = str(Path(self.task).resolve())
        algorithm = get_algorithm(self.algo)
        if self.aggregation not in AGGREGATIONS:
            raise UnknownNameError("aggregation", self.aggregation, AGGREGATIONS)
        if self.aggregation == "normalize_then_sum" and (
            self.group_size < 2 or algorithm.name == "reinforce"
        ):
            raise ConfigError(
                "aggregation 'normalize_then_sum' normalises each component within its group: "
                f"it needs group_size >= 2 and a group algorithm (grpo, ppo), got group_size "
                f"{self.group_size} with {self.algo!r}"
            )
        if self.backend not in BACKENDS:
            raise UnknownNameError("backend", self.backend, BACKENDS)
        if self.backend == "trl":
            check_trl_options(self)
        if self.lr_schedule not in LR_SCHEDULES:
            raise UnknownNameError("lr schedule", self.lr_schedule, LR_SCHEDULES)
        if self.dtype not in DTYPES:
            raise UnknownNameError("dtype", self.dtype, DTYPES)
        for name in (
            "updates",
            "prompts_per_update",
            "group_size",
            "max_new_tokens",
            "ppo_epochs",
            "eval_examples",
            "keep_checkpoints",
            "max_faults",
            "max_nonfinite_updates",
        ):
            require_int(self, name, low=1)
        for name in ("task_seed", "seed", "warmup_updates", "eval_every", "checkpoint_every"):
            require_int(self, name, low=0)
        require_int(self, "micro_batches", low=4, why="gradient variance needs K >= 4")
        for name in ("lr", "temperature"):
            require_number(self, name, low=0.0, low_inclusive=False)
        for name in ("weight_decay", "max_grad_norm", "kl_coef", "entropy_coef"):
            require_number(self, name, low=0.0)
        require_number(self, "top_p", low=0.0, high=1.0, low_inclusive=False)
        require_number(self, "baseline_momentum", low=0.0, high=1.0)
        require_number(self, "clip_eps", low=0.0, low_inclusive=False)
        if self.epsilon_high is not None:
            require_number(self, "epsilon_high", low=0.0, low_inclusive=False)
            if self.epsilon_high < self.clip_eps:
                raise ConfigError(
                    f"epsilon_high {self.epsilon_high!r} is below clip_eps {self.clip_eps!r}: "
                    "clip-higher widens the upper range only; set it >= clip_eps or leave it None"
                )
        if self.loss_type not in LOSS_TYPES:
            raise UnknownNameError("loss type", self.loss_type, LOSS_TYPES)
        if self.scale_rewards not in SCALE_REWARDS:
            raise UnknownNameError("scale_rewards mode", self.scale_rewards, SCALE_REWARDS)
        group_scaled = algorithm.normalises_groups or self.aggregation == "normalize_then_sum"
        if self.scale_rewards != "group" and not (group_scaled and self.group_size > 1):
            raise ConfigError(
                f"scale_rewards {self.scale_rewards!r} changes how group advantages are "
                f"scaled; {self.algo!r} with group_size {self.group_size} has none (use grpo "
                "or ppo with group_size >= 2)"
            )
        if not isinstance(self.measure_kl, bool):
            raise ConfigError(f"measure_kl must be true or false, got {self.measure_kl!r}")
        if not isinstance(self.mask_truncated_completions, bool):
            raise ConfigError(
                "mask_truncated_completions must be true or false, got "
                f"{self.mask_truncated_completions!r}"
            )
        self._check_lora()
        require_number(
            self, "replay_share", low=0.0, high=1.0, high_inclusive=False,
            why="it is the replay loss's weight beside the RL loss's (1 - replay_share); 0.25 "
            "replays a quarter",
        )  # fmt: skip
        for name in ("token_budget", "threads"):
            if getattr(self, name) is not None:
                require_int(self, name, low=1)
        self._check_budget()
        self._check_task_lists()
        if self.batch_size % self.micro_batches:
            raise ConfigError(
                f"prompts_per_update × group_size = {self.batch_size} samples cannot be split "
                f"into micro_batches={self.micro_batches} equal parts; choose sizes whose product "
                f"is a multiple of {self.micro_batches}"
            )
        algorithm.check_group_size(self.group_size)

    def _check_budget(self) -> None:
        if self.token_budget is not None and self.token_budget < self.max_new_tokens:
            raise ConfigError(
                f"token_budget {self.token_budget} is smaller than one completion's limit "
                f"(max_new_tokens {self.max_new_tokens}), so even one answer could be cut "
                f"off; set token_budget >= {self.max_new_tokens} (the batch's full size is "
                f"{self.batch_size * self.max_new_tokens} tokens) or None"
            )

    def _check_task_lists(self) -> None:
        for name in ("warm_start_tasks", "replay_tasks"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
                setattr(self, name, value)
            if value is not None and (
                not isinstance(value, list)
                or not value
                or not all(isinstance(t, str) and t for t in value)
            ):
                raise ConfigError(
                    f"{name} must be a non-empty list of task names, got {value!r}; e.g. "
                    f"[{self.task}] or None"
                )
        if self.retention_task is None:
            return
        if not isinstance(self.retention_task, str) or not self.retention_task:
            raise ConfigError(f"retention_task must be a task name, got {self.retention_task!r}")
        if is_task_file(self.retention_task):
            self.retention_task = str(Path(self.retention_task).resolve())
        if self.retention_task == self.task:
            raise ConfigError(
                f"retention_task {self.retention_task!r} is the task the run trains on: "
                "forgetting needs a task the run does not train on with RL; choose another "
                "(e.g. one of warm_start_tasks), or None"
            )

    def _check_lora(self) -> None:
        check_lora_options(
            self.lora_r, self.lora_alpha, self.lora_dropout, self.lora_target_modules
        )
        if isinstance(self.lora_target_modules, tuple):
            self.lora_target_modules = list(self.lora_target_modules)
        options = ("lora_alpha", "lora_dropout", "lora_target_modules")
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in options}
        changed = [k for k in options if getattr(self, k) != defaults[k]]
        if self.lora_r == 0 and changed:
            raise ConfigError(
                f"{changed} set but lora_r is 0 (full fine-tuning); set lora_r >= 1 to train "
                "a LoRA adapter, or drop them"
            )

    @property
    def batch_size(self) -> int:
        """Samples per update: prompts_per_update × group_size."""
        return self.prompts_per_update * self.group_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping, rejecting unknown keys by name ("did you mean")."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of options, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise UnknownNameError("option", key, names, hint=f"(in {source})")
        for f in dataclasses.fields(cls):
            if f.name in data:
                _check_type(f, data[f.name], source)
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a YAML file (safe loader only); ``overrides`` win over the file."""
        data = load_yaml_mapping(path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data, source=str(path))

    @staticmethod
    def help_texts() -> dict[str, str]:
        """Field name -> help text, for command-line parsers and docs."""
        return {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no tags that build objects) reading floats as YAML 1.2 does.

    PyYAML follows YAML 1.1, where ``1e-3`` and ``3e-5`` (no dot) are strings; every other tool
    and the YAML 1.2 spec read them as numbers, and so do we.
    """


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def safe_yaml(text: str) -> Any:
    """Parse YAML text with the safe loader, YAML 1.2 floats included.

    Example:
        >>> safe_yaml("lr: 3e-5")
        {'lr': 3e-05}
    """
    loader = _SafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping, with clear errors for unreadable or malformed files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {str(path)!r} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text: {exc.reason}") from exc
    try:
        data = safe_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not valid YAML: {yaml_problem(exc)}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of options, got {type(data).__name__}"
        )
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line: the problem and where it is (line and column, 1-based).

    A tag that would build a Python object (``!!python/...``) is named as what it is: configs
    are read with the safe loader, which builds plain values only, never objects.
    """
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    tag = re.search(r"tag '(tag:yaml\.org,2002:python/[^']*)'", problem)
    if isinstance(exc, yaml.constructor.ConstructorError) and tag:
        return (
            f"YAML tags that build Python objects are forbidden ({tag.group(1)}{where}); a "
            "config holds plain values only: write the value itself, or a 'module:function' "
            "string where a spec takes one"
        )
    return f"{problem}{where}"


_TYPES = {
    "int": int,
    "float": (int, float),
    "str": str,
    "bool": bool,
    "dict": dict,
    "list": (list, tuple),
}


def _check_type(f: dataclasses.Field, value: Any, source: str) -> None:
    annotation = str(f.type)
    if value is None and "None" in annotation:
        return
    base = annotation.split("|")[0].strip()
    expected = _TYPES.get(base)
    if expected is None:  # "Any": the reward spec, validated by make_reward
        return
    wrong = not isinstance(value, expected) or (
        base in ("int", "float") and isinstance(value, bool)
    )
    if wrong:
        raise ConfigError(
            f"{source}: option {f.name!r} must be {base}, got {type(value).__name__} {value!r}"
        )


def require_int(cfg: Any, name: str, low: int, why: str = "") -> None:
    """ConfigError unless ``cfg.<name>`` is an int >= ``low`` (any config object)."""
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        reason = f" ({why})" if why else ""
        raise ConfigError(f"{name} must be an int >= {low}{reason}, got {value!r}")


def require_number(
    cfg: Any,
    name: str,
    low: float,
    high: float = math.inf,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    why: str = "",
) -> None:
    """ConfigError unless ``cfg.<name>`` is a finite number in the given interval."""
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= low if low_inclusive else value > low) and (
            value <= high if high_inclusive else value < high
        )
    if not ok:
        lo = "[" if low_inclusive else "("
        hi = "]" if high_inclusive else ")"
        reason = f" ({why})" if why else ""
        raise ConfigError(
            f"{name} must be a finite number in {lo}{low}, {high}{hi}{reason}, got {value!r}"
        )
