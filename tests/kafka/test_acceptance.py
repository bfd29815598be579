"""The Kafka issue's acceptance checks, against the real broker.

10,000 distinct real ZTF alerts over 3 partitions, cut by the sensor and run as Dagster runs,
land exactly once and equal the file-source run on the same alerts; a run killed with SIGKILL
mid-batch loses nothing when run again; a broker restart between batches loses nothing, and
a broker that is down makes the sensor skip and a run fail with a retryable error.
"""

import gc
import json
import os
import signal
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from headwater.batch import LINEAGE_COLUMNS
from headwater.definitions import build_definitions
from headwater.errors import SourceError
from headwater.pipeline import Pipeline
from headwater.produce import produce_files
from headwater.resources import HeadwaterProject, KafkaResource
from headwater.resources.project import close_pipelines, get_pipeline
from headwater.spec import load_spec
from headwater.testing.alerts import distinct_alerts, write_alerts
from tests.conftest import headwater_process, stop_group, ztf_files
from tests.sources.test_kafka import committed
from tests.test_kafka_broker import create_topic

N_ALERTS = 10_000

STREAMS = """\
decode: {{avro: {{framing: container, cutouts: drop, required: [objectId, candid, candidate]}}}}
streams:
  raw:
    processors: {raw_processors}
    sinks: [parquet]
  solar_system:
    from: raw
    processors: [{{solar_system: {{action: include}}}}]
    sinks: [parquet]
  extragalactic:
    from: raw
    processors:
      - solar_system: {{action: exclude}}
      - sql: "select * from batch where candidate.rb > 0.65 and candidate.magpsf < 19"
    sinks: [parquet, duckdb]
"""

KAFKA_SPEC = """\
name: {name}
lake: lake
kafka: {{bootstrap_servers: "{servers}"}}
sensor: {{max_batches_per_tick: 50}}
source:
  kafka: {{topics: [{topic}], group: {group}, max_records_per_batch: {batch}}}
"""

FILES_SPEC = """\
name: {name}
lake: lake
source: {{files: {{path: {path}, pattern: "*.avro", max_records_per_batch: 5000}}}}
"""


def sensor_tick(spec: Path, root: Path, sensor: str, instance=None):
    """One evaluation of a pipeline's sensor, as the daemon would run it."""
    defs = build_definitions([spec], root=str(root))
    resources = {"headwater": HeadwaterProject(root=str(root), kafka=KafkaResource())}
    with (
        DagsterInstance.ephemeral() if instance is None else nullcontext(instance) as inst,
        build_sensor_context(instance=inst, resources=resources) as context,
    ):
        return defs.resolve_sensor_def(sensor)(context)


def spec_text(head: str, raw_processors: str = "[]", **values) -> str:
    return head.format(**values) + STREAMS.format(raw_processors=raw_processors)


def stream(root: Path, pipeline: str, name: str) -> pa.Table:
    files = sorted((root / "lake" / pipeline / name).rglob("*.parquet"))
    # batches holding different mixes of schema versions may order nested fields differently
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    return table.drop_columns(list(LINEAGE_COLUMNS)).sort_by("candid")


@pytest.fixture(scope="module")
def many_alerts(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("alerts")
    return write_alerts(folder, distinct_alerts(ztf_files(), N_ALERTS, cutouts=False))


def test_ten_thousand_alerts_via_sensor_and_runs_equal_the_file_run(
    kafka_bootstrap, many_alerts, tmp_path, write_spec
):
    topic = create_topic(kafka_bootstrap, 3)
    assert produce_files(many_alerts, topic, kafka_bootstrap) == N_ALERTS
    kafka_spec = write_spec(
        spec_text(
            KAFKA_SPEC, name="zk", servers=kafka_bootstrap, topic=topic, group=topic, batch=2500
        ),
        "zk.yaml",
    )
    files_spec = write_spec(spec_text(FILES_SPEC, name="zf", path=many_alerts[0].parent), "zf.yaml")

    job = build_definitions([kafka_spec], root=str(tmp_path)).resolve_job_def("zk_job")
    with DagsterInstance.ephemeral() as instance:
        tick = sensor_tick(kafka_spec, tmp_path, "zk_batches", instance)
        assert isinstance(tick, SensorResult) and len(tick.run_requests) >= 4
        for request in tick.run_requests:
            result = job.execute_in_process(
                run_config=request.run_config,
                tags=request.tags,
                partition_key=request.partition_key,
                instance=instance,
            )
            assert result.success
    kafka = get_pipeline(str(kafka_spec), root=str(tmp_path))
    assert kafka.pending() == [] and kafka.plan() == []
    files = Pipeline(load_spec(files_spec, base_dir=tmp_path))
    for batch in files.plan():
        files.run(batch)

    raw = stream(tmp_path, "zk", "raw")
    assert raw.num_rows == N_ALERTS == len(set(raw["candid"].to_pylist()))
    for name in ("raw", "solar_system", "extragalactic"):
        from_kafka, from_files = stream(tmp_path, "zk", name), stream(tmp_path, "zf", name)
        assert from_kafka.equals(from_files.cast(from_kafka.schema)), name
    assert sum(committed(kafka_bootstrap, topic, topic, 3)) == N_ALERTS


def test_a_run_killed_mid_batch_then_run_again_loses_and_repeats_nothing(
    kafka_bootstrap, many_alerts, tmp_path, write_spec
):
    topic = create_topic(kafka_bootstrap, 3)
    produce_files(many_alerts[:600], topic, kafka_bootstrap)
    marker = tmp_path / "in-flight"
    slow = f'[{{"tests.kafka.slow:Slow": {{marker: "{marker}", seconds: 30}}}}]'
    spec = write_spec(
        spec_text(
            KAFKA_SPEC,
            raw_processors=slow,
            name="zk",
            servers=kafka_bootstrap,
            topic=topic,
            group=topic,
            batch=200,
        )
    )
    proc = headwater_process(tmp_path, "run", str(spec))
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # in the middle of the first batch
        proc.wait(timeout=30)
    finally:
        stop_group(proc)
    assert not (tmp_path / "lake" / "zk" / "raw").exists()  # nothing durable yet
    assert committed(kafka_bootstrap, topic, topic, 3) == [-1001] * 3

    again = headwater_process(tmp_path, "run", str(spec), "--set", "streams.raw.processors=[]")
    try:
        output, _ = again.communicate(timeout=300)
    finally:
        stop_group(again)
    assert again.returncode == 0, output
    raw = stream(tmp_path, "zk", "raw")["candid"].to_pylist()
    assert len(raw) == 600 == len(set(raw))
    assert sum(committed(kafka_bootstrap, topic, topic, 3)) == 600


@pytest.fixture
def own_broker(kafka_bootstrap):
    """A broker of this test's own: it is stopped and restarted."""
    from headwater.testing.broker import LocalBroker

    broker = LocalBroker().start()
    yield broker
    close_pipelines()  # their consumers would keep calling the stopped broker
    gc.collect()
    broker.stop()


def test_broker_down_and_restarted_between_batches_loses_nothing(
    own_broker, many_alerts, tmp_path, write_spec
):
    servers = own_broker.bootstrap_servers
    topic = create_topic(servers, 3)
    produce_files(many_alerts[:90], topic, servers)
    spec = write_spec(
        spec_text(
            KAFKA_SPEC, name="zr", servers=servers, topic=topic, group=topic, batch=30
        ).replace("max_records_per_batch: 30", "max_records_per_batch: 30, read_timeout_seconds: 5")
    )
    pipeline = get_pipeline(str(spec), root=str(tmp_path))
    first, *rest = pipeline.plan()
    pipeline.run(first)

    own_broker.stop(keep_data=True)
    with pytest.raises(SourceError) as down:
        pipeline.run(rest[0])
    assert down.value.transient  # the run's retry policy will try again
    skip = sensor_tick(spec, tmp_path, "zr_batches")
    assert isinstance(skip, SkipReason) and "cannot reach Kafka" in skip.skip_message

    own_broker.start()
    produce_files(many_alerts[90:120], topic, servers)
    fresh = Pipeline(load_spec(spec, base_dir=tmp_path))  # a new process after the restart
    _new, pending = fresh.cut()
    assert [b.id for b in pending[: len(rest)]] == [b.id for b in rest]  # same offsets
    for batch in pending:
        fresh.run(batch)
    raw = stream(tmp_path, "zr", "raw")["candid"].to_pylist()
    assert len(raw) == 120 == len(set(raw))
    assert sum(committed(servers, topic, topic, 3)) == 120
    fresh.close()
    pipeline.close()


def test_sensor_run_requests_carry_ranges_group_and_record(kafka_bootstrap, tmp_path, write_spec):
    topic = create_topic(kafka_bootstrap, 3)
    produce_files(ztf_files(), topic, kafka_bootstrap)
    spec = write_spec(
        spec_text(
            KAFKA_SPEC,
            name="zt",
            servers=kafka_bootstrap,
            topic=topic,
            group=uuid.uuid4().hex,
            batch=100,
        ).replace("max_records_per_batch: 100", "max_records_per_batch: 100, partition_groups: 3")
    )
    instance = DagsterInstance.ephemeral()
    tick = sensor_tick(spec, tmp_path, "zt_batches", instance)
    assert len(tick.run_requests) == 3  # one per partition, each its own group
    groups = {r.tags["headwater/partition_group"] for r in tick.run_requests}
    assert groups == {"zt:0", "zt:1", "zt:2"}
    for r in tick.run_requests:
        config = r.run_config["ops"]["zt__streams"]["config"]
        [batch_id] = config["batch_ids"]
        assert f"{topic}[" in r.tags["headwater/coordinates"]
        assert batch_id in config["batches"] and '"ranges"' in config["batches"][batch_id]

    # group 1's run has not started: its new input waits to be cut as one larger batch
    held = next(r for r in tick.run_requests if r.tags["headwater/partition_group"] == "zt:1")
    instance.add_run(
        DagsterRun(job_name="zt_job", status=DagsterRunStatus.NOT_STARTED, tags=held.tags)
    )
    produce_files(ztf_files(), topic, kafka_bootstrap)
    again = sensor_tick(spec, tmp_path, "zt_batches", instance)
    new_groups = sorted(
        json.loads(c["batches"][c["batch_ids"][0]])["coordinates"]["group"]
        for c in (r.run_config["ops"]["zt__streams"]["config"] for r in again.run_requests)
        if c["batch_ids"][0] not in {q.run_key for q in tick.run_requests}
    )
    assert new_groups == [0, 2]
    instance.dispose()
