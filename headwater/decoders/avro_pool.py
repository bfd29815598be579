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

import atexit
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from headwater.decoders import avro_wire

#: Pool folders are named PREFIX + owner pid + "-" + random, so orphans can be found.
PREFIX = "headwater-avro-"
READ_BATCH_ROWS = 1024
_SYNC = b"headwater-sync!!"  # any 16 bytes: the container never leaves this process pair
#: A job may take this long, plus PER_RECORD_SECONDS per record, before its worker is killed.
BASE_SECONDS = 5.0
PER_RECORD_SECONDS = 0.002
#: A new worker has this long to import the compiled reader and say it is ready.
START_SECONDS = 60.0
#: glibc in the workers keeps the memory it frees instead of handing it back to the kernel,
#: so each batch reuses the last one's pages: fresh pages cost a fault and zeroing each, and
#: made decoding 1.5x slower (measured on the ZTF sample). Held memory is bounded by the
#: largest batch a worker has decoded.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**34)}
_ENV_LOCK = threading.Lock()


@dataclass
class Job:
    schema: bytes
    bodies: list[bytes]
    count: int
    columns: list[str]


def _serve(conn) -> None:  # pragma: no cover - runs in the worker process
    import pyarrow as pa
    from polars_avro._avro_rs import AvroSource

    conn.send(("ready", os.getpid()))
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
    def __init__(self, ctx, folder: Path):
        self.inbox = folder / f"{uuid.uuid4().hex}.avro"
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        _start_with(self.proc, WORKER_ENV)
        child.close()
        self.ready = False
        self._hello = threading.Lock()  # warm() and a job may wait for it at once

    def wait_ready(self) -> None:
        """Wait for the worker's hello, sent once its imports are done."""
        with self._hello:
            if self.ready:
                return
            if not self.conn.poll(START_SECONDS):
                raise TimeoutError(f"a decoding worker did not start within {START_SECONDS:.0f}s")
            status, _pid = self.conn.recv()
            if status != "ready":
                raise RuntimeError(f"a decoding worker said {status!r} instead of hello")
            self.ready = True

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()
        self.inbox.unlink(missing_ok=True)

    def write(self, parts: list) -> None:
        """The container into this worker's own file, rewritten in place: the memory
        behind it is reused instead of the kernel handing out (and zeroing) new pages for
        every batch, which cost more than the copy itself here."""
        with open(self.inbox, "r+b" if self.inbox.exists() else "wb") as fh:
            fh.writelines(parts)
            fh.truncate()


def _start_with(proc, env: dict[str, str]) -> None:
    """Start a spawned process with ``env`` added to its environment (glibc reads its
    settings at start); ours is restored right after."""
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class CompiledPool:
    """A few worker processes running the compiled reader; ``decode`` runs jobs in parallel."""

    def __init__(self, workers: int | None = None):
        self.size = workers or max(1, min(os.cpu_count() or 1, 8))
        self._ctx = mp.get_context("spawn")  # no fork of a process holding Kafka clients
        self._idle: list[_Worker] = []
        self._busy = 0  # workers out on a job
        self._lock = threading.Lock()
        self.closed = False
        shm = Path("/dev/shm")
        where = shm if shm.is_dir() else Path(tempfile.gettempdir())
        _remove_orphans(where)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=where))

    def _take(self) -> _Worker:
        with self._lock:
            self._busy += 1
            if self._idle:
                return self._idle.pop()
        return _Worker(self._ctx, self.folder)

    def _give(self, worker: _Worker | None) -> None:
        """Back to the pool after a job; None: the job's worker was killed."""
        with self._lock:
            self._busy -= 1
            if worker is not None:
                self._idle.append(worker)

    def start(self) -> None:
        """Start the missing workers without waiting for them: they import the compiled
        reader while this process does other work (a run reading its batch from Kafka)."""
        with self._lock:
            missing = self.size - len(self._idle) - self._busy
            self._idle += [_Worker(self._ctx, self.folder) for _ in range(missing)]

    def warm(self) -> None:
        """Start every worker and wait until each has imported the compiled reader."""
        self.start()
        with self._lock:
            idle = list(self._idle)
        for worker in idle:  # they start side by side; each waited for in turn
            worker.wait_ready()

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
        out = self.folder / f"{uuid.uuid4().hex}.arrow"
        worker = self._take()
        try:  # the bodies go straight from the messages' buffers into the file
            try:
                worker.wait_ready()
                worker.write(avro_wire.container_parts(job.schema, job.count, job.bodies, _SYNC))
                worker.conn.send((str(worker.inbox), job.columns, str(out)))
                deadline = BASE_SECONDS + PER_RECORD_SECONDS * job.count
                if not worker.conn.poll(deadline):
                    raise TimeoutError(f"the compiled reader took over {deadline:.0f}s")
                status, detail = worker.conn.recv()
            except (OSError, EOFError, TimeoutError, RuntimeError):
                worker.kill()  # stuck, gone or confused: a new worker replaces it
                worker = None
                raise
            if status != "ok":
                raise ValueError(detail)
            if detail != job.count:
                raise ValueError(f"the compiled reader returned {detail} rows for {job.count}")
            return pa.ipc.open_file(pa.memory_map(str(out))).read_all()
        finally:
            self._give(worker)
            out.unlink(missing_ok=True)  # the mapped pages live on until the table goes

    def close(self) -> None:
        with self._lock:
            workers, self._idle = self._idle, []
        for w in workers:
            w.kill()
        self.closed = True
        shutil.rmtree(self.folder, ignore_errors=True)


_POOL: CompiledPool | None = None
_POOL_LOCK = threading.Lock()


def pool() -> CompiledPool:
    """The process's pool, started on first use and closed when the process exits."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.closed:
            _POOL = CompiledPool()
            atexit.register(_POOL.close)
        return _POOL


def _remove_orphans(where: Path) -> None:
    """Remove the folders of pools whose process is gone (killed before it could close its
    pool): their files sit in memory-backed storage until someone deletes them."""
    for folder in where.glob(f"{PREFIX}*-*"):
        pid = folder.name.removeprefix(PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
