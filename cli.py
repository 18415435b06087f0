"""The ``rewardgym`` command. Each subcommand is a thin layer over a public function.

Example:
    $ rewardgym list rewards
    $ rewardgym audit --task translate --reward speed_only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from rewardgym.agents.config import safe_yaml, yaml_problem
from rewardgym.agents.memory import keep_freed_memory
from rewardgym.errors import ConfigError, RewardGymError
from rewardgym.rewards import parse_reward_spec


def _list(args: argparse.Namespace) -> int:
    what = args.what
    if what == "tasks":
        from rewardgym.envs.tasks import list_tasks

        # --all adds the task families' members (reasoning_gym:NAME), importing their packages
        items = list_tasks(include_families=args.all)
    elif what == "rewards":
        from rewardgym.rewards import describe_rewards

        print(describe_rewards())
        return 0
    elif what == "envs":
        from rewardgym.envs import env_ids
        from rewardgym.envs.registration import register_task_envs
        from rewardgym.envs.tasks import list_tasks

        if args.all:  # a family member's ids are registered when it is first made, or here
            for task in list_tasks(include_families=True):
                register_task_envs(task)
        items = env_ids()
    else:
        from rewardgym.agents.registry import list_models

        items = [*list_models(), "<a local Hugging Face model directory>"]
    print("\n".join(items))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from rewardgym.evaluation.replay import REPLAY_DIR, replay_run

    result = replay_run(args.run_dir, parse_reward_spec(args.reward), name=args.name)
    last = result["updates"][-1] if result["updates"] else {}
    print(
        f"replayed {len(result['updates'])} updates under {result['reward']!r}; last update: "
        f"own reward {last.get('own_mean', float('nan')):.3f}, replayed "
        f"{last.get('replayed_mean', float('nan')):.3f}, Kendall tau {last.get('kendall_tau')}"
    )
    print(f"written: {Path(args.run_dir) / REPLAY_DIR}/")
    return 0


def _export(args: argparse.Namespace) -> int:
    from rewardgym.agents.runs import export_merged

    out = export_merged(Path(args.run_dir), Path(args.merged))
    print(f"written: {out}/ (load it with load_policy({str(out)!r}) or --model {out})")
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
            spec = parse_reward_spec(reward) if isinstance(reward, str) else reward
            result = audit_reward(task, spec, n_examples=args.n, seed=args.seed)
            results.append(result)
            if not args.json:
                print(format_audit(result), end="\n\n")
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    exploited = any(r.exploits for r in results)
    return 1 if args.strict and exploited else 0


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


def _given_options(args: argparse.Namespace) -> dict:
    """The TrainConfig options the command line sets: flags and ``--set``, each at most once."""
    flags = {
        "task": args.task,
        "model": args.model,
        "reward": parse_reward_spec(args.reward) if args.reward else None,
        "algo": args.algo,
        "updates": args.updates,
        "seed": args.seed,
        "out": args.out,
    }
    flags = {k: v for k, v in flags.items() if v is not None}
    overrides = _overrides(args.set)
    both = sorted(set(flags) & set(overrides))
    if both:
        pairs = ", ".join(f"--{k} and --set {k}=..." for k in both)
        raise ConfigError(f"{pairs} both set {', '.join(both)}; give each option once")
    return {**flags, **overrides}


def _train_config(args: argparse.Namespace):
    """The run's TrainConfig: a --config file, else the saved config of a run to --resume, else
    the defaults; the options given on the command line win over either."""
    from rewardgym.agents import TrainConfig

    given = _given_options(args)
    if args.config:
        return TrainConfig.from_yaml(args.config, **given)
    saved = Path(given.get("out", "")) / "config.json" if args.resume else None
    if saved is not None and saved.is_file():
        return TrainConfig.from_dict(
            {**json.loads(saved.read_text(encoding="utf-8")), **given}, source=str(saved)
        )
    return TrainConfig.from_dict(given, source="command line")


def _train(args: argparse.Namespace) -> int:
    from rewardgym.agents import train

    if args.resume and not args.out and not args.config:
        raise ConfigError("--resume needs --out RUN_DIR: the run directory to continue")
    config = _train_config(args)
    callbacks = []
    if args.monitors == "source":
        from rewardgym.evaluation.monitors import default_monitors

        callbacks = default_monitors(action="log", preset="source")
    elif args.monitors == "all":
        from rewardgym.evaluation.monitors import default_monitors

        callbacks = default_monitors(action="log")
    result = train(
        config, callbacks=callbacks, resume=args.resume, into_existing=args.into_existing
    )
    summary = {
        "run_dir": str(result.run_dir),
        "updates_done": result.updates_done,
        "updates_stepped": result.updates_stepped,
        **result.final_eval,
    }
    print(json.dumps(summary, indent=2))
    return 130 if result.interrupted else 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``rewardgym evaluate RUN_DIR`` to ``parser``.

    Example:
        >>> parser = add_evaluate_arguments(argparse.ArgumentParser())
        >>> parser.parse_args(["runs/a", "--noise", "none"]).noise
        ['none']
    """
    from rewardgym.envs.noise import NOISE_TYPES
    from rewardgym.envs.tasks import SPLITS
    from rewardgym.evaluation.robustness import DEFAULT_SEVERITIES

    parser.add_argument("run_dir", help="the --out folder of a `rewardgym train` run")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to evaluate")
    parser.add_argument(
        "--noise",
        nargs="+",
        default=list(NOISE_TYPES),
        metavar="TYPE",
        help=f"noise types of the robustness sweep ({', '.join(NOISE_TYPES)}; 'none': no sweep)",
    )
    parser.add_argument(
        "--severity",
        nargs="+",
        type=float,
        default=list(DEFAULT_SEVERITIES),
        metavar="S",
        help="noise severities, each in (0, 1]",
    )
    parser.add_argument("--n-examples", type=int, default=None, help="first N examples only")
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="token limit (default: the run's)"
    )
    parser.add_argument(
        "--sample", action="store_true", help="sample (seeded by --seed) instead of greedy decoding"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per generate call")
    parser.add_argument(
        "--retention-task", default=None, help="also measure BLEU on this task (for forgetting)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: the run's)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/eval)")
    parser.add_argument(
        "--reward",
        default=None,
        help="score answers with this reward spec instead of the run's (name, module:function "
        "or JSON composite)",
    )
    return parser


def evaluate_from_args(args: argparse.Namespace):
    """Run :func:`~rewardgym.evaluation.evaluate.evaluate_run` with parsed
    :func:`add_evaluate_arguments` options.

    Example:
        >>> parser = add_evaluate_arguments(argparse.ArgumentParser())
        >>> evaluate_from_args(parser.parse_args(["runs/a", "--noise", "none"])).robustness is None
        True
    """
    from rewardgym.evaluation.evaluate import EvalConfig, evaluate_run

    noise = [] if [n.lower() for n in args.noise] == ["none"] else args.noise
    config = EvalConfig(
        split=args.split,
        noise=noise,
        severities=args.severity,
        n_examples=args.n_examples,
        max_new_tokens=args.max_new_tokens,
        greedy=not args.sample,
        seed=args.seed,
        batch_size=args.batch_size,
        retention_task=args.retention_task,
    )
    return evaluate_run(
        args.run_dir,
        config,
        reward=parse_reward_spec(args.reward) if args.reward else None,
        device=args.device,
        out_dir=args.out,
    )


def _evaluate(args: argparse.Namespace) -> int:
    from rewardgym.evaluation.evaluate import eval_dir, format_summary

    result = evaluate_from_args(args)
    reward = parse_reward_spec(args.reward) if args.reward else None
    out = Path(args.out) if args.out else eval_dir(args.run_dir, reward)
    print(format_summary(result, out / f"{args.split}.json"))
    return 0


def _study(args: argparse.Namespace) -> int:
    from rewardgym.evaluation.study import run_study
    from rewardgym.evaluation.study_config import load_study_config

    name = args.config or DEFAULT_STUDY
    config = load_study_config(name, seeds=args.seeds, executor=args.executor, backend=args.backend)
    if args.config is None and not args.yes:
        print(study_plan(config, args.out))
        print(f"\nrun it with `rewardgym study {DEFAULT_STUDY}` (or --yes), or name another study")
        return 0
    result = run_study(config, out=args.out)
    print(f"results: {result.results_path}")
    if result.interrupted:
        return 130
    if not args.no_report:
        from rewardgym.evaluation.report import report_summary, write_report

        print(report_summary(write_report(result.study_dir)))
    return 0


DEFAULT_STUDY = "speed_vs_balanced"


def study_plan(config, out: str | None) -> str:
    """What ``rewardgym study`` would run: the grid, the budget and where results go."""
    from rewardgym.evaluation.study_config import expand_units

    units = expand_units(config)
    train = config.train
    return "\n".join(
        [
            f"study {config.name}: {len(units)} runs = schemes {list(config.schemes)} x "
            f"tasks {config.tasks} x seeds {config.seeds}",
            f"model {config.model}; {train.get('algo', 'grpo')}, "
            f"{train.get('updates', 'default')} updates per run",
            f"evaluation: {config.evaluation.n_examples} {config.evaluation.split} examples, "
            f"noise {config.evaluation.noise} at {config.evaluation.severities}",
            f"results: {out or f'studies/{config.name}'}",
        ]
    )


def _report(args: argparse.Namespace) -> int:
    from rewardgym.evaluation.report import report_summary, write_report
    from rewardgym.evaluation.run_folder import RUNS_JSON, folder_kind, write_folder_report

    if folder_kind(args.study_dir) == "runs":  # runs trained one by one, not a study
        paths = write_folder_report(args.study_dir, args.out, baseline=args.baseline)
        print(f"results: {paths[RUNS_JSON]}")
        print(report_summary(paths))
        return 0
    if args.baseline is not None:
        raise ConfigError(
            f"--baseline is for a folder of runs; the study in {args.study_dir!r} names its "
            "baseline in its study.yaml (baseline: SCHEME)"
        )
    if args.refresh:
        from rewardgym.evaluation.study import refresh_records

        print(f"results: {refresh_records(args.study_dir).results_path}")
    print(report_summary(write_report(args.study_dir, args.out)))
    return 0


# `train --help` lists every TrainConfig option in these groups (any new option lands in "other").
TRAIN_OPTION_GROUPS = {
    "task and model": ("task", "task_seed", "task_kwargs", "model", "model_options"),
    "reward and algorithm": (
        "reward", "backend", "algo", "aggregation", "updates", "seed", "prompts_per_update",
        "group_size", "micro_batches", "kl_coef", "entropy_coef", "baseline_momentum", "ppo_epochs",
        "loss_type", "epsilon_high", "scale_rewards", "mask_truncated_completions",
        "clip_eps", "replay_share", "replay_confidence_weighting",
    ),
    "optimiser": ("lr", "lr_schedule", "warmup_updates", "weight_decay", "max_grad_norm"),
    "sampling": ("max_new_tokens", "temperature", "top_p", "token_budget"),
    "evaluation and checkpoints": (
        "eval_every", "eval_examples", "checkpoint_every", "keep_checkpoints", "max_faults",
        "max_nonfinite_updates",
    ),
    "output and machine": ("out", "dtype", "device", "threads", "tensorboard", "progress"),
}  # fmt: skip


def train_options_help() -> str:
    """Every TrainConfig option with its default and help text, grouped, for ``train --help``."""
    import dataclasses

    from rewardgym.agents.config import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig().to_dict()
    grouped = [name for names in TRAIN_OPTION_GROUPS.values() for name in names]
    groups = {**TRAIN_OPTION_GROUPS, "other": tuple(n for n in fields if n not in grouped)}
    lines = ["every option (flags above, or --set NAME=VALUE, or a --config YAML file):"]
    for title, names in groups.items():
        if not names:
            continue
        lines.append(f"\n{title}:")
        for name in names:
            default = json.dumps(defaults[name])
            lines.append(f"  {name} (default {default}): {fields[name].metadata['help']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rewardgym`` command (one subparser per subcommand)."""
    from rewardgym import __version__

    parser = argparse.ArgumentParser(
        prog="rewardgym",
        description="An agent-training gym for reward-shaping studies.",
    )
    parser.add_argument("--version", action="version", version=f"rewardgym {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list tasks, rewards, env ids or models")
    p.add_argument(
        "what", nargs="?", default="tasks", choices=["tasks", "rewards", "envs", "models"]
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="tasks and envs: every task family's members too (reasoning_gym:NAME)",
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
    p.add_argument(
        "--n-examples",
        "--n",
        dest="n",
        type=int,
        default=200,
        help="validation examples to score (default 200)",
    )
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
        "(YAML) or --set KEY=VALUE. Flags win over the file; a flag and --set for the same "
        "option is an error. --resume continues a run from its saved config.json.",
        epilog=train_options_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML file of TrainConfig options")
    p.add_argument("--task", help=help_texts["task"] + ", or a .jsonl task file")
    p.add_argument("--model", help=help_texts["model"])
    p.add_argument("--reward", help=help_texts["reward"] + " (JSON for composites)")
    p.add_argument("--algo", help=help_texts["algo"])
    p.add_argument("--updates", type=int, help=help_texts["updates"])
    p.add_argument("--seed", type=int, help=help_texts["seed"])
    p.add_argument("--out", help=help_texts["out"])
    p.add_argument(
        "--into-existing",
        action="store_true",
        help="start the run in an --out folder that already holds files of yours (they are left "
        "as they are; without this, such a folder is refused)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue --out's run from its latest checkpoint and saved config.json (options "
        "given again must agree, except updates, out, device, progress and checkpointing)",
    )
    p.add_argument(
        "--monitors",
        choices=["all", "source", "none"],
        default="all",
        help="early-warning monitors: all (alerts logged to metrics.jsonl), source (all, "
        "at the source design's thresholds) or none",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other TrainConfig option, e.g. --set lr=1e-3 (repeatable)",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="evaluate a trained run (BLEU, chrF, noise robustness)")
    add_evaluate_arguments(p)
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
        default=None,
        help="a study YAML file or a shipped study's name; with none, print what the default "
        f"study ({DEFAULT_STUDY}) would run (--yes runs it)",
    )
    p.add_argument("--yes", action="store_true", help="run the default study without asking")
    p.add_argument("--out", help="study directory (default: studies/<name>)")
    p.add_argument("--executor", choices=["local", "ray"], help="override the config's executor")
    p.add_argument("--seeds", type=int, nargs="+", help="override the config's seeds")
    p.add_argument(
        "--backend",
        choices=["native", "trl"],
        help="train every run with this backend (trl: TRL's GRPOTrainer); the study is then "
        "named <name>_<backend>, so its results sit beside the original's",
    )
    p.add_argument("--no-report", action="store_true", help="skip writing the report")
    p.set_defaults(func=_study)

    p = sub.add_parser(
        "replay", help="re-score a run's training samples under another reward (no model)"
    )
    p.add_argument("run_dir", help="the --out folder of a `rewardgym train` run")
    p.add_argument("--reward", required=True, help="reward spec (name, module:function, JSON)")
    p.add_argument("--name", default=None, help="output name (default: the reward's name)")
    p.set_defaults(func=_replay)

    p = sub.add_parser(
        "export",
        help="write a run's latest policy as a model directory (a LoRA adapter merged in)",
    )
    p.add_argument("run_dir", help="the --out folder of a `rewardgym train` run")
    p.add_argument(
        "--merged",
        required=True,
        metavar="DIR",
        help="new folder for the merged model; it loads with load_policy(DIR) or --model DIR",
    )
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "report",
        help="write report.md and report.html for a study or a folder of runs",
        description="Report on a study directory (it holds results.json), or on a folder of "
        "runs trained one by one (`rewardgym train --out FOLDER/NAME`, each evaluated with "
        "`rewardgym evaluate`): its runs are grouped into schemes by reward and compared as a "
        "study's are; the collected values go to REPORT_DIR/runs.json.",
    )
    p.add_argument(
        "study_dir", help="a study directory (holds results.json) or a folder of run directories"
    )
    p.add_argument("--out", help="report directory (default: STUDY_DIR/report)")
    p.add_argument(
        "--baseline",
        metavar="SCHEME",
        help="a folder of runs: the scheme the others are compared with (default: task_only "
        "if present, else the first scheme in sorted order)",
    )
    p.add_argument(
        "--refresh",
        action="store_true",
        help="first recompute every run's record and results.json from the run files (for a "
        "study recorded by an older rewardgym; nothing trains again)",
    )
    p.set_defaults(func=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user errors print one clear line and exit with status 2."""
    # Third-party progress bars (Hugging Face model loading) stay off unless the user sets
    # HF_HUB_DISABLE_PROGRESS_BARS=0; rewardgym's own bars follow --set progress=...
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        # The command owns its process: keep freed memory for reuse (agents/memory.py), as
        # training does; REWARDGYM_KEEP_FREED_MEMORY=0 opts out.
        keep_freed_memory()
        return func(args)
    except RewardGymError as exc:
        print(f"rewardgym {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rewardgym {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
