"""Build a dataclass from a TOML table, checking every key and type.

Used for miltrd's own sections and for each plugin's ``Options``, so all
errors read the same. Supported field types: str, int, float, bool,
list[T], tuple[T, ...], dict[str, T], Literal[...], enums (by value),
X | None, nested dataclasses, and parsed types: a class with ``toml_type``
(what the file holds) and a ``from_toml`` classmethod that raises
ValueError with the message to show (``ListenSpec``, ``FileMode``); a
caller may parse such a type its own way (``parsers``). Unknown keys are
errors, with a "did you mean" hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = ["coerce", "Problems", "Parsers"]

Problems = list[tuple[str, str]]  # (key path, message)
Parsers = Mapping[type, Callable[[Any], Any]]  # parsed type -> its parser for this call


class _Invalid(Exception):
    pass


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    if origin in (list, tuple):
        return f"a list of {_plural(get_args(tp)[0])}"
    if origin is dict:
        return f"a table of {_plural(get_args(tp)[1])}"
    if isinstance(tp, type) and hasattr(tp, "from_toml"):
        return _describe(getattr(tp, "toml_type"))  # noqa: B009
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


_PLURALS = {str: "strings", int: "integers", float: "numbers", bool: "true/false values"}


def _plural(tp: Any) -> str:
    """``tp`` as the items of a list: "strings", "tables", ..."""
    if isinstance(tp, type) and hasattr(tp, "from_toml"):
        tp = getattr(tp, "toml_type")  # noqa: B009
    if tp in _PLURALS:
        return _PLURALS[tp]
    if dataclasses.is_dataclass(tp):
        return "tables"
    return f"items that are each {_describe(tp)}"


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _value(tp: Any, value: Any, path: str, problems: Problems, parsers: Parsers) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and hasattr(tp, "from_toml"):
        raw = _value(getattr(tp, "toml_type"), value, path, problems, parsers)  # noqa: B009
        try:
            return parsers.get(tp, tp.from_toml)(raw)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if value == member.value and type(value) is type(member.value):
                return member
        raise _Invalid(f"expected {_describe(tp)}, got {_got(value)}")
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        for option in options:
            sub: Problems = []
            result = _value(option, value, path, sub, parsers)
            if not sub:
                return result
        if len(options) == 1:
            return _value(options[0], value, path, problems, parsers)
        raise _Invalid(f"expected {_describe(tp)}, got {_got(value)}")
    if origin is Literal:
        if value not in get_args(tp) or isinstance(value, bool) != any(
            isinstance(a, bool) for a in get_args(tp)
        ):
            raise _Invalid(f"expected {_describe(tp)}, got {_got(value)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _Invalid(f"expected {_describe(tp)}, got {_got(value)}")
        item_tp = get_args(tp)[0]
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_value(item_tp, item, f"{path}[{i}]", problems, parsers))
            except _Invalid as exc:
                problems.append((f"{path}[{i}]", str(exc)))
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _Invalid(f"expected {_describe(tp)}, got {_got(value)}")
        item_tp = get_args(tp)[1]
        out = {}
        for key, item in value.items():
            try:
                out[key] = _value(item_tp, item, f"{path}.{key}", problems, parsers)
            except _Invalid as exc:
                problems.append((f"{path}.{key}", str(exc)))
        return out
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise _Invalid(f"expected a table, got {_got(value)}")
        return coerce(tp, value, path, problems, parsers)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Invalid(f"expected true or false, got {_got(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {_got(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"expected a number, got {_got(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _Invalid(f"expected a string, got {_got(value)}")
        return value
    raise TypeError(f"unsupported option type {tp!r} at {path}")


def coerce(
    cls: type,
    table: Mapping[str, Any],
    path: str,
    problems: Problems,
    parsers: Parsers | None = None,
) -> Any:
    """Return ``cls(**table)`` with every value checked, or None if any problem.

    Problems are appended as (key path, message); ``path`` is the table's own
    key path ("" at top level). ``parsers`` replace ``from_toml`` for the
    parsed types named, for this call.
    """
    parsers = parsers or {}
    hints = get_type_hints(cls)
    # Fields starting with "_" are computed, never read from the file.
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    # A field named like a Python keyword ("pass_") is written without the "_".
    names = {name.rstrip("_"): name for name in fields} | {name: name for name in fields}
    before = len(problems)
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        key_path = f"{path}.{key}" if path else key
        name = names.get(key)
        if name is None:
            hint = difflib.get_close_matches(key, [n.rstrip("_") for n in fields], n=1)
            problems.append(
                (key_path, f'unknown key (did you mean "{hint[0]}"?)' if hint else "unknown key")
            )
            continue
        try:
            kwargs[name] = _value(hints[name], value, key_path, problems, parsers)
        except _Invalid as exc:
            problems.append((key_path, str(exc)))
    for name, f in fields.items():
        if (
            name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            problems.append((f"{path}.{name}" if path else name, "required key is missing"))
    if len(problems) > before:
        return None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        problems.append((path, str(exc)))
        return None
