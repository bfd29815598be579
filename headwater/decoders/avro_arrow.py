"""Avro schema to Arrow schema: records become structs, arrays lists, maps maps.

Every field comes out nullable: a stream mixes writer schema versions, and a field one
version lacks is null in that version's rows. The tables of several writer schemas are
unified by name (structs merge recursively, ints widen), so a batch mixing ZTF 3.2 and 4.02
yields one table with the union of the fields.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from headwater.errors import DecodeError

_PRIMITIVES = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}

_LOGICAL = {
    ("int", "date"): pa.date32(),
    ("int", "time-millis"): pa.time32("ms"),
    ("long", "time-micros"): pa.time64("us"),
    ("long", "timestamp-millis"): pa.timestamp("ms", tz="UTC"),
    ("long", "timestamp-micros"): pa.timestamp("us", tz="UTC"),
    ("long", "local-timestamp-millis"): pa.timestamp("ms"),
    ("long", "local-timestamp-micros"): pa.timestamp("us"),
    ("string", "uuid"): pa.string(),
}


def avro_to_arrow(schema: Any) -> pa.Schema:
    """The Arrow schema of the records of an Avro record schema (parsed JSON)."""
    named: dict[str, pa.DataType] = {}
    top = _convert(schema, named, namespace="")
    if not pa.types.is_struct(top):
        raise DecodeError(f"the top-level Avro schema must be a record, got {top}")
    return pa.schema([top.field(i) for i in range(top.num_fields)])


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _convert(s: Any, named: dict[str, pa.DataType], namespace: str) -> pa.DataType:
    if isinstance(s, str):
        if s in _PRIMITIVES:
            return _PRIMITIVES[s]
        for candidate in (_fullname(s, namespace), s):
            if candidate in named:
                return named[candidate]
        raise DecodeError(f"Avro schema references unknown named type {s!r}")
    if isinstance(s, list):
        return _union(s, named, namespace)
    kind = s["type"]
    logical = s.get("logicalType")
    if logical == "decimal" and kind in ("bytes", "fixed"):
        t = pa.decimal128(int(s["precision"]), int(s.get("scale", 0)))
        return _register(s, t, named, namespace) if kind == "fixed" else t
    if isinstance(kind, str) and (kind, logical) in _LOGICAL:
        return _LOGICAL[(kind, logical)]
    if kind == "record" or kind == "error":
        return _record(s, named, namespace)
    if kind == "enum":
        return _register(s, pa.string(), named, namespace)
    if kind == "fixed":
        return _register(s, pa.binary(int(s["size"])), named, namespace)
    if kind == "array":
        return pa.list_(_convert(s["items"], named, namespace))
    if kind == "map":
        return pa.map_(pa.string(), _convert(s["values"], named, namespace))
    return _convert(kind, named, namespace)


def _register(s: dict, t: pa.DataType, named: dict[str, pa.DataType], ns: str) -> pa.DataType:
    named[_fullname(s["name"], s.get("namespace", ns))] = t
    return t


def _record(s: dict, named: dict[str, pa.DataType], namespace: str) -> pa.DataType:
    full = _fullname(s["name"], s.get("namespace", namespace))
    inner_ns = full.rpartition(".")[0]
    fields = [pa.field(f["name"], _convert(f["type"], named, inner_ns)) for f in s["fields"]]
    t = pa.struct(fields)
    named[full] = t
    return t


def _union(branches: list, named: dict[str, pa.DataType], namespace: str) -> pa.DataType:
    types = [_convert(b, named, namespace) for b in branches]
    non_null = [t for t in types if not pa.types.is_null(t)]
    if not non_null:
        return pa.null()
    if len(non_null) == 1:
        return non_null[0]
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in non_null):
        return pa.float64() if any(pa.types.is_floating(t) for t in non_null) else pa.int64()
    raise DecodeError(
        f"Avro union of several non-null types {[str(t) for t in non_null]} has no Arrow "
        "column type here; use a reader schema with a single type for that field"
    )


def unify(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema covering all: fields merged by name, first-seen order, types widened."""
    if len(schemas) == 1:
        return schemas[0]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DecodeError(f"writer schemas in this batch cannot be unified: {exc}") from exc


def drop_fields(schema: pa.Schema, names: set[str]) -> pa.Schema:
    return pa.schema([f for f in schema if f.name not in names], metadata=schema.metadata)
