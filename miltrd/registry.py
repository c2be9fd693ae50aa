"""Find plugin classes and check them when they are loaded.

A plugin is found, in this order: by ``use = "module:Class"`` (or
``use = "NAME"``, to run a plugin twice under two names, or
``use = "pymilter:module:Class"`` for a pymilter ``Milter.Base`` class,
see miltrd.pymilter.plugin) in its config table; among the built-ins (module ``miltrd.plugins.<name>``,
attribute ``PLUGIN``); through the entry-point group ``miltrd.plugins``.
Errors say which of these failed and why: not installed, import failed
inside the module, or the attribute is missing.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import pkgutil

from .api import DECIDING_PHASES, HOOKS, Plugin

__all__ = ["PluginLoadError", "load_plugin", "validate_plugin", "available_plugins"]

ENTRY_POINT_GROUP = "miltrd.plugins"


class PluginLoadError(Exception):
    """The plugin cannot be loaded or does not follow the plugin API."""


def _import(module_name: str, attr: str, what: str) -> object:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise PluginLoadError(f"{what}: module {module_name} is not installed") from None
        raise PluginLoadError(f"{what}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:
        raise PluginLoadError(f"{what}: importing {module_name} failed: {exc!r}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginLoadError(f"{what}: module {module_name} has no {attr}") from None


def load_plugin(name: str, use: str | None = None) -> type[Plugin]:
    """Return the validated plugin class for chain entry ``name``."""
    if use and use.startswith("pymilter:"):
        return _load_pymilter(name, use)
    if use and ":" not in use:
        obj = _find_named(use)  # another name for a built-in or installed plugin
    elif use:
        module_name, _, attr = use.partition(":")
        if not module_name or not attr:
            raise PluginLoadError(f'use = "{use}": expected "module:Class" or a plugin name')
        obj = _import(module_name, attr, f'use = "{use}"')
    else:
        obj = _find_named(name)
    if not (isinstance(obj, type) and issubclass(obj, Plugin)):
        raise PluginLoadError(f"plugin {name}: {obj!r} is not a subclass of miltrd.api.Plugin")
    validate_plugin(obj, name)
    return obj


def _load_pymilter(name: str, use: str) -> type[Plugin]:
    """``use = "pymilter:module:Class"``: a pymilter Milter.Base class as a plugin."""
    from .pymilter.plugin import load

    try:
        cls = load(use.removeprefix("pymilter:"))
    except ModuleNotFoundError as exc:
        raise PluginLoadError(f'use = "{use}": module {exc.name} is not installed') from None
    except Exception as exc:
        raise PluginLoadError(f'use = "{use}": {exc}') from exc
    validate_plugin(cls, name)
    return cls


def _find_named(name: str) -> object:
    builtin = f"miltrd.plugins.{name}"
    if importlib.util.find_spec("miltrd.plugins") is not None:
        try:
            spec = importlib.util.find_spec(builtin)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            return _import(builtin, "PLUGIN", f"plugin {name}")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:
                raise PluginLoadError(f"plugin {name}: entry point {ep.value}: {exc!r}") from exc
    known = ", ".join(available_plugins()) or "none"
    raise PluginLoadError(f"plugin {name} is not installed (available: {known})")


def available_plugins() -> list[str]:
    names: set[str] = set()
    try:
        builtins_pkg = importlib.import_module("miltrd.plugins")
    except ImportError:
        builtins_pkg = None
    if builtins_pkg is not None:
        for path in builtins_pkg.__path__:
            names.update(m.name for m in pkgutil.iter_modules([path]) if not m.name.startswith("_"))
    names.update(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def validate_plugin(cls: type[Plugin], name: str) -> None:
    """Check a plugin class against the API, like pluggy's hook verification.

    Raises PluginLoadError naming the plugin, its source file and class, and
    every problem: a hook that is not ``async def`` or takes other
    parameters than the API passes, a method named like a hook that is none
    (``on_rctp``: it would never be called), ``decides`` without the hooks,
    ``Options`` that is not a dataclass.
    """
    problems = []
    for attr in sorted(dir(cls)):
        if attr.startswith("on_") and attr not in HOOKS and callable(getattr(cls, attr)):
            close = difflib.get_close_matches(attr, list(HOOKS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{attr} is not a hook{hint}; hooks are {', '.join(HOOKS)}")
    for hook in HOOKS:
        impl = getattr(cls, hook)
        if impl is getattr(Plugin, hook):
            continue
        if not inspect.iscoroutinefunction(impl):
            problems.append(f"{hook} must be declared 'async def'")
            continue
        want = list(inspect.signature(getattr(Plugin, hook)).parameters)
        have = list(inspect.signature(impl).parameters)
        if len(have) != len(want):
            problems.append(f"{hook} takes ({', '.join(have)}), the API passes ({', '.join(want)})")
    if cls.decides is not None:
        extra = cls.decides & ~(cls.implemented() & DECIDING_PHASES)
        if extra:
            problems.append(f"decides {extra} without implementing those hooks")
    if not (isinstance(cls.Options, type) and dataclasses.is_dataclass(cls.Options)):
        problems.append("Options must be a dataclass")
    if problems:
        try:
            source = inspect.getsourcefile(cls)
        except TypeError:  # defined where no source file is known
            source = None
        where = f"{source}: " if source else ""
        raise PluginLoadError(
            f"plugin {name} ({where}{cls.__module__}.{cls.__qualname__}): " + "; ".join(problems)
        )
