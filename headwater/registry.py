"""One registry for components: entry-point groups keyed by name.

Built-ins register through ``pyproject.toml`` exactly as third-party plugins do::

    [project.entry-points."headwater.processors"]
    bright_only = "mypkg.filters:BrightOnly"

A spec may also name a class by import path (``mypkg.filters:BrightOnly``).
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from headwater.errors import ComponentNotFoundError


def singular(kind: str) -> str:
    """``strategies`` → ``strategy``, ``sinks`` → ``sink``: for messages."""
    return kind[:-3] + "y" if kind.endswith("ies") else kind[:-1]


def split_reference(kind: str, value: Any) -> tuple[str, Any]:
    """A component as a spec writes it — ``name`` or ``{name: settings}`` — as ``(name,
    settings)`` (settings None when only the name is given); ValueError otherwise."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict) and len(value) == 1:
        name, settings = next(iter(value.items()))
        return str(name), settings
    raise ValueError(
        f"expected a {singular(kind)} name or {{name: settings}} with one key, got {value!r}"[:200]
    )


def is_import_path(name: str) -> bool:
    return ":" in name


@cache
def names(kind: str) -> tuple[str, ...]:
    """The component names registered for ``kind`` (``processors``, ``sinks``, …)."""
    return tuple(sorted({ep.name for ep in entry_points(group=f"headwater.{kind}")}))


@cache
def lookup(kind: str, name: str) -> Any:
    """The class registered as ``name`` in group ``headwater.<kind>``, or at an import path."""
    if is_import_path(name):
        return _import(kind, name)
    matches = [ep for ep in entry_points(group=f"headwater.{kind}") if ep.name == name]
    if not matches:
        known = ", ".join(names(kind)) or "(none)"
        raise ComponentNotFoundError(
            f"unknown {singular(kind)} {name!r}; known {kind}: {known}. "
            f"Fix the name, or give a class as 'package.module:Class'."
        )
    ep = matches[0]
    try:
        return ep.load()
    except Exception as exc:
        dist = ep.dist.name if ep.dist else "an unknown package"
        raise ComponentNotFoundError(
            f"{singular(kind)} {name!r} is registered by {dist} as {ep.value} but failed to load: "
            f"{exc}. Reinstall or fix that package."
        ) from exc


def _import(kind: str, path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ComponentNotFoundError(
            f"{singular(kind)} {path!r}: cannot import module {module_name!r}: {exc}. "
            "Check the spelling and that the package is installed."
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ComponentNotFoundError(
            f"{singular(kind)} {path!r}: module {module_name!r} has no attribute {attr!r}."
        ) from exc
