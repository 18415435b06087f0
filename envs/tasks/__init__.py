"""Text tasks: examples, splits, the task registry and the JSONL loader.

Importing this package registers the built-in tasks ``translate``, ``summarize`` and
``arithmetic``; all three are generated procedurally, with no downloads.

Example:
    >>> from rewardgym.envs.tasks import make_task
    >>> task = make_task("translate", seed=0)
    >>> task.split("train")[0].prompt.startswith("translate: ")
    True
"""

from rewardgym.envs.tasks import arithmetic, summarize, translate
from rewardgym.envs.tasks.base import (
    ANSWER_FORMATS,
    ANSWER_MARKER,
    NOTE_MARKER,
    SPLITS,
    Example,
    Task,
    extract_answer,
    extract_number,
    is_task_file,
    list_tasks,
    load_task_jsonl,
    make_task,
    register_task,
    task_label,
)
from rewardgym.envs.tasks.quality import (
    BUILTIN_QUALITY_METRICS,
    QualityMetric,
    get_quality_metric,
    list_quality_metrics,
    quality_label,
    register_quality_metric,
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
    "arithmetic",
    "extract_answer",
    "extract_number",
    "get_quality_metric",
    "is_task_file",
    "list_quality_metrics",
    "list_tasks",
    "load_task_jsonl",
    "make_task",
    "quality_label",
    "register_quality_metric",
    "register_task",
    "summarize",
    "task_label",
    "translate",
]
