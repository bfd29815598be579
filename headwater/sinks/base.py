"""The sink contract.

``write`` makes one stream's rows of one batch durable before it returns, at a location
derived from the batch id, so writing the same batch again replaces what was there. If
``write`` raises, the batch is not committed: source positions do not advance and a rerun
writes again. Sinks run in the order the spec lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from headwater.batch import Batch
from headwater.component import Component


@dataclass(frozen=True)
class Target:
    """What a sink writes: one stream's output for one batch."""

    pipeline: str
    stream: str
    batch: Batch


class Sink(Component):
    #: Sinks that must come before this one in the same stream (e.g. duckdb needs parquet).
    requires: tuple[str, ...] = ()
    #: May write on a helper thread while the pipeline works on later streams: it touches only
    #: what is its own (its files) and releases the GIL for the heavy part.
    concurrent: bool = False

    def write(self, target: Target, table: pa.Table) -> dict[str, Any]:
        """Make ``table`` durable; return metadata to record (paths, bytes, …)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; called once when the pipeline is closed."""
