"""The two ends of compiled Avro decoding (the decoding itself is in :mod:`avro_native`).

Before: the writer schema as the compiled decoder takes it (plain JSON, named types inlined).
After: the decoder's table conformed to the batch's output schema (the union of its writer
schemas), so it equals, cell by cell, what the per-message fastavro path gives.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from headwater.decoders.avro_inline import inline_named_types


def reader_schema(source_json: Any) -> str:
    """The writer schema as the compiled decoder takes it: plain JSON, named types inlined."""
    return json.dumps(inline_named_types(_plain(source_json)))


def _plain(s: Any) -> Any:
    """A schema without fastavro's bookkeeping keys (``__fastavro_parsed``, …)."""
    if isinstance(s, dict):
        return {k: _plain(v) for k, v in s.items() if not str(k).startswith("__")}
    if isinstance(s, list):
        return [_plain(v) for v in s]
    return s


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (missing ones null)."""
    n = table.num_rows
    columns = []
    for field in schema:
        if field.name in table.column_names:
            chunks = [_array(c, field.type) for c in table[field.name].chunks]
            columns.append(pa.chunked_array(chunks, field.type))
        else:
            columns.append(pa.chunked_array([pa.nulls(n, field.type)], field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _array(arr: pa.Array, target: pa.DataType) -> pa.Array:
    if arr.type == target:
        return arr
    if pa.types.is_struct(target) and pa.types.is_struct(arr.type):
        have = {arr.type.field(i).name for i in range(arr.type.num_fields)}
        children = [
            _array(arr.field(f.name), f.type) if f.name in have else pa.nulls(len(arr), f.type)
            for f in target
        ]
        return pa.StructArray.from_arrays(
            children, fields=list(target), mask=arr.is_null() if arr.null_count else None
        )
    if pa.types.is_list(target) and pa.types.is_list(arr.type) | pa.types.is_large_list(arr.type):
        values = _array(arr.flatten(), target.value_type)
        offsets = pa.array(arr.offsets.to_numpy() - arr.offsets[0].as_py(), pa.int32())
        return pa.ListArray.from_arrays(
            offsets, values, type=target, mask=arr.is_null() if arr.null_count else None
        )
    return arr.cast(target)
