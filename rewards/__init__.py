"""rewardgym.rewards."""
