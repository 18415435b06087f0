"""rewardgym: an agent-training gym for reward-shaping studies.

The public names below are imported lazily, so ``import rewardgym`` stays fast and pulling in
one layer (say, rewards) does not load torch.

Example:
    >>> import rewardgym
    >>> task = rewardgym.make_task("translate", seed=0)
    >>> reward = rewardgym.make_reward("balanced")
"""

from __future__ import annotations

from rewardgym import envs as _envs  # registers the built-in tasks and their Gymnasium ids
from rewardgym._lazy import lazy_getattr

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Example": "rewardgym.envs.tasks",
    "Task": "rewardgym.envs.tasks",
    "make_task": "rewardgym.envs.tasks",
    "register_task": "rewardgym.envs.tasks",
    "list_tasks": "rewardgym.envs.tasks",
    "load_task_jsonl": "rewardgym.envs.tasks",
    "register_quality_metric": "rewardgym.envs.tasks",
    "list_quality_metrics": "rewardgym.envs.tasks",
    "Reward": "rewardgym.rewards",
    "RewardOutput": "rewardgym.rewards",
    "register_reward": "rewardgym.rewards",
    "make_reward": "rewardgym.rewards",
    "list_rewards": "rewardgym.rewards",
    "RewardError": "rewardgym.errors",
    "RewardGymError": "rewardgym.errors",
    "load_policy": "rewardgym.agents.registry",
    "register_model": "rewardgym.agents.registry",
    "list_models": "rewardgym.agents.registry",
    "LMPolicy": "rewardgym.agents.policy",
    "train": "rewardgym.agents.trainer",
    "TrainConfig": "rewardgym.agents.config",
    "evaluate": "rewardgym.evaluation.evaluate",
    "evaluate_run": "rewardgym.evaluation.evaluate",
    "EvalConfig": "rewardgym.evaluation.eval_config",
    "EvalResult": "rewardgym.evaluation.evaluate",
    "run_study": "rewardgym.evaluation.study",
    "StudyResult": "rewardgym.evaluation.study",
    "write_report": "rewardgym.evaluation.report",
}

# public name -> module it is (``rewardgym.trl.attach(...)`` imports TRL only when used)
_MODULES = {"trl": "rewardgym.integrations.trl"}

__all__ = sorted([*_EXPORTS, *_MODULES]) + ["__version__"]


# Importing rewardgym makes gymnasium.make("rewardgym/<Task>-v0") work; this loads no model code.
del _envs


__getattr__ = lazy_getattr(__name__, _EXPORTS, _MODULES)


def __dir__() -> list[str]:
    return __all__
