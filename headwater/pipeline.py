"""A pipeline built from its spec: cut batches, run a batch end to end, commit after durable.

This is the plain core that the Dagster shell and the CLI both call. It imports no dagster.

Per batch: read the recorded coordinates → decode (refused messages to the quarantine) →
every stream in dependency order through its processors → write the quarantine → every
stream's sinks in order → commit the source → mark the batch done in the ledger.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from headwater import registry
from headwater.batch import Batch, RawBatch, batch_id_for, has_payload
from headwater.component import Context
from headwater.crossmatch.catalog import CATALOGS, CatalogStore
from headwater.decoders.base import Decoded
from headwater.errors import HeadwaterError
from headwater.kafka.connection import KafkaConnection
from headwater.lake import QUARANTINE, Lake
from headwater.ledger import PENDING, Entry, Ledger
from headwater.processors.base import Processed
from headwater.quarantine import Quarantine, rejects
from headwater.sink_writes import SinkWrites
from headwater.sinks.parquet import write_atomically
from headwater.spec.load import LoadedSpec
from headwater.spec.model import ComponentSpec

WINDOW_FORMATS = {"daily": "%Y-%m-%d", "hourly": "%Y-%m-%d-%H:00"}
#: The run group of a closed loop's batches when its source has no groups of its own.
LOOP_GROUP = "loop"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class StreamReport:
    stream: str
    rows_in: int = 0
    rows_out: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)  # what its processors reported


@dataclass
class BatchReport:
    batch: Batch
    messages: int = 0
    decoded: int = 0
    quarantined: int = 0
    decode_seconds: float = 0.0
    seconds: float = 0.0
    streams: dict[str, StreamReport] = field(default_factory=dict)
    quarantine_path: str | None = None
    decode_stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_summary(cls, batch: Batch, summary: dict[str, Any]) -> BatchReport:
        """The report of a batch done earlier, rebuilt from its ledger summary."""
        streams = {
            name: StreamReport(
                name,
                s["rows_in"],
                s["rows_out"],
                s["quarantined"],
                s["seconds"],
                s.get("outputs", {}),
                s.get("metadata", {}),
            )
            for name, s in summary.get("streams", {}).items()
        }
        return cls(
            batch,
            summary.get("messages", 0),
            summary.get("decoded", 0),
            summary.get("quarantined", 0),
            summary.get("decode_seconds", 0.0),
            summary.get("seconds", 0.0),
            streams,
            summary.get("quarantine_path"),
            dict(summary.get("decode", {})),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "decoded": self.decoded,
            "quarantined": self.quarantined,
            "decode_seconds": round(self.decode_seconds, 6),
            "seconds": round(self.seconds, 6),
            "decode": self.decode_stats,
            "quarantine_path": self.quarantine_path,
            "streams": {
                s.stream: {
                    "rows_in": s.rows_in,
                    "rows_out": s.rows_out,
                    "quarantined": s.quarantined,
                    "seconds": round(s.seconds, 6),
                    "outputs": s.outputs,
                    **({"metadata": s.metadata} if s.metadata else {}),
                }
                for s in self.streams.values()
            },
        }


@dataclass
class Started:
    """A batch processed, its sink writes under way, not yet committed (:meth:`Pipeline.start`)."""

    batch: Batch
    report: BatchReport
    writes: SinkWrites
    since: float


def _build(kind: str, spec: ComponentSpec, ctx: Context) -> Any:
    cls = registry.lookup(kind, spec.name)
    return cls(spec.config, dataclasses.replace(ctx, where=spec.where))


def in_turn(pipeline: Pipeline, batches: list[Batch]) -> Iterator[Batch]:
    """Each batch in turn, the pipeline told first which one follows it (see
    :meth:`Pipeline.expect`), so that one is read and decoded while this one runs."""
    for k, batch in enumerate(batches):
        pipeline.expect(batches[k + 1] if k + 1 < len(batches) else None)
        yield batch


def overlapped(
    pipeline: Pipeline, batches: list[Batch], stop: Callable[[], bool] = lambda: False
) -> Iterator[tuple[Batch, BatchReport | HeadwaterError]]:
    """Run a backlog of batches, each started (read, decoded, processed) while the one
    before it finishes its durable writes, and yield each batch's outcome in order, once it
    is committed and marked done, or its error.

    With stamps kept, a batch of ZTF alerts writes some 200 MB to be fsynced: started one
    after another, the batches leave a core idle while that completes. Commits stay in
    order: batch k+1 is committed only after batch k. After an error, nothing further is
    committed: a batch already started is abandoned (its files are rewritten when it is
    run again, by the same id) and the generator stops; the caller runs the failed batch
    again, then the rest. Once ``stop()`` is true no further batch is started: the one in
    hand is finished. Closing the generator early abandons a started batch. A closed-loop
    pipeline (:attr:`Pipeline.closed_loop`) commits each batch before starting the next:
    its placement model reads the moves the batch before applied (only reading and
    decoding the next batch go on meanwhile).
    """
    pending: Started | None = None
    try:
        for batch in in_turn(pipeline, batches):
            if stop():
                break
            if pending is not None and pipeline.closed_loop:  # k+1 reads what k applies
                done, pending = _finish(pipeline, pending), None
                yield done
                if isinstance(done[1], HeadwaterError):
                    return
            try:
                started = pipeline.start(batch)
            except HeadwaterError as exc:
                if pending is not None:
                    done, pending = _finish(pipeline, pending), None
                    yield done
                    if isinstance(done[1], HeadwaterError):
                        return
                yield batch, exc
                return
            done = _finish(pipeline, pending) if pending is not None else None
            pending = started
            if done is not None:
                yield done
                if isinstance(done[1], HeadwaterError):
                    return
        if pending is not None:
            done, pending = _finish(pipeline, pending), None
            yield done
    finally:
        if pending is not None:
            pending.writes.abandon()


def _finish(pipeline: Pipeline, started: Started) -> tuple[Batch, BatchReport | HeadwaterError]:
    try:
        return started.batch, pipeline.finish(started)
    except HeadwaterError as exc:
        return started.batch, exc


class Pipeline:
    """A loaded spec with its components instantiated; reusable across batches."""

    def __init__(
        self,
        spec: LoadedSpec,
        clock: Callable[[], dt.datetime] = utcnow,
        kafka: KafkaConnection | None = None,
    ):
        """``kafka`` replaces the spec's connection (the Dagster resource supplies one)."""
        self.spec = spec
        self.name = spec.name
        self.clock = clock
        base = spec.base_dir
        lake_root = Path(spec.model.lake).expanduser()
        self.lake = Lake(lake_root if lake_root.is_absolute() else (base / lake_root))
        self.ledger = Ledger(self.lake.ledger_dir(self.name))
        self.kafka = kafka or spec.model.kafka
        stored = self.lake.stream_dir(self.name, CATALOGS)
        self.catalogs = CatalogStore(spec.model.catalogs, base, stored)
        ctx = Context(self.name, "", base, self.lake, self.kafka, self.catalogs)
        self.source = _build("sources", spec.source, ctx)
        ctx = dataclasses.replace(ctx, whole_ticks=type(self.source).whole_ticks)
        self.decoder = _build("decoders", spec.decode, ctx)
        self.processors = {
            s.name: [_build("processors", p, ctx) for p in s.processors] for s in spec.streams
        }
        self.sinks = {
            s.name: [(k.name, _build("sinks", k, ctx)) for k in s.sinks] for s in spec.streams
        }
        #: Whether a batch's processing reads what the batch before it applied through its
        #: sinks (a placement loop): then batches are not overlapped (see :func:`overlapped`).
        self.closed_loop = any(p.closed_loop for ps in self.processors.values() for p in ps)
        self.source.aligned = self.closed_loop
        self._next: Batch | None = None
        self._ahead: tuple[str, Future] | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._writer: ThreadPoolExecutor | None = None

    # -- cutting batches ------------------------------------------------------------------

    def window_for(self, when: dt.datetime) -> str:
        return when.astimezone(dt.UTC).strftime(WINDOW_FORMATS[self.spec.model.partitions.cadence])

    def plan(self) -> list[Batch]:
        """Cut the input not yet covered into batches and record them (before processing)."""
        return self.cut()[0]

    def cut(self, hold: Collection[str] = ()) -> tuple[list[Batch], list[Batch]]:
        """Record new batches; return them and every pending batch, from one ledger scan.

        Input of the source groups in ``hold`` is left for a later cut (see the sensor).
        """
        planned, pending = self.peek()
        new = self.record([p for p in planned if self.group(p[0]) not in hold])
        known = {b.id for b in pending}
        return new, pending + [b for b in new if b.id not in known]

    def group(self, coordinates: dict[str, Any]) -> str | None:
        """The batch's run group: runs of a group go one at a time (the run queue's limit).
        The source's group; for a closed loop, one group whatever the source says (its
        batches are a sequence, each reading what the one before applied)."""
        group = self.source.group(coordinates)
        return LOOP_GROUP if group is None and self.closed_loop else group

    def peek(self) -> tuple[list[tuple[dict[str, Any], int]], list[Batch]]:
        """The batches the source would cut now, as ``(coordinates, records)`` (not recorded),
        and the recorded batches still pending."""
        entries = list(self.ledger.entries())
        planned = self.source.plan([e.batch.coordinates for e in entries])
        return planned, self._pending(entries)

    def record(self, planned: list[tuple[dict[str, Any], int]]) -> list[Batch]:
        """Record planned batches in the ledger (before processing); return them."""
        now = self.clock()
        batches = []
        for seq, (coordinates, records) in enumerate(planned):
            batch = Batch(
                pipeline=self.name,
                id=batch_id_for(self.name, self.spec.source.name, coordinates),
                window=self.window_for(now),
                source=self.spec.source.name,
                coordinates=coordinates,
                created_at=now.isoformat(),
                records=records,
                seq=seq,
            )
            batches.append(self.ledger.record(batch).batch)
        return batches

    def pending(self) -> list[Batch]:
        """Recorded batches not yet done (new ones, and ones whose run failed)."""
        return self._pending(self.ledger.entries())

    def _pending(self, entries: Iterable[Entry]) -> list[Batch]:
        """Pending batches of this pipeline's share of the source (a Kafka worker's group)."""
        owned = self.source.owns
        return [e.batch for e in entries if e.status == PENDING and owned(e.batch.coordinates)]

    # -- running one batch ----------------------------------------------------------------

    def expect(self, batch: Batch | None) -> None:
        """Say which batch this process runs after the next one: once the next batch is
        decoded, this one is read and decoded in the background while the next batch's
        streams and sinks are worked on, so both cores are busy (the compiled decoder
        releases the GIL). Only for sources whose reads may run concurrently."""
        self._next = batch if batch is not None and self.source.concurrent_reads else None

    def _read_decode(self, batch: Batch) -> tuple[RawBatch, Decoded, float]:
        started = time.perf_counter()
        raw = self.source.read(batch.coordinates)
        return raw, self.decoder.decode(raw), time.perf_counter() - started

    def _input(self, batch: Batch) -> tuple[RawBatch, Decoded, float]:
        """The batch's raw and decoded input: read ahead if it was expected, else now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            batch_id, future = ahead
            if batch_id == batch.id:
                return future.result()  # its errors are raised here, as if read now
            wait([future])  # another batch's: never decode two at once
        return self._read_decode(batch)

    def _read_ahead(self, current: Batch) -> None:
        upcoming, self._next = self._next, None
        if upcoming is None or upcoming.id == current.id:
            return
        if self._reader is None:
            self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-read-ahead")
        self._ahead = (upcoming.id, self._reader.submit(self._read_decode, upcoming))

    def run(self, batch: Batch) -> BatchReport:
        """Run ``batch`` end to end; it is committed and marked done on return."""
        return self.finish(self.start(batch))

    def start(self, batch: Batch) -> Started:
        """Read, decode and process ``batch`` and start its sink writes; :meth:`finish`
        commits it. Between the two, the next batch may be started: its processing overlaps
        this one's durable writes (see :func:`overlapped`)."""
        started = time.perf_counter()
        report = BatchReport(batch)
        quarantine = Quarantine(self.name, batch.id)
        raw, decoded, report.decode_seconds = self._input(batch)
        self._read_ahead(batch)
        report.messages = raw.messages.num_rows + len(raw.unreadable)
        if raw.unreadable:
            s, o, e = zip(*raw.unreadable, strict=True)
            quarantine.add("source", None, rejects(list(s), list(o), list(e), [None] * len(s)))
        quarantine.add("decode", None, decoded.rejects)
        report.decoded = decoded.table.num_rows
        report.decode_stats = dict(decoded.stats)
        writes = SinkWrites(
            self.name, batch, self.sinks, lambda s: report.streams[s], self._sink_pool
        )
        try:
            self._process(decoded.table, quarantine, report, writes.start)
            report.quarantine_path = self._write_quarantine(batch, quarantine)
        except BaseException:
            writes.abandon()  # no write of this batch goes on behind its error
            raise
        report.quarantined = quarantine.total
        return Started(batch, report, writes, started)

    def finish(self, started: Started) -> BatchReport:
        """Wait for ``started``'s sinks, commit the source and mark the batch done."""
        report = started.report
        started.writes.finish()  # every sink confirmed (or its error raised) before the commit
        self.source.commit(started.batch)
        report.seconds = time.perf_counter() - started.since
        self.ledger.complete(started.batch, report.summary())
        return report

    def _sink_pool(self) -> ThreadPoolExecutor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(2, thread_name_prefix=f"{self.name}-sinks")
        return self._writer

    def _process(
        self,
        decoded: pa.Table,
        quarantine: Quarantine,
        report: BatchReport,
        on_output: Callable[[str, pa.Table], None] = lambda stream, table: None,
    ) -> dict[str, pa.Table]:
        """Every stream's table; ``on_output`` is told of each as soon as it is ready."""
        outputs: dict[str, pa.Table] = {}
        # Streams whose chains start alike (the same processors, configured alike, on the same
        # input) share that part: processors are pure, so it is computed once a batch. The
        # bundled ZTF spec excludes solar-system objects in two streams: one copy of a batch
        # of alerts, not two. Configs are compared with == (a secret by its value, not by the
        # mask a dump would show).
        done: list[tuple[tuple, Processed]] = []
        for stream in self.spec.streams:
            t0 = time.perf_counter()
            table = decoded if stream.parent is None else outputs[stream.parent]
            rows_in = table.num_rows
            metadata: dict[str, Any] = {}
            chain: tuple = (stream.parent,)
            for processor in self.processors[stream.name]:
                if not has_payload(table):  # nothing was decoded: no columns to work on
                    break
                chain += ((type(processor), processor.config),)
                result = next((r for c, r in done if c == chain), None)
                if result is None:
                    result = processor(table)
                    done.append((chain, result))
                quarantine.add("process", stream.name, result.rejects)
                metadata.update(result.metadata)
                table = result.table
            outputs[stream.name] = table
            report.streams[stream.name] = StreamReport(
                stream.name,
                rows_in,
                table.num_rows,
                quarantine.count(stream.name),
                time.perf_counter() - t0,
                metadata=metadata,
            )
            on_output(stream.name, table)
        return outputs

    def _write_quarantine(self, batch: Batch, quarantine: Quarantine) -> str | None:
        path = self.lake.batch_file(self.name, QUARANTINE, batch.window, batch.id)
        if quarantine.total == 0:
            path.unlink(missing_ok=True)  # a rerun that refuses nothing leaves no stale file
            return None
        write_atomically(path, quarantine.table(), compression="zstd")
        return str(path)

    def warm(self, wait: bool = True) -> None:
        """Start the decoder's helpers, if it has any; with ``wait``, until they are ready."""
        self.decoder.warm(wait)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.shutdown(wait=True, cancel_futures=True)
            self._reader, self._ahead = None, None
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        self.source.close()
        for processors in self.processors.values():
            for processor in processors:
                processor.close()
        for sinks in self.sinks.values():
            for _, sink in sinks:
                sink.close()
