"""Collapse early-warning monitors: trainer callbacks that watch for the signs of a failing run.

Each monitor is an :class:`~rewardgym.agents.callbacks.Callback` with a configurable threshold and
an ``action`` taken when it fires (docs/usage.md, "Monitors"):

============================  ======================  ============================================
monitor (``name``)            signal, when measured   default alert
============================  ======================  ============================================
``gradient_spike``            global grad norm,       > 1.5 × running median of earlier updates
                              before the step
``entropy``                   per-token entropy of    > 4.3 bits (instability) or < 0.05 bits
                              the batch, before step  (collapse)
``norm_drift``                per-matrix weight norm  > 10 % vs the start, or > 15 % within 10
                                                      updates
``attention_reversal``        centred attention on a  > 20 % of the scores changed sign since the
                              fixed probe batch       start
``spectral_spread``           top-10 singular values  ratio σ1/σ10 > 1.5 × its start value, or > 10
                              of every weight matrix
``saturation``                share of near-zero      < 2 % in some matrix
                              weights
``reward_hacking``            held-out evaluations    proxy reward up and quality down beyond
                                                      margins over the last 3 evaluations
============================  ======================  ============================================

Every alert goes through ``ctx.alert`` (update index, value, threshold, message, action), so the
trainer writes it to ``metrics.jsonl`` with the update's record.

Actions and when they apply:

* ``log``: record the alert only.
* ``skip``: do not apply this update's optimizer step. Only pre-step signals (gradient spike,
  entropy) can skip; the others see the weights after steps already taken, so for them ``skip``
  is rejected with a :class:`~rewardgym.errors.ConfigError`.
* ``pause``: stop the run cleanly (the trainer checkpoints and returns). When the alert fires
  before the step, the step is skipped too, so the checkpoint holds the weights that raised it.
* ``rollback``: restore the last checkpoint. Pre-step monitors return ``"rollback"`` at once;
  an alert raised after the step (an evaluation) asks for it at the next ``on_before_step``.
  The trainer counts the update's training compute as waste.

Weight-state monitors (norm drift, attention, spectra, saturation) measure the weights entering
update ``u`` (after ``u`` optimizer steps) in ``on_before_step``, so their alerts land in update
``u``'s record and a rollback needs no deferral. The costly ones run every ``every`` updates.

Every monitor's memory (alert count, histories, reference state from the start of the run)
comes out of ``state_dict`` and goes back in with ``load_state_dict``; the trainer keeps it in
each checkpoint, so a resumed run compares against the run's real start, not the resumed weights.

Example:
    >>> from rewardgym.agents.trainer import train
    >>> monitors = make_monitors({"gradient_spike": {"action": "skip"}, "entropy": {}})
    >>> result = train(config, callbacks=monitors)
"""

from rewardgym.evaluation.monitors.base import ACTIONS, Finding, Monitor, register_monitor
from rewardgym.evaluation.monitors.drift import (
    AdvantageConcentrationMonitor,
    EntropySlopeMonitor,
    KLAccelerationMonitor,
    LengthDriftMonitor,
    RewardLengthCorrelationMonitor,
    SampleQualityDropMonitor,
)
from rewardgym.evaluation.monitors.hacking import RewardHackingMonitor
from rewardgym.evaluation.monitors.offline import alerts_in_log
from rewardgym.evaluation.monitors.registry import (
    BUILTIN_MONITORS,
    MONITORS,
    default_monitors,
    make_monitor,
    make_monitors,
)
from rewardgym.evaluation.monitors.signals import EntropyMonitor, GradientSpikeMonitor
from rewardgym.evaluation.monitors.weights import (
    AttentionReversalMonitor,
    NormDriftMonitor,
    SaturationMonitor,
    SpectralSpreadMonitor,
    top_singular_ratio,
)

__all__ = [
    "ACTIONS",
    "AdvantageConcentrationMonitor",
    "EntropySlopeMonitor",
    "KLAccelerationMonitor",
    "LengthDriftMonitor",
    "RewardLengthCorrelationMonitor",
    "SampleQualityDropMonitor",
    "alerts_in_log",
    "BUILTIN_MONITORS",
    "MONITORS",
    "AttentionReversalMonitor",
    "EntropyMonitor",
    "Finding",
    "GradientSpikeMonitor",
    "Monitor",
    "NormDriftMonitor",
    "RewardHackingMonitor",
    "SaturationMonitor",
    "SpectralSpreadMonitor",
    "default_monitors",
    "make_monitor",
    "make_monitors",
    "top_singular_ratio",
    "register_monitor",
]
