"""Placement over Kafka, against the real broker: usage records (JSON) from a topic, moves
published to a topic and read back by the next batch's model (the closed loop)."""

import csv
import io
import json
import shutil
import uuid
from collections import Counter

import fastavro
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from headwater.errors import HeadwaterError
from headwater.kafka.connection import KafkaConnection
from headwater.pipeline import Pipeline
from headwater.placement.connectors import KafkaConnector
from headwater.spec import load_spec
from tests.placement.test_pipeline import THESIS
from tests.test_kafka_broker import create_topic

SPEC = """\
name: kplace
lake: {lake}
kafka: {{bootstrap_servers: "{servers}"}}
source: {{kafka: {{topics: [{usage}], group: place-{usage}}}}}
decode: {decode}
streams:
  cluster_model:
    processors:
      - cluster_model: {{hosts: {hosts}, connector: {{kafka: {moves}}}}}
    sinks: [parquet]
  placement_decisions:
    from: cluster_model
    processors: [{{placement: {{strategy: balance, heatmap: false}}}}]
    sinks: [parquet, {{moves: {{connector: {{kafka: {moves}}}}}}}]
"""


JSON = (
    "{json: {columns: {timestamp: int64, container_id: string, machine_id: string, cpu: double}}}"
)
AVRO = "{avro: {framing: container}}"
USAGE_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "ContainerUsage",
        "fields": [
            {"name": "timestamp", "type": "long"},
            {"name": "container_id", "type": "string"},
            {"name": "machine_id", "type": "string"},
            {"name": "cpu", "type": "double"},
        ],
    }
)


def encode(row: dict, decode: str) -> bytes:
    if decode == JSON:
        return json.dumps(row).encode()
    out = io.BytesIO()  # one Avro container per message, schema inside (as ZTF publishes)
    fastavro.writer(out, USAGE_SCHEMA, [row])
    return out.getvalue()


def produce(servers: str, topic: str, rows: list[dict], decode: str) -> None:
    producer = Producer({"bootstrap.servers": servers, "acks": "all"})
    for row in rows:
        producer.produce(topic, encode(row, decode))
    assert producer.flush(30) == 0


def thesis_rows(first: int, last: int) -> list[dict]:
    with open(THESIS / "container_usage.csv", newline="") as fh:
        rows = [dict(r) for r in csv.DictReader(fh)]
    out = []
    for r in rows:
        if first <= int(r["timestamp"]) <= last:
            out.append({**r, "timestamp": int(r["timestamp"]), "cpu": float(r["cpu"])})
    return out


def run_pending(spec, tmp_path) -> list:
    pipeline = Pipeline(load_spec(spec, base_dir=tmp_path))
    try:
        return [pipeline.run(b) for b in pipeline.plan()]
    finally:
        pipeline.close()


def loop_spec(
    servers: str, tmp_path, write_spec, decode: str = JSON, partitions: int = 1, model: str = ""
):
    """A placement loop's spec over new usage and moves topics: (spec, usage, moves);
    ``model`` adds cluster_model settings."""
    usage, moves = create_topic(servers, partitions), create_topic(servers, 1)
    text = SPEC.format(
        lake=tmp_path / "lake",
        servers=servers,
        usage=usage,
        moves=moves,
        hosts=THESIS / "node_meta.csv",
        decode=decode,
    )
    return (
        write_spec(text.replace("connector: {kafka:", f"{model}connector: {{kafka:", 1)),
        usage,
        moves,
    )


@pytest.mark.parametrize("decode", [JSON, AVRO], ids=["json", "avro"])
def test_moves_published_and_read_back_by_the_next_batch(
    kafka_bootstrap, tmp_path, write_spec, decode
):
    spec, usage, moves = loop_spec(kafka_bootstrap, tmp_path, write_spec, decode)
    produce(kafka_bootstrap, usage, thesis_rows(0, 3), decode)
    [first] = run_pending(spec, tmp_path)
    connector = KafkaConnector(moves, load_spec(spec, base_dir=tmp_path).model.kafka)
    published = list(connector.applied())  # as it is now: the log read back grows
    decided = pq.read_table(first.streams["placement_decisions"].outputs["parquet"]["path"])
    assert published and len(published) == decided.num_rows
    assert {m["container_name"] for m in published} == set(decided["container_name"].to_pylist())
    assert {m["time"] for m in published} == {3}

    produce(kafka_bootstrap, usage, thesis_rows(4, 7), decode)
    [second] = run_pending(spec, tmp_path)
    model = pq.read_table(second.streams["cluster_model"].outputs["parquet"]["path"]).to_pylist()
    for move in published:  # the model of ticks 4..7 has every container where it was sent
        hosts = {r["host_id"] for r in model if r["container_id"] == move["container_name"]}
        assert hosts == {move["new_host"]}

    pipeline = Pipeline(load_spec(spec, base_dir=tmp_path))
    try:
        again = pipeline.run(first.batch)  # a rerun publishes nothing twice
    finally:
        pipeline.close()
    assert again.streams["placement_decisions"].outputs["moves"]["status"] == "unchanged"
    assert [m for m in connector.applied() if m["time"] == 3] == published


def move(container: str, new: str, time: int) -> dict:
    return {"container_name": container, "old_host": "n_1", "new_host": new, "time": time}


def names(moves: list[dict]) -> list[tuple[str, int]]:
    return sorted((m["container_name"], m["time"]) for m in moves)


def test_a_rerun_replaces_its_ticks_moves_on_the_topic(kafka_bootstrap):
    topic = create_topic(kafka_bootstrap, 3)  # a decision's moves share a partition
    kafka = KafkaConnection(bootstrap_servers=kafka_bootstrap)
    writer = KafkaConnector(topic, kafka)
    try:
        assert writer.apply([move("c_1", "n_2", 3), move("c_2", "n_2", 3)], 3) == "applied"
        first = writer.applied()
        assert writer.apply([move("c_3", "n_2", 7)], 7) == "applied"
        assert writer.applied() is first  # a later tick: the log read back grows in place
        assert names(first) == [("c_1", 3), ("c_2", 3), ("c_3", 7)]
        assert writer.apply([move("c_2", "n_2", 3), move("c_1", "n_2", 3)], 3) == "unchanged"
        assert writer.apply([move("c_1", "n_1", 3)], 3) == "applied"  # the rerun decided less
        assert names(writer.applied()) == [("c_1", 3), ("c_3", 7)]
        assert writer.applied() is not first  # a tick's moves replaced: a new log
        assert names(first) == [("c_1", 3), ("c_2", 3), ("c_3", 7)]  # the old one untouched
        assert writer.apply([], 7) == "applied"  # and nothing at tick 7: a tombstone says so
        producer = Producer({"bootstrap.servers": kafka_bootstrap})  # another publisher
        producer.produce(topic, json.dumps({**move("c_9", "n_2", 11), "time": "11"}).encode())
        assert producer.flush(30) == 0
        assert names(writer.applied()) == [("c_1", 3), ("c_9", 11)]  # read on incrementally
    finally:
        writer.close()
    reader = KafkaConnector(topic, kafka)  # another process: from the start, the same view
    try:
        assert names(reader.applied()) == [("c_1", 3), ("c_9", 11)]
        assert [m["new_host"] for m in reader.applied() if m["time"] == 3] == ["n_1"]
    finally:
        reader.close()


def test_a_record_that_is_not_a_move_fails_naming_where_it_is(kafka_bootstrap):
    topic = create_topic(kafka_bootstrap, 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, b'{"container_name": "c_1"}')  # no hosts, no time
    assert producer.flush(30) == 0
    reader = KafkaConnector(topic, KafkaConnection(bootstrap_servers=kafka_bootstrap))
    try:
        with pytest.raises(HeadwaterError, match=rf"moves topic {topic} partition 0 offset 0"):
            reader.applied()
    finally:
        reader.close()


def test_usage_keyed_over_partitions_and_cut_mid_tick_is_all_modelled(
    kafka_bootstrap, tmp_path, write_spec
):
    """Usage keyed by container over three partitions, a batch cut part-way through a tick:
    a container's rows are in order, the topic's are not, and the next batch brings the
    rest of the tick. Every row is modelled; ordering used to be checked across containers
    (47 of these 80 rows refused as out of order) and the tick's rest refused as late. The
    first batch holds the part of the tick it has back: the second models all of it."""
    spec, usage, _ = loop_spec(kafka_bootstrap, tmp_path, write_spec, partitions=3)
    rows = thesis_rows(0, 7)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    reports = []
    for part in (rows[:35], rows[35:]):  # ten rows a tick: the cut is inside tick 3
        for row in part:
            producer.produce(usage, json.dumps(row).encode(), key=row["container_id"].encode())
        assert producer.flush(30) == 0
        reports += run_pending(spec, tmp_path)
    assert len(reports) == 2
    assert [r.quarantined for r in reports] == [0, 0]
    modelled = [
        pq.read_table(r.streams["cluster_model"].outputs["parquet"]["path"]).to_pylist()
        for r in reports
    ]
    window = {
        (m["tick"], m["container_id"]) for rows_ in modelled for m in rows_ if m["tick"] is not None
    }
    assert window == {(r["timestamp"], r["container_id"]) for r in rows}
    tick3 = [sum(1 for m in rows_ if m["tick"] == 3) for rows_ in modelled]
    assert tick3 == [0, 10]
    model = [r.streams["cluster_model"].metadata for r in reports]
    assert [m["rows_held"] for m in model] == [5, 0]
    decisions = [r.streams["placement_decisions"].metadata["window"] for r in reports]
    assert decisions == [[0, 2], [3, 7]]


@pytest.mark.parametrize("hold", [True, False], ids=["held", "not-held"])
def test_a_batch_holding_only_the_rest_of_a_tick_completes_it(
    kafka_bootstrap, tmp_path, write_spec, hold
):
    """A batch cut inside tick 4, then a batch of tick 4's other rows alone.

    Held back (the default on a topic), the first batch decides on ticks 0-3 and the second
    models tick 4 whole. Not held, the first decides on part of tick 4; the second starts
    from its state (its rows are new, not late, and not a rerun of the window before),
    models the whole tick with the first's rows as history, and its decision replaces the
    first's for tick 4. Either way the next window starts from it."""
    setting = "history_ticks: 4, " + ("" if hold else "hold_partial_tick: false, ")
    spec, usage, _ = loop_spec(kafka_bootstrap, tmp_path, write_spec, model=setting)
    rows = thesis_rows(0, 7)
    reports = []
    for part in (rows[:45], rows[45:50], rows[50:]):  # ten rows a tick: 4's rest alone
        produce(kafka_bootstrap, usage, part, JSON)
        reports += run_pending(spec, tmp_path)
    assert [r.quarantined for r in reports] == [0, 0, 0]
    models = [
        pq.read_table(r.streams["cluster_model"].outputs["parquet"]["path"]).to_pylist()
        for r in reports
    ]
    tick4 = {m["container_id"] for m in models[1] if m["tick"] == 4}
    assert tick4 == {r["container_id"] for r in rows if r["timestamp"] == 4}  # all ten
    assert [r.streams["placement_decisions"].metadata["window"] for r in reports] == [
        [0, 3] if hold else [0, 4],
        [4, 4],
        [5, 7],
    ]
    # the last window looked back over the completed tick: every container at tick 4
    assert {m["container_id"] for m in models[2] if m["tick"] == 4} == tick4


def test_the_bundled_kafka_pipeline_runs_the_loop_from_the_cli(
    kafka_bootstrap, tmp_path, monkeypatch
):
    """pipelines/placement_kafka.yaml as its header says to run it: topics applied, HOTS's
    usage CSV produced as JSON rows keyed by container, the pending batches run. Batches of
    40 records over three partitions end inside ticks; each batch models whole ticks, every
    row once, and the moves the decisions hold are those read back from the moves topic."""
    from typer.testing import CliRunner

    from headwater.cli import app
    from tests.conftest import REPO

    shutil.copytree(REPO / "samples" / "placement", tmp_path / "samples" / "placement")
    (tmp_path / "pipelines").mkdir()
    usage, moves = f"usage-{uuid.uuid4().hex[:8]}", f"moves-{uuid.uuid4().hex[:8]}"
    text = (REPO / "pipelines" / "placement_kafka.yaml").read_text()
    text = text.replace("container_usage", usage).replace("placement_moves", moves)
    (tmp_path / "pipelines" / "placement_kafka.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.delenv("HEADWATER_HOME", raising=False)

    def invoke(*args: str):
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    invoke("topics", "apply", "placement_kafka")
    csv_file = "samples/placement/hots_examples/thesis_ex_10/container_usage.csv"
    assert "120 messages" in invoke("produce", csv_file, usage, "--csv-rows", "container_id")
    invoke("run", "placement_kafka")
    lake = tmp_path / "lake" / "placement_kafka"
    models = [pq.read_table(p).to_pylist() for p in sorted(lake.glob("cluster_model/**/*.parquet"))]
    rows = [(m["tick"], m["container_id"]) for ms in models for m in ms if not m["history"]]
    rows = [r for r in rows if r[0] is not None]
    assert sorted(rows) == sorted((r["timestamp"], r["container_id"]) for r in thesis_rows(0, 11))
    for ms in models:  # whole ticks: ten containers each
        counts = Counter(m["tick"] for m in ms if m["tick"] is not None and not m["history"])
        assert set(counts.values()) <= {10}
    decided = [
        (m["container_name"], m["new_host"], m["time"])
        for p in lake.glob("placement_decisions/**/*.parquet")
        for m in pq.read_table(p).to_pylist()
    ]
    reader = KafkaConnector(moves, KafkaConnection(bootstrap_servers=kafka_bootstrap))
    try:
        published = [(m["container_name"], m["new_host"], m["time"]) for m in reader.applied()]
    finally:
        reader.close()
    assert decided and sorted(published) == sorted(decided)
