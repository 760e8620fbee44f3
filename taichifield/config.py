"""The one rule for configuration dataclasses (nerfstudio's style, in a few lines).

Every config of taichifield (fields, trainers, the hash grid) is a dataclass deriving from
:class:`Config`:

* a docstring under each field is its documentation: :meth:`Config.field_doc` reads it, and
  the CLI's ``--help`` texts and defaults come from there (one place for a default and its
  help text);
* validation lives in ``__post_init__`` and raises :class:`~taichifield.errors.InputError`;
* :meth:`Config.to_dict` is ``dataclasses.asdict``; :meth:`Config.from_dict` drops unknown
  keys (a checkpoint of a newer or older version still loads), rebuilds nested configs and
  turns lists back into tuples.

Importing this module imports neither torch nor Taichi (the CLI's ``--help`` stays fast).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import logging
import textwrap
import typing
from functools import lru_cache
from typing import Any, TypeVar

__all__ = ["Config", "check_positive"]

log = logging.getLogger(__name__)

C = TypeVar("C", bound="Config")


@lru_cache(maxsize=None)
def _class_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of ``cls`` itself: ``{field: the string literal under it}``."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr) \
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def check_positive(**options: float | None) -> None:
    """Refuse option values that are not positive finite numbers (None means "not given");
    the message names the option as the CLI spells it.

    Example: ``check_positive(steps=steps, time_budget=time_budget)`` raises
    ``InputError("--time-budget must be a positive number, got -1.0")``.
    """
    import math

    from .errors import InputError

    for name, value in options.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"--{name.replace('_', '-')} must be a positive number, got {value}")


class Config:
    """Base of every configuration dataclass (see the module docstring)."""

    @classmethod
    def field_doc(cls, name: str) -> str:
        """The docstring under field ``name`` (from the nearest class in the MRO that has one)."""
        for klass in cls.__mro__:
            doc = _class_docs(klass).get(name)
            if doc:
                return doc
        return ""

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field ``name`` (default factories are called)."""
        f = {f.name: f for f in dataclasses.fields(cls)}[name]  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        raise KeyError(f"{cls.__name__}.{name} has no default")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """Build from :meth:`to_dict` output; unknown keys are dropped, nested configs rebuilt."""
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        dropped = sorted(set(d) - known)
        if dropped:
            log.debug("%s.from_dict: ignoring unknown keys %s", cls.__name__, dropped)
        kwargs: dict[str, Any] = {}
        for key in known & set(d):
            value, hint = d[key], hints.get(key)
            if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, dict):
                value = hint.from_dict(value)
            elif typing.get_origin(hint) is tuple and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)
