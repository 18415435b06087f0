"""Text metrics: equality with the sacrebleu CLI, file writing, entropy, exact match, errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rewardgym.agents.meters.text_metrics import (
    corpus_bleu,
    corpus_chrf,
    exact_match,
    exact_match_rate,
    mean_entropy_bits,
    one_line,
    sentence_bleu,
    sentence_chrf,
    write_hyps_refs,
)
from rewardgym.errors import ConfigError

SACREBLEU = Path(sys.executable).with_name("sacrebleu")

# awkward on purpose: line breaks inside a text, trailing spaces, tabs, unicode, punctuation,
# an empty hypothesis, and a carriage return.
HYPS = [
    "kato-n runa dogi-s vidi-ta .",
    "the red dog\nsaw a cat   ",
    "",
    "Größe: 12,5 % — «ok»!\t",
    "a\r\nb c\rd",
    "the quick brown fox jumps over the lazy dog",
]
REFS = [
    "kato-n runa dogi-s vidi-ta.",
    "the red dogs saw a cat",
    "something was expected here",
    "Größe: 12,5 % — «ok» !",
    "a b c d",
    "the quick brown fox jumped over the lazy dog",
]


@pytest.mark.skipif(not SACREBLEU.exists(), reason="sacrebleu CLI not installed beside python")
def test_sacrebleu_cli_reproduces_corpus_scores_exactly(tmp_path: Path) -> None:
    hyp_path, ref_path = write_hyps_refs(tmp_path, HYPS, REFS)
    out = subprocess.run(
        [str(SACREBLEU), str(ref_path), "-i", str(hyp_path), "-m", "bleu", "chrf"]
        + ["-b", "-w", "16"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    cli_bleu, cli_chrf = (float(x) for x in json.loads(out))
    bleu, chrf = corpus_bleu(HYPS, REFS), corpus_chrf(HYPS, REFS)
    assert 1.0 < bleu < 100.0  # a non-trivial score, so equality means something
    assert cli_bleu == bleu  # 16 decimals of a score >= 1 round-trip the float exactly
    assert cli_chrf == chrf


def test_written_files_have_one_line_per_sample(tmp_path: Path) -> None:
    hyp_path, ref_path = write_hyps_refs(tmp_path / "eval", HYPS, REFS, stem="val")
    assert hyp_path.name == "val.hyps.txt" and ref_path.name == "val.refs.txt"
    raw = hyp_path.read_bytes().decode("utf-8")
    assert raw.endswith("\n")
    lines = raw.split("\n")[:-1]
    assert lines == [one_line(h) for h in HYPS]
    assert lines[1] == "the red dog saw a cat" and lines[2] == "" and lines[4] == "a b c d"
    assert ref_path.read_text(encoding="utf-8").count("\n") == len(REFS)
    assert sorted(p.name for p in hyp_path.parent.iterdir()) == ["val.hyps.txt", "val.refs.txt"]


def test_rewrite_replaces_files(tmp_path: Path) -> None:
    write_hyps_refs(tmp_path, ["old"] * 3, ["old"] * 3)
    hyp_path, _ = write_hyps_refs(tmp_path, ["new"], ["new"])
    assert hyp_path.read_text() == "new\n"
    assert len(list(tmp_path.iterdir())) == 2  # no temporary files left behind


def test_known_scores() -> None:
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(
        100.0
    )
    # precisions 5/6, 3/5, 2/4, 1/3, no brevity penalty: BLEU = (1/12)^(1/4) × 100
    one_off = corpus_bleu(["the cat sat on a mat"], ["the cat sat on the mat"])
    assert one_off == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25 * 100, abs=1e-9)
    assert corpus_bleu([""], ["nothing matches"]) == 0.0
    assert corpus_chrf(["abc"], ["abc"]) == pytest.approx(100.0)
    assert sentence_bleu("a b c d", "a b c d") == pytest.approx(100.0)
    assert sentence_chrf("", "abc") == 0.0
    assert 0.0 < sentence_chrf("the cat", "the cats") < 100.0


def test_exact_match() -> None:
    assert exact_match(" 42\n", "42")
    assert not exact_match("42.0", "42")
    assert exact_match_rate(["4", " 5 ", "x"], ["4", "5", "y"]) == pytest.approx(2 / 3)


def test_mean_entropy_bits_is_token_weighted() -> None:
    assert mean_entropy_bits([np.array([1.0, 1.0, 1.0]), [4.0]]) == pytest.approx(7 / 4)
    assert mean_entropy_bits([np.zeros((0,)), np.array([2.5])]) == 2.5
    assert math.isnan(mean_entropy_bits([np.array([]), []]))
    assert math.isnan(mean_entropy_bits([]))


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"got 2 hypotheses but 1 references"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ConfigError, match=r"no hypotheses to score"):
        corpus_chrf([], [])
    with pytest.raises(ConfigError, match=r"lists of strings, got a single str"):
        corpus_bleu("a b", "a b")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"reference 1 is None, not a str"):
        exact_match_rate(["a", "b"], ["a", None])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"stem must be a plain file name part, got 'a/b'"):
        write_hyps_refs(tmp_path, ["a"], ["a"], stem="a/b")


def test_every_builtin_metric_a_task_may_name_is_computed() -> None:
    from rewardgym.agents.meters.text_metrics import corpus_scores
    from rewardgym.envs.tasks import BUILTIN_QUALITY_METRICS, get_quality_metric

    hyps, refs = ["a b c d e", "x y z w v"], ["a b c d e", "x y z w q"]
    scores = corpus_scores(hyps, refs)
    assert (scores.bleu, scores.chrf) == (corpus_bleu(hyps, refs), corpus_chrf(hyps, refs))
    assert scores.exact_match == 50.0 and scores.bleu_4gram_matches > 0
    values = {m: get_quality_metric(m).value(hyps, refs, scores) for m in BUILTIN_QUALITY_METRICS}
    assert values == {"bleu": scores.bleu, "chrf": scores.chrf, "exact_match": 50.0}


def test_exact_match_percentage_is_counted_not_scaled() -> None:
    from rewardgym.agents.meters.text_metrics import corpus_exact_match

    hyps = ["7"] * 29 + ["8"] * 71
    assert corpus_exact_match(hyps, ["7"] * 100) == 29.0  # 100 * 0.29 would be 28.999...
