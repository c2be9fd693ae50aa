"""The layering rules hold, read from the source's own imports.

- ``miltrd/protocol`` imports nothing else of miltrd and no module that
  does I/O (it is sans-I/O: bytes in, events out);
- ``miltrd/api`` imports nothing of miltrd outside itself;
- a plugin (``plugins/``, installed as ``miltrd.plugins``) imports nothing
  of miltrd but ``miltrd.api``, besides its own private helpers
  (``plugins/_*.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Modules through which code reaches files, sockets, processes, clocks and
# logs; the protocol engine must do without every one of them.
IO_MODULES = frozenset(
    {
        "asyncio",
        "concurrent",
        "http",
        "io",
        "logging",
        "mmap",
        "multiprocessing",
        "os",
        "pathlib",
        "select",
        "selectors",
        "shutil",
        "signal",
        "socket",
        "socketserver",
        "ssl",
        "subprocess",
        "sys",
        "tempfile",
        "threading",
        "time",
        "urllib",
    }
)


def imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in ``source``, with
    relative imports resolved against ``package``; ``from X import name``
    also yields ``X.name`` (the name may be a module)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def protocol_violations(source: str, package: str = "miltrd.protocol") -> list[str]:
    out = []
    for line, name in imports(source, package):
        top = name.split(".")[0]
        if top == "miltrd" and not (
            name == "miltrd.protocol" or name.startswith("miltrd.protocol.")
        ):
            out.append(f"{line}: {name} (miltrd outside the protocol package)")
        elif top in IO_MODULES:
            out.append(f"{line}: {name} (I/O)")
    return out


def api_violations(source: str, package: str = "miltrd.api") -> list[str]:
    return [
        f"{line}: {name}"
        for line, name in imports(source, package)
        if name.split(".")[0] == "miltrd"
        and not (name == "miltrd.api" or name.startswith("miltrd.api."))
    ]


def plugin_violations(source: str, package: str = "miltrd.plugins") -> list[str]:
    out = []
    for line, name in imports(source, package):
        if name.split(".")[0] != "miltrd":
            continue  # the standard library and third-party libraries
        if name == "miltrd.api" or name.startswith("miltrd.api."):
            continue
        helper = name.removeprefix("miltrd.plugins.").split(".")[0]
        if name.startswith("miltrd.plugins.") and helper.startswith("_"):
            continue  # the plugins' own private helpers
        if name == "miltrd.plugins":
            continue  # "from . import _helper" names the package first
        out.append(f"{line}: {name}")
    return out


def private_imports(source: str, package: str) -> list[str]:
    """Private names (``_x``) one miltrd package takes from another: each
    package's insides stay its own (a package's own ``_helper`` modules and
    a private name within one package are fine)."""
    top = ".".join(package.split(".")[:2])
    out = []
    for line, name in imports(source, package):
        parts = name.split(".")
        if parts[0] != "miltrd" or ".".join(parts[:2]) == top:
            continue
        if any(part.startswith("_") and not part.startswith("__") for part in parts[2:]):
            out.append(f"{line}: {name}")
    return out


def _package_of(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "plugins":
        parts = ["miltrd", "plugins", *parts[1:]]
    return ".".join(parts[:-1])  # the package relative imports start from


def _sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _sources("miltrd/protocol"), ids=lambda p: p.name)
def test_protocol_imports_nothing_of_miltrd_and_no_io(path: Path) -> None:
    assert protocol_violations(path.read_text()) == []


@pytest.mark.parametrize("path", _sources("miltrd/api"), ids=lambda p: p.name)
def test_api_imports_nothing_of_miltrd_outside_itself(path: Path) -> None:
    assert api_violations(path.read_text()) == []


@pytest.mark.parametrize("path", _sources("plugins"), ids=lambda p: p.name)
def test_plugins_import_only_the_api_and_their_own_helpers(path: Path) -> None:
    assert plugin_violations(path.read_text()) == []


@pytest.mark.parametrize(
    "path", _sources("miltrd") + _sources("plugins"), ids=lambda p: str(p.relative_to(REPO))
)
def test_no_package_imports_another_packages_private_names(path: Path) -> None:
    assert private_imports(path.read_text(), _package_of(path)) == []


def test_the_guards_catch_what_they_guard_against() -> None:
    """Each rule, shown failing on a line that breaks it."""
    assert private_imports("from ..protocol._negotiation import x\n", "miltrd.pymilter") == [
        "1: miltrd.protocol._negotiation",
        "1: miltrd.protocol._negotiation.x",
    ]
    assert private_imports("from ..server.connection import _X\n", "miltrd.pymilter") == [
        "1: miltrd.server.connection._X"
    ]
    assert private_imports("from ._state import State\n", "miltrd.protocol") == []
    assert private_imports("from . import _mimewalk\n", "miltrd.plugins") == []


def test_the_layering_guards_catch_what_they_guard_against() -> None:
    """Each rule, shown failing on a line that breaks it."""
    assert protocol_violations("from ..api import Verdict\n") == [
        "1: miltrd.api (miltrd outside the protocol package)",
        "1: miltrd.api.Verdict (miltrd outside the protocol package)",
    ]
    assert protocol_violations("import asyncio\n") == ["1: asyncio (I/O)"]
    assert protocol_violations("from os import path\n")[0] == "1: os (I/O)"
    assert protocol_violations("from ._state import State\nimport struct\n") == []
    assert api_violations("from ..config import load\n")[0] == "1: miltrd.config"
    assert api_violations("from .changes import Change\n") == []
    assert plugin_violations("from miltrd.chain import ChainSession\n")[0] == "1: miltrd.chain"
    assert plugin_violations("from ..server import translate\n")[0] == "1: miltrd.server"
    assert plugin_violations("from .spf import Spf\n")[0] == "1: miltrd.plugins.spf"
    assert plugin_violations("from ._dns import make_resolver\nfrom . import _mimewalk\n") == []
    assert plugin_violations("from miltrd.api import Plugin\nimport dkim\n") == []
