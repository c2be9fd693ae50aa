"""Make ``import Milter`` and ``import milter`` give the layer, in one process.

``install()`` puts a finder at the front of ``sys.meta_path``:

- ``Milter`` is ``miltrd.pymilter``, ``milter`` is ``miltrd.pymilter.milter``,
  ``Milter.testctx`` and ``Milter.test`` are this package's harnesses (the
  very same module objects, so ``Milter.factory`` set by a program is the
  one the engine reads);
- any other ``Milter.X`` (pymilter's pure-Python helpers: ``utils``,
  ``dynip``, ``pyip6``, ``cache``, ``config``, ``sgmllib`` ...) is loaded
  from a pymilter tree: the directories in ``$MILTRD_PYMILTER_LIB``
  (``:``-separated), then any ``Milter/`` package on ``sys.path`` that is
  not this one (an unpacked sdist next to the program, or an installed
  pymilter). Those modules do not touch libmilter; they run unchanged.

Nothing is installed on disk and nothing changes outside the process that
calls ``install()``: programs started normally keep the real pymilter.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["install", "uninstall", "PymilterFinder", "LIB_ENV"]

LIB_ENV = "MILTRD_PYMILTER_LIB"
HERE = Path(__file__).resolve().parent
ALIASES = {
    "Milter": "miltrd.pymilter",
    "milter": "miltrd.pymilter.milter",
    "Milter.testctx": "miltrd.pymilter.testctx",
    "Milter.test": "miltrd.pymilter.test",
}


class _AliasLoader(importlib.abc.Loader):
    """Loads a name as an already importable module of the layer."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        return None


class PymilterFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        alias = ALIASES.get(fullname)
        if alias is not None:
            return importlib.util.spec_from_loader(
                fullname, _AliasLoader(alias), is_package=fullname == "Milter"
            )
        if fullname.startswith("Milter."):
            spec = _library_spec(fullname)
            if spec is None:
                raise ModuleNotFoundError(
                    f"No module named {fullname!r}: pymilter's pure-Python modules are "
                    f"loaded from a pymilter tree; put one (an unpacked sdist, or an "
                    f"installed pymilter) on sys.path or name its directory in ${LIB_ENV}",
                    name=fullname,
                )
            return spec
        return None


def _library_dirs() -> list[Path]:
    dirs = [Path(d) for d in os.environ.get(LIB_ENV, "").split(os.pathsep) if d]
    dirs += [Path(entry or os.getcwd()) for entry in sys.path if isinstance(entry, str)]
    out: list[Path] = []
    for d in dirs:
        package = d / "Milter"
        try:
            if package.resolve() == HERE or not (package / "__init__.py").is_file():
                continue
        except OSError:
            continue
        out.append(package)
    return out


def _library_spec(fullname: str) -> importlib.machinery.ModuleSpec | None:
    parts = fullname.split(".")[1:]
    for package in _library_dirs():
        base = package.joinpath(*parts)
        if (base / "__init__.py").is_file():
            return importlib.util.spec_from_file_location(
                fullname, base / "__init__.py", submodule_search_locations=[str(base)]
            )
        if base.with_suffix(".py").is_file():
            return importlib.util.spec_from_file_location(fullname, base.with_suffix(".py"))
    return None


_finder = PymilterFinder()


def install() -> None:
    """Put the finder first in ``sys.meta_path`` (idempotent)."""
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    for name in ("Milter", "milter"):
        module = sys.modules.get(name)
        if module is not None and not getattr(module, "__name__", "").startswith("miltrd."):
            # A real pymilter was imported before: later imports get the layer.
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[key]


def uninstall() -> None:
    """Remove the finder and the aliases (for tests)."""
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    for key in [k for k in sys.modules if k in ("Milter", "milter") or k.startswith("Milter.")]:
        del sys.modules[key]
