"""The ``rewardgym`` command. Each subcommand is a thin layer over a public function.

Example:
    $ rewardgym list rewards
    $ rewardgym audit --task translate --reward speed_only
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import yaml

from rewardgym.agents.config import safe_yaml, yaml_problem
from rewardgym.errors import ConfigError, RewardGymError


def _list(args: argparse.Namespace) -> int:
    what = args.what
    if what == "tasks":
        from rewardgym.envs.tasks import list_tasks

        items = list_tasks()
    elif what == "rewards":
        from rewardgym.rewards import describe_rewards

        print(describe_rewards())
        return 0
    elif what == "envs":
        from rewardgym.envs import env_ids

        items = env_ids()
    else:
        items = ["tiny", "smollm2-135m", "<a local Hugging Face model directory>"]
    print("\n".join(items))
    return 0


def _audit(args: argparse.Namespace) -> int:
    from rewardgym.envs.tasks import list_tasks
    from rewardgym.evaluation.audit import audit_reward, format_audit
    from rewardgym.rewards import PRESETS

    if args.all:
        tasks, rewards = list_tasks(), list(PRESETS)
    else:
        tasks, rewards = [args.task], [args.reward]
    results = []
    for task in tasks:
        for reward in rewards:
            result = audit_reward(task, reward, n_examples=args.n, seed=args.seed)
            results.append(result)
            if not args.json:
                print(format_audit(result), end="\n\n")
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    exploited = any(r.exploits for r in results)
    return 1 if args.strict and exploited else 0


def _reward_spec(text: str):
    """A reward spec from the command line: JSON for composites, else a name or module:function."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--reward {text!r} is not valid JSON: {exc}") from exc
    return text


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE, got {pair!r} (e.g. --set lr=1e-3)")
        try:
            out[key.strip()] = safe_yaml(value)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"--set {pair!r}: the value is not a YAML value ({yaml_problem(exc)}); quote "
                "strings and write lists as [a, b]"
            ) from None
    return out


def _train(args: argparse.Namespace) -> int:
    from rewardgym.agents import TrainConfig, train

    flags = {
        "task": args.task,
        "model": args.model,
        "reward": _reward_spec(args.reward) if args.reward else None,
        "algo": args.algo,
        "updates": args.updates,
        "seed": args.seed,
        "out": args.out,
        **_overrides(args.set),
    }
    if args.config:
        config = TrainConfig.from_yaml(args.config, **flags)
    else:
        config = TrainConfig.from_dict(
            {k: v for k, v in flags.items() if v is not None}, source="command line"
        )
    callbacks = []
    if args.monitors == "all":
        from rewardgym.evaluation.monitors import default_monitors

        callbacks = default_monitors(action="log")
    result = train(config, callbacks=callbacks, resume=args.resume)
    summary = {
        "run_dir": str(result.run_dir),
        "updates_done": result.updates_done,
        **result.final_eval,
    }
    print(json.dumps(summary, indent=2))
    return 130 if result.interrupted else 0


def _evaluate(args: argparse.Namespace) -> int:
    from rewardgym.evaluation.evaluate import format_summary, run_from_args

    result = run_from_args(args)
    print(format_summary(result))
    return 0


def _study(args: argparse.Namespace) -> int:
    from rewardgym.evaluation.study import run_study
    from rewardgym.evaluation.study_config import load_study_config

    config = load_study_config(args.config, seeds=args.seeds, executor=args.executor)
    result = run_study(config, out=args.out)
    print(f"results: {result.results_path}")
    if result.interrupted:
        return 130
    if not args.no_report:
        from rewardgym.evaluation.report import report_summary, write_report

        print(report_summary(write_report(result.study_dir)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from rewardgym.evaluation.report import report_summary, write_report

    print(report_summary(write_report(args.study_dir, args.out)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rewardgym`` command (one subparser per subcommand)."""
    parser = argparse.ArgumentParser(
        prog="rewardgym",
        description="An agent-training gym for reward-shaping studies.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list tasks, rewards, env ids or models")
    p.add_argument(
        "what", nargs="?", default="tasks", choices=["tasks", "rewards", "envs", "models"]
    )
    p.set_defaults(func=_list)

    p = sub.add_parser(
        "audit",
        help="can a canned exploit beat the reference under a reward?",
        description="Score canned policies (reference, empty, truncated reference, prompt copy, "
        "random words) on the validation split and flag every exploit that ties or beats the "
        "reference.",
    )
    p.add_argument("--task", default="translate", help="task name (default: translate)")
    p.add_argument("--reward", default="speed_only", help="reward spec (default: speed_only)")
    p.add_argument("--all", action="store_true", help="every built-in task × preset reward")
    p.add_argument("--n", type=int, default=200, help="validation examples to score (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-words policy")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--strict", action="store_true", help="exit 1 when any exploit wins")
    p.set_defaults(func=_audit)

    from rewardgym.agents.config import TrainConfig

    help_texts = TrainConfig.help_texts()
    p = sub.add_parser(
        "train",
        help="train an agent on a task under a reward",
        description="Train a policy; every option can also come from --config FILE "
        "(YAML) or --set KEY=VALUE. Flags win over the file.",
    )
    p.add_argument("--config", help="YAML file of TrainConfig options")
    p.add_argument("--task", help=help_texts["task"])
    p.add_argument("--model", help=help_texts["model"])
    p.add_argument("--reward", help=help_texts["reward"] + " (JSON for composites)")
    p.add_argument("--algo", help=help_texts["algo"])
    p.add_argument("--updates", type=int, help=help_texts["updates"])
    p.add_argument("--seed", type=int, help=help_texts["seed"])
    p.add_argument("--out", help=help_texts["out"])
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument(
        "--monitors",
        choices=["all", "none"],
        default="all",
        help="collapse early-warning monitors: all (alerts logged to metrics.jsonl) or none",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other TrainConfig option, e.g. --set lr=1e-3 (repeatable)",
    )
    p.set_defaults(func=_train)

    from rewardgym.evaluation.evaluate import add_arguments

    p = sub.add_parser("evaluate", help="evaluate a trained run (BLEU, chrF, noise robustness)")
    add_arguments(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "study",
        help="train and compare reward schemes across seeds",
        description="Run a study: every scheme × task × seed trained, evaluated "
        "before and after, aggregated into results.json and a report. Rerunning "
        "skips finished runs and resumes interrupted ones.",
    )
    p.add_argument(
        "config",
        nargs="?",
        default="speed_vs_balanced",
        help="a study YAML file or a shipped study's name (default: speed_vs_balanced)",
    )
    p.add_argument("--out", help="study directory (default: studies/<name>)")
    p.add_argument("--executor", choices=["local", "ray"], help="override the config's executor")
    p.add_argument("--seeds", type=int, nargs="+", help="override the config's seeds")
    p.add_argument("--no-report", action="store_true", help="skip writing the report")
    p.set_defaults(func=_study)

    p = sub.add_parser("report", help="write report.md and report.html for a study directory")
    p.add_argument("study_dir", help="a study directory (holds results.json)")
    p.add_argument("--out", help="report directory (default: STUDY_DIR/report)")
    p.set_defaults(func=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user errors print one clear line and exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except RewardGymError as exc:
        print(f"rewardgym {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rewardgym {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
