"""Each value of a run config checked against (and converted to) its field's declared type.

A config is assembled from a preset, a YAML file, flags and `--set KEY=VALUE`, whose values are
read as YAML: `2e-4` (no dot) is a string there, `8` an int, `none` nothing. Without this check
a string learning rate, or an unset temperature, surfaces as a TypeError hours later in the stage
that first does arithmetic with it. Here every field is converted to its type once, when the
config is resolved, or the whole config is refused in one line naming the key and the type.

Light on purpose (no mlx): it runs before any work, and `--help`/errors must stay instant.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Union

from .errors import UserError

_NAMES = {int: "an integer (int)", float: "a number (float)", bool: "true or false (bool)", str: "a string (str)",
          list: "a list", dict: "a mapping"}


def _describe(tp) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Union:
        parts = [_describe(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} (or none)" if type(None) in args else text
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp) -> Any:
    """value as type tp, or ValueError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg)
            except ValueError:
                continue
        raise ValueError
    if value is None:
        raise ValueError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if tp is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        raise ValueError
    if tp is float:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as text
            return float(value.strip())
        raise ValueError
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError
    if tp is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):  # --set eval.sweep=0.6,1.0
            import yaml

            return [yaml.safe_load(part) for part in value.split(",") if part.strip()]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [value]
        raise ValueError
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise ValueError
    return value  # nested dataclasses are converted by their own section


def coerce_fields(cls, values: dict, where: str) -> dict:
    """values (keys already known to be fields of dataclass cls) converted to the field types."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        tp = hints.get(key)
        if tp is None or dataclasses.is_dataclass(tp):
            out[key] = value
            continue
        try:
            out[key] = _convert(value, tp)
        except (ValueError, TypeError):
            name = f"{where}.{key}" if where else key
            shown = "none" if value is None else repr(value)
            raise UserError(f"config key {name}: expected {_describe(tp)}, got {shown}") from None
    return out


def check_section(cls, values: dict, where: str) -> dict:
    """A free-form section (train: TrainConfig fields, filter: FilterConfig fields) checked
    against the dataclass that will read it: unknown keys and wrong types are refused now."""
    if not isinstance(values, dict):
        raise UserError(f"config section '{where}' must be a mapping")
    names = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UserError(f"unknown key '{where}.{unknown[0]}': valid keys are {', '.join(names)}")
    return coerce_fields(cls, values, where)
