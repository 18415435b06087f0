"""Shared fixtures. Tests never touch the user's cache: REWARDGYM_CACHE points at a session dir
unless the caller set it (CI reuses one cache across the suite so the tiny model trains once)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("REWARDGYM_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache"))


@pytest.fixture(autouse=True)
def _no_hub_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a model hub: this machine has no network, and CI must not need one."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
