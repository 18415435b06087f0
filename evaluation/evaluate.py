"""The evaluation harness: evaluate a policy on a task split, clean and under prompt noise.

:func:`evaluate` answers every prompt of a split (greedy by default, in batches), and measures
corpus BLEU and chrF (sacrebleu), exact match, completion length, the share of finished
answers, tokens and latency per sample, the reward the environment would pay
(:func:`rewardgym.envs.scoring.score_completions`, so the numbers are the env's), and, with a
noise sweep, ``B(n, s)`` and the robustness ratio ``R`` (see
:mod:`rewardgym.evaluation.robustness`).
With ``out_dir`` it writes ``<split>.json`` plus the hypotheses and references as text, so

    sacrebleu OUT/<split>.refs.txt -i OUT/<split>.hyps.txt -b

prints the same BLEU, and ``OUT/<split>.noise/<type>-<severity>.{hyps,refs}.txt`` do the same
for each noisy condition. :func:`evaluate_run` does all this for a training run's latest
checkpoint, into ``RUN_DIR/eval/``; :func:`compare` turns two results into the report's
BLEU improvement and robustness change.

Example:
    >>> policy = load_policy("tiny", task="translate")
    >>> result = evaluate(policy, "translate", EvalConfig(n_examples=64), out_dir="runs/a/eval")
    >>> result.bleu, result.robustness
    (41.2, 0.83)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewardgym.agents.meters.text_metrics import (
    bleu_degeneracy,
    corpus_scores,
    exact_match_rate,
    mean_entropy_bits,
    write_hyps_refs,
)
from rewardgym.agents.sft import completion_nll, encode_pairs
from rewardgym.envs.scoring import resolve_reward, score_completions
from rewardgym.envs.spaces import Action
from rewardgym.envs.tasks import Example, Task, make_task, quality_label
from rewardgym.errors import (
    ConfigError,
    RewardGymError,
    RunDataError,
    UnknownNameError,
)
from rewardgym.evaluation.eval_config import EvalConfig
from rewardgym.evaluation.robustness import (
    MIN_CLEAN_BLEU,
    bleu_improvement_pct,
    forgetting_pct,
    noise_sweep,
    robustness_change_pct,
    robustness_ratio,
    undefined_reason,
)
from rewardgym.fileio import write_text_atomic

__all__ = [
    "EVAL_FORMAT_VERSION",
    "EvalConfig",
    "EvalResult",
    "compare",
    "evaluate",
    "evaluate_run",
    "forgetting_pct",
    "format_summary",
]

EVAL_FORMAT_VERSION = 1
EVAL_DIR = "eval"
NLL_BATCH = 32  # references scored per forward pass (bounds memory on larger models)
_RETENTION_STREAM = 1_000_000  # sampling stream of the retention task (conditions count from 0)


# -- the result --------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """Everything one evaluation measured; JSON-safe (no NaN or inf: undefined values are None).

    Attributes:
        task: task name.
        split: the split evaluated.
        n_examples: how many examples were answered.
        bleu: sacrebleu corpus BLEU (13a), 0–100.
        chrf: sacrebleu corpus chrF, 0–100.
        exact_match: share (0–1) of answers equal to the reference.
        metric: the task's primary quality metric (``Task.primary_metric``).
        quality: that metric on the clean split, 0–100 (exact match as a percentage).
        completion_tokens: mean completion length in tokens (eos not counted).
        completion_chars: mean completion length in characters.
        finished_share: share of answers that produced eos within ``max_new_tokens``.
        tokens_per_sample: mean tokens generated per sample (eos counted: what compute costs).
        latency_s_per_sample: generation seconds per sample (batch wall time / batch size).
        entropy_bits: mean per-token entropy (bits) of the sampling distribution; None when
            decoding greedily.
        reward: ``{"spec", "total", "components": {name: mean}, "applies_share"}`` or None.
        noise: ``{noise type: {severity: B(n, s)}}`` (severity keys as ``repr(float)``).
        noise_chrf: the same layout, chrF.
        noise_quality: the same layout, the primary metric.
        robustness: ``R``, the mean over the sweep of the primary metric under noise divided by
            its clean value; None without a sweep or below ``MIN_CLEAN_BLEU`` points clean.
        retention: ``{"task", "split", "n_examples", "metric", "quality", "bleu", "chrf",
            "exact_match", "nll"}`` or None: the retention task, scored as the main one, and
            ``nll``, its references' mean per-token NLL (nats) under the policy.
        samples: a few ``{"prompt", "reference", "completion"}`` for the report.
        noisy_samples: per noise type, one ``{"noise", "severity", "prompt", "reference",
            "completion"}`` at the highest severity.
        settings: how it was run (policy, decoding, seeds, batch size, checkpoint...).
        files: written file paths, relative to the folder holding the JSON.
        notes: why any value is None, and other caveats, in words.
    """

    task: str
    split: str
    n_examples: int
    bleu: float
    chrf: float
    exact_match: float
    completion_tokens: float
    completion_chars: float
    finished_share: float
    tokens_per_sample: float
    latency_s_per_sample: float
    metric: str = "bleu"
    quality: float | None = None
    entropy_bits: float | None = None
    reward: dict[str, Any] | None = None
    noise: dict[str, dict[str, float]] = field(default_factory=dict)
    noise_chrf: dict[str, dict[str, float]] = field(default_factory=dict)
    noise_quality: dict[str, dict[str, float]] = field(default_factory=dict)
    robustness: float | None = None
    retention: dict[str, Any] | None = None
    samples: list[dict[str, str]] = field(default_factory=list)
    noisy_samples: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with ``format_version`` first.

        Example:
            >>> EvalResult.from_dict(result.to_dict()) == result
            True
        """
        return {"format_version": EVAL_FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "evaluation result") -> EvalResult:
        """Rebuild a result from :meth:`to_dict` output.

        Raises:
            RunDataError: not a mapping, a newer ``format_version``, or missing/unknown fields.

        Example:
            >>> EvalResult.from_dict({"format_version": 2})
            Traceback (most recent call last):
            RunDataError: evaluation result has format_version 2, ...
        """
        if not isinstance(data, dict):
            raise RunDataError(f"{source} must be a JSON object, got {type(data).__name__}")
        body = dict(data)
        version = body.pop("format_version", None)
        if not isinstance(version, int) or not 1 <= version <= EVAL_FORMAT_VERSION:
            raise RunDataError(
                f"{source} has format_version {version!r}, but this rewardgym reads "
                f"format_version {EVAL_FORMAT_VERSION}; upgrade rewardgym to read it, or "
                "re-run the evaluation"
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(body) - names)
        missing = sorted(
            f.name for f in fields(cls) if f.name not in body and f.default is f.default_factory
        )
        if unknown or missing:
            raise RunDataError(
                f"{source} does not match EvalResult: unknown fields {unknown}, missing fields "
                f"{missing}; re-run the evaluation to rewrite it"
            )
        return cls(**body)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON atomically (temporary file beside it, fsync, ``os.replace``).

        Example:
            >>> result.save("runs/a/eval/test.json")
            PosixPath('runs/a/eval/test.json')
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # allow_nan=False: a NaN that slipped through is a bug, not a number for a report.
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        write_text_atomic(path, text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvalResult:
        """Read a result written by :meth:`save`.

        Raises:
            RunDataError: missing file, invalid JSON, or a result this version cannot read.

        Example:
            >>> EvalResult.load("runs/a/eval/test.json").split
            'test'
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDataError(
                f"no evaluation result at {str(path)!r}; run `rewardgym evaluate RUN_DIR` first"
            ) from None
        except (OSError, ValueError) as exc:
            raise RunDataError(f"cannot read evaluation result {str(path)!r}: {exc}") from None
        return cls.from_dict(data, source=str(path))


# -- generation --------------------------------------------------------------------------------


@dataclass
class _Answers:
    read: Callable[[str], str]  # the task's answer reader (Task.answer)
    completions: list[str] = field(default_factory=list)
    n_tokens: list[int] = field(default_factory=list)
    finished: list[bool] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    entropy_bits: list[np.ndarray] = field(default_factory=list)

    @property
    def answers(self) -> list[str]:
        """What quality metrics read: each completion's answer as its task reads it."""
        return [self.read(c) for c in self.completions]


def _batch_seed(seed: int, stream: int, batch: int) -> int:
    """An independent sampling seed for each (condition, batch); unused when greedy."""
    return int(np.random.SeedSequence([seed, stream, batch]).generate_state(1)[0])


def _answer(
    policy: Any, task: Task, prompts: Sequence[str], config: EvalConfig, stream: int
) -> _Answers:
    """Answer ``prompts`` of ``task`` in batches of ``config.batch_size`` generate calls."""
    out = _Answers(read=task.answer)
    for b, start in enumerate(range(0, len(prompts), config.batch_size)):
        batch = list(prompts[start : start + config.batch_size])
        gen = policy.generate(
            batch,
            max_new_tokens=config.token_limit,
            temperature=config.temperature,
            top_p=config.top_p,
            greedy=config.greedy,
            seed=_batch_seed(config.seed, stream, b),
        )
        if len(gen.completions) != len(batch):
            raise ConfigError(
                f"{type(policy).__name__}.generate returned {len(gen.completions)} completions "
                f"for {len(batch)} prompts; a policy must answer every prompt once"
            )
        out.completions += list(gen.completions)
        out.n_tokens += [int(n) for n in gen.n_tokens]
        out.finished += [bool(f) for f in gen.finished]
        out.latency_s += [float(gen.wall_s) / len(batch)] * len(batch)
        out.entropy_bits += [np.asarray(e, dtype=np.float64) for e in gen.entropy_bits]
    return out


# -- metrics -----------------------------------------------------------------------------------


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else 0.0


def _reward_summary(
    reward: Any, task: Task, examples: Sequence[Example], answers: _Answers, notes: list[str]
) -> dict[str, Any] | None:
    """Mean reward total and components, scored exactly as the environment scores actions."""
    if reward is None:
        return None
    scorer = resolve_reward(reward, task=task)
    actions = [
        Action(text=t, n_tokens=n, finished=f, latency_s=s)
        for t, n, f, s in zip(
            answers.completions, answers.n_tokens, answers.finished, answers.latency_s, strict=True
        )
    ]
    output = score_completions(scorer, task, examples, [ex.prompt for ex in examples], actions)
    components: dict[str, float | None] = {}
    for name, values in output.components.items():
        values = np.asarray(values, dtype=np.float64)
        applies = ~np.isnan(values)
        components[name] = float(values[applies].mean()) if applies.any() else None
        if not applies.any():
            notes.append(f"reward component {name!r} applied to no sample: its mean is None")
    spec = reward if isinstance(reward, (str, dict)) else getattr(scorer, "name", repr(reward))
    return {
        "spec": spec,
        "total": float(np.mean(output.total)),
        "components": components,
        "applies_share": float(np.mean(output.applies)),
    }


def _completion_tokens(answers: _Answers) -> float:
    # eos is a generated token but not part of the completion's text
    return _mean(
        n - 1 if f and n > 0 else n for n, f in zip(answers.n_tokens, answers.finished, strict=True)
    )


def _entropy(answers: _Answers, greedy: bool, notes: list[str]) -> float | None:
    if greedy:
        return None
    value = mean_entropy_bits(answers.entropy_bits)
    if not math.isfinite(value):
        notes.append("entropy is None: no tokens were generated")
        return None
    return value


def _samples(examples: Sequence[Example], hyps: Sequence[str], n: int) -> list[dict[str, str]]:
    return [
        {"prompt": ex.prompt, "reference": ex.reference, "completion": hyp}
        for ex, hyp in zip(examples[:n], hyps[:n], strict=True)
    ]


# -- validation --------------------------------------------------------------------------------


def _resolve_examples(task: str | Task, split: str, n_examples: int | None) -> tuple[Task, list]:
    if isinstance(task, str):
        task = make_task(task)
    elif not isinstance(task, Task):
        raise ConfigError(
            f"task must be a task name or a Task, got {type(task).__name__}: {task!r:.80}; "
            "see rewardgym.list_tasks()"
        )
    examples = task.split(split)
    return task, examples if n_examples is None else examples[:n_examples]


# -- evaluate ----------------------------------------------------------------------------------


def evaluate(
    policy: Any,
    task: str | Task,
    config: EvalConfig | None = None,
    *,
    reward: Any = None,
    out_dir: str | os.PathLike[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> EvalResult:
    """Evaluate ``policy`` on a task split: BLEU, chrF, lengths, reward and noise robustness.

    Args:
        policy: an :class:`~rewardgym.agents.policy.LMPolicy`, or any object with
            ``generate(prompts, max_new_tokens, temperature, top_p, greedy, seed)`` returning a
            :class:`~rewardgym.agents.policy.Generation`.
        task: a task name (built with seed 0), a task file, or a
            :class:`~rewardgym.envs.tasks.Task`.
        config: the evaluation's options (None: ``EvalConfig()``, the whole test split with the
            default noise sweep).
        reward: a reward spec (as ``make_reward`` takes) to score answers with, or None.
        out_dir: where to write ``<split>.json`` and the text files (None: write nothing).
        settings: extra facts to store in ``result.settings`` (e.g. the checkpoint).

    Returns:
        An :class:`EvalResult` (also saved as ``out_dir/<split>.json`` when ``out_dir`` is set).

    Raises:
        ConfigError: a bad option (the message names it and the fix).
        UnknownNameError: an unknown split, noise type or task.

    Example:
        >>> config = EvalConfig(n_examples=32, noise=["word_drop"], severities=[0.1])
        >>> result = evaluate(policy, "translate", config, reward="balanced")
        >>> sorted(result.noise["word_drop"])
        ['0.1']
    """
    started = time.perf_counter()
    config = _checked_config(config)
    task_obj, examples = _resolve_examples(task, config.split, config.n_examples)
    retention = None
    if config.retention_task is not None:  # resolve it now: fail before the slow part
        ret_split = config.retention_split or config.split
        retention = (
            *_resolve_examples(config.retention_task, ret_split, config.n_examples),
            ret_split,
        )
        if retention[0].name == task_obj.name:
            raise ConfigError(
                f"retention_task {config.retention_task!r} is the task being evaluated: "
                "forgetting needs a task the policy was not trained on with RL; choose another "
                "task, or leave retention_task unset"
            )
    answers = _answer(policy, task_obj, [ex.prompt for ex in examples], config, stream=0)
    result = _clean_result(task_obj, examples, answers, config, reward)

    def answer(prompts: list[str], condition: int) -> list[str]:
        return _answer(policy, task_obj, prompts, config, stream=condition).answers

    kinds, levels = tuple(config.noise), tuple(config.severities)
    sweep = noise_sweep(answer, examples, kinds, levels, config.noise_seed, task_obj.primary_metric)
    _add_sweep(result, sweep, kinds, levels, [ex.reference for ex in examples])
    ret_texts = None
    if retention is not None:
        ret_texts = _add_retention(result, policy, retention, config)
    result.settings = {
        "policy": str(getattr(policy, "name", type(policy).__name__)),
        "n_params": getattr(policy, "n_params", None),
        "task_seed": task_obj.seed,
        **_recorded_settings(config),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(settings or {}),
    }
    if out_dir is not None:
        out = Path(out_dir)
        refs = [ex.reference for ex in examples]
        result.files = _write_texts(out, config.split, answers.answers, refs, sweep.hyps)
        if ret_texts is not None and result.retention is not None:
            stem = f"retention.{result.retention['task']}.{result.retention['split']}"
            hyp_path, ref_path = write_hyps_refs(out, *ret_texts, stem=stem)
            result.files.update(retention_hyps=hyp_path.name, retention_refs=ref_path.name)
    result.settings["wall_s"] = time.perf_counter() - started
    if out_dir is not None:
        result.save(Path(out_dir) / f"{config.split}.json")
    return result


def _checked_config(config: EvalConfig | None) -> EvalConfig:
    if config is None:
        return EvalConfig()
    if not isinstance(config, EvalConfig):
        raise ConfigError(
            f"config must be an EvalConfig, got {type(config).__name__}: {config!r:.80}; "
            "e.g. evaluate(policy, task, EvalConfig(n_examples=64, noise=None))"
        )
    return config


def _recorded_settings(config: EvalConfig) -> dict[str, Any]:
    """The options a result records (the retention task is recorded in ``result.retention``)."""
    data = config.to_dict()
    data["max_new_tokens"] = config.token_limit
    data["noise_types"] = data.pop("noise")
    for key in ("split", "n_examples", "retention_task", "retention_split", "n_samples"):
        data.pop(key)
    return data


def _clean_result(
    task: Task, examples: list[Example], answers: _Answers, config: EvalConfig, reward: Any
) -> EvalResult:
    notes: list[str] = []
    hyps, refs = answers.answers, [ex.reference for ex in examples]
    scores = corpus_scores(hyps, refs)
    degenerate = bleu_degeneracy(refs, scores)
    if degenerate is not None:
        notes.append(
            f"corpus BLEU is degenerate on this split: {degenerate}; read "
            f"{quality_label(task.primary_metric)} (the task's primary metric)"
            + (
                ", or declare another primary_metric for the task (exact_match or chrf)"
                if task.primary_metric == "bleu"
                else ""
            )
        )
    return EvalResult(
        task=task.name,
        split=config.split,
        n_examples=len(examples),
        bleu=scores.bleu,
        chrf=scores.chrf,
        exact_match=exact_match_rate(hyps, refs),
        metric=task.primary_metric,
        quality=task.quality(hyps, refs, scores, [ex.meta for ex in examples]),
        completion_tokens=_completion_tokens(answers),
        completion_chars=_mean(len(h) for h in hyps),
        finished_share=_mean(answers.finished),
        tokens_per_sample=_mean(answers.n_tokens),
        latency_s_per_sample=_mean(answers.latency_s),
        entropy_bits=_entropy(answers, config.greedy, notes),
        reward=_reward_summary(reward, task, examples, answers, notes),
        samples=_samples(examples, answers.completions, config.n_samples),
        notes=notes,
    )


def _add_sweep(
    result: EvalResult, sweep: Any, kinds: tuple[str, ...], levels: tuple[float, ...], refs: list
) -> None:
    result.noise, result.noise_chrf, result.noise_quality = sweep.bleu, sweep.chrf, sweep.quality
    if not kinds:
        return
    result.robustness = robustness_ratio(result.quality, sweep.quality)
    if result.robustness is None:
        result.notes.append(
            f"robustness R is None: clean {quality_label(result.metric)} {result.quality:.2f} "
            f"is below {MIN_CLEAN_BLEU:g}, so B(n, s) / B_clean is undefined (or meaningless)"
        )
    top = levels[-1] if len(levels) == 1 else max(levels)
    result.noisy_samples = [
        {
            "noise": kind,
            "severity": top,
            "prompt": sweep.prompts[(kind, top)][0],
            "reference": refs[0],
            "completion": sweep.hyps[(kind, top)][0],
        }
        for kind in kinds
    ]


def _add_retention(
    result: EvalResult,
    policy: Any,
    retention: tuple[Task, list[Example], str],
    config: EvalConfig,
) -> tuple[list[str], list[str]]:
    task, examples, split = retention
    prompts = [ex.prompt for ex in examples]
    hyps = _answer(policy, task, prompts, config, _RETENTION_STREAM).answers
    refs = [ex.reference for ex in examples]
    scores = corpus_scores(hyps, refs)
    result.retention = {
        "task": task.name,
        "split": split,
        "n_examples": len(examples),
        "metric": task.primary_metric,
        "quality": task.quality(hyps, refs, scores, [ex.meta for ex in examples]),
        "bleu": scores.bleu,
        "chrf": scores.chrf,
        "exact_match": exact_match_rate(hyps, refs),
        "nll": _reference_nll(policy, examples),
    }
    return hyps, refs


def _reference_nll(policy: Any, examples: Sequence[Example]) -> float | None:
    """Mean per-token negative log-likelihood (nats) of the references given their prompts,
    teacher-forced: how likely the policy finds the right answers, whatever it generates.
    None for a policy that cannot score token sequences."""
    if not hasattr(policy, "sequence_logprobs"):
        return None
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), NLL_BATCH):
            pairs = encode_pairs(policy, examples[start : start + NLL_BATCH])
            loss, n_tokens, _ = completion_nll(policy, pairs)
            total, tokens = total + float(loss) * n_tokens, tokens + n_tokens
    return total / tokens if tokens else None


def _write_texts(
    out_dir: Path,
    split: str,
    hyps: list[str],
    refs: list[str],
    noisy_hyps: dict[tuple[str, float], list[str]],
) -> dict[str, str]:
    """Clean and noisy hypotheses with their references; paths relative to ``out_dir``."""
    hyp_path, ref_path = write_hyps_refs(out_dir, hyps, refs, stem=split)
    files = {"hyps": hyp_path.name, "refs": ref_path.name}
    noise_dir = out_dir / f"{split}.noise"
    for (kind, level), noisy in noisy_hyps.items():
        stem = f"{kind}-{level!r}"
        hyp_path, ref_path = write_hyps_refs(noise_dir, noisy, refs, stem=stem)
        files[f"noise/{kind}/{level!r}/hyps"] = str(hyp_path.relative_to(out_dir))
        files[f"noise/{kind}/{level!r}/refs"] = str(ref_path.relative_to(out_dir))
    return files


# -- comparing ---------------------------------------------------------------------------------


def compare(before: EvalResult, after: EvalResult) -> dict[str, Any]:
    """The report's change figures from a before (starting policy) and an after result.

    Returns ``bleu_before``, ``bleu_after``, ``bleu_improvement_pct``, ``robustness_before``,
    ``robustness_after``, ``robustness_change_pct``; with a retention task ``retention_before``,
    ``retention_after`` (its primary metric), ``forgetting_pct`` and ``retention_nll_change``
    (the references' NLL after − before); and ``notes``: why any figure is None.

    Raises:
        ConfigError: the two results are not on the same task, split and examples.

    Example:
        >>> compare(before, after)["bleu_improvement_pct"]
        25.0
    """
    for name in ("task", "split", "n_examples", "metric"):
        if getattr(before, name) != getattr(after, name):
            raise ConfigError(
                f"cannot compare evaluations with different {name}: "
                f"{getattr(before, name)!r} before, {getattr(after, name)!r} after; evaluate "
                "both policies on the same task, split and n_examples"
            )
    notes: list[str] = []
    out: dict[str, Any] = {
        "bleu_before": before.bleu,
        "bleu_after": after.bleu,
        "bleu_improvement_pct": bleu_improvement_pct(before.bleu, after.bleu),
        "metric": after.metric,
        "quality_before": _quality(before),
        "quality_after": _quality(after),
        "quality_improvement_pct": bleu_improvement_pct(_quality(before), _quality(after)),
        "robustness_before": before.robustness,
        "robustness_after": after.robustness,
        "robustness_change_pct": None,
    }
    _note(notes, "BLEU improvement", before.bleu, after.bleu)
    if after.metric != "bleu":
        label = f"{quality_label(after.metric)} improvement"
        _note(notes, label, _quality(before), _quality(after))
    if _conditions(before) != _conditions(after):
        notes.append(
            "robustness change is undefined: the two results swept different noise conditions "
            f"({sorted(_conditions(before))} before, {sorted(_conditions(after))} after)"
        )
    else:
        out["robustness_change_pct"] = robustness_change_pct(before.robustness, after.robustness)
        _note(notes, "robustness change", before.robustness, after.robustness)
    if before.retention is not None or after.retention is not None:
        ret_before = _retention_score(before)
        ret_after = _retention_score(after)
        nll_before, nll_after = _retention_nll(before), _retention_nll(after)
        if (
            before.retention
            and after.retention
            and (
                before.retention["task"],
                before.retention["split"],
                before.retention["n_examples"],
            )
            != (after.retention["task"], after.retention["split"], after.retention["n_examples"])
        ):
            ret_before = ret_after = nll_before = nll_after = None
            notes.append("forgetting is undefined: the retention sets before and after differ")
        else:
            _note(notes, "forgetting", ret_before, ret_after)
        out["retention_before"], out["retention_after"] = ret_before, ret_after
        out["forgetting_pct"] = forgetting_pct(ret_before, ret_after)
        out["retention_nll_change"] = (
            None if None in (nll_before, nll_after) else nll_after - nll_before
        )
    out["notes"] = notes
    return out


def _note(notes: list[str], name: str, before: float | None, after: float | None) -> None:
    reason = undefined_reason(name, before, after)
    if reason is not None:
        notes.append(reason)


def _quality(result: EvalResult) -> float | None:
    """The primary metric; results written before it existed (no ``quality``) have BLEU."""
    return result.bleu if result.quality is None and result.metric == "bleu" else result.quality


def _conditions(result: EvalResult) -> set[tuple[str, str]]:
    return {(kind, level) for kind, by_level in result.noise.items() for level in by_level}


def _retention_score(result: EvalResult) -> float | None:
    """The retention task's primary metric (BLEU in results written before it was stored)."""
    if result.retention is None:
        return None
    return result.retention.get("quality", result.retention.get("bleu"))


def _retention_nll(result: EvalResult) -> float | None:
    return None if result.retention is None else result.retention.get("nll")


# -- a training run ----------------------------------------------------------------------------


def _run_task(run_dir: Path, config: Any) -> Task:
    """The run's task, rebuilt as it was trained (name or file, seed, options)."""
    try:
        return make_task(config.task, seed=config.task_seed, **config.task_kwargs)
    except UnknownNameError as exc:
        raise UnknownNameError(
            "task",
            config.task,
            exc.choices,
            hint=f"Run {str(run_dir)!r} was trained on it: a task registered in a script is "
            "known only there; evaluate from that script "
            "(rewardgym.evaluation.evaluate.evaluate_run), save the task as JSONL, or install "
            "it as a 'rewardgym.tasks' entry point.",
        ) from None


def _run_reward(config: Any, override: Any) -> Any:
    """The reward to score answers with: ``override``, else the run's own, checked now."""
    spec = config.reward if override is None else override
    try:
        resolve_reward(spec)
    except RewardGymError as exc:
        if override is not None:
            raise
        raise ConfigError(
            f"the run's reward {spec!r} cannot be built here ({exc}); pass --reward SPEC "
            "(reward= in Python) to score with another reward, or register it first"
        ) from None
    return spec


def eval_dir(run_dir: str | os.PathLike[str], reward: Any = None) -> Path:
    """Where ``evaluate_run`` writes by default: ``RUN/eval``, or, when the answers are scored
    with another reward than the run's, ``RUN/eval/reward-<name>`` beside it, so the run's own
    result is never written over.

    Example:
        >>> eval_dir("runs/a"), eval_dir("runs/a", "balanced")
        (PosixPath('runs/a/eval'), PosixPath('runs/a/eval/reward-balanced'))
    """
    base = Path(run_dir) / EVAL_DIR
    if reward is None:
        return base
    if isinstance(reward, str):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", reward).strip("._") or "custom"
    else:  # a composite or other spec: named by a short hash of its JSON
        text = json.dumps(reward, sort_keys=True, default=str)
        name = "spec-" + hashlib.sha1(text.encode()).hexdigest()[:10]
    return base / f"reward-{name}"


def evaluate_run(
    run_dir: str | os.PathLike[str],
    config: EvalConfig | None = None,
    *,
    reward: Any = None,
    device: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> EvalResult:
    """Evaluate a training run's latest complete checkpoint; write ``RUN_DIR/eval/<split>.*``.

    The policy is rebuilt from the run's ``config.json`` (model, task, dtype) and loaded with
    the checkpoint's weights; answers are scored with the run's reward on its task (same
    ``task_seed``), so reward figures match training.

    Args:
        run_dir: the ``--out`` folder of a ``rewardgym train`` run.
        config: the evaluation's options (None: ``EvalConfig()``); a ``max_new_tokens`` of None
            means the run's own.
        reward: score answers with this reward spec instead of the run's (e.g. one that was
            registered in the training script).
        device: torch device (None: the run's device setting).
        out_dir: where to write (default :func:`eval_dir`: ``RUN_DIR/eval``, or beside it for
            another ``reward``).

    Raises:
        RunDataError: ``run_dir`` is not a run (no ``config.json``) or its config is invalid.
        CheckpointError: the run has no complete checkpoint, or it does not fit the model.

    Example:
        >>> evaluate_run("runs/a", EvalConfig(noise=["word_drop"], severities=[0.1])).bleu
        38.7
    """
    from rewardgym.agents.runs import load_run_policy, read_run_config

    run_dir = Path(run_dir)
    run_config = read_run_config(run_dir)
    # Check the cheap options before loading the model.
    config = _checked_config(config)
    if config.max_new_tokens is None:
        config = config.replace(max_new_tokens=run_config.max_new_tokens)
    task = _run_task(run_dir, run_config)
    if config.retention_task is not None:
        _resolve_examples(config.retention_task, config.split, None)
    target = Path(out_dir) if out_dir is not None else eval_dir(run_dir, reward)
    reward = _run_reward(run_config, reward)
    policy, checkpoint, step = load_run_policy(run_dir, run_config, device)
    return evaluate(
        policy,
        task,
        config,
        reward=reward,
        out_dir=target,
        settings={
            "run_dir": str(run_dir),
            "model": run_config.model,
            "checkpoint": str(checkpoint),
            "checkpoint_step": step,
        },
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_summary(result: EvalResult, path: str | os.PathLike[str] | None = None) -> str:
    """A few plain lines for the terminal.

    Example:
        >>> print(format_summary(result))
        translate/test (500 examples): BLEU 41.20  chrF 60.11  exact 0.180 ...
    """
    lines = [
        f"{result.task}/{result.split} ({result.n_examples} examples): BLEU {_fmt(result.bleu)}  "
        f"chrF {_fmt(result.chrf)}  exact {_fmt(result.exact_match, 3)}  "
        f"finished {_fmt(result.finished_share, 3)}  tokens/sample "
        f"{_fmt(result.tokens_per_sample, 1)}",
    ]
    label = quality_label(result.metric)
    if result.metric != "bleu":
        lines.append(f"primary metric: {label} {_fmt(result.quality)} (0-100)")
    if result.reward is not None:
        lines.append(
            f"reward {result.reward['spec']}: mean total {_fmt(result.reward['total'], 4)}"
        )
    for kind, by_level in (result.noise_quality or result.noise).items():
        cells = "  ".join(f"{level}: {_fmt(value)}" for level, value in by_level.items())
        lines.append(f"{label} under {kind}: {cells}")
    if result.noise:
        lines.append(f"robustness R = {_fmt(result.robustness, 4)}")
    if result.retention is not None:
        lines.append(f"retention {result.retention['task']}: BLEU {_fmt(result.retention['bleu'])}")
    lines += [f"note: {note}" for note in result.notes]
    if path is not None:
        lines.append(f"saved {path}")
    return "\n".join(lines)
