"""The decoder contract: a whole batch of raw messages in, one Arrow table out.

Decoders never see one message at a time from the outside, so a faster batch decoder can
replace a slower one without touching anything else. A message that cannot be decoded is
refused (quarantined) with its reason; the rest of the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from headwater.arrow import column_path
from headwater.batch import RawBatch
from headwater.component import Component
from headwater.config import ComponentConfig
from headwater.errors import HeadwaterError
from headwater.quarantine import REJECT_SCHEMA, no_rejects


class DecoderConfig(ComponentConfig):
    required: list[str] = Field(
        default_factory=list,
        description="Dotted paths (candidate.ra) that must be non-null; rows without them "
        "are quarantined.",
    )
    drop: list[str] = Field(
        default_factory=list, description="Top-level fields left out of the decoded table."
    )


@dataclass
class Decoded:
    """A decoded batch: the table (with ``_source``/``_offset`` lineage) and the refused."""

    table: pa.Table
    rejects: pa.Table
    stats: dict[str, int] = field(default_factory=dict)  # e.g. compiled and fallback groups


class Decoder(Component):
    Config = DecoderConfig

    def warm(self, wait: bool = True) -> None:
        """Start what decoding needs (helper processes) before the first batch asks for it,
        and with ``wait`` wait until it is ready; without, it gets ready meanwhile."""

    def decode(self, raw: RawBatch) -> Decoded:
        raise NotImplementedError

    def finish(
        self,
        table: pa.Table,
        row_message: np.ndarray | None,
        raw: RawBatch,
        refused: list[pa.Table],
    ) -> Decoded:
        """Add lineage columns, enforce ``required``, gather the refused rows.

        ``row_message`` maps each decoded row to the index of its message in ``raw``; None
        says a row per message, in order (the lineage columns are then taken as they are).
        """
        msgs = raw.messages
        if row_message is None:
            table = table.append_column("_source", msgs["_source"])
            table = table.append_column("_offset", msgs["_offset"])
        else:
            idx = pa.array(row_message, pa.int64())
            table = table.append_column("_source", msgs["_source"].take(idx))
            table = table.append_column("_offset", msgs["_offset"].take(idx))
        missing = self._missing_required(table)
        if missing is not None:
            bad_rows = np.flatnonzero(missing[0])
            if len(bad_rows):
                bad = pa.array(bad_rows, pa.int64())
                message = bad if row_message is None else pa.array(row_message[bad_rows])
                refused.append(
                    pa.table(
                        [
                            table["_source"].take(bad),
                            table["_offset"].take(bad),
                            missing[1].take(bad),
                            msgs["value"].take(message),
                        ],
                        schema=REJECT_SCHEMA,
                    )
                )
                table = table.filter(pa.array(~missing[0]))
        parts = [r for r in refused if r.num_rows]
        return Decoded(table, pa.concat_tables(parts) if parts else no_rejects())

    def _missing_required(self, table: pa.Table) -> tuple[np.ndarray, pa.Array] | None:
        if not self.config.required or table.num_rows == 0:
            return None
        missing = np.zeros(table.num_rows, dtype=bool)
        reason = pa.nulls(table.num_rows, pa.string())
        for path in reversed(self.config.required):  # the first listed reason wins
            try:
                nulls = pc.is_null(column_path(table, path)).to_numpy(zero_copy_only=False)
            except HeadwaterError:
                nulls = np.ones(table.num_rows, dtype=bool)
            missing |= nulls
            reason = pc.if_else(pa.array(nulls), f"required field {path!r} is missing", reason)
        return missing, reason
