"""Every public name of the plugin API and of the protocol package says
what it is: classes, functions, their public methods and properties."""

from __future__ import annotations

import inspect

import pytest

import miltrd.api
import miltrd.protocol


def _undocumented(module: object) -> list[str]:
    missing = []
    for name in module.__all__:  # type: ignore[attr-defined]
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants and type aliases
        if not (inspect.isfunction(obj) or "__doc__" in vars(obj)) or not obj.__doc__:
            missing.append(name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, property):
                    value = value.fget
                elif isinstance(value, (classmethod, staticmethod)):
                    value = value.__func__
                elif not inspect.isfunction(value):
                    continue
                if not value.__doc__:
                    missing.append(f"{name}.{attr}")
    return missing


@pytest.mark.parametrize("module", [miltrd.api, miltrd.protocol], ids=["api", "protocol"])
def test_every_public_name_has_a_docstring(module: object) -> None:
    assert _undocumented(module) == []
