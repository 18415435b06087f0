"""rewardgym.evaluation."""
