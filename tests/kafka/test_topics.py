"""Topic admin from the spec, against the real broker: apply is explicit and idempotent."""

import uuid

import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from headwater.cli import app
from headwater.errors import SpecError
from headwater.kafka.topics import Topics
from headwater.spec import load_spec

SPEC = """\
name: t
lake: {lake}
kafka: {{bootstrap_servers: "{servers}"}}
topics:
  {topic}: {{partitions: {partitions}, config: {{retention.ms: {retention}}}}}
source:
  kafka: {{topics: [{topic}], group: g-{topic}}}
decode: {{avro: {{framing: container}}}}
streams:
  raw: {{sinks: [parquet]}}
"""


@pytest.fixture
def topic_spec(kafka_bootstrap, tmp_path, write_spec):
    topic = f"t-{uuid.uuid4().hex[:8]}"

    def make(partitions: int = 3, retention: int = 604800000):
        return write_spec(
            SPEC.format(
                lake=tmp_path / "lake",
                servers=kafka_bootstrap,
                topic=topic,
                partitions=partitions,
                retention=retention,
            )
        )

    make.topic = topic
    return make


def cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def test_apply_creates_then_changes_nothing(kafka_bootstrap, topic_spec):
    spec = topic_spec()
    dry = cli("topics", "apply", str(spec), "--dry-run")
    assert dry.exit_code == 0 and "would be created" in dry.output
    assert (
        topic_spec.topic
        not in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    )
    first = cli("topics", "apply", str(spec))
    assert first.exit_code == 0, first.output
    assert f"{topic_spec.topic} created" in first.output
    [state] = Topics(load_spec(spec).model.kafka).describe([topic_spec.topic])
    assert state.partitions == 3
    assert state.configs["retention.ms"] == "604800000"
    again = cli("topics", "apply", str(spec))
    assert again.exit_code == 0 and f"{topic_spec.topic} unchanged" in again.output


def test_apply_grows_partitions_sets_configs_and_refuses_to_shrink(topic_spec):
    cli("topics", "apply", str(topic_spec()))
    grown = cli("topics", "apply", str(topic_spec(partitions=4, retention=3600000)))
    assert grown.exit_code == 0, grown.output
    assert "partitions 3 -> 4" in grown.output
    assert "retention.ms: 604800000 -> 3600000" in grown.output
    [state] = Topics(load_spec(topic_spec()).model.kafka).describe([topic_spec.topic])
    assert (state.partitions, state.configs["retention.ms"]) == (4, "3600000")
    shrink = cli("topics", "apply", str(topic_spec(partitions=2, retention=3600000)))
    assert shrink.exit_code == 1
    assert "cannot remove partitions" in shrink.output


def test_list_describe_and_delete(kafka_bootstrap, topic_spec):
    spec = str(topic_spec())
    missing = cli("topics", "list", spec)
    assert missing.exit_code == 0 and "missing" in missing.output
    cli("topics", "apply", spec)
    listed = cli("topics", "list", spec)
    assert "declared+source" in listed.output and "retention.ms=604800000" in listed.output
    described = cli("topics", "describe", spec)
    assert described.exit_code == 0, described.output
    assert f"{topic_spec.topic}: 3 partitions, 0 messages held" in described.output
    refused = cli("topics", "delete", spec)
    assert refused.exit_code == 1 and "--yes" in refused.output
    assert cli("topics", "delete", spec, "other-topic", "--yes").exit_code == 1
    deleted = cli("topics", "delete", spec, "--yes")
    assert deleted.exit_code == 0 and topic_spec.topic in deleted.output
    assert topic_spec.topic not in Topics(load_spec(spec).model.kafka).existing()


def test_topic_spec_errors_name_file_line_and_key(topic_spec, write_spec, tmp_path):
    bad = write_spec(
        SPEC.format(lake=tmp_path, servers="x:1", topic="a", partitions=0, retention=1).replace(
            'kafka: {bootstrap_servers: "x:1"}',
            "kafka: {bootstrap_servers: x, sasl_password: hunter2}",
        ),
        "bad.yaml",
    )
    with pytest.raises(SpecError) as exc:
        load_spec(bad)
    text = str(exc.value)
    assert "bad.yaml:3: kafka.sasl_password: a secret must be an environment-variable" in text
    assert "bad.yaml:5: topics.a.partitions:" in text
