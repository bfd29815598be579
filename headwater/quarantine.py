"""The quarantine: every input that could not be read, decoded or processed, with the reason.

Nothing is dropped silently. Each entry keeps its coordinates (``source``/``offset``), the
stage and stream that refused it, the error, and the raw bytes so it can be replayed.
"""

from __future__ import annotations

import pyarrow as pa

#: What a decoder or processor hands back for the records it refuses.
REJECT_SCHEMA = pa.schema(
    [
        pa.field("_source", pa.string()),
        pa.field("_offset", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("raw", pa.binary()),
    ]
)

#: No rejects (tables are immutable: one serves every batch that refuses nothing, which
#: is most; building one each time cost tens of microseconds).
NO_REJECTS = REJECT_SCHEMA.empty_table()

#: The ``_quarantine`` dataset, one file per batch.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("pipeline", pa.string()),
        pa.field("batch_id", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("stream", pa.string()),
        pa.field("source", pa.string()),
        pa.field("offset", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("raw", pa.binary()),
    ]
)


def rejects(
    sources: list[str], offsets: list[int], errors: list[str], raws: list[bytes | None]
) -> pa.Table:
    """A reject table from parallel lists."""
    if len(sources) == 0:
        return NO_REJECTS
    return pa.table(
        [
            pa.array(sources, pa.string()),
            pa.array(offsets, pa.int64()),
            pa.array(errors, pa.string()),
            pa.array(raws, pa.binary()),
        ],
        schema=REJECT_SCHEMA,
    )


class Refused:
    """Collects refused records one by one (bad records are rare), then gives one table."""

    def __init__(self) -> None:
        self._columns: tuple[list, list, list, list] = ([], [], [], [])

    def add(self, source: str | None, offset: int | None, error: str, raw: bytes | None) -> None:
        for column, item in zip(self._columns, (source, offset, error, raw), strict=True):
            column.append(item)

    def table(self) -> pa.Table:
        return rejects(*self._columns)


def rows_refused(table: pa.Table, rows, errors: list[str]) -> pa.Table:
    """Rejects for ``rows`` of a processor's input, traced by their lineage columns."""
    if not len(rows):
        return NO_REJECTS
    taken = table.take(pa.array(rows, pa.int64()))
    lineage = [
        taken[k].to_pylist() if k in taken.column_names else [None] * len(rows)
        for k in ("_source", "_offset")
    ]
    return rejects(*lineage, errors, [None] * len(rows))


def no_rejects() -> pa.Table:
    return NO_REJECTS


class Quarantine:
    """Collects the rejects of one batch across all stages and streams."""

    def __init__(self, pipeline: str, batch_id: str):
        self.pipeline = pipeline
        self.batch_id = batch_id
        self._parts: list[pa.Table] = []
        self._counts: dict[tuple[str, str | None], int] = {}

    def add(self, stage: str, stream: str | None, refused: pa.Table) -> None:
        n = refused.num_rows
        if n == 0:
            return
        key = (stage, stream)
        self._counts[key] = self._counts.get(key, 0) + n

        def const(value: str | None) -> pa.Array:
            return pa.array([value] * n, pa.string())

        self._parts.append(
            pa.table(
                [
                    const(self.pipeline),
                    const(self.batch_id),
                    const(stage),
                    const(stream),
                    refused["_source"],
                    refused["_offset"],
                    refused["error"],
                    refused["raw"],
                ],
                schema=QUARANTINE_SCHEMA,
            )
        )

    def count(self, stream: str) -> int:
        """Rows refused by a stream's processors."""
        return sum(n for (_stage, s), n in self._counts.items() if s == stream)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def table(self) -> pa.Table:
        if not self._parts:
            return QUARANTINE_SCHEMA.empty_table()
        return pa.concat_tables(self._parts)
