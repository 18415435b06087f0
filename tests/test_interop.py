"""Rewards that carry over to TRL and verl, checked against rewardgym's own totals."""

from __future__ import annotations

import numpy as np
import pytest

from rewardgym.errors import ConfigError
from rewardgym.rewards import make_reward, to_trl, to_verl

PROMPTS = ["translate: a b =>", "translate: c d =>", "translate: e =>"]
COMPLETIONS = ["x y", "c d e f", ""]
KWARGS = {"references": ["x y", "d c", "e"], "n_tokens": [3, 5, 1], "finished": [True, False, True]}
SPEC = {"composite": {"bleu": 0.7, "speed": 0.2, "exact_match": 0.1}}


def _trl_total(funcs, weights) -> np.ndarray:
    """What TRL's GRPOTrainer pays: the weighted sum over functions, None counting as nothing
    (its nansum over the stacked rewards times reward_weights)."""
    rows = [[np.nan if v is None else v for v in f(PROMPTS, COMPLETIONS, **KWARGS)] for f in funcs]
    return np.nansum(np.asarray(rows) * np.asarray(weights)[:, None], axis=0)


@pytest.mark.parametrize("spec", [SPEC, "balanced", "exact_match"])
def test_trl_functions_and_weights_pay_what_rewardgym_pays(spec) -> None:
    funcs, weights = to_trl(spec)
    ours = make_reward(spec).score(PROMPTS, COMPLETIONS, **KWARGS).total
    np.testing.assert_allclose(_trl_total(funcs, weights), ours, atol=1e-12)
    assert len(set(f.__name__ for f in funcs)) == len(funcs)  # TRL logs rewards/<__name__>


def test_to_trl_names_components_and_refuses_schedules() -> None:
    funcs, weights = to_trl(SPEC)
    assert [f.__name__ for f in funcs] == ["bleu", "speed", "exact_match"]
    assert weights == [0.7, 0.2, 0.1]
    scheduled = {"composite": {"bleu": 0.8, "speed": {"schedule": "linear", "end": 0.4}}}
    with pytest.raises(ConfigError, match=r"follow a weight schedule; TRL's reward_weights"):
        to_trl(scheduled)


def test_verl_compute_score_is_the_total_of_one_sample() -> None:
    compute_score = to_verl(SPEC)
    reward = make_reward(SPEC)
    for i, completion in enumerate(COMPLETIONS):
        info = {"prompt": PROMPTS[i], "n_tokens": KWARGS["n_tokens"][i],
                "finished": KWARGS["finished"][i]}  # fmt: skip
        expected = reward.score(
            [PROMPTS[i]], [completion], **{k: [v[i]] for k, v in KWARGS.items()}
        ).total[0]
        score = compute_score("translate", completion, KWARGS["references"][i], info)
        assert isinstance(score, float) and score == pytest.approx(expected, abs=1e-12)
    assert to_verl("exact_match")("arith", "7", "7") == 1.0
