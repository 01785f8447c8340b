"""Checking config fields against their declared types: one helper for every config dataclass.

``check_fields(config)`` reads each dataclass field's annotation (``int``, ``float``, ``bool``,
``str``, ``X | None``, ``tuple[str, ...]``, unions of those) and refuses a value of another
kind with one line naming the class, the field and the value: ``lora_alpha: "16"`` (a string
from a hand-edited JSON file), ``max_steps: 3.7``, ``bias: "no"`` (truthy), ``target_modules: 5``.
Floats must be finite (``nan < 0`` is False, so a range check alone lets NaN through); a bool is
not accepted as an int. ``check_range`` adds the bounds a field's meaning needs.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return "a list of " + {str: "strings", int: "integers", float: "numbers"}.get(item, _describe(item))
    return {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(hint))
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        return isinstance(value, (tuple, list)) and all(_fits(v, args[0]) for v in value)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this checker does not know: the class's own validation decides


def check_fields(config: Any) -> None:
    """Raise TypeError naming the first field whose value does not have its declared type."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(config):
        if f.name not in hints:
            continue
        value = getattr(config, f.name)
        if not _fits(value, hints[f.name]):
            raise TypeError(f"{cls.__name__}.{f.name} must be {_describe(hints[f.name])}, got {value!r}")


def check_range(config: Any, name: str, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """Raise ValueError unless ``low <= value <= high`` (``<`` where the end is open); None ends are free."""
    value = getattr(config, name)
    ok = ((low is None or (value > low if low_open else value >= low))
          and (high is None or (value < high if high_open else value <= high)))
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        want = f"in {lo}{hi}" if low is not None and high is not None else (
            f"{'>' if low_open else '>='} {low}" if low is not None else f"{'<' if high_open else '<='} {high}")
        raise ValueError(f"{type(config).__name__}.{name} must be {want}, got {value!r}")


def from_dict(cls: type, d: dict[str, Any], noun: str = "key") -> Any:
    """``cls(**d)`` for a config dataclass, after refusing keys it has no field for, in one line listing the
    valid ones (``GPTConfig: unknown key(s) ['n_embed']; valid keys: [...]``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown {noun}(s) {unknown}; valid {noun}s: {sorted(names)}")
    return cls(**d)
