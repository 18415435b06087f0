"""Text tasks: examples, splits, the task registry and the JSONL loader.

Importing this package registers the built-in tasks ``translate``, ``summarize`` and
``arithmetic``, all three generated procedurally with no downloads, and the task family
``reasoning_gym:NAME`` (reasoning-gym's datasets, imported when one is first made).

Example:
    >>> from rewardgym.envs.tasks import make_task
    >>> task = make_task("translate", seed=0)
    >>> task.split("train")[0].prompt.startswith("translate: ")
    True
"""

from rewardgym.envs.tasks import arithmetic, reasoning, summarize, translate
from rewardgym.envs.tasks.base import (
    ANSWER_FORMATS,
    ANSWER_MARKER,
    NOTE_MARKER,
    SPLITS,
    Example,
    Task,
    TaskFamily,
    extract_answer,
    extract_number,
    extract_tagged_answer,
    is_task_file,
    list_tasks,
    load_task_jsonl,
    make_task,
    register_task,
    register_task_family,
    task_label,
)
from rewardgym.envs.tasks.quality import (
    BUILTIN_QUALITY_METRICS,
    QualityMetric,
    get_quality_metric,
    list_quality_metrics,
    quality_label,
    register_quality_metric,
    takes_meta,
)

__all__ = [
    "ANSWER_FORMATS",
    "ANSWER_MARKER",
    "NOTE_MARKER",
    "BUILTIN_QUALITY_METRICS",
    "SPLITS",
    "Example",
    "QualityMetric",
    "Task",
    "TaskFamily",
    "arithmetic",
    "extract_answer",
    "extract_number",
    "extract_tagged_answer",
    "get_quality_metric",
    "is_task_file",
    "list_quality_metrics",
    "list_tasks",
    "load_task_jsonl",
    "make_task",
    "quality_label",
    "reasoning",
    "register_quality_metric",
    "register_task",
    "register_task_family",
    "summarize",
    "takes_meta",
    "task_label",
    "translate",
]
