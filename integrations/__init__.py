"""rewardgym's measurements inside other trainers (``rewardgym.integrations.trl``)."""
