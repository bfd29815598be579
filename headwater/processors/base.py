"""The processor contract: an Arrow table in, an Arrow table (or a keep-mask) out.

Processors are pure: no I/O, no state between batches that changes results. A chain has the
meaning of LSST:UK's CandidateProcessor list — a row a filter skips goes no further down its
stream. A processor may refuse malformed rows; they go to the quarantine with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from headwater.component import Component
from headwater.errors import HeadwaterError, ProcessorError
from headwater.quarantine import no_rejects


@dataclass
class Processed:
    """A processor's result when it also refuses rows."""

    table: pa.Table
    rejects: pa.Table
    #: Figures about the batch (JSON values), shown as the stream asset's metadata.
    metadata: dict[str, Any] = field(default_factory=dict)


class Processor(Component):
    #: Whether the processor reads what the previous batch's sinks applied (a placement
    #: model reads the moves the last batch's sink logged: a closed loop). A pipeline with
    #: one commits each batch before it starts the next (see :func:`overlapped`).
    closed_loop: ClassVar[bool] = False

    def process(self, table: pa.Table) -> pa.Table | pa.Array | pa.ChunkedArray | Processed:
        """Return the output table, a boolean keep-mask over ``table``, or :class:`Processed`."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (a placement model's moves reader); called once when the
        pipeline is closed."""

    def __call__(self, table: pa.Table) -> Processed:
        try:
            out = self.process(table)
        except ProcessorError:
            raise
        except HeadwaterError as exc:
            raise ProcessorError(
                f"processor {self.ctx.where}: {exc}", transient=exc.transient
            ) from exc
        if isinstance(out, Processed):
            return out
        if isinstance(out, pa.Array | pa.ChunkedArray):
            if not pa.types.is_boolean(out.type) or len(out) != table.num_rows:
                raise ProcessorError(
                    f"processor {self.ctx.where} returned a {out.type} array of {len(out)} "
                    f"values; expected a boolean mask of {table.num_rows}"
                )
            if out.null_count == 0 and pc.all(out).as_py():
                return Processed(table, no_rejects())  # keeps all: no copy of the batch
            return Processed(table.filter(out, null_selection_behavior="drop"), no_rejects())
        if not isinstance(out, pa.Table):
            raise ProcessorError(
                f"processor {self.ctx.where} returned {type(out).__name__}; "
                "expected a pyarrow Table, a boolean mask or Processed"
            )
        return Processed(out, no_rejects())
