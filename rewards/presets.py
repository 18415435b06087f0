"""Preset reward schemes (composites) that studies contrast.

- ``speed_only`` = speed: pays for finishing fast; the empty completion wins it (the exploit a
  study wants to expose).
- ``task_only`` = bleu: task quality with partial credit.
- ``balanced`` = 0.25·completion + 0.6·fidelity + 0.15·speed: finishing and fidelity to the
  reference dominate, a small speed term breaks ties towards shorter answers. Fidelity is MiniLM
  similarity on English references and chrF elsewhere (MiniLM reads only English). On
  translate-like data the reference beats every canned exploit (empty, first half of the
  reference, prompt copied, random words): the speed term can add at most 0.15, while the
  fidelity term of an exploit loses far more than that.

Weights are configurable: ``make_reward("balanced", speed=0.2)``.

Example:
    >>> from rewardgym.rewards import make_reward
    >>> make_reward("balanced").component_names
    ['completion', 'fidelity', 'speed']
"""

from __future__ import annotations

from rewardgym.rewards.registry import register_composite

PRESETS: dict[str, dict[str, float]] = {
    "speed_only": {"speed": 1.0},
    "task_only": {"bleu": 1.0},
    "balanced": {"completion": 0.25, "fidelity": 0.6, "speed": 0.15},
}

_DOCS = {
    "speed_only": "speed alone: finish fast (the empty completion wins)",
    "task_only": "bleu alone: task quality with partial credit",
    "balanced": "finish + fidelity (MiniLM on English, chrF elsewhere), with a small speed term",
}

for _name, _weights in PRESETS.items():
    register_composite(_name, _weights, doc=_DOCS[_name])
