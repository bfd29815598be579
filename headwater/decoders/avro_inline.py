"""Rewrite an Avro schema so that no named type is referenced by name.

headwater's compiled decoder takes schemas without references to named types (ZTF defines
``cutout`` once and refers to it twice). Replacing each reference with a renamed copy of the
definition gives the same binary layout (names are not encoded) and a schema every reader
resolves.
"""

from __future__ import annotations

import copy
from typing import Any

_NAMED = ("record", "error", "enum", "fixed")
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def inline_named_types(schema: Any) -> Any:
    """A copy of ``schema`` (parsed JSON) where every named-type reference is a definition."""
    defined: dict[str, Any] = {}
    copies = [0]

    def fullname(name: str, namespace: str) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def walk(s: Any, namespace: str) -> Any:
        if isinstance(s, str):
            if s in _PRIMITIVES:
                return s
            for candidate in (fullname(s, namespace), s):
                if candidate in defined:
                    copies[0] += 1
                    return _renamed(defined[candidate], copies[0])
            return s  # unknown here: left for the reader to report
        if isinstance(s, list):
            return [walk(b, namespace) for b in s]
        if not isinstance(s, dict):
            return s
        kind = s.get("type")
        out = dict(s)
        if kind in _NAMED:
            full = fullname(s["name"], s.get("namespace", namespace))
            inner = full.rpartition(".")[0]
            if kind in ("record", "error"):
                out["fields"] = [{**f, "type": walk(f["type"], inner)} for f in s["fields"]]
            defined[full] = out
            return out
        if kind == "array":
            out["items"] = walk(s["items"], namespace)
        elif kind == "map":
            out["values"] = walk(s["values"], namespace)
        elif isinstance(kind, dict | list) or (isinstance(kind, str) and kind not in _PRIMITIVES):
            out["type"] = walk(kind, namespace)
        return out

    return walk(schema, "")


def _renamed(definition: dict, k: int) -> dict:
    """A deep copy whose own name and nested names are unique (suffix ``__<k>``)."""
    clone = copy.deepcopy(definition)

    def rename(s: Any) -> None:
        if isinstance(s, dict):
            if s.get("type") in _NAMED and "name" in s:
                s["name"] = f"{s['name']}__{k}"
            for value in s.values():
                rename(value)
        elif isinstance(s, list):
            for item in s:
                rename(item)

    rename(clone)
    return clone
