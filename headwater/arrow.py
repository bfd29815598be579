"""Small Arrow helpers shared by decoders, processors and sinks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from headwater.errors import HeadwaterError


def column_path(table: pa.Table, path: str) -> pa.ChunkedArray:
    """The column at a dotted path (``candidate.ra``), reaching into structs.

    A null parent struct yields a null child. An unknown path raises with the columns
    that do exist at that level.
    """
    head, *rest = path.split(".")
    if head not in table.column_names:
        raise HeadwaterError(
            f"column {head!r} (from path {path!r}) not found; the table has: "
            f"{', '.join(table.column_names)}"
        )
    column = table[head]
    walked = head
    for name in rest:
        field_type = column.type
        if not pa.types.is_struct(field_type):
            raise HeadwaterError(
                f"column {walked!r} is {field_type}, not a struct, "
                f"so {path!r} cannot reach {name!r}"
            )
        names = [field_type.field(i).name for i in range(field_type.num_fields)]
        if name not in names:
            raise HeadwaterError(
                f"field {name!r} (from path {path!r}) not found in struct {walked!r}; it has: "
                f"{', '.join(names)}"
            )
        column = pc.struct_field(column, name)
        walked = f"{walked}.{name}"
    return column


def split_lines(data: bytes) -> tuple[pa.Array, np.ndarray]:
    """The lines of ``data`` that are not blank, as a binary array without their line ends
    (trailing carriage returns dropped), and each one's byte range in ``data``, its newline
    included, as an (n, 2) array. Done over the bytes with numpy: a window of a 10,000
    container cluster is 60,000 lines."""
    raw = np.frombuffer(data, np.uint8)
    n = len(raw)
    if not n:
        return pa.array([], pa.binary()), np.zeros((0, 2), np.int64)
    newline = np.flatnonzero(raw == 10)
    starts = np.r_[0, newline + 1]
    ends = np.r_[newline, n]  # each line's end, before its newline
    stop = ends.copy()
    cr = (stop > starts) & (raw[np.maximum(stop - 1, 0)] == 13)
    while cr.any():  # trailing CRs, one a round: most files have none, or one a line
        stop[cr] -= 1
        cr = (stop > starts) & (raw[np.maximum(stop - 1, 0)] == 13)
    kept = stop > starts  # blank lines (nothing, or CRs only) are not records
    starts, stop = starts[kept], stop[kept]
    spans = np.stack([starts, np.minimum(ends[kept] + 1, n)], axis=1).reshape(-1, 2)
    lengths = stop - starts
    inside = np.zeros(n + 1, np.int8)  # +1 where a kept line starts, -1 where it stops
    inside[starts] = 1
    inside[stop] = -1  # a line stops before its newline: never where another starts
    body = raw[np.cumsum(inside[:n], dtype=np.int8).view(bool)]
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    records = pa.Array.from_buffers(
        pa.large_binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(body)]
    )
    return records.cast(pa.binary()), spans


def _records_bytes(records: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Where each record of a binary array starts in its bytes (and, last, where they end),
    and those bytes, read from Arrow's buffers without a copy (a slice's included)."""
    _, offsets, data = records.buffers()
    bounds = np.frombuffer(offsets, np.int32, len(records) + 1, records.offset * 4)
    starts = bounds.astype(np.int64) - int(bounds[0])
    return starts, np.frombuffer(data, np.uint8, int(starts[-1]), int(bounds[0]))


def joined_lines(records: pa.Array) -> bytes:
    """The records one per line, as a CSV reader takes them (Arrow's binary_join over a
    list of them took a tenth of a placement loop)."""
    n = len(records)
    if not n:
        return b""
    starts, body = _records_bytes(records)
    out = np.empty(len(body) + n, np.uint8)
    newline = starts[1:] + np.arange(n)  # after each record, ahead by the ones before
    line = np.ones(len(out), bool)
    line[newline] = False
    out[newline] = 10
    out[line] = body
    return out.tobytes()


#: ASCII whitespace, as ``bytes.strip`` drops it, and line breaks.
_SPACE = np.zeros(256, bool)
_SPACE[list(b" \t\n\r\x0b\x0c")] = True
_BREAK = np.zeros(256, bool)
_BREAK[list(b"\r\n")] = True


def plain_lines(records: pa.Array) -> bool:
    """Whether every record of a binary array is a line as a CSV reader takes it whole: not
    null, not blank (whitespace only) and not ending in a line break. Over the bytes with
    numpy, in few steps (in a batch's loop each costs microseconds): only the records that
    start with whitespace are looked at whole."""
    if not len(records) or records.null_count:
        return False
    starts, body = _records_bytes(records)
    if (starts[1:] == starts[:-1]).any():
        return False
    if _BREAK[body[starts[1:] - 1]].any():
        return False
    odd = np.flatnonzero(_SPACE[body[starts[:-1]]])
    return not any(not body[starts[k] : starts[k + 1]].tobytes().strip() for k in odd)


def dictionary_codes(column: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """A column's distinct values as strings (in order of first appearance) and each row's
    index among them: Arrow hashes the rows, where numpy's unique sorts every row's string
    (seconds at 10^6 rows)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.cast(column, pa.string()).dictionary_encode()
    return encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
