"""``headwater stream`` against the real broker: batches as input arrives, every batch a Dagster
run, SIGTERM finishes the batch in hand, a restart resumes from the committed offsets."""

import signal
import subprocess
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey

from headwater.ledger import DONE
from headwater.produce import produce_files
from headwater.resources.project import get_pipeline
from headwater.runner import BatchRunner, dagster_instance
from tests.conftest import headwater_process, stop_group, ztf_files
from tests.sources.test_kafka import committed
from tests.test_kafka_broker import create_topic

SPEC = """\
name: live
lake: lake
kafka: {{bootstrap_servers: "{servers}"}}
worker: {{max_wait_ms: 200, poll_ms: 20}}
source:
  kafka: {{topics: [{topic}], group: {group}, max_records_per_batch: {batch}}}
decode: {{avro: {{framing: container, cutouts: drop}}}}
streams:
  raw:
    processors: [{{"tests.kafka.slow:Slow": {{marker: "{marker}", seconds: {seconds}}}}}]
    sinks: [parquet, duckdb]
"""


@pytest.fixture
def live(kafka_bootstrap, tmp_path, write_spec):
    topic = create_topic(kafka_bootstrap, 3)
    group = f"live-{uuid.uuid4().hex[:6]}"

    def make(batch: int = 1000, seconds: float = 0.0):
        return write_spec(
            SPEC.format(
                servers=kafka_bootstrap,
                topic=topic,
                group=group,
                batch=batch,
                marker=tmp_path / "in-flight",
                seconds=seconds,
            ),
            "live.yaml",
        )

    make.topic, make.group, make.root = topic, group, tmp_path
    return make


def start_stream(root, spec, *args) -> subprocess.Popen:
    return headwater_process(root, "stream", str(spec), *args)


def candids(root) -> list[int]:
    files = sorted((root / "lake" / "live" / "raw").rglob("*.parquet"))
    return [c for f in files for c in pq.read_table(f, columns=["candid"])["candid"].to_pylist()]


def expected_candids(rounds: int = 1) -> list[int]:
    import fastavro

    out = []
    for f in ztf_files():
        with open(f, "rb") as fh:
            out.extend(r["candid"] for r in fastavro.reader(fh))
    return sorted(out * rounds)


@pytest.mark.parametrize("record", ["events", "runs"])
def test_stream_runs_batches_as_they_arrive_each_a_materialization(kafka_bootstrap, live, record):
    spec = live()
    proc = start_stream(live.root, spec, "--idle-exit", "3", "--record", record)
    try:
        first = proc.stdout.readline()  # the worker is up and waiting: batches follow the produce
        assert "streaming from its kafka source" in first, first + proc.stdout.read()
        produce_files(ztf_files(), live.topic, kafka_bootstrap, rate=20)
        output, _ = proc.communicate(timeout=120)
    finally:
        stop_group(proc)
    assert proc.returncode == 0, first + output
    assert sorted(candids(live.root)) == expected_candids()
    pipeline = get_pipeline(str(spec), root=str(live.root))
    entries = list(pipeline.ledger.entries())
    assert len(entries) > 1  # produced over 1.5 s with a 200 ms wait: several batches
    assert {e.status for e in entries} == {DONE}
    ends = {}
    for e in entries:
        for _topic, p, _s, end in e.batch.coordinates["ranges"]:
            ends[p] = max(ends.get(p, 0), end)
    assert committed(kafka_bootstrap, live.group, live.topic, 3) == [ends[p] for p in range(3)]
    instance = dagster_instance(live.root)
    batch_ids = sorted(e.batch.id for e in entries)
    for stream in ("raw", "_quarantine"):  # every asset of the pipeline, once per batch
        events = instance.fetch_materializations(AssetKey(["live", stream]), limit=1000).records
        assert sorted(materializations(instance, stream)) == batch_ids
        assert len(events) == len(batch_ids)
    raw = materializations(instance, "raw")
    for e in entries:  # each carries its batch's window, coordinates and figures
        mat = raw[e.batch.id]
        assert mat.partition == e.batch.window
        assert mat.metadata["coordinates"].value == e.batch.coordinates
        assert mat.metadata["rows_out"].value == e.summary["streams"]["raw"]["rows_out"]
    runs = instance.get_runs()
    if record == "events":
        assert runs == []  # no run record per batch: that is the point
        lines = [line for line in output.splitlines() if " messages, " in line]
        assert len(lines) == len(entries) and all("(asset events)" in x for x in lines)
        # re-running one of them as a Dagster run (as from the UI) rewrites the same bytes
        first = entries[0]
        path = Path(first.summary["streams"]["raw"]["outputs"]["parquet"]["path"])
        before = path.read_bytes()
        again = BatchRunner(spec, pipeline, [], live.root, instance).run(first.batch)
        assert again.success and again.run_id and path.read_bytes() == before
    else:
        assert sorted(r.tags["headwater/batch_id"] for r in runs) == batch_ids
        assert all(r.is_success for r in runs)
        assert {r.tags["headwater/partition_group"] for r in runs} == {"live:0"}


def materializations(instance, stream: str) -> dict:
    """The stream's materializations by batch id."""
    records = instance.fetch_materializations(AssetKey(["live", stream]), limit=1000).records
    return {
        r.asset_materialization.metadata["batch_id"].value: r.asset_materialization for r in records
    }


def test_sigterm_finishes_the_batch_in_hand_then_a_restart_resumes(kafka_bootstrap, live):
    spec = live(batch=10, seconds=1.5)
    produce_files(ztf_files(), live.topic, kafka_bootstrap)
    proc = start_stream(live.root, spec)
    marker = live.root / "in-flight"
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # mid-batch: the slow processor is sleeping
        output, _ = proc.communicate(timeout=60)
    finally:
        stop_group(proc)
    assert proc.returncode == 0, output
    assert "stopped: 1 batch(es), 10 records" in output
    pipeline = get_pipeline(str(spec), root=str(live.root))
    statuses = sorted(e.status for e in pipeline.ledger.entries())
    # the batch in hand was finished and committed, no more; the others cut with it wait
    assert statuses.count(DONE) == 1 and set(statuses) <= {DONE, "pending"}
    got = candids(live.root)
    assert len(got) == len(set(got)) == 10 and set(got) <= set(expected_candids())
    offsets = committed(kafka_bootstrap, live.group, live.topic, 3)
    assert sum(max(o, 0) for o in offsets) == 10  # -1001: nothing committed on that partition

    again = start_stream(live.root, live(batch=10, seconds=0), "--idle-exit", "2")
    try:
        output, _ = again.communicate(timeout=120)
    finally:
        stop_group(again)
    assert again.returncode == 0, output
    assert sorted(candids(live.root)) == expected_candids()  # all of it, exactly once
