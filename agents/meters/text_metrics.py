"""Text metrics as thin, exact wrappers over sacrebleu (docs/definitions.md).

Every corpus figure equals what the sacrebleu command line prints for the files that
``write_hyps_refs`` writes: ``sacrebleu test.refs.txt -i test.hyps.txt -m bleu chrf``. To make
that hold for any text, each text is first put on one line exactly as it is written to those
files: line breaks (``\\r\\n``, ``\\r``, ``\\n``) become spaces and trailing whitespace is
dropped (the CLI reads files line by line and strips each line's end).

Example:
    >>> round(corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 2)
    100.0
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sacrebleu

from rewardgym.errors import ConfigError
from rewardgym.fileio import write_text_atomic

__all__ = [
    "CorpusScores",
    "bleu_degeneracy",
    "corpus_bleu",
    "corpus_chrf",
    "corpus_exact_match",
    "corpus_scores",
    "exact_match",
    "exact_match_rate",
    "mean_entropy_bits",
    "one_line",
    "sentence_bleu",
    "sentence_chrf",
    "write_hyps_refs",
]


def one_line(text: str) -> str:
    """Return ``text`` as the single line it is written as: line breaks → spaces, right-stripped.

    Example:
        >>> one_line("two\\nlines  ")
        'two lines'
    """
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ").rstrip()


def _pair(hyps: Sequence[str], refs: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(hyps, str) or isinstance(refs, str):
        raise ConfigError(
            "hyps and refs must be lists of strings, got a single str; wrap one text in a list"
        )
    if len(hyps) != len(refs):
        raise ConfigError(
            f"got {len(hyps)} hypotheses but {len(refs)} references; pass one reference per "
            "hypothesis, in the same order"
        )
    if not hyps:
        raise ConfigError("no hypotheses to score; pass at least one (hypothesis, reference) pair")
    for i, text in enumerate((*hyps, *refs)):
        if not isinstance(text, str):
            which = "hypothesis" if i < len(hyps) else "reference"
            raise ConfigError(f"{which} {i % len(hyps)} is {text!r}, not a str")
    return [one_line(h) for h in hyps], [one_line(r) for r in refs]


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Return sacrebleu corpus BLEU (13a tokenisation, 0–100) with one reference per hypothesis.

    Example:
        >>> round(corpus_bleu(["the cat sat on a mat"], ["the cat sat on the mat"]), 2)
        53.73
    """
    h, r = _pair(hyps, refs)
    return float(sacrebleu.corpus_bleu(h, [r]).score)


def corpus_chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Return sacrebleu corpus chrF (character 6-grams, β = 2, 0–100).

    Example:
        >>> corpus_chrf(["abc"], ["abc"])
        100.0
    """
    h, r = _pair(hyps, refs)
    return float(sacrebleu.corpus_chrf(h, [r]).score)


@dataclass(frozen=True)
class CorpusScores:
    """The corpus metrics of one set of answers, each computed once (all 0–100).

    Attributes:
        bleu: sacrebleu corpus BLEU; ``bleu_4gram_matches`` is its matched 4-gram count.
        chrf: sacrebleu corpus chrF.
        exact_match: the share of answers equal to their reference, in percent.
    """

    bleu: float
    chrf: float
    exact_match: float
    bleu_4gram_matches: int


def corpus_scores(hyps: Sequence[str], refs: Sequence[str]) -> CorpusScores:
    """BLEU, chrF and exact match of ``hyps`` against ``refs``, one pass of each.

    Example:
        >>> corpus_scores(["7", "12"], ["7", "13"]).exact_match
        50.0
    """
    h, r = _pair(hyps, refs)
    bleu = sacrebleu.corpus_bleu(h, [r])
    chrf = float(sacrebleu.corpus_chrf(h, [r]).score)
    return CorpusScores(float(bleu.score), chrf, corpus_exact_match(hyps, refs), bleu.counts[3])


def bleu_degeneracy(refs: Sequence[str], scores: CorpusScores) -> str | None:
    """Why corpus BLEU says little about these texts, or None when it is meaningful.

    BLEU is a geometric mean up to 4-grams: with most references under 4 tokens, or no 4-gram
    matched at all while chrF is high, it reads near 0 for answers that are right.

    Example:
        >>> bleu_degeneracy(["7", "12"], corpus_scores(["7", "12"], ["7", "12"]))
        'most references are shorter than 4 tokens (median 1)'
    """
    lengths = sorted(len(one_line(ref).split()) for ref in refs)
    median = lengths[len(lengths) // 2]
    if median < 4:
        return f"most references are shorter than 4 tokens (median {median})"
    if scores.bleu_4gram_matches == 0 and scores.chrf >= 50:
        return f"no 4-gram of any answer matches its reference while chrF is {scores.chrf:.1f}"
    return None


def sentence_bleu(hyp: str, ref: str) -> float:
    """Return sacrebleu sentence BLEU (with its default exponential smoothing), 0–100.

    Example:
        >>> round(sentence_bleu("a b c d", "a b c d"), 2)
        100.0
    """
    (h,), (r,) = _pair([hyp], [ref])
    return float(sacrebleu.sentence_bleu(h, [r]).score)


def sentence_chrf(hyp: str, ref: str) -> float:
    """Return sacrebleu sentence chrF, 0–100.

    Example:
        >>> sentence_chrf("", "abc")
        0.0
    """
    (h,), (r,) = _pair([hyp], [ref])
    return float(sacrebleu.sentence_chrf(h, [r]).score)


def exact_match(hyp: str, ref: str) -> bool:
    """Return whether ``hyp`` equals ``ref`` after stripping surrounding whitespace.

    Example:
        >>> exact_match(" 42\\n", "42")
        True
    """
    return hyp.strip() == ref.strip()


def exact_match_rate(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Return the share (0–1) of hypotheses equal to their reference (surrounding space ignored).

    Example:
        >>> exact_match_rate(["4", "5"], ["4", "6"])
        0.5
    """
    return _match_count(hyps, refs) / len(hyps)


def _match_count(hyps: Sequence[str], refs: Sequence[str]) -> int:
    _pair(hyps, refs)
    return sum(exact_match(h, r) for h, r in zip(hyps, refs, strict=True))


def corpus_exact_match(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Return the exact-match rate on the 0–100 scale of BLEU and chrF.

    Example:
        >>> corpus_exact_match(["4", "5"], ["4", "6"])
        50.0
    """
    # counted, not 100 * rate: 100 * 0.29 is 28.999999999999996
    return 100.0 * _match_count(hyps, refs) / len(hyps)


def mean_entropy_bits(entropies: Sequence[Sequence[float] | np.ndarray]) -> float:
    """Return the mean per-token entropy in bits over all generated tokens of all samples.

    Tokens are weighted equally (a long completion counts more than a short one). With no tokens
    at all (every completion empty) the mean is undefined and ``nan`` is returned.

    Args:
        entropies: one array per sample, the entropy (bits) of each generated token.

    Example:
        >>> mean_entropy_bits([np.array([1.0, 2.0]), np.array([3.0]), np.array([])])
        2.0
    """
    arrays = [np.asarray(e, dtype=np.float64).reshape(-1) for e in entropies]
    n_tokens = sum(a.size for a in arrays)
    if n_tokens == 0:
        return float("nan")
    return float(sum(a.sum() for a in arrays) / n_tokens)


def _write_lines(path: Path, lines: list[str]) -> None:
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def write_hyps_refs(
    directory: str | os.PathLike[str],
    hyps: Sequence[str],
    refs: Sequence[str],
    stem: str = "test",
) -> tuple[Path, Path]:
    """Write hypotheses and references one per line, UTF-8, each file replaced atomically.

    Each text goes through ``one_line`` (line breaks → spaces, trailing whitespace dropped), so
    ``sacrebleu REF -i HYP`` on the two files gives exactly ``corpus_bleu(hyps, refs)``.

    Args:
        directory: where to write (created if missing).
        hyps: the model outputs.
        refs: one reference per output.
        stem: file name stem: ``{stem}.hyps.txt`` and ``{stem}.refs.txt``.

    Returns:
        ``(hyp_path, ref_path)``.

    Example:
        >>> import tempfile
        >>> hyp_path, ref_path = write_hyps_refs(tempfile.mkdtemp(), ["a\\nb"], ["a b"])
        >>> hyp_path.read_text()
        'a b\\n'
    """
    h, r = _pair(hyps, refs)
    if not stem or os.sep in stem or (os.altsep and os.altsep in stem):
        raise ConfigError(f"stem must be a plain file name part, got {stem!r}; e.g. 'test'")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    hyp_path, ref_path = out / f"{stem}.hyps.txt", out / f"{stem}.refs.txt"
    _write_lines(hyp_path, h)
    _write_lines(ref_path, r)
    return hyp_path, ref_path
