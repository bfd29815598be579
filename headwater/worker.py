"""``headwater stream``: a long-lived worker that cuts and runs batches as input arrives.

It keeps the pipeline (its Kafka consumer, schema caches, sinks) and the Dagster
instance open. Every batch becomes a materialization of the pipeline's assets that the web UI
shows, with the batch's id, coordinates and figures: by default the worker runs the batch
itself and reports the materializations as asset events (``worker.record: events``, tens of
ms a batch); with ``record: runs`` each batch is a Dagster run of the pipeline's job in this
process, as the sensor would launch it (about 0.3 s a batch, too slow for sub-second latency).

A batch is cut when ``max_records_per_batch`` records are waiting, or when the oldest waiting
record has waited ``max_wait_ms``, whichever comes first. Batches are recorded before they
run, so a worker killed at any point (even SIGKILL) loses nothing: the next start runs the
pending batch again from its recorded offsets. A failed run (the broker went away, a sink
refused) is retried from the same offsets with a growing pause, never skipped. With a
backlog, a batch is processed while the one before it finishes its durable writes (by default;
commits stay in order, see :func:`headwater.pipeline.overlapped`). SIGTERM or Ctrl-C finish
the batches in hand (one, or two when overlapped), commit them, and stop.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from headwater.batch import Batch
from headwater.errors import HeadwaterError
from headwater.pipeline import Pipeline
from headwater.runner import BatchRunner, EventRunner, RunOutcome, dagster_instance


@dataclass
class WorkerStats:
    batches: int = 0
    failed: int = 0
    records: int = 0
    started: float = field(default_factory=time.monotonic)


class StreamWorker:
    def __init__(
        self,
        spec_file: Path,
        pipeline: Pipeline,
        overrides: list[str],
        root: Path,
        *,
        max_wait_ms: int,
        poll_ms: int = 50,
        idle_exit_seconds: float = 0.0,
        max_batches: int = 0,
        max_backoff_seconds: float = 30.0,
        on_batch: Callable[[RunOutcome], None] | None = None,
        on_error: Callable[[HeadwaterError], None] | None = None,
        record: str = "events",
        runner: BatchRunner | EventRunner | None = None,
    ):
        self.pipeline = pipeline
        if runner is None:
            instance = dagster_instance(root, capture_logs=False)
            if record == "runs":
                runner = BatchRunner(spec_file, pipeline, overrides, root, instance)
            else:
                runner = EventRunner(pipeline, instance)
        self.runner = runner
        self.max_wait = max_wait_ms / 1000
        self.poll = poll_ms / 1000
        self.idle_exit = idle_exit_seconds
        self.max_batches = max_batches
        self.max_backoff = max_backoff_seconds
        self.on_batch = on_batch
        self.on_error = on_error
        self.stop = threading.Event()
        self.stats = WorkerStats()

    def run_until_signalled(self) -> WorkerStats:
        """Run the loop in a thread; SIGTERM and SIGINT ask it to stop after the batch in hand.

        The loop runs off the main thread because Dagster takes over SIGINT and SIGTERM in
        the main thread while a run executes; here the signals stay ours.
        """
        previous = {
            sig: signal.signal(sig, lambda *_: self.stop.set())
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        failure: list[BaseException] = []

        def loop() -> None:
            try:
                self.run()
            except BaseException as exc:  # handed to the main thread below
                failure.append(exc)

        thread = threading.Thread(target=loop, name="headwater-stream")
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failure:
            raise failure[0]
        return self.stats

    def run(self) -> WorkerStats:
        self.pipeline.warm()
        self.runner.report_missing()  # a batch done just before a kill gets its events
        # What start-up made (Dagster's definitions, the pipeline, the catalogs: some 200,000
        # objects) lives as long as the worker; frozen, the collector no longer walks it at
        # every full collection, ~0.1 s each with the GIL held, several a minute under load.
        # Thawed when the worker stops, for whatever the process does next.
        gc.freeze()
        try:
            return self._loop()
        finally:
            gc.unfreeze()

    def _loop(self) -> WorkerStats:
        self._run_pending()  # a previous worker's unfinished batches go first, as recorded
        waiting_since: float | None = None
        idle_since = time.monotonic()
        delay = 1.0
        while not self._done():
            looked = time.monotonic()
            try:
                planned, _pending = self.pipeline.peek()
            except HeadwaterError as exc:
                if not exc.transient:
                    raise
                if self.on_error:  # the broker is away: wait for it, a little longer each time
                    self.on_error(exc)
                self.stop.wait(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            delay = 1.0
            if not planned:
                waiting_since = None
                if self.idle_exit and looked - idle_since > self.idle_exit:
                    break
                self.stop.wait(self.poll)
                continue
            idle_since = looked
            waiting_since = waiting_since or looked
            cap = self.cap()
            full = cap is not None and any(records >= cap for _, records in planned)
            if not full and looked - waiting_since < self.max_wait:
                self.stop.wait(min(self.poll, self.max_wait - (looked - waiting_since)))
                continue
            # every group's batch, in turn: taking only the first would starve the others
            self._run_all(self.pipeline.record(planned))
            # what arrived while those batches ran has waited since we last looked
            waiting_since = looked if not full else None
        return self.stats

    def cap(self) -> int | None:
        return getattr(self.pipeline.source.config, "max_records_per_batch", None)

    def _done(self) -> bool:
        if self.stop.is_set():
            return True
        return bool(self.max_batches) and self.stats.batches >= self.max_batches

    def _run_pending(self) -> None:
        pending = self.pipeline.pending()
        # runs the sensor launched before this worker took the pipeline may still hold some
        self.runner.refuse_claimed(pending, "headwater stream")
        self._run_all(pending)

    def _run_all(self, batches: list[Batch]) -> None:
        """Run batches in turn, each read and decoded while the one before is worked on (a
        backlog of files: both cores busy); the runner may overlap a batch's processing with
        the writes of the one before. A failed batch is retried alone, then the rest go on. A
        stop leaves the rest recorded, so the next start runs them from the same coordinates."""
        todo = list(batches)
        while todo and not self._done():
            failed = None
            # started batches are finished even on a stop, so none is started past the cap
            left = self.max_batches - self.stats.batches if self.max_batches else len(todo)
            outcomes = self.runner.run_each(todo[:left], self.stop.is_set)
            try:
                for outcome in outcomes:
                    todo.pop(0)
                    self._count(outcome)
                    if not outcome.success:
                        failed = outcome.batch
                        break
                    if self._done():
                        return
            finally:
                outcomes.close()  # a batch started and not yet committed is abandoned
            if failed is not None and not self._retry(failed):
                return

    def _count(self, outcome: RunOutcome) -> None:
        if self.on_batch:
            self.on_batch(outcome)
        if outcome.success:
            self.stats.batches += 1
            self.stats.records += outcome.batch.records
        else:
            self.stats.failed += 1

    def _retry(self, batch: Batch) -> bool:
        """Run a failed batch again from the same offsets, backing off, until it succeeds:
        running ahead of it would commit offsets past a batch that is not done. False if
        the worker stops first (the batch stays pending for the next start)."""
        delay = 1.0
        while not self.stop.wait(delay):
            outcome = self.runner.run(batch)
            self._count(outcome)
            if outcome.success:
                return True
            delay = min(delay * 2, self.max_backoff)
        return False
