"""SASL against a real broker with a SASL_PLAINTEXT listener: secrets only from the environment."""

import gc
import uuid
from types import SimpleNamespace

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from headwater.errors import SourceError
from headwater.kafka.connection import KafkaConnection
from headwater.pipeline import Pipeline
from headwater.resources import KafkaResource
from headwater.spec import load_spec
from tests.conftest import ztf_files
from tests.sources.test_kafka import produce

SPEC = """\
name: secure
lake: {lake}
kafka:
  bootstrap_servers: "{servers}"
  security_protocol: SASL_PLAINTEXT
  sasl_mechanism: PLAIN
  sasl_username: alice
  sasl_password: {{env: TEST_KAFKA_PASSWORD}}
source:
  kafka: {{topics: [{topic}], group: secure}}
decode: {{avro: {{framing: container, cutouts: drop}}}}
streams:
  raw: {{sinks: [parquet]}}
"""

PASSWORD = "alice-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def sasl_broker(kafka_bootstrap):
    from headwater.testing.broker import LocalBroker

    broker = LocalBroker(sasl_users={"alice": PASSWORD}).start()
    yield broker
    gc.collect()  # the tests' clients go first: no reconnect noise after the stop
    broker.stop()


def test_sasl_reads_with_the_password_from_the_environment(
    sasl_broker, tmp_path, write_spec, monkeypatch
):
    topic = "secure-alerts"
    admin = AdminClient({"bootstrap.servers": sasl_broker.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    produce(sasl_broker.bootstrap_servers, topic, [f.read_bytes() for f in ztf_files()])
    spec_file = write_spec(
        SPEC.format(lake=tmp_path / "lake", servers=sasl_broker.sasl_bootstrap_servers, topic=topic)
    )
    spec = load_spec(spec_file, base_dir=tmp_path)

    monkeypatch.setenv("TEST_KAFKA_PASSWORD", "wrong")
    wrong = Pipeline(spec)
    with pytest.raises(SourceError, match="authentication failed"):
        wrong.cut()
    wrong.close()

    monkeypatch.setenv("TEST_KAFKA_PASSWORD", PASSWORD)
    pipeline = Pipeline(spec)
    [batch] = pipeline.plan()
    report = pipeline.run(batch)
    pipeline.close()
    assert report.decoded == 30
    assert PASSWORD not in spec.model.kafka.describe()
    assert PASSWORD not in repr(spec.model)
    for f in (tmp_path / "lake").rglob("*.json"):  # the ledger never holds the secret
        assert PASSWORD not in f.read_text()


def test_the_resource_overrides_only_what_it_sets(monkeypatch):
    spec = KafkaConnection.model_validate(
        {"bootstrap_servers": "spec:9092", "client": {"socket.timeout.ms": 1000}}
    )
    resource = KafkaResource(
        bootstrap_servers="prod:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username_env="K_USER",
        sasl_password_env="K_PASS",
        group_prefix="prod-",
    )
    monkeypatch.setenv("K_USER", "bob")
    monkeypatch.setenv("K_PASS", "s3cret")
    conn = resource.connection(spec)
    settings = conn.settings()
    assert settings["bootstrap.servers"] == "prod:9093"
    assert settings["sasl.username"] == "bob" and settings["sasl.password"] == "s3cret"
    assert settings["socket.timeout.ms"] == 1000  # the spec's client settings stay
    assert conn.group("ztf") == "prod-ztf"
    assert "s3cret" not in conn.describe() and "s3cret" not in repr(resource)
    assert KafkaResource().connection(spec) == spec


def test_secrets_in_client_settings_are_refused():
    with pytest.raises(ValueError, match=r"carry secrets.*sasl_password"):
        KafkaConnection.model_validate({"client": {"sasl.password": "x"}})
    with pytest.raises(ValueError, match="needs sasl_mechanism"):
        KafkaConnection.model_validate({"security_protocol": "SASL_SSL"})


def test_topics_reports_a_refused_login_without_waiting_out_its_timeout(sasl_broker, monkeypatch):
    from headwater.kafka import topics

    monkeypatch.setenv("TEST_KAFKA_PASSWORD", "wrong")
    monkeypatch.setattr(topics, "TIMEOUT", 60.0)
    conn = KafkaConnection.model_validate(
        {
            "bootstrap_servers": sasl_broker.sasl_bootstrap_servers,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "alice",
            "sasl_password": {"env": "TEST_KAFKA_PASSWORD"},
        }
    )
    admin = topics.Topics(conn)
    asked = []
    list_topics = admin.admin.list_topics
    admin.admin = SimpleNamespace(
        list_topics=lambda **kw: asked.append(kw) or list_topics(**kw), poll=admin.admin.poll
    )
    with pytest.raises(topics.TopicError, match="authentication failed"):
        admin.existing()
    # asked about once a second: a wait of the whole minute would ask some 60 times
    assert len(asked) < 30
