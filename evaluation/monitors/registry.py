"""Monitors by name: the registry, building them from config, and the default set."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rewardgym._lazy import import_user_module
from rewardgym.errors import ConfigError, UnknownNameError, did_you_mean

# importing the families registers their monitors (each class is @register_monitor'ed)
from rewardgym.evaluation.monitors import drift, hacking, signals, weights
from rewardgym.evaluation.monitors.base import MONITORS, Monitor, register_monitor

#: the built-in monitors, in the order default_monitors builds them: pre-step signals, weight
#: state, gold-free hacking detectors, then evaluations (within a family, in the order its
#: module defines them)
BUILTIN_MONITORS = tuple(
    name
    for family in (signals, weights, drift, hacking)
    for name, cls in MONITORS.items()
    if cls.__module__ == family.__name__
)

# -- building monitors from config ------------------------------------------------------------


def _resolve(name: str) -> type[Monitor]:
    """The class registered as ``name``, or the class a ``"module:Class"`` spec names."""
    if name not in MONITORS and isinstance(name, str) and ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(import_user_module(module), attr, None)
        except Exception as exc:  # a user's module may fail in any way; say which and why
            raise ConfigError(
                f"cannot import module {module!r} for monitor {name!r}: {type(exc).__name__}: {exc}"
            ) from None
        if cls is None:
            raise ConfigError(f"module {module!r} has no class {attr!r} (monitor {name!r})")
        return register_monitor(cls)
    if name not in MONITORS:
        raise UnknownNameError(
            "monitor", name, MONITORS, hint="Or name your own as 'module:Class'."
        )
    return MONITORS[name]


def make_monitor(name: str, options: Mapping[str, Any] | None = None) -> Monitor:
    """One monitor by name, its options checked by name.

    Raises:
        UnknownNameError: ``name`` is not in :data:`MONITORS`.
        ConfigError: an option the monitor does not take, or a bad value.

    Example:
        >>> make_monitor("entropy", {"max_bits": 4.0}).max_bits
        4.0
    """
    cls = _resolve(name)
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise ConfigError(
            f"options of monitor {name!r} must be a mapping of option to value, got {options!r}"
        )
    valid = [p for p in inspect.signature(cls).parameters if p not in ("self",)]
    for key in options:
        if key not in valid:
            raise ConfigError(
                f"monitor {name!r} has no option {key!r}.{did_you_mean(str(key), valid)} "
                f"Valid options: {', '.join(valid)}."
            )
    return cls(**options)


def make_monitors(config: Mapping[str, Any] | Sequence[Any] | None) -> list[Monitor]:
    """Monitors from a config: a mapping ``{name: options}``, a list of names or one-key mappings.

    An options value of ``None``/``True``/``{}`` means the defaults; ``False`` leaves the
    monitor out. Unknown monitor names and options are rejected by name.

    Raises:
        UnknownNameError: an unknown monitor name (or action).
        ConfigError: an unknown option, a bad value or a malformed config.

    Example:
        >>> monitors = make_monitors({"gradient_spike": {"factor": 1.5, "action": "skip"},
        ...                           "entropy": None, "saturation": False})
        >>> [m.name for m in monitors]
        ['gradient_spike', 'entropy']
    """
    if config is None:
        return []
    if isinstance(config, Mapping):
        items: Iterable[tuple[Any, Any]] = config.items()
    elif isinstance(config, Sequence) and not isinstance(config, str):
        items = [_list_entry(entry) for entry in config]
    else:
        raise ConfigError(
            f"monitors config must be a mapping {{name: options}} or a list of names, "
            f"got {config!r}"
        )
    monitors = []
    for name, options in items:
        if options is False:
            continue
        monitors.append(make_monitor(name, None if options is True else options))
    return monitors


def _list_entry(entry: Any) -> tuple[Any, Any]:
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, Mapping) and len(entry) == 1:
        return next(iter(entry.items()))
    raise ConfigError(
        f"a monitors list entry must be a name or a one-key mapping {{name: options}}, "
        f"got {entry!r}"
    )


#: named threshold sets: ``calibrated`` (the defaults, chosen by the hacking benchmark on
#: healthy runs) and ``source`` (the thresholds of the design rewardgym started from, which
#: alerted on 75 % of healthy runs: docs/results/hacking.md)
MONITOR_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "calibrated": {},
    "source": {"gradient_spike": {"factor": 1.5}},
}


def default_monitors(
    action: str = "log", preset: str = "calibrated", **overrides: Mapping[str, Any] | bool
) -> list[Monitor]:
    """The built-in monitors with their default thresholds (docs/usage.md, "Monitors"); an
    opt-in one (``kl_acceleration``, which needs ``measure_kl``; ``advantage_concentration``, too
    noisy on healthy runs to be on by default) only when named in ``overrides``.

    Args:
        action: the action of every monitor, unless its override says otherwise.
        preset: the thresholds: ``calibrated`` (the defaults) or ``source``
            (:data:`MONITOR_PRESETS`); overrides win over it.
        **overrides: per monitor name, a mapping of options (``False`` leaves it out).

    Raises:
        UnknownNameError: an override for an unknown monitor, or an unknown action.
        ConfigError: ``action`` is one a monitor cannot take (``skip`` for post-step signals:
            give those an action in their override), or a bad option.

    Example:
        >>> monitors = default_monitors(gradient_spike={"action": "skip"}, attention_reversal=False)
        >>> len(monitors)
        6
    """
    for name in overrides:
        if name not in BUILTIN_MONITORS:
            raise UnknownNameError("monitor", name, BUILTIN_MONITORS)
    if preset not in MONITOR_PRESETS:
        raise UnknownNameError("monitor preset", preset, MONITOR_PRESETS)
    config: dict[str, Any] = {}
    for name in BUILTIN_MONITORS:
        if MONITORS[name].opt_in and name not in overrides:
            continue
        extra = overrides.get(name, {})
        if extra is False:
            continue
        if extra is True:
            extra = {}
        if not isinstance(extra, Mapping):
            raise ConfigError(f"override of monitor {name!r} must be a mapping, got {extra!r}")
        config[name] = {"action": action, **MONITOR_PRESETS[preset].get(name, {}), **extra}
    return make_monitors(config)
