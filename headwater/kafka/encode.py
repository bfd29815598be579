"""Rows of an Arrow table as Kafka message values: Avro (container or Confluent wire) or JSON.

The Avro schema is derived from the Arrow schema (structs become records, lists arrays, every
field a union with null) unless the spec names a schema file. JSON is made by DuckDB's
``to_json`` over the whole table at once: columnar, no per-row Python.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable
from typing import Any

import duckdb
import fastavro
import pyarrow as pa

from headwater.errors import SinkError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def avro_schema(schema: pa.Schema, name: str, namespace: str = "headwater") -> dict[str, Any]:
    """An Avro record schema for rows of ``schema`` (all fields nullable, default null)."""
    return {
        "type": "record",
        "name": _safe(name),
        "namespace": namespace,
        "fields": [_field(f, (_safe(name),)) for f in schema],
    }


def _safe(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return cleaned if _NAME.match(cleaned) else f"_{cleaned}"


def _field(f: pa.Field, path: tuple[str, ...]) -> dict[str, Any]:
    if not _NAME.match(f.name):
        raise SinkError(
            f"column {'.'.join((*path[1:], f.name))!r} is not a valid Avro field name; "
            'rename it in a sql processor (select "{f.name}" as new_name …)'
        )
    avro = _type(f.type, (*path, f.name))
    return {"name": f.name, "type": ["null", avro], "default": None}


def _type(t: pa.DataType, path: tuple[str, ...]) -> Any:
    if pa.types.is_struct(t):
        return {
            "type": "record",
            "name": "_".join(path),  # record names must be unique within one schema
            "fields": [_field(t.field(i), path) for i in range(t.num_fields)],
        }
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return {"type": "array", "items": ["null", _type(t.value_type, (*path, "item"))]}
    simple = _simple(t)
    if simple is None:
        raise SinkError(
            f"column {'.'.join(path[1:])!r} has Arrow type {t}, which has no Avro mapping here; "
            "cast it in a sql processor (to a string, number, struct or list)"
        )
    return simple


def _simple(t: pa.DataType) -> Any:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_int32(t):
        return "int"
    if pa.types.is_integer(t):
        return "long"
    if pa.types.is_float32(t):
        return "float"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytes"
    if pa.types.is_timestamp(t):
        return {"type": "long", "logicalType": "timestamp-micros"}
    if pa.types.is_date32(t):
        return {"type": "int", "logicalType": "date"}
    if pa.types.is_null(t):
        return "null"
    return None


def _timestamps_to_micros(table: pa.Table) -> pa.Table:
    """fastavro wants aware datetimes for timestamp-micros; naive ones count as UTC."""
    columns = []
    for f, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(f.type) and f.type.tz is None:
            col = col.cast(pa.timestamp(f.type.unit, tz="UTC"))
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)


class AvroEncoder:
    """Encode rows with one parsed schema, as ZTF containers or Confluent wire messages."""

    def __init__(self, schema: Any, framing: str, schema_id: int | None = None):
        self.schema = schema
        self.parsed = fastavro.parse_schema(schema)
        self.name = schema.get("name") if isinstance(schema, dict) else "schema"
        self.framing = framing
        if framing == "confluent" and schema_id is None:
            raise SinkError("Confluent wire format needs a schema id (registry or schema_id)")
        self.prefix = struct.pack(">bI", 0, schema_id) if schema_id is not None else b""

    def encode(self, table: pa.Table, where: Callable[[int], str]) -> list[bytes]:
        values = []
        for i, row in enumerate(_timestamps_to_micros(table).to_pylist()):
            buf = io.BytesIO()
            try:
                if self.framing == "container":  # the schema travels inside each message
                    fastavro.writer(buf, self.parsed, [row], codec="null")
                else:
                    buf.write(self.prefix)
                    fastavro.schemaless_writer(buf, self.parsed, row)
            except (ValueError, TypeError) as exc:
                raise SinkError(
                    f"row {where(i)} does not fit the Avro schema {self.name}: {exc}"
                ) from exc
            values.append(buf.getvalue())
        return values


def json_values(table: pa.Table) -> list[bytes]:
    """One JSON object per row, made by DuckDB over the whole table (bytes as escaped text)."""
    con = duckdb.connect()
    try:
        con.register("rows_", table)
        result = con.sql("select to_json(r)::varchar from rows_ as r").fetchall()
    finally:
        con.close()
    return [r[0].encode() for r in result]


def load_schema_file(path: str) -> Any:
    """A schema file, named types it references resolved from the same folder."""
    try:
        return fastavro.schema.load_schema(path)
    except Exception as exc:  # fastavro raises several kinds for unreadable schemas
        raise SinkError(f"cannot load the Avro schema {path}: {exc}") from exc
