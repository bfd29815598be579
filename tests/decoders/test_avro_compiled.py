"""The compiled decoding path: same table as fastavro cell by cell, falls back without loss."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import pytest

from headwater.batch import RawBatch, raw_table
from headwater.decoders import avro_pool
from headwater.decoders.avro import AvroConfig, AvroDecoder
from headwater.decoders.avro_inline import inline_named_types
from tests.conftest import SAMPLES, SHARED, raw_from_files, ztf_files

RUBIN_SCHEMAS = {
    "path": str(SAMPLES / "lsst" / "schema"),
    "pattern": "{major}/{minor}/lsst.v{major}_{minor}.alert.avsc",
}


def both(ctx, raw, **config):
    fast = AvroDecoder(AvroConfig(engine="compiled", **config), ctx).decode(raw)
    slow = AvroDecoder(AvroConfig(engine="fastavro", **config), ctx).decode(raw)
    return fast, slow


def same(fast, slow) -> None:
    """Same schema, and every cell and null the same (NaN equal to NaN, as in the alerts)."""
    assert fast.table.schema.equals(slow.table.schema)
    for name in fast.table.column_names:
        a, b = fast.table[name], slow.table[name]
        if not a.equals(b):  # Arrow's equality holds NaN unequal to itself
            dump = lambda col: json.dumps(col.to_pylist(), default=repr)  # noqa: E731
            assert dump(a) == dump(b), name
    assert fast.rejects.equals(slow.rejects)


@pytest.mark.parametrize("cutouts", ["keep", "drop"])
def test_ztf_sample_decodes_the_same_as_fastavro(ctx, cutouts):
    fast, slow = both(ctx, raw_from_files(ztf_files()), cutouts=cutouts)
    same(fast, slow)
    assert fast.stats["compiled_groups"] >= 4 and fast.stats["fallback_groups"] == 0


def test_rubin_wire_format_decodes_the_same_as_fastavro(ctx):
    files = sorted((SAMPLES / "lsst" / "wire").rglob("*.avro"))
    fast, slow = both(ctx, raw_from_files(files), framing="confluent", schemas=RUBIN_SCHEMAS)
    same(fast, slow)
    assert fast.stats["fallback_groups"] == 0


@pytest.mark.skipif(not (SHARED / "ztf" / "alerts").is_dir(), reason="../shared not present")
def test_every_shared_ztf_alert_decodes_the_same_as_fastavro(ctx):
    files = sorted((SHARED / "ztf" / "alerts").rglob("*.avro"))
    fast, slow = both(ctx, raw_from_files(files), cutouts="keep")
    same(fast, slow)
    assert fast.table.num_rows == len(files)


def test_a_group_the_compiled_reader_chokes_on_falls_back_and_loses_nothing(
    ctx, tmp_path, monkeypatch
):
    monkeypatch.setattr(avro_pool, "BASE_SECONDS", 1.0)  # the reader spins on this input
    schema = {
        "type": "record",
        "name": "m",
        "fields": [{"name": "sensor", "type": "string"}, {"name": "value", "type": "double"}],
    }
    path = tmp_path / "m.avsc"
    path.write_text(json.dumps(schema))
    bodies = []
    for i in range(5):
        buf = io.BytesIO()
        fastavro.schemaless_writer(
            buf, fastavro.parse_schema(schema), {"sensor": f"s{i}", "value": i}
        )
        bodies.append(buf.getvalue())
    bodies[2] += b"\x00\x01"  # stray bytes after a good record
    raw = RawBatch(raw_table(["t"] * 5, list(range(5)), bodies))
    fast = AvroDecoder(AvroConfig(framing="schemaless", schema_file=str(path)), ctx).decode(raw)
    assert fast.stats == {"compiled_groups": 0, "fallback_groups": 1}
    assert fast.table["sensor"].to_pylist() == ["s0", "s1", "s3", "s4"]
    assert fast.rejects["_offset"].to_pylist() == [2]
    assert "bytes left over" in fast.rejects["error"][0].as_py()


def test_named_type_references_are_inlined_under_new_names():
    cutout = {"type": "record", "name": "cutout", "fields": [{"name": "b", "type": "bytes"}]}
    schema = {
        "type": "record",
        "name": "alert",
        "namespace": "ztf",
        "fields": [
            {"name": "a", "type": ["null", cutout]},
            {"name": "b", "type": ["null", "cutout"]},
            {"name": "c", "type": ["null", "ztf.cutout"]},
        ],
    }
    out = inline_named_types(schema)
    kinds = [f["type"][1] for f in out["fields"]]
    assert all(isinstance(k, dict) and k["type"] == "record" for k in kinds)
    assert len({k["name"] for k in kinds}) == 3  # one definition per name in a schema
    fastavro.parse_schema(out)  # a valid schema


def test_the_batch_summary_counts_compiled_and_fallback_groups(ztf_spec, tmp_path):
    from headwater.pipeline import Pipeline
    from headwater.spec import load_spec

    pipeline = Pipeline(load_spec(ztf_spec(batch=30), base_dir=tmp_path))
    [batch] = pipeline.plan()
    summary = pipeline.run(batch).summary()
    assert summary["decode"]["compiled_groups"] >= 4
    assert summary["decode"]["fallback_groups"] == 0


def worker_environ(pid: int) -> list[bytes]:
    """A process's environment; empty until its exec is done (seen under load)."""
    deadline = time.monotonic() + 30
    while not (data := Path(f"/proc/{pid}/environ").read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return data.split(b"\0")


def test_workers_keep_freed_memory_and_the_parent_environment_is_untouched(monkeypatch):
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    workers = avro_pool.CompiledPool(workers=1)
    try:
        worker = workers._take()
        environ = worker_environ(worker.proc.pid)
        for key, value in avro_pool.WORKER_ENV.items():
            assert f"{key}={value}".encode() in environ
        assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
        workers._give(worker)
    finally:
        workers.close()
    assert not workers.folder.exists()  # the inboxes and outputs went with it


def test_a_killed_process_pool_folder_is_removed_by_the_next_pool(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now: a pool of that process would be an orphan
    first = avro_pool.CompiledPool(workers=1)
    first.close()
    where = first.folder.parent
    orphan = where / f"{avro_pool.PREFIX}{dead.pid}-abc"
    orphan.mkdir()
    (orphan / "inbox.avro").write_bytes(b"x" * 100)
    mine = where / f"{avro_pool.PREFIX}{os.getpid()}-abc"
    mine.mkdir()
    workers = avro_pool.CompiledPool(workers=1)
    try:
        assert not orphan.exists()
        assert mine.exists()  # a live process's folder is left alone
    finally:
        workers.close()
        workers.close()  # closing twice is harmless (close, then the exit hook)
        mine.rmdir()


def sensor_job(n: int) -> avro_pool.Job:
    schema = {
        "type": "record",
        "name": "m",
        "fields": [{"name": "sensor", "type": "string"}, {"name": "value", "type": "double"}],
    }
    parsed, bodies = fastavro.parse_schema(schema), []
    for i in range(n):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, {"sensor": f"s{i}", "value": float(i)})
        bodies.append(buf.getvalue())
    return avro_pool.Job(json.dumps(schema).encode(), bodies, n, ["sensor", "value"])


def test_a_warmed_pool_decodes_with_its_ready_workers_and_drops_a_dead_one():
    workers = avro_pool.CompiledPool(workers=2)
    try:
        workers.warm()
        pids = sorted(w.proc.pid for w in workers._idle)
        assert len(pids) == 2 and all(w.ready and w.proc.is_alive() for w in workers._idle)
        [table] = workers.decode([sensor_job(7)])
        assert table["value"].to_pylist() == [float(i) for i in range(7)]
        assert sorted(w.proc.pid for w in workers._idle) == pids  # no process started
        dead = workers._idle[-1]  # the next one taken
        dead.proc.kill()
        dead.proc.join(5)
        [failed] = workers.decode([sensor_job(3)])
        assert isinstance(failed, EOFError | OSError)  # the decoder falls back for that group
        assert [w.proc.pid for w in workers._idle] == [p for p in pids if p != dead.proc.pid]
        workers.start()  # tops the pool up again, without waiting
        workers.start()  # and never beyond its size
        assert len(workers._idle) == 2 and not workers._idle[-1].ready
        [table] = workers.decode([sensor_job(2)])  # a job waits for the new worker's hello
        assert table.num_rows == 2 and all(w.ready for w in workers._idle)
    finally:
        workers.close()
