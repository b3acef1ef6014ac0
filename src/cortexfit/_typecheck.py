"""Loose runtime type check of dataclass field annotations, shared by the validated option dataclasses."""

from __future__ import annotations

import types
import typing
from typing import Any


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
