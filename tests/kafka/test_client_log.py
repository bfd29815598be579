"""librdkafka's own lines: through Python logging, each distinct problem once a minute."""

from __future__ import annotations

import logging
import shutil

import pytest
from confluent_kafka import Consumer

from headwater.kafka.client_log import LOGGER_NAME, Repeats, client_logger
from headwater.kafka.connection import KafkaConnection
from headwater.ports import free_port


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord(LOGGER_NAME, logging.ERROR, __file__, 1, msg, (), None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_passes_once_a_minute_and_then_says_how_many_were_held_back():
    clock = Clock()
    repeats = Repeats(seconds=60, clock=clock)
    first = record("FAIL [rdkafka#consumer-1]: 127.0.0.1:9092 refused (after 0ms)")
    assert repeats.filter(first)
    clock.now = 30
    # the same line with other numbers (client id, delay) is the same problem
    assert not repeats.filter(
        record("FAIL [rdkafka#consumer-2]: 127.0.0.1:9092 refused (after 1ms)")
    )
    assert not repeats.filter(
        record("FAIL [rdkafka#consumer-1]: 127.0.0.1:9092 refused (after 0ms)")
    )
    assert repeats.filter(record("FAIL [rdkafka#consumer-1]: SASL authentication error"))
    clock.now = 61
    later = record("FAIL [rdkafka#consumer-1]: 127.0.0.1:9092 refused (after 0ms)")
    assert repeats.filter(later)
    assert later.getMessage().endswith("(2 more like it held back)")
    clock.now = 62
    assert not repeats.filter(
        record("FAIL [rdkafka#consumer-1]: 127.0.0.1:9092 refused (after 0ms)")
    )
    assert repeats.held() == 1


@pytest.fixture
def fresh_filter():
    """The client logger with a filter of its own: earlier tests' lines are not repeats."""
    logger = logging.getLogger(LOGGER_NAME)
    kept = list(logger.filters)
    for f in kept:
        logger.removeFilter(f)
    yield client_logger()
    for f in list(logger.filters):
        logger.removeFilter(f)
    for f in kept:
        logger.addFilter(f)


def test_a_client_of_a_cluster_that_is_down_logs_one_line_not_one_per_attempt(
    fresh_filter, caplog, capfd
):
    conn = KafkaConnection(bootstrap_servers=f"127.0.0.1:{free_port()}")
    consumer = Consumer(conn.settings(**{"group.id": "headwater-test", "log_level": 3}))
    try:
        consumer.subscribe(["nothing-here"])
        with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
            for _ in range(15):  # librdkafka retries the refused connection many times
                consumer.poll(0.1)
    finally:
        consumer.close()
    lines = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert len(lines) == 1 and "Connection refused" in lines[0].getMessage()
    [repeats] = fresh_filter.filters
    assert repeats.held() >= 2  # more attempts than lines: the filter, not luck, kept it to one
    assert "%3|" not in capfd.readouterr().err  # nothing straight to stderr


def test_the_project_instance_puts_a_run_s_kafka_client_lines_in_its_event_log(
    fresh_filter, tmp_path
):
    """The bundled dagster.yaml names the client logger: what a run's clients report
    (here: a cluster that is down) shows in the run's logs in the web UI, once."""
    from dagster import job, op

    from headwater.runner import dagster_instance
    from tests.conftest import REPO

    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    servers = f"127.0.0.1:{free_port()}"

    @op
    def read_from_a_cluster_that_is_down() -> None:
        conn = KafkaConnection(bootstrap_servers=servers)
        consumer = Consumer(conn.settings(**{"group.id": "headwater-test"}))
        try:
            consumer.subscribe(["nothing-here"])
            for _ in range(15):
                consumer.poll(0.1)
        finally:
            consumer.close()

    @job
    def kafka_client_lines() -> None:
        read_from_a_cluster_that_is_down()

    instance = dagster_instance(tmp_path, capture_logs=False)
    result = kafka_client_lines.execute_in_process(instance=instance)
    logged = [
        e.message
        for e in instance.all_logs(result.run_id)
        if e.dagster_event is None and "Connection refused" in e.message
    ]
    assert len(logged) == 1 and servers in logged[0]
