"""The Kafka sink against the real broker: what it publishes reads back as the same rows."""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition

from headwater.batch import LINEAGE_COLUMNS
from headwater.errors import SinkError
from headwater.ledger import PENDING
from headwater.pipeline import Pipeline
from headwater.spec import load_spec
from tests.test_kafka_broker import create_topic

PUBLISH = """\
name: pub
lake: {lake}
kafka: {{bootstrap_servers: "{servers}"}}
source: {{files: {{path: {alerts}, pattern: "**/*.avro"}}}}
decode: {{avro: {{framing: container, cutouts: drop}}}}
streams:
  raw: {{sinks: [parquet]}}
  solar_system:
    from: raw
    processors: [{{solar_system: {{action: include}}}}]
    sinks: [parquet, {{kafka: {sink}}}]
"""

READ = """\
name: sub
lake: {lake}
kafka: {{bootstrap_servers: "{servers}"}}
source: {{kafka: {{topics: [{topic}], group: sub-{topic}}}}}
decode: {{avro: {decode}}}
streams:
  raw: {{sinks: [parquet]}}
"""


def run_all(spec_file, tmp_path) -> Pipeline:
    pipeline = Pipeline(load_spec(spec_file, base_dir=tmp_path))
    for batch in pipeline.plan():
        pipeline.run(batch)
    return pipeline


def stream_table(pipeline: Pipeline, stream: str) -> pa.Table:
    import pyarrow.parquet as pq

    files = sorted(pipeline.lake.stream_dir(pipeline.name, stream).rglob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    table = table.drop_columns([c for c in LINEAGE_COLUMNS if c in table.column_names])
    return table.sort_by("candid")


def cells(table: pa.Table) -> str:  # JSON so that NaN equals NaN
    return json.dumps(table.to_pylist(), default=str, sort_keys=True)


def messages(servers: str, topic: str, partitions: int, expected: int = 11) -> list:
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "peek"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    while len(out) < expected and (batch := consumer.consume(expected - len(out), timeout=10)):
        out.extend(m for m in batch if not m.error())
    consumer.close()
    return out


def publish(kafka_bootstrap, tmp_path, write_spec, alerts_copy, sink: str) -> tuple[str, Pipeline]:
    topic = create_topic(kafka_bootstrap, 2)
    sink = sink.replace("TOPIC", topic)
    spec = write_spec(
        PUBLISH.format(
            lake=tmp_path / "lake", servers=kafka_bootstrap, alerts=alerts_copy, sink=sink
        ),
        "pub.yaml",
    )
    return topic, run_all(spec, tmp_path)


def read_back(kafka_bootstrap, tmp_path, write_spec, topic: str, decode: str) -> Pipeline:
    spec = write_spec(
        READ.format(lake=tmp_path / "lake", servers=kafka_bootstrap, topic=topic, decode=decode),
        "sub.yaml",
    )
    return run_all(spec, tmp_path)


def test_avro_containers_keyed_by_object_read_back_as_the_same_rows(
    kafka_bootstrap, tmp_path, write_spec, alerts_copy
):
    topic, pub = publish(
        kafka_bootstrap, tmp_path, write_spec, alerts_copy, "{topic: TOPIC, key: objectId}"
    )
    sent = stream_table(pub, "solar_system")
    assert sent.num_rows == 11
    got = messages(kafka_bootstrap, topic, 2)
    assert sorted(m.key().decode() for m in got) == sorted(sent["objectId"].to_pylist())
    [entry] = pub.ledger.entries()
    assert {h: v.decode() for h, v in got[0].headers()} == {
        "headwater.pipeline": "pub",
        "headwater.batch": entry.batch.id,
    }
    assert entry.summary["streams"]["solar_system"]["outputs"]["kafka"]["messages"] == 11
    sub = read_back(kafka_bootstrap, tmp_path, write_spec, topic, "{framing: container}")
    assert cells(stream_table(sub, "raw")) == cells(sent)


def test_json_messages_hold_every_column(kafka_bootstrap, tmp_path, write_spec, alerts_copy):
    topic, pub = publish(
        kafka_bootstrap, tmp_path, write_spec, alerts_copy, "{topic: TOPIC, format: json}"
    )
    sent = stream_table(pub, "solar_system")
    rows = sorted(
        (json.loads(m.value()) for m in messages(kafka_bootstrap, topic, 2)),
        key=lambda r: r["candid"],
    )
    assert [r["candid"] for r in rows] == sent["candid"].to_pylist()
    assert [r["candidate"]["ssnamenr"] for r in rows] == [
        c["ssnamenr"] for c in sent["candidate"].to_pylist()
    ]
    assert "_offset" not in rows[0]  # lineage stays home unless lineage: true


@pytest.fixture
def registry():
    """A small Schema Registry speaking the REST calls confluent-kafka's client makes."""
    schemas: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # register: /subjects/<subject>/versions
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body["schema"] not in schemas:
                schemas.append(body["schema"])
            self._reply(200, {"id": schemas.index(body["schema"]) + 1})

        def do_GET(self):  # /schemas/ids/<id>
            sid = int(self.path.split("?")[0].rstrip("/").split("/")[-1])
            if 0 < sid <= len(schemas):
                self._reply(200, {"schema": schemas[sid - 1]})
            else:
                self._reply(404, {"error_code": 40403, "message": "Schema not found"})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", schemas
    server.shutdown()
    server.server_close()
    thread.join()


def test_confluent_wire_format_registers_its_schema(
    kafka_bootstrap, tmp_path, write_spec, alerts_copy, registry
):
    url, schemas = registry
    topic, pub = publish(
        kafka_bootstrap,
        tmp_path,
        write_spec,
        alerts_copy,
        f"{{topic: TOPIC, format: confluent, registry: {{url: '{url}'}}}}",
    )
    assert len(schemas) == 1
    got = messages(kafka_bootstrap, topic, 2)
    assert all(m.value()[:5] == b"\x00\x00\x00\x00\x01" for m in got)
    sub = read_back(
        kafka_bootstrap,
        tmp_path,
        write_spec,
        topic,
        f"{{framing: confluent, registry: {{url: '{url}'}}}}",
    )
    assert cells(stream_table(sub, "raw")) == cells(stream_table(pub, "solar_system"))


def test_undelivered_messages_leave_the_batch_pending(
    kafka_bootstrap, tmp_path, write_spec, alerts_copy
):
    missing = f"nope-{uuid.uuid4().hex[:6]}"
    spec = write_spec(
        PUBLISH.format(
            lake=tmp_path / "lake",
            servers=kafka_bootstrap,
            alerts=alerts_copy,
            sink=f"{{topic: {missing}, delivery_timeout_seconds: 2}}",
        )
    )
    pipeline = Pipeline(load_spec(spec, base_dir=tmp_path))
    [batch] = pipeline.plan()
    with pytest.raises(SinkError, match=f"11 of 11 messages to {missing} were not delivered"):
        pipeline.run(batch)
    assert [e.status for e in pipeline.ledger.entries()] == [PENDING]
