"""Batches: a batch *is* its coordinates, recorded before it is processed.

The id is derived from the coordinates alone, so cutting the same input twice gives the same
id, the same output paths, and a rerun replaces instead of duplicating.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

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
        return asdict(self)

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
    values: list[bytes | None],
    keys: list[bytes | None] | None = None,
) -> pa.Table:
    """Build a raw-message table from parallel lists."""
    if keys is None:
        keys = [None] * len(values)
    return pa.table(
        [
            pa.array(sources, pa.string()),
            pa.array(offsets, pa.int64()),
            pa.array(keys, pa.binary()),
            pa.array(values, pa.binary()),
        ],
        schema=RAW_SCHEMA,
    )
