"""The project's own Kafka broker: real ZTF alerts through a real topic and back."""

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from headwater.batch import RawBatch, raw_table
from headwater.decoders.avro import AvroConfig, AvroDecoder
from headwater.errors import HeadwaterError
from headwater.ports import free_port
from headwater.produce import produce_files
from tests.conftest import REPO, stop_group, ztf_files


def create_topic(bootstrap: str, partitions: int) -> str:
    name = f"test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=30)
    return name


def test_alerts_round_trip_through_a_three_partition_topic(kafka_bootstrap, ctx):
    topic = create_topic(kafka_bootstrap, 3)
    files = ztf_files()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    failures = []
    for f in files:
        producer.produce(
            topic,
            f.read_bytes(),
            key=f.stem.encode(),
            on_delivery=lambda err, _msg: err and failures.append(err),
        )
    assert producer.flush(30) == 0 and failures == []

    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "t", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    messages = []
    while len(messages) < len(files):
        msg = consumer.poll(10)
        assert msg is not None, f"only {len(messages)} of {len(files)} messages came back"
        assert msg.error() is None
        messages.append(msg)
    consumer.close()
    assert {m.partition() for m in messages} == {0, 1, 2}  # keys spread them

    raw = RawBatch(
        raw_table(
            [f"{topic}:{m.partition()}" for m in messages],
            [m.offset() for m in messages],
            [m.value() for m in messages],
        )
    )
    table = AvroDecoder(AvroConfig(cutouts="drop"), ctx).decode(raw).table
    expected = []
    for f in files:
        with open(f, "rb") as fh:
            expected.extend(r["candid"] for r in fastavro.reader(fh))
    assert sorted(table["candid"].to_pylist()) == sorted(expected)


def test_topics_are_never_created_by_accident(kafka_bootstrap):
    topic = f"missing-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.timeout.ms": 3000})
    errors = []
    producer.produce(topic, b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(15)
    assert len(errors) == 1 and errors[0] is not None  # delivery failed, nothing written
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert topic not in topics


def test_headwater_produce_loads_a_folder_into_a_topic(kafka_bootstrap):
    from typer.testing import CliRunner

    from headwater.cli import app
    from tests.conftest import SAMPLES

    topic = create_topic(kafka_bootstrap, 2)
    result = CliRunner().invoke(
        app,
        [
            "produce",
            str(SAMPLES / "ztf" / "alerts"),
            topic,
            "--bootstrap-servers",
            kafka_bootstrap,
            "--repeat",
            "2",
            "--pattern",
            "**/*.avro",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"60 messages to {topic}" in result.output
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "p"})
    total = 0
    for p in range(2):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += high - low
    consumer.close()
    assert total == 60
    missing = CliRunner().invoke(
        app,
        [
            "produce",
            str(SAMPLES / "ztf" / "alerts"),
            "nope-topic",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--pattern",
            "**/*.avro",
            "--timeout",
            "3",
        ],
    )
    # at once, naming the topic and what creates it (each message used to time out alone)
    assert missing.exit_code == 1, missing.output
    assert "topic nope-topic does not exist" in missing.output and "topics apply" in missing.output


def test_the_broker_script_refuses_a_port_in_use_with_one_line(kafka_bootstrap):
    """A second broker on a held port: one clear line and exit 1, not a Java stack trace
    (the port is held by the session's broker, or any listener at $KAFKA_BOOTSTRAP_SERVERS)."""
    host, port = kafka_bootstrap.split(",")[0].rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):  # only with an outside $KAFKA_BOOTSTRAP_SERVERS
        pytest.skip(f"the held port must be local; {host} is not")
    done = subprocess.run(
        [str(REPO / "scripts" / "kafka-broker"), port],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: cannot start a Kafka broker on 127.0.0.1:{port}" in done.stderr
    assert "another port" in done.stderr and "Traceback" not in done.stderr
    assert "ready" not in done.stdout


def test_produce_to_no_broker_says_it_cannot_reach_kafka(monkeypatch):
    monkeypatch.setattr("headwater.produce.METADATA_SECONDS", 2.0)
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(HeadwaterError, match=f"cannot reach Kafka at {nobody}: no broker answers"):
        produce_files(ztf_files()[:2], "t", nobody)


def _brokers() -> set[int]:
    """PIDs of local brokers started by LocalBroker (their config is in headwater-kafka-*)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"kafka.Kafka" in cmd and b"headwater-kafka-" in cmd:
            found.add(int(entry.name))
    return found


def test_the_broker_script_stopped_while_starting_leaves_no_broker(kafka_bootstrap):
    """SIGTERM as soon as the broker's JVM exists (ready or not): the script stops it too.
    The handler used to be set only once the broker was ready, so a stop during start-up
    left a broker running in its own process group."""
    before = _brokers()
    proc = subprocess.Popen(
        [str(REPO / "scripts" / "kafka-broker"), "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _brokers() - before:
            assert proc.poll() is None and time.monotonic() < deadline, "no broker started"
            time.sleep(0.05)
        started = _brokers() - before
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert not started & _brokers(), f"broker(s) {started} still running"
    finally:
        stop_group(proc)
        for pid in started & _brokers() if "started" in locals() else ():
            os.kill(pid, signal.SIGKILL)
