"""A batch's sink writes, overlapped with the work on its later streams.

A stream's leading sinks that may run on another thread (``Sink.concurrent``: Parquet, whose
writer releases the GIL) start as soon as the stream's table is ready, on a helper thread,
while the pipeline goes on with the next streams: the raw stream's Parquet file of a batch of
alerts is written while the filters and cross-matches run. The other sinks (DuckDB's views,
Kafka, moves, third-party sinks) run on the calling thread, each after the sinks before it in
its stream, as before. :meth:`SinkWrites.finish` waits for every write and raises the first
error in stream order, so a batch is committed only once every sink has confirmed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import pyarrow as pa

from headwater.batch import Batch
from headwater.sinks.base import Sink, Target

Sinks = list[tuple[str, Sink]]


class SinkWrites:
    def __init__(
        self,
        pipeline: str,
        batch: Batch,
        sinks: dict[str, Sinks],
        reports: Callable[[str], Any],
        pool: Callable[[], ThreadPoolExecutor],
    ):
        self._pipeline, self._batch, self._sinks = pipeline, batch, sinks
        self._reports = reports  # a stream's StreamReport (outputs, seconds)
        self._pool = pool
        self._pending: list[tuple[str, pa.Table, Future | None, Sinks]] = []

    def start(self, stream: str, table: pa.Table) -> None:
        sinks = self._sinks[stream]
        k = 0
        while k < len(sinks) and sinks[k][1].concurrent:
            k += 1
        ahead, rest = sinks[:k], sinks[k:]
        future = self._pool().submit(self._write, stream, table, ahead) if ahead else None
        self._pending.append((stream, table, future, rest))

    def finish(self) -> None:
        futures = [f for _, _, f, _ in self._pending if f is not None]
        wait(futures)  # none left writing, whatever fails
        for stream, table, future, rest in self._pending:
            if future is not None:
                future.result()  # its error, in stream order
            self._write(stream, table, rest)

    def abandon(self) -> None:
        """Wait for the writes under way and drop their outcomes: the batch is not to be
        committed (it failed, or a batch before it did). Nothing of it is left writing."""
        wait([f for _, _, f, _ in self._pending if f is not None])
        self._pending.clear()

    def _write(self, stream: str, table: pa.Table, sinks: Sinks) -> None:
        report = self._reports(stream)
        t0 = time.perf_counter()
        for name, sink in sinks:
            report.outputs[name] = sink.write(Target(self._pipeline, stream, self._batch), table)
        report.seconds += time.perf_counter() - t0
