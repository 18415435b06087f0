"""What every number in a study report means (docs/definitions.md), as data.

Both report formats render these same entries, so the Markdown and HTML reports can never
disagree about a definition. Each headline metric's source file and field is in its row of
``report.metrics.HEADLINE``.

Example:
    >>> DEFINITIONS[0].term
    'BLEU'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Definition:
    """One defined term: its name and what it means, in words and formulas."""

    term: str
    text: str


DEFINITIONS: tuple[Definition, ...] = (
    Definition(
        "BLEU",
        "sacrebleu corpus BLEU (default 13a tokenisation) over the test split, 0–100; chrF "
        "beside it. Each run saves its test hypotheses and references as plain text, so "
        "`sacrebleu refs.txt -i hyps.txt` gives the same figure. Every quality metric reads "
        "the answer of a completion as its task reads it (the text after its last `answer:` by "
        "default; the last number for arithmetic), while token counts read everything.",
    ),
    Definition(
        "Primary metric",
        "Each task names the quality metric its headline and improvement rows use: BLEU "
        "(translate, summarize), exact match in percent (arithmetic, whose one-number "
        "references leave corpus BLEU degenerate) or chrF. Where it is not BLEU the report adds "
        "its own improvement and final rows, named after it, above the BLEU rows. An evaluation "
        "notes when corpus BLEU is degenerate: most references shorter than 4 tokens, or no "
        "4-gram matched while chrF is at least 50.",
    ),
    Definition(
        "BLEU improvement (%)",
        "(BLEU_after − BLEU_before) / BLEU_before × 100, where 'before' means the starting "
        "policy on the same split. Undefined (n/a) when BLEU_before is 0.",
    ),
    Definition(
        "Noise robustness",
        "For each noise type n and severity s, B(n,s) is the primary metric on the test split "
        "with noisy "
        "prompts. Robustness ratio R = mean over (n,s) of B(n,s) / B_clean. Robustness change "
        "(%) = (R_after / R_before − 1) × 100: negative means training made the agent more "
        "brittle. Noise is seeded and deterministic; severity is the fraction of characters "
        "(or words) touched. R is undefined when B_clean < 10 points: the ratio would "
        "measure noise in near-empty output (a collapsed agent's).",
    ),
    Definition(
        "Gradient variance",
        "Each update's batch is split into K ≥ 4 equal micro-batches with gradients g_1..g_K. "
        "ḡ = mean g_k; σ² = Σ‖g_k − ḡ‖² / (K − 1); normalised variance ν = σ² / ‖ḡ‖² "
        "(scale-free, so schemes with different reward scales compare fairly), computed from "
        "running sums during gradient accumulation. A run reports the median ν over the "
        "updates with a gradient (ḡ ≠ 0); it is undefined when fewer than half of the updates "
        "had one (a collapsed agent whose samples all score the same). Gradient variance "
        "change (%) of a scheme = (ν_scheme / ν_baseline − 1) × 100 against the study's "
        "baseline scheme, seed by seed on the same task.",
    ),
    Definition(
        "Compute (FLOPs)",
        "2·N per token through a forward pass (generation, prompt included; reference and "
        "old-policy passes), 6·N per token trained, N = the model's parameter count (a tied "
        "embedding counted once, as the output projection). Compute waste (%) = wasted / total, "
        "wasted = FLOPs on padding positions + FLOPs on samples whose advantage is exactly zero "
        "(no learning signal) + FLOPs of updates that monitors skipped or rolled back. FLOPs "
        "per point gained = total training FLOPs / (Q_after − Q_before), Q the task's primary "
        "metric (BLEU unless the task names another), undefined when nothing was gained.",
    ),
    Definition(
        "Entropy",
        "Mean per-token entropy of the sampling distribution over generated tokens, in bits "
        "(the headline figure averages the last fifth of the training updates).",
    ),
    Definition(
        "Completion length",
        "Mean completion length in tokens on the test split after training (greedy decoding, "
        "end-of-sequence token not counted).",
    ),
    Definition(
        "Monitor alerts",
        "Number of alerts the collapse monitors raised during training (gradient spike, "
        "entropy, norm drift, attention sign reversal, spectral spread, saturation, reward "
        "hacking, numerical faults), each with its update, value and threshold.",
    ),
    Definition(
        "Forgetting (%)",
        "(score_before − score_after) / score_before × 100 on a retention set the agent was not "
        "trained on with RL (a second task from the warm start), score = the retention task's "
        "primary metric on the evaluation split; n/a when the study sets no retention task. "
        "Runs also log it while they train (eval/retention_quality on the retention task's "
        "first eval_examples validation examples): the forgetting plot.",
    ),
    Definition(
        "Retention NLL change",
        "Mean per-token negative log-likelihood (nats) of the retention task's references "
        "given their prompts (teacher-forced), after training − before: how much less likely "
        "the agent finds the right answers, whatever it generates (positive: it lost them).",
    ),
    Definition(
        "Mitigation compute",
        "FLOPs of replay (6·N per supervised position) and of the KL reference's forward "
        "passes (2·N per position), as a share (%) of the run's total FLOPs.",
    ),
    Definition(
        "Gradient-norm spikes",
        "Alerts of the gradient_spike monitor over the run: updates whose global gradient norm "
        "exceeded its factor (default 2) × the running median of the earlier updates' norms.",
    ),
    Definition(
        "Statistics",
        "Every scheme runs several seeds. A cell gives the mean over seeds and a 95 % "
        "percentile bootstrap confidence interval of the mean (10,000 resamples, seed 0; "
        "`rewardgym.evaluation.stats.bootstrap_ci`) where at least 3 seeds have a value "
        "(with 2, the cell gives their range instead: an interval of two values is only that), "
        "the interquartile mean (IQM) where seeds ≥ 5, and n, the number of seeds with a "
        "defined value. P(beats baseline) is the "
        "share of (scheme seed, baseline seed) pairs in which the scheme is better, ties "
        "counting half.",
    ),
)
