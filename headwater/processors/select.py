"""``select``: keep, drop, rename and flatten columns.

Applied in that order: flatten, keep, drop, rename. A kept dotted path (``candidate.ra``)
becomes a top-level column (``candidate_ra``). The lineage columns ``_source``/``_offset``
survive ``keep`` so that rows stay traceable, unless ``drop`` names them.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from headwater.arrow import column_path
from headwater.batch import LINEAGE_COLUMNS
from headwater.config import ComponentConfig
from headwater.errors import HeadwaterError
from headwater.processors.base import Processor


class SelectConfig(ComponentConfig):
    flatten: list[str] | bool = Field(
        default=False, description="Struct columns whose fields become columns (true: all)."
    )
    keep: list[str] = Field(default_factory=list, description="Columns or dotted paths to keep.")
    drop: list[str] = Field(default_factory=list, description="Columns to drop.")
    missing: Literal["error", "ignore"] = Field(
        default="error",
        description="A column to drop that the batch does not have: error (a typo shows at "
        "once), or ignore (columns some settings leave out, as decode.avro.cutouts: drop).",
    )
    rename: dict[str, str] = Field(default_factory=dict, description="old: new names.")
    separator: str = Field(default="_", description="Joins struct and field names.")


class Select(Processor):
    Config = SelectConfig

    def process(self, table: pa.Table) -> pa.Table:
        c: SelectConfig = self.config
        if c.flatten:
            table = self._flatten(table)
        if c.keep:
            names, columns = [], []
            for path in [*c.keep, *(x for x in LINEAGE_COLUMNS if x not in c.keep)]:
                if path in LINEAGE_COLUMNS and path not in table.column_names:
                    continue
                names.append(path.replace(".", c.separator))
                columns.append(column_path(table, path))
            table = pa.table(columns, names=names)
        missing = [d for d in c.drop if d not in table.column_names]
        if missing and c.missing == "error":
            raise HeadwaterError(
                f"cannot drop {missing}: no such column (missing: ignore allows it)"
            )
        table = table.drop_columns([d for d in c.drop if d not in missing])
        unknown = [old for old in c.rename if old not in table.column_names]
        if unknown:
            raise HeadwaterError(f"cannot rename {unknown}: no such column")
        return table.rename_columns([c.rename.get(n, n) for n in table.column_names])

    def _flatten(self, table: pa.Table) -> pa.Table:
        c: SelectConfig = self.config
        wanted = (
            {f.name for f in table.schema if pa.types.is_struct(f.type)}
            if c.flatten is True
            else set(c.flatten)
        )
        names, columns = [], []
        for field, column in zip(table.schema, table.columns, strict=True):
            if field.name not in wanted:
                names.append(field.name)
                columns.append(column)
                continue
            if not pa.types.is_struct(field.type):
                raise HeadwaterError(f"cannot flatten {field.name!r}: it is {field.type}")
            for child in field.type:
                names.append(f"{field.name}{c.separator}{child.name}")
                columns.append(pc.struct_field(column, child.name))
        return pa.table(columns, names=names)
