"""The compiled Avro reader, run in worker processes with a deadline.

The compiled reader spins forever on some corrupt input (a record body followed by stray
bytes), which no thread can interrupt. So it runs in child processes: a job whose deadline
passes kills its worker (a new one replaces it) and is reported failed; the decoder then reads
that group message by message with fastavro, which names the bad message. The workers also
spread a batch's groups over the cores.

Jobs travel as files on a memory-backed folder (``/dev/shm`` when present): the container goes
in, an Arrow IPC file comes back and is memory-mapped, so nothing is pickled or copied twice.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from headwater.decoders import avro_wire

READ_BATCH_ROWS = 8192
_SYNC = b"headwater-sync!!"  # any 16 bytes: the container never leaves this process pair
#: A job may take this long, plus PER_RECORD_SECONDS per record, before its worker is killed.
BASE_SECONDS = 5.0
PER_RECORD_SECONDS = 0.002


@dataclass
class Job:
    schema: bytes
    bodies: list[bytes]
    count: int
    columns: list[str]


def _serve(conn) -> None:  # pragma: no cover - runs in the worker process
    import pyarrow as pa
    from polars_avro._avro_rs import AvroSource

    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        container, columns, out = request
        try:
            source = AvroSource([container], False, False)
            batches = [pa.record_batch(b) for b in source.batch_iter(READ_BATCH_ROWS, columns)]
            table = pa.Table.from_batches(batches)
            with pa.OSFile(out, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            conn.send(("ok", table.num_rows))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class CompiledPool:
    """A few worker processes running the compiled reader; ``decode`` runs jobs in parallel."""

    def __init__(self, workers: int | None = None):
        self.size = workers or max(1, min(os.cpu_count() or 1, 8))
        self._ctx = mp.get_context("spawn")  # no fork of a process holding Kafka clients
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        shm = Path("/dev/shm")
        self.folder = Path(
            tempfile.mkdtemp(prefix="headwater-avro-", dir=shm if shm.is_dir() else None)
        )

    def _take(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Worker(self._ctx)

    def _give(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def decode(self, jobs: list[Job]) -> list[pa.Table | Exception]:
        """One table per job, or the exception that says why the job failed."""
        results: list[pa.Table | Exception] = [RuntimeError("not run")] * len(jobs)

        def run(k: int) -> None:
            try:
                results[k] = self._one(jobs[k])
            except Exception as exc:  # reported per job; the caller falls back
                results[k] = exc

        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
        for chunk in range(0, len(threads), self.size):  # at most `size` jobs at once
            batch = threads[chunk : chunk + self.size]
            for t in batch:
                t.start()
            for t in batch:
                t.join()
        return results

    def _one(self, job: Job) -> pa.Table:
        name = uuid.uuid4().hex
        container = self.folder / f"{name}.avro"
        out = self.folder / f"{name}.arrow"
        with open(container, "wb") as fh:  # the bodies go straight from the messages' buffers
            fh.writelines(avro_wire.container_parts(job.schema, job.count, job.bodies, _SYNC))
        worker = self._take()
        try:
            worker.conn.send((str(container), job.columns, str(out)))
            deadline = BASE_SECONDS + PER_RECORD_SECONDS * job.count
            if not worker.conn.poll(deadline):
                worker.kill()
                worker = None
                raise TimeoutError(f"the compiled reader took over {deadline:.0f}s")
            status, detail = worker.conn.recv()
            if status != "ok":
                raise ValueError(detail)
            if detail != job.count:
                raise ValueError(f"the compiled reader returned {detail} rows for {job.count}")
            return pa.ipc.open_file(pa.memory_map(str(out))).read_all()
        finally:
            if worker is not None:
                self._give(worker)
            container.unlink(missing_ok=True)
            out.unlink(missing_ok=True)  # the mapped pages live on until the table goes

    def close(self) -> None:
        with self._lock:
            workers, self._idle = self._idle, []
        for w in workers:
            w.kill()
        for f in self.folder.glob("*"):
            f.unlink(missing_ok=True)
        self.folder.rmdir()


_POOL: CompiledPool | None = None
_POOL_LOCK = threading.Lock()


def pool() -> CompiledPool:
    """The process's pool, started on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = CompiledPool()
        return _POOL
