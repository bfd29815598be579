"""Column types named in specs (``int64``, ``double``, ``timestamp[ms]``) as Arrow types."""

from __future__ import annotations

import pyarrow as pa

from headwater.errors import HeadwaterError

_SIMPLE = {
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "long": pa.int64(),
    "float": pa.float32(),
    "float32": pa.float32(),
    "double": pa.float64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "timestamp[s]": pa.timestamp("s", tz="UTC"),
    "timestamp[ms]": pa.timestamp("ms", tz="UTC"),
    "timestamp[us]": pa.timestamp("us", tz="UTC"),
    "timestamp[ns]": pa.timestamp("ns", tz="UTC"),
}

TYPE_NAMES = tuple(_SIMPLE)


def arrow_type(name: str) -> pa.DataType:
    try:
        return _SIMPLE[name]
    except KeyError:
        raise HeadwaterError(
            f"unknown column type {name!r}; expected one of: {', '.join(TYPE_NAMES)}"
        ) from None


def check_type_names(columns: dict[str, str]) -> dict[str, str]:
    """A pydantic validator helper: every value must name a known column type."""
    for column, name in columns.items():
        if name not in _SIMPLE:
            raise ValueError(
                f"column {column!r} has unknown type {name!r}; "
                f"expected one of: {', '.join(TYPE_NAMES)}"
            )
    return columns
