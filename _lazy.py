"""Importing on demand: lazy attributes for package ``__init__`` modules (PEP 562), and a
user's own modules named in specs (``myrewards:fn``).

Packages list their public names and the module defining each; a name is imported on first
access, so importing a package does not pull in torch or transformers until they are needed.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any


def lazy_getattr(
    package: str, exports: dict[str, str], modules: dict[str, str] | None = None
) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that imports ``exports[name]`` and returns its ``name``,
    or, for a name in ``modules``, returns that module itself.

    Example:
        >>> __getattr__ = lazy_getattr(__name__, {"train": "rewardgym.agents.trainer"})
    """

    def __getattr__(name: str) -> Any:
        if modules and name in modules:
            return importlib.import_module(modules[name])
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__


def import_user_module(name: str) -> Any:
    """Import module ``name`` with the current directory first on ``sys.path``, as
    ``python -m`` does, so a user's ``myrewards.py`` beside them is found without PYTHONPATH.

    Example:
        >>> import_user_module("json").__name__
        'json'
    """
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
