"""A batch's sink writes: Parquet on a helper thread while later streams are worked on."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from headwater.batch import Batch
from headwater.errors import SinkError
from headwater.pipeline import StreamReport
from headwater.sink_writes import SinkWrites
from headwater.sinks.base import Sink

BATCH = Batch("p", "b1", "2025-01-01", "files", {}, "", 1)
TABLE = pa.table({"x": [1]})


class Logged(Sink):
    log: list

    def write(self, target, table):
        self.log.append((self.config, target.stream, threading.current_thread().name))
        return {"rows": table.num_rows}


class Gated(Logged):
    """Starts, then waits for the test to let it finish (on its own thread, or it fails)."""

    concurrent = True
    started: threading.Event
    release: threading.Event

    def write(self, target, table):
        self.started.set()
        if not self.release.wait(10):
            raise SinkError("never released: the next stream was not worked on meanwhile")
        return super().write(target, table)


@pytest.fixture
def pool():
    with ThreadPoolExecutor(2, thread_name_prefix="sinks") as executor:
        yield executor


def writes_for(sinks, pool):
    reports = {s: StreamReport(s) for s in sinks}
    return SinkWrites("p", BATCH, sinks, reports.__getitem__, lambda: pool), reports


def test_parquet_writes_while_the_next_stream_is_worked_on(ctx, pool):
    log: list = []
    gated = Gated("raw parquet", ctx)
    gated.log, gated.started, gated.release = log, threading.Event(), threading.Event()
    after = Logged("raw duckdb", ctx)
    other = Logged("sso duckdb", ctx)
    after.log = other.log = log
    sinks = {"raw": [("parquet", gated), ("duckdb", after)], "sso": [("duckdb", other)]}
    writes, reports = writes_for(sinks, pool)
    writes.start("raw", TABLE)
    assert gated.started.wait(10)  # raw's Parquet is being written…
    writes.start("sso", TABLE)  # …while the next stream's table is handed over
    gated.release.set()
    writes.finish()
    here = threading.current_thread().name
    assert [(c, t == here) for c, _, t in log] == [
        ("raw parquet", False),  # on a helper thread
        ("raw duckdb", True),  # after its stream's Parquet, on the calling thread
        ("sso duckdb", True),
    ]
    assert reports["raw"].outputs == {"parquet": {"rows": 1}, "duckdb": {"rows": 1}}


def test_a_failed_concurrent_write_is_raised_once_every_write_is_done(ctx, pool):
    class Broken(Sink):
        concurrent = True

        def write(self, target, table):
            raise SinkError(f"disk full writing {target.stream}")

    log: list = []
    slow = Gated("sso parquet", ctx)
    slow.log, slow.started, slow.release = log, threading.Event(), threading.Event()
    after = Logged("raw duckdb", ctx)
    after.log = log
    sinks = {"raw": [("parquet", Broken(None, ctx)), ("duckdb", after)], "sso": [("p", slow)]}
    writes, _ = writes_for(sinks, pool)
    writes.start("raw", TABLE)
    writes.start("sso", TABLE)
    slow.release.set()
    with pytest.raises(SinkError, match="disk full writing raw"):
        writes.finish()
    assert [c for c, _, _ in log] == ["sso parquet"]  # raw's duckdb never ran; sso finished
