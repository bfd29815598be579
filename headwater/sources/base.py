"""The source contract: cut new batches as coordinates, read a batch back from them, commit.

``plan`` only looks at what exists and what earlier batches covered; it never consumes. A
batch's coordinates are recorded before it is read, so ``read`` of the same coordinates
always returns the same messages. ``commit`` is called only after every sink of the batch
confirmed (for Kafka it advances the consumer group; files need nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from headwater.batch import Batch, RawBatch
from headwater.component import Component


class Source(Component):
    def plan(self, previous: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
        """New batches as ``(coordinates, record count)``, given earlier batches' coordinates."""
        raise NotImplementedError

    def read(self, coordinates: dict[str, Any]) -> RawBatch:
        raise NotImplementedError

    def commit(self, batch: Batch) -> None:
        """Advance the source's position past ``batch``; only after every sink is durable."""

    def describe(self, coordinates: dict[str, Any]) -> str:
        """A one-line human summary of coordinates, for tags and logs."""
        return str(coordinates)

    def close(self) -> None:
        """Release clients and connections."""
