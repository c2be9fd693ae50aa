"""Where the compatibility layer sits: its core imports nothing else of
miltrd; the chain adapter imports only miltrd.api and the layer (like any
plugin); only serve.py (runmilter's daemon) reaches the server; nothing of
miltrd's own depends on it but the registry and the CLI, lazily."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "miltrd"
CORE = ["__init__", "milter", "session", "testctx", "test", "finder"]


def miltrd_imports(path: Path, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("miltrd")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("miltrd"):
                if node.module is None:
                    found |= {f"{target}.{a.name}" for a in node.names}
                else:
                    found.add(target)
    return found


def top(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2])


def test_core_imports_only_itself() -> None:
    for name in CORE:
        imports = miltrd_imports(PACKAGE / "pymilter" / f"{name}.py", "miltrd.pymilter")
        outside = {i for i in imports if top(i) not in ("miltrd.pymilter",)}
        assert not outside, f"{name}.py imports {outside}"


def test_adapter_imports_only_the_plugin_api_and_the_layer() -> None:
    imports = miltrd_imports(PACKAGE / "pymilter" / "plugin.py", "miltrd.pymilter")
    assert {top(i) for i in imports} <= {"miltrd.api", "miltrd.pymilter"}


def test_protocol_and_api_do_not_import_the_layer() -> None:
    for sub in ("protocol", "api", "chain", "server", "config"):
        for path in (PACKAGE / sub).glob("*.py"):
            imports = miltrd_imports(path, f"miltrd.{sub}")
            assert not any(top(i) == "miltrd.pymilter" for i in imports), path
