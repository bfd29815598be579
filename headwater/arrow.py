"""Small Arrow helpers shared by decoders, processors and sinks."""

from __future__ import annotations

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
