"""Batches: a batch *is* its coordinates, recorded before it is processed.

The id is derived from the coordinates alone, so cutting the same input twice gives the same
id, the same output paths, and a rerun replaces instead of duplicating.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

#: Columns every raw batch carries: where each message came from, and its bytes.
RAW_SCHEMA = pa.schema(
    [
        pa.field("_source", pa.string(), nullable=False),
        pa.field("_offset", pa.int64(), nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
    ]
)

#: Columns a decoded table keeps so that every output row can be traced to its input.
LINEAGE_COLUMNS = ("_source", "_offset")


def has_payload(table: pa.Table) -> bool:
    """Whether a table holds any column besides lineage (false when nothing was decoded)."""
    return any(name not in LINEAGE_COLUMNS for name in table.column_names)


def batch_id_for(pipeline: str, source: str, coordinates: dict[str, Any]) -> str:
    """A short stable id from the coordinates: same input, same id."""
    canonical = json.dumps(
        {"pipeline": pipeline, "source": source, "coordinates": coordinates},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "b" + hashlib.sha256(canonical.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Batch:
    """One micro-batch: which pipeline, which window (partition key), which input."""

    pipeline: str
    id: str
    window: str
    source: str
    coordinates: dict[str, Any]
    created_at: str
    records: int
    seq: int = 0  # order among the batches cut at the same moment

    def to_json(self) -> dict[str, Any]:
        # shallow: the coordinates are JSON values already, and asdict's deep copy of a files
        # batch's thousands of ranges cost more than writing them
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class RawBatch:
    """The undecoded messages of a batch, plus what the source could not read.

    ``messages`` follows :data:`RAW_SCHEMA`. ``headers`` maps a ``_source`` to a header line
    its records need (CSV files). ``unreadable`` lists ``(source, offset, error)`` for inputs
    that could not even be read; they go to the quarantine.
    """

    messages: pa.Table
    headers: dict[str, bytes] = field(default_factory=dict)
    unreadable: list[tuple[str, int, str]] = field(default_factory=list)


def raw_table(
    sources: list[str],
    offsets: list[int],
    values: list[bytes | None] | pa.ChunkedArray,
    keys: list[bytes | None] | None = None,
) -> pa.Table:
    """Build a raw-message table from parallel lists (``values`` may be Arrow already)."""
    if keys is None:
        keys = [None] * len(values)
    return pa.table(
        [
            pa.array(sources, pa.string()),
            pa.array(offsets, pa.int64()),
            pa.array(keys, pa.binary()),
            values if isinstance(values, pa.ChunkedArray) else binary_array(values),
        ],
        schema=RAW_SCHEMA,
    )


#: Bytes per chunk of a binary column: its 32-bit offsets address at most 2 GiB.
MAX_CHUNK_BYTES = 2**31 - 1


def binary_array(values: list[bytes | None]) -> pa.ChunkedArray:
    """Messages as an Arrow binary column, copied once.

    ``pa.array`` grows its buffer by doubling, copying hundreds of MB of alerts several times
    (five times slower, measured); here the lengths are summed first and the bytes copied
    into one buffer from Arrow's memory pool, which reuses the pages of earlier batches (a
    ``bytes`` join got new ones from the kernel every time: 3x slower). Nulls (Kafka
    tombstones) stay null.
    """
    lengths = np.fromiter((-1 if v is None else len(v) for v in values), np.int64, len(values))
    nulls = lengths < 0
    lengths[nulls] = 0
    chunks = [
        _binary_chunk(values[start:stop], lengths[start:stop], nulls[start:stop])
        for start, stop in chunk_spans(lengths)
    ]
    return pa.chunked_array(chunks, pa.binary())


def chunk_spans(lengths: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` runs of values whose bytes fit one binary chunk (at least one value
    each, and one empty run for no values)."""
    ends = np.cumsum(lengths)
    spans, start = [], 0
    while start < len(lengths) or not spans:
        base = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + MAX_CHUNK_BYTES, "right")))
        stop = min(stop, len(lengths))
        spans.append((start, stop))
        start = stop
    return spans


def _binary_chunk(values: list, lengths: np.ndarray, nulls: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(values) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = pa.allocate_buffer(int(lengths.sum()))
    into, pos = memoryview(data).cast("B"), 0
    for v in values:
        if v:
            into[pos : pos + len(v)] = v
            pos += len(v)
    validity = pa.array(~nulls).buffers()[1] if nulls.any() else None
    return pa.Array.from_buffers(pa.binary(), len(values), [validity, pa.py_buffer(offsets), data])


def binary_views(column: pa.ChunkedArray | pa.Array) -> list[memoryview | None]:
    """Each cell of a binary column as a view of the column's own buffer: no copy.

    A batch's messages are hundreds of MB; ``to_pylist`` would copy every one into a new
    ``bytes``. The views keep the column's buffers alive for as long as they live.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    views: list[memoryview | None] = []
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        if not (pa.types.is_binary(chunk.type) or pa.types.is_large_binary(chunk.type)):
            raise TypeError(f"expected a binary column, got {chunk.type}")
        _, offsets, data = chunk.buffers()
        width = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        bounds = np.frombuffer(offsets, width, len(chunk) + 1, chunk.offset * width().itemsize)
        whole = memoryview(data).cast("B") if data is not None else memoryview(b"")  # bytes
        valid = chunk.is_valid().to_pylist() if chunk.null_count else [True] * len(chunk)
        starts, ends = bounds[:-1].tolist(), bounds[1:].tolist()
        views += [whole[a:b] if ok else None for a, b, ok in zip(starts, ends, valid, strict=True)]
    return views
