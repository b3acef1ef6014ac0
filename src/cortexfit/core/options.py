"""One mapping -> dataclass options parser for every config section (fit, models, baselines, analyses).

Options come from YAML, JSON or the command line as plain mappings; :func:`parse_options` turns one into a
keyword-only frozen dataclass, checking names and types once, at the edge, with the same one-line wording
everywhere::

    <where>: unknown option(s) epochs; valid options: batch_size, lr, ...
    <where>: lr='fast' has the wrong type (expected float)

Range checks live in each dataclass's ``__post_init__`` and raise :class:`~cortexfit.core.errors.ConfigError`.

Examples
--------
>>> import dataclasses
>>> @dataclasses.dataclass(frozen=True, kw_only=True)
... class Opts:
...     lr: float = 0.01
...     steps: int = 10
>>> parse_options(Opts, {"lr": 1}, where="train")
Opts(lr=1.0, steps=10)
>>> parse_options(Opts, {"epochs": 5}, where="train")
Traceback (most recent call last):
...
cortexfit.core.errors.ConfigError: train: unknown option(s) epochs; valid options: lr, steps
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from cortexfit.core.errors import ConfigError

T = TypeVar("T")


def type_ok(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits ``annotation`` (str, bool, int, float, tuple, Optional, Union, Literal).

    ``bool`` is not accepted for ``int``/``float``, ints are accepted for ``float``, and lists for ``tuple``
    (YAML has no tuples); anything more complex is accepted.

    >>> type_ok(3, float), type_ok(True, int), type_ok("tanh", typing.Literal["tanh", "relu"])
    (True, False, True)
    >>> type_ok(None, int | None), type_ok([1, 2], tuple)
    (True, True)
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is tuple:
        return isinstance(value, (list, tuple))
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def parse_options(cls: type[T], values: Mapping[str, Any] | None, *, where: str) -> T:
    """Build the dataclass ``cls`` from a plain mapping, with one-line :class:`ConfigError` messages.

    Unknown keys and wrong types are rejected (listing the valid keys); ints are widened to float where a
    float is declared, lists become tuples where a tuple is declared, and non-finite floats are refused.
    Errors raised by ``cls.__post_init__`` are prefixed with ``where``.

    Parameters
    ----------
    cls : type
        A keyword-only dataclass.
    values : mapping or None
        The options (``None`` means all defaults).
    where : str
        Names the section (and file) in error messages, e.g. ``"config.yaml: train"``.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: must be a mapping of options, got {type(values).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in values if k not in fields)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; "
                          f"valid options: {', '.join(sorted(fields)) or '(none)'}")
    hints = typing.get_type_hints(cls)
    clean: dict[str, Any] = {}
    for key, value in values.items():
        hint = hints.get(key, Any)
        if not type_ok(value, hint):
            raise ConfigError(f"{where}: {key}={value!r} has the wrong type (expected {_type_name(hint)})")
        if hint is float and isinstance(value, int):
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be finite, got {value}")
        clean[key] = tuple(value) if hint is tuple else value
    try:
        return cls(**clean)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(f"{where}:") else f"{where}: {msg}") from None
