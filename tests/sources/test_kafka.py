"""The Kafka source against the real broker: offset-range batches, replay, commit after durable,
retention gaps."""

import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from headwater.errors import SourceError
from headwater.pipeline import Pipeline
from headwater.spec import load_spec, parse_overrides
from tests.conftest import ztf_files
from tests.test_kafka_broker import create_topic

SPEC = """\
name: ztfk
lake: {lake}
kafka: {{bootstrap_servers: "{servers}"}}
source:
  kafka: {{topics: [{topic}], group: {group}, max_records_per_batch: {batch}}}
decode: {{avro: {{framing: container, cutouts: drop}}}}
streams:
  raw: {{sinks: [parquet]}}
  solar_system:
    from: raw
    processors: [{{solar_system: {{action: include}}}}]
    sinks: [parquet]
"""


def produce(servers: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": servers, "acks": "all"})
    for i, v in enumerate(values):
        producer.produce(topic, v, key=str(i).encode())
    assert producer.flush(30) == 0


def committed(servers: str, group: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": servers, "group.id": group})
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    try:
        for _ in range(60):  # the group coordinator may still be loading on a new broker
            try:
                return [tp.offset for tp in c.committed(tps, timeout=10)]
            except KafkaException:
                time.sleep(0.5)
        return [tp.offset for tp in c.committed(tps, timeout=10)]
    finally:
        c.close()


@pytest.fixture
def kafka_pipeline(kafka_bootstrap, tmp_path, write_spec):
    topic = create_topic(kafka_bootstrap, 3)
    group = f"g-{uuid.uuid4().hex[:6]}"

    def make(batch: int, overrides: str = "") -> Pipeline:
        spec = write_spec(
            SPEC.format(
                lake=tmp_path / "lake",
                servers=kafka_bootstrap,
                topic=topic,
                group=group,
                batch=batch,
            )
        )
        return Pipeline(load_spec(spec, parse_overrides(overrides.split() if overrides else [])))

    return make, topic, group


def candids(pipeline: Pipeline, stream: str) -> list[int]:
    files = pipeline.lake.stream_dir(pipeline.name, stream).rglob("*.parquet")
    return sorted(c for f in files for c in pq.read_table(f)["candid"].to_pylist())


def test_offset_ranges_are_processed_once_and_committed_after(kafka_pipeline, kafka_bootstrap):
    make, topic, group = kafka_pipeline
    values = [f.read_bytes() for f in ztf_files()]
    produce(kafka_bootstrap, topic, values)
    pipeline = make(batch=8)
    batches = pipeline.plan()
    assert sum(b.records for b in batches) == 30 and max(b.records for b in batches) == 8
    assert committed(kafka_bootstrap, group, topic, 3) == [-1001] * 3  # nothing before durable
    reports = [pipeline.run(b) for b in batches]
    all_ids = candids(pipeline, "raw")
    assert len(all_ids) == 30 == len(set(all_ids))
    ends = {}
    for b in batches:
        for _t, p, _s, e in b.coordinates["ranges"]:
            ends[p] = max(ends.get(p, 0), e)
    assert committed(kafka_bootstrap, group, topic, 3) == [ends[p] for p in range(3)]
    assert pipeline.plan() == []

    # re-running an old batch: same bytes, and the group does not move backwards
    first = reports[0]
    path = first.streams["raw"].outputs["parquet"]["path"]
    before = Path(path).read_bytes()
    pipeline.run(first.batch)
    assert Path(path).read_bytes() == before
    assert committed(kafka_bootstrap, group, topic, 3) == [ends[p] for p in range(3)]

    # ranges over several partitions come partition by partition, in offset order, on every
    # read (how the partitions' messages interleave on arrival varies from read to read)
    everything = {"group": 0, "ranges": [[topic, p, 0, ends[p]] for p in range(3)]}
    expected = [(f"{topic}:{p}", o) for p in range(3) for o in range(ends[p])]
    for _ in range(2):
        raw = pipeline.source.read(everything).messages
        got = zip(raw["_source"].to_pylist(), raw["_offset"].to_pylist(), strict=True)
        assert list(got) == expected

    # new messages make new batches covering only them
    produce(kafka_bootstrap, topic, values[:5])
    new = pipeline.plan()
    assert sum(b.records for b in new) == 5
    for b in new:
        for _t, p, s, _e in b.coordinates["ranges"]:
            assert s == ends[p]
    pipeline.close()


class Arriving:
    """Messages as a consumer hands them out, partitions interleaved in a given order."""

    def __init__(self, topic: str, arrival: list[tuple[int, int]]):
        self.batches = [[Message(topic, p, o) for p, o in arrival]]

    def consume(self, num_messages: int, timeout: float) -> list:
        return self.batches.pop(0) if self.batches else []


class Message:
    def __init__(self, topic: str, partition: int, offset: int):
        self._tp, self._offset = (topic, partition), offset

    def error(self):
        return None

    def topic(self) -> str:
        return self._tp[0]

    def partition(self) -> int:
        return self._tp[1]

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return f"{self._tp[1]}/{self._offset}".encode()


def test_a_read_is_ordered_by_partition_and_offset_whatever_the_arrival(kafka_pipeline):
    make, topic, _group = kafka_pipeline
    source = make(batch=8).source
    ranges = {(topic, 0): (0, 2), (topic, 1): (5, 7)}
    for arrival in ([(1, 5), (0, 0), (1, 6), (0, 1)], [(0, 0), (1, 5), (0, 1), (1, 6)]):
        sources, offsets, values, _keys = source._drain(Arriving(topic, arrival), ranges)
        assert list(zip(sources, offsets, strict=True)) == [
            (f"{topic}:0", 0),
            (f"{topic}:0", 1),
            (f"{topic}:1", 5),
            (f"{topic}:1", 6),
        ]
        assert values == [b"0/0", b"0/1", b"1/5", b"1/6"]  # each value with its offset


def test_a_batch_whose_range_was_deleted_by_retention_fails_clearly(
    kafka_pipeline, kafka_bootstrap
):
    make, topic, _group = kafka_pipeline
    produce(kafka_bootstrap, topic, [f.read_bytes() for f in ztf_files()[:12]])
    pipeline = make(batch=100)
    [batch] = pipeline.plan()
    t, p, start, _end = next(r for r in batch.coordinates["ranges"] if r[3] - r[2] >= 2)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for f in admin.delete_records([TopicPartition(t, p, start + 1)]).values():
        f.result(timeout=30)
    with pytest.raises(
        SourceError,
        match=(
            rf"topic {t} partition {p} no longer holds offsets \[{start}, {start + 1}\) of this "
            rf"batch: retention deleted them \(the partition now starts at {start + 1}\)"
        ),
    ):
        pipeline.run(batch)
    pipeline.close()


def test_a_missing_topic_is_a_clear_error(kafka_bootstrap, tmp_path, write_spec):
    spec = write_spec(
        SPEC.format(
            lake=tmp_path / "lake",
            servers=kafka_bootstrap,
            topic="no-such-topic",
            group="g",
            batch=10,
        )
    )
    pipeline = Pipeline(load_spec(spec))
    with pytest.raises(SourceError, match=r"topics \['no-such-topic'\] do not exist"):
        pipeline.plan()
    pipeline.close()


def test_partition_groups_cut_disjoint_batches_a_worker_runs_its_own(
    kafka_pipeline, kafka_bootstrap
):
    make, topic, _group = kafka_pipeline
    produce(kafka_bootstrap, topic, [f.read_bytes() for f in ztf_files()])
    groups = "source.kafka.partition_groups=2"
    planner = make(batch=100, overrides=groups)
    batches = planner.plan()
    by_group: dict[int, set[int]] = {}
    for b in batches:
        parts = {p for _t, p, _s, _e in b.coordinates["ranges"]}
        assert parts == {
            p for p in range(3) if planner.source.group_of(topic, p) == b.coordinates["group"]
        }
        by_group.setdefault(b.coordinates["group"], set()).update(parts)
    assert sorted(by_group) == [0, 1]  # both groups got partitions
    assert sum(b.records for b in batches) == 30
    planner.close()
    worker = make(batch=100, overrides=f"{groups} source.kafka.only_group=1")
    mine = worker.pending()
    assert mine == [b for b in batches if b.coordinates["group"] == 1]
    for b in mine:
        worker.run(b)
    assert worker.pending() == [] and len(planner.pending()) == len(batches) - len(mine)
    worker.close()
