"""The reward registry: register, look up and build rewards by name or spec.

Modelled on Gymnasium's ``envs/registration.py``: a small frozen :class:`RewardSpec` per name,
:func:`register_reward`, :func:`make_reward`, :func:`reward_spec`, :func:`list_rewards` and a
pretty printer, :func:`describe_rewards`. Plugins declare an entry point in the group
``rewardgym.rewards`` (``name = "package.module:function_or_class"``); they are read lazily, the
first time a name is not found (or the registry is listed), never at import.

A ``"package.module:function"`` spec imports that module: this runs its code, by design (a study
config is code). Entry points are the preferred way to ship reward plugins.

Example:
    >>> @register_reward("shorter_is_better", needs_references=False)
    ... def shorter_is_better(prompts, completions, **kwargs):
    ...     '''r = 1 / (1 + n_tokens)'''
    ...     return [1.0 / (1 + n) for n in kwargs["n_tokens"]]
    >>> make_reward("shorter_is_better")(["p"], ["a b"])
    [0.3333333333333333]
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from rewardgym._lazy import import_user_module
from rewardgym.errors import ConfigError, UnknownNameError, did_you_mean
from rewardgym.rewards.base import Reward, RewardFn, Term, check_on_error, weighted_formula
from rewardgym.rewards.schedules import SCHEDULE_KEYS, WeightSchedule

ENTRY_POINT_GROUP = "rewardgym.rewards"
_UNKNOWN_HINT = (
    "Register one with @register_reward, pass 'package.module:function', or install a plugin "
    f"with a {ENTRY_POINT_GROUP!r} entry point."
)

Kind = Literal["function", "class", "composite"]
T = TypeVar("T")


@dataclass(frozen=True)
class RewardSpec:
    """What the registry knows about one reward.

    Attributes:
        name: the registered name.
        entry_point: the function, the class (built with ``**kw`` by :func:`make_reward`), or
            for a composite the mapping component -> weight (or ``{"weight": w, **params}``).
        kind: ``"function"``, ``"class"`` or ``"composite"``.
        doc: the docstring; its first line is the formula.
        needs_references: whether the reward compares against references.
    """

    name: str
    entry_point: Any
    kind: Kind
    doc: str = ""
    needs_references: bool = True

    @property
    def formula(self) -> str:
        """The first line of the docstring, or for a composite its weighted sum."""
        if self.kind == "composite":
            pairs = [(k, _split_value(self.name, k, v)[0]) for k, v in self.entry_point.items()]
            return weighted_formula(pairs)
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


_REGISTRY: dict[str, RewardSpec] = {}
_PLUGINS_LOADED = False


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise ConfigError(
            f"reward name {name!r} is not valid; use a non-empty string without ':' or "
            "surrounding spaces (':' marks a 'module:function' spec)"
        )
    return name


def _add(spec: RewardSpec, override: bool) -> None:
    old = _REGISTRY.get(spec.name)
    if old is not None and not override and not _same_definition(old, spec):
        raise ConfigError(
            f"reward {spec.name!r} is already registered; pick another name or pass override=True"
        )
    _REGISTRY[spec.name] = spec


def _same_definition(old: RewardSpec, new: RewardSpec) -> bool:
    """Whether ``new`` re-registers ``old`` from the same source (a module imported twice,
    e.g. as ``rewards.builtin`` and ``rewardgym.rewards.builtin``): then it is not a clash."""
    if old.kind != new.kind:
        return False
    if old.kind == "composite":
        return dict(old.entry_point) == dict(new.entry_point)
    try:
        same_file = inspect.getfile(old.entry_point) == inspect.getfile(new.entry_point)
    except TypeError:  # built-in or dynamically created objects have no file
        return False
    return same_file and old.entry_point.__qualname__ == new.entry_point.__qualname__


def register_reward(
    name: str,
    *,
    override: bool = False,
    needs_references: bool | None = None,
    doc: str | None = None,
) -> Callable[[T], T]:
    """Register a reward function (TRL signature) or a class of parameterised rewards.

    A class is instantiated with ``**kw`` by ``make_reward(name, **kw)``; its instances must be
    TRL reward functions. Prefer small callable classes to closures: they pickle, so rewards
    travel to worker processes.

    Args:
        name: the name to register (no ``':'``).
        override: replace an existing registration instead of raising.
        needs_references: whether the reward needs ``references``; default: the object's
            ``needs_references`` attribute, else True.
        doc: description; default the docstring (first line: the formula).

    Returns:
        A decorator that registers its argument and returns it unchanged.

    Raises:
        ConfigError: invalid name, a name already registered, or an object that is not callable.

    Example:
        >>> @register_reward("contains_yes", override=True)
        ... def contains_yes(prompts, completions, **kwargs):
        ...     '''r = 1[completion contains "yes"]'''
        ...     return [float("yes" in c) for c in completions]
        >>> "contains_yes" in list_rewards()
        True
    """
    _check_name(name)

    def decorator(obj: T) -> T:
        if not callable(obj):
            raise ConfigError(
                f"@register_reward({name!r}) needs a function or a class, got {type(obj).__name__}"
            )
        needs = needs_references
        if needs is None:
            needs = bool(getattr(obj, "needs_references", True))
        kind: Kind = "class" if inspect.isclass(obj) else "function"
        text = doc if doc is not None else (inspect.getdoc(obj) or "")
        _add(RewardSpec(name, obj, kind, text, needs), override)
        return obj

    return decorator


def register_composite(
    name: str, weights: Mapping[str, Any], *, doc: str = "", override: bool = False
) -> RewardSpec:
    """Register a weighted sum of rewards under ``name``.

    Args:
        name: the name to register.
        weights: component (a registered name or ``"module:function"``) -> weight, or
            ``{"weight": w, **params}`` to pass parameters to a class reward.
        doc: description.
        override: replace an existing registration instead of raising.

    Returns:
        The registered spec.

    Example:
        >>> spec = register_composite("fast_and_right", {"speed": 0.5, "exact_match": 0.5},
        ...                           override=True)
        >>> spec.formula
        '0.5·speed + 0.5·exact_match'
    """
    _check_name(name)
    frozen = MappingProxyType(_check_composite(name, weights))
    spec = RewardSpec(name, frozen, "composite", doc)
    _add(spec, override)
    return spec


def reward_spec(name: str) -> RewardSpec:
    """The :class:`RewardSpec` registered under ``name`` (plugins are loaded on a miss).

    Raises:
        UnknownNameError: no such reward, with "did you mean" and the valid names.

    Example:
        >>> reward_spec("bleu").kind
        'function'
    """
    if name not in _REGISTRY:
        load_plugins()
    if name not in _REGISTRY:
        raise UnknownNameError("reward", name, _REGISTRY, hint=_UNKNOWN_HINT)
    return _REGISTRY[name]


def list_rewards() -> list[str]:
    """The names of all registered rewards (plugins included), sorted.

    Example:
        >>> {"speed", "balanced"} <= set(list_rewards())
        True
    """
    load_plugins()
    return sorted(_REGISTRY)


def describe_rewards() -> str:
    """A plain-text table of the registry: name, kind and formula of each reward.

    Example:
        >>> print(describe_rewards().splitlines()[0])  # doctest: +NORMALIZE_WHITESPACE
        name  kind  formula
    """
    rows = [(s.name, s.kind, s.formula) for s in (_REGISTRY[n] for n in list_rewards())]
    header = ("name", "kind", "formula")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    lines = [
        f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c}".rstrip() for a, b, c in [header, *rows]
    ]
    return "\n".join(lines)


def load_plugins() -> list[str]:
    """Read the ``rewardgym.rewards`` entry points once per process; return the names added.

    An entry point may name a function, a class, a :class:`Reward`, a composite mapping, or a
    module whose import registers the name itself. A plugin that fails to load is skipped
    with a warning; a plugin whose name is taken is ignored with a warning (built-ins win).

    Example:
        >>> isinstance(load_plugins(), list)
        True
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return []
    _PLUGINS_LOADED = True
    added = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            warnings.warn(
                f"reward plugin {ep.name!r} ({ep.value}) ignored: that name is already registered",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        try:
            _register_plugin(ep.name, ep.load())
        except Exception as exc:  # one broken plugin must not break every other reward
            warnings.warn(
                f"reward plugin {ep.name!r} ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        added.append(ep.name)
    return added


def _register_plugin(name: str, obj: Any) -> None:
    if inspect.ismodule(obj):
        if name not in _REGISTRY:
            raise ConfigError(f"importing module {obj.__name__!r} did not register {name!r}")
    elif isinstance(obj, Mapping):
        register_composite(name, obj)
    elif isinstance(obj, Reward):
        register_reward(name, needs_references=obj.needs_references, doc=obj.formula)(obj)
    else:
        register_reward(name)(obj)


def make_reward(spec: Any, *, on_error: str | None = None, **kw: Any) -> Reward:
    """Build a checked :class:`Reward` from a spec.

    Args:
        spec: a registered name; ``"package.module:function"`` (or ``:Class``, built with
            ``**kw``); ``{"composite": {name_or_spec: weight, ...}}`` (a weight may be
            ``{"weight": w, **params}``); a :class:`Reward`; or a plain TRL reward function.
        on_error: ``"raise"`` (default) or ``"skip"``; a :class:`Reward` spec keeps its own
            unless this is given.
        **kw: parameters of a class reward, or for a composite new weights of its components
            (``make_reward("balanced", speed=0.2)``).

    Returns:
        The reward, itself a TRL reward function.

    Raises:
        UnknownNameError: an unregistered name ("did you mean").
        ConfigError: a bad spec, unknown parameters, or a module/attribute that cannot be
            imported.

    Example:
        >>> reward = make_reward("balanced", speed=0.2)
        >>> reward.formula
        '0.25·completion + 0.6·semantic + 0.2·speed'
    """
    if isinstance(spec, Reward):
        if kw:
            raise ConfigError(f"reward {spec.name!r} is already built; it takes no parameters")
        if on_error is None or on_error == spec.on_error:
            return spec
        return spec.with_on_error(on_error)
    on_error = check_on_error("raise" if on_error is None else on_error)
    if isinstance(spec, Mapping):
        return _make_composite("composite", _composite_weights(spec), on_error, kw)
    if isinstance(spec, str):
        return _make_named(spec, on_error, kw)
    if callable(spec):
        if kw:
            raise ConfigError(
                f"a reward function takes no parameters here, got {sorted(kw)}; "
                "bind them in a small callable class"
            )
        name = getattr(spec, "__name__", type(spec).__name__)
        needs = bool(getattr(spec, "needs_references", True))
        return Reward(name, {name: spec}, on_error=on_error, needs_references=needs)
    raise ConfigError(
        f"reward spec {spec!r} ({type(spec).__name__}) is not valid; pass a registered name, "
        "'package.module:function', {'composite': {name: weight}}, a Reward or a function"
    )


def _make_named(spec: str, on_error: str, kw: dict[str, Any]) -> Reward:
    if ":" in spec:
        fn, needs = _import_spec(spec, kw)
        return Reward(spec, {spec: fn}, on_error=on_error, needs_references=needs)
    rspec = reward_spec(spec)
    if rspec.kind == "composite":
        return _make_composite(spec, rspec.entry_point, on_error, kw)
    fn = _build(rspec, kw)
    return Reward(
        spec,
        {spec: fn},
        on_error=on_error,
        needs_references=rspec.needs_references,
        formula=rspec.formula,
    )


def _build(rspec: RewardSpec, params: Mapping[str, Any]) -> RewardFn:
    """The callable a function or class spec stands for, built with ``params``."""
    if rspec.kind == "class":
        return _instantiate(rspec.name, rspec.entry_point, params)
    if params:
        raise ConfigError(
            f"reward {rspec.name!r} takes no parameters, got {', '.join(sorted(params))}; "
            "parameterised rewards are classes registered with @register_reward"
        )
    return rspec.entry_point


def _instantiate(name: str, cls: type, params: Mapping[str, Any]) -> RewardFn:
    signature = inspect.signature(cls)
    try:
        signature.bind(**params)
    except TypeError as exc:
        accepted = ", ".join(signature.parameters) or "(none)"
        raise ConfigError(
            f"reward {name!r} does not accept {', '.join(sorted(params))} ({exc}); "
            f"its parameters: {accepted}"
        ) from exc
    return cls(**params)


def _import_spec(spec: str, params: Mapping[str, Any]) -> tuple[RewardFn, bool]:
    """Import ``"package.module:attr"``; build it with ``params`` when it is a class."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"reward spec {spec!r} is not valid; write 'package.module:function'")
    try:
        module = import_user_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"reward spec {spec!r}: cannot import module {module_name!r} ({exc}); run from the "
            "folder that holds it (the current directory is searched first), install it, or "
            "put its folder on PYTHONPATH"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise ConfigError(
                f"reward spec {spec!r}: {module_name!r} has no attribute {attr!r}."
                f"{did_you_mean(part, public)} Fix the name after ':'"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(
            f"reward spec {spec!r} names a {type(obj).__name__}, not a reward function or class"
        )
    if not inspect.isclass(obj) and params:
        raise ConfigError(
            f"reward spec {spec!r} is a function; it takes no parameters, got "
            f"{', '.join(sorted(params))}"
        )
    fn = _instantiate(spec, obj, params) if inspect.isclass(obj) else obj
    return fn, bool(getattr(fn, "needs_references", True))


def _composite_weights(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    if set(spec) != {"composite"} or not isinstance(spec["composite"], Mapping):
        raise ConfigError(
            f"a reward spec dict must be {{'composite': {{name: weight, ...}}}}, got keys "
            f"{sorted(map(str, spec))}"
        )
    return spec["composite"]


def _check_composite(name: str, weights: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(weights, Mapping) or not weights:
        raise ConfigError(
            f"composite reward {name!r} needs a non-empty mapping component -> weight, "
            f"got {weights!r}"
        )
    for key, value in weights.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"composite reward {name!r}: component {key!r} is not a name")
        _split_value(name, key, value)
    return dict(weights)


def _split_value(
    name: str, key: str, value: Any
) -> tuple[float, dict[str, Any], WeightSchedule | None]:
    """``(weight, params, schedule)`` from a composite entry: a number, ``{"weight": w,
    **params}`` or ``{"schedule": kind, "start": ..., ..., **params}``."""
    params: dict[str, Any] = {}
    if isinstance(value, Mapping) and "schedule" in value:
        if "weight" in value:
            raise ConfigError(
                f"composite reward {name!r}: {key!r} has both a weight and a schedule; give one"
            )
        params = {k: v for k, v in value.items() if k not in SCHEDULE_KEYS}
        schedule = WeightSchedule.from_mapping(
            key, {k: value[k] for k in SCHEDULE_KEYS & set(value)}
        )
        return schedule.start, params, schedule
    if isinstance(value, Mapping):
        params = dict(value)
        value = params.pop("weight", 1.0)
    bad = isinstance(value, bool) or not isinstance(value, numbers.Real)
    if bad or not math.isfinite(float(value)):
        raise ConfigError(
            f"composite reward {name!r}: weight of {key!r} is {value!r}; use a finite number"
        )
    return float(value), params, None


def _make_composite(
    name: str, weights: Mapping[str, Any], on_error: str, overrides: Mapping[str, Any]
) -> Reward:
    merged = _merge_overrides(name, _check_composite(name, weights), overrides)
    terms, needs = [], False
    for key, value in merged.items():
        weight, params, schedule = _split_value(name, key, value)
        fn, key_needs = _component(key, params, on_error)
        terms.append(Term(key, fn, weight, schedule))
        needs = needs or key_needs
    return Reward(name, terms, on_error=on_error, needs_references=needs)


def _merge_overrides(
    name: str, weights: dict[str, Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    for key, value in overrides.items():
        if key not in weights:
            raise ConfigError(
                f"composite reward {name!r} has no component {key!r}.{did_you_mean(key, weights)}"
                f" Its components: {', '.join(weights)}"
            )
        old = weights[key]
        if isinstance(old, Mapping) and not isinstance(value, Mapping):
            value = {**old, "weight": value}  # a new weight keeps the component's parameters
        weights[key] = value
    return weights


def _component(key: str, params: Mapping[str, Any], on_error: str) -> tuple[RewardFn, bool]:
    if ":" in key:
        return _import_spec(key, params)
    rspec = reward_spec(key)
    if rspec.kind == "composite":
        nested = make_reward(key, on_error=on_error, **params)
        return nested, nested.needs_references
    return _build(rspec, params), rspec.needs_references


def parse_reward_spec(text: str) -> Any:
    """A reward spec written on a command line: JSON for composites (``{"composite": ...}``),
    else a name or ``module:function``, as :func:`make_reward` takes it.

    Example:
        >>> parse_reward_spec('{"composite": {"bleu": 0.5, "speed": 0.5}}')
        {'composite': {'bleu': 0.5, 'speed': 0.5}}
    """
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"reward spec {text!r} is not valid JSON ({exc}); quote it for the shell, e.g. "
                """'{"composite": {"bleu": 0.5, "speed": 0.5}}'"""
            ) from None
    return text
