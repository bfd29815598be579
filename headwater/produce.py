"""Load a folder of message files into a Kafka topic, at a rate or as fast as possible.

For demos, tests and benchmarks: ``headwater produce samples/ztf/alerts ztf_alerts``. Files are
sent in sorted order, one message each, keyed by file stem (or by a key the caller derives),
and the call returns only after every delivery report came back; a failed delivery raises.
With ``rows``, each row of CSV files is a message instead: a JSON record keyed by one of its
columns (HOTS's ``container_usage.csv`` as a usage stream keyed by container).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Producer

from headwater.errors import HeadwaterError
from headwater.kafka.client_log import client_logger
from headwater.kafka.connection import ClientErrors


def message_files(folder: Path, pattern: str = "**/*") -> list[Path]:
    if not folder.is_dir():
        raise HeadwaterError(f"{folder} is not a folder of message files")
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))


def csv_rows(files: list[Path], key: str) -> list[tuple[str, bytes]]:
    """Each row of the CSV files as ``(key, JSON record)``, in file and row order; numbers
    stay numbers (Arrow infers each column's type)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    out: list[tuple[str, bytes]] = []
    for path in files:
        try:
            table = pcsv.read_csv(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise HeadwaterError(f"{path}: not a CSV file with a header line ({exc})") from exc
        if key not in table.column_names:
            raise HeadwaterError(
                f"{path}: no column {key!r} to key the messages by; it has "
                f"{', '.join(table.column_names)}. Pass --csv-rows with one of them."
            )
        # per row, but this is a loader for demos and tests, not a pipeline's hot path
        out.extend((str(row[key]), json.dumps(row).encode()) for row in table.to_pylist())
    return out


def produce_files(
    files: list[Path],
    topic: str,
    bootstrap_servers: str,
    *,
    repeat: int = 1,
    rate: float = 0.0,
    on_sent: Callable[[int], None] | None = None,
    config: dict[str, str] | None = None,
) -> int:
    """Send each file's bytes as one message (``repeat`` times); return how many were sent.

    ``rate`` > 0 paces sending to that many messages per second. Keys are
    ``<stem>`` or ``<stem>-<round>`` when repeating, so repeats spread over partitions.
    """
    payloads = [(f.stem, f.read_bytes()) for f in files]
    rounds = (
        (stem if repeat == 1 else f"{stem}-{r}", value)
        for r in range(repeat)
        for stem, value in payloads
    )
    return produce_messages(rounds, topic, bootstrap_servers, rate, on_sent, config)


def produce_messages(
    messages: Iterable[tuple[str, bytes]],
    topic: str,
    bootstrap_servers: str,
    rate: float = 0.0,
    on_sent: Callable[[int], None] | None = None,
    config: dict[str, str] | None = None,
) -> int:
    """Send ``(key, value)`` messages in order, paced to ``rate`` a second when > 0; return
    how many were sent, once every delivery report came back."""
    seen = ClientErrors()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "acks": "all",
            "linger.ms": 5,
            "error_cb": seen,
            "logger": client_logger(),
            **(config or {}),
        }
    )
    seen.serve = lambda: producer.poll(0)  # nothing sent yet: only error_cb is served
    _check_topic(producer, topic, bootstrap_servers, seen)
    errors: list[str] = []

    def delivered(err, msg) -> None:
        if err is not None:
            errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    started = time.monotonic()
    sent = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key=key.encode(), on_delivery=delivered)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
        if on_sent:
            on_sent(1)
        if rate > 0:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    left = producer.flush(60)
    if left or errors:
        raise HeadwaterError(
            f"{len(errors) + left} of {sent} messages to {topic} were not "
            f"delivered: {'; '.join(errors[:3]) or 'flush timed out'}"
        )
    return sent


#: How long the topic's metadata may take before the cluster counts as unreachable.
METADATA_SECONDS = 15.0


def _check_topic(producer: Producer, topic: str, servers: str, seen: ClientErrors) -> None:
    """Fail before sending when the cluster does not answer or the topic does not exist:
    either way every message would otherwise time out one by one, saying only that."""
    try:
        meta = producer.list_topics(topic, timeout=METADATA_SECONDS)
    except KafkaException as exc:  # what the client saw says why (refused, auth)
        raise HeadwaterError(
            f"cannot reach Kafka at {servers}: {seen.explain(exc)} "
            "(./scripts/kafka-broker starts a local one; --bootstrap-servers names another)"
        ) from exc
    found = meta.topics.get(topic)
    if found is None or (found.error is not None and found.error.code() in _MISSING):
        raise HeadwaterError(
            f"topic {topic} does not exist at {servers}; create it first: headwater topics "
            "apply PIPELINE (the pipeline whose spec declares it)"
        )


_MISSING = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)
