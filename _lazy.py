"""Lazy attribute loading for package ``__init__`` modules (PEP 562).

Packages list their public names and the module defining each; a name is imported on first
access, so importing a package does not pull in torch or transformers until they are needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that imports ``exports[name]`` and returns its ``name``.

    Example:
        >>> __getattr__ = lazy_getattr(__name__, {"train": "rewardgym.agents.trainer"})
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
