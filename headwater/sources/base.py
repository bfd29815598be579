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


def cut_ranges(pending: list[list[Any]], cap: int) -> list[tuple[list[list[Any]], int]]:
    """Cut ``[*ident, start, end]`` ranges, in order, into batches of at most ``cap`` records.

    A range larger than what is left in a batch is split; each batch is ``(ranges, size)``.
    """
    batches: list[tuple[list[list[Any]], int]] = []
    current: list[list[Any]] = []
    size = 0
    for *ident, start, end in pending:
        while start < end:
            take = min(end - start, cap - size)
            current.append([*ident, start, start + take])
            size += take
            start += take
            if size == cap:
                batches.append((current, size))
                current, size = [], 0
    if current:
        batches.append((current, size))
    return batches


def cut_across(pending: list[list[Any]], cap: int) -> list[tuple[list[list[Any]], int]]:
    """Cut ``[*ident, start, end]`` ranges into batches of at most ``cap`` records, each
    taking from every range in proportion to what it has left (Spark's
    maxOffsetsPerTrigger splits its cap so). Partitions of a topic fill together, so in a
    backlog a batch holds the same stretch of time from each, where range after range would
    hold one partition's whole backlog, then the next's."""
    left = [list(item) for item in pending if item[-1] > item[-2]]
    batches: list[tuple[list[list[Any]], int]] = []
    while left:
        sizes = [end - start for *_, start, end in left]
        total = sum(sizes)
        if total <= cap:
            batches.append(([list(item) for item in left], total))
            break
        shares = [n * cap // total for n in sizes]
        # the records the rounding left over go to the largest remainders, ties in order
        order = sorted(range(len(left)), key=lambda i: (-(sizes[i] * cap % total), i))
        for i in order[: cap - sum(shares)]:
            shares[i] += 1
        batch = []
        for item, share in zip(left, shares, strict=True):
            if share:
                batch.append([*item[:-2], item[-2], item[-2] + share])
                item[-2] += share
        batches.append((batch, cap))
        left = [item for item in left if item[-1] > item[-2]]
    return batches


class Source(Component):
    #: Whether ``read`` may run in a background thread while this process works on another
    #: batch (the pipeline then reads and decodes the next batch ahead; see Pipeline.expect).
    concurrent_reads = False
    #: Whether a batch always ends at a tick boundary of a usage series (the usage source
    #: cuts windows of whole ticks). A topic's batch may end part-way through a tick.
    whole_ticks = False
    #: Set by the pipeline when its processors read what the last batch applied (a closed
    #: loop): a batch should then hold the same stretch of time from every partition.
    aligned = False

    def plan(self, previous: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
        """New batches as ``(coordinates, record count)``, given earlier batches' coordinates."""
        raise NotImplementedError

    def read(self, coordinates: dict[str, Any]) -> RawBatch:
        raise NotImplementedError

    def commit(self, batch: Batch) -> None:
        """Advance the source's position past ``batch``; only after every sink is durable."""

    def owns(self, coordinates: dict[str, Any]) -> bool:
        """Whether this source instance runs these batches (a Kafka worker runs one group)."""
        return True

    @classmethod
    def parallel_groups(cls, config: Any) -> tuple[str, int]:
        """The setting that splits the input into groups whose batches run in parallel, and
        its value (one group: batches of a group run one at a time)."""
        return "", 1

    def group(self, coordinates: dict[str, Any]) -> str | None:
        """Batches of one group must not run at once (they share partitions); None: any may."""
        return None

    def describe(self, coordinates: dict[str, Any]) -> str:
        """A one-line human summary of coordinates, for tags and logs."""
        return str(coordinates)

    def close(self) -> None:
        """Release clients and connections."""
