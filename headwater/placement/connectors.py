"""Connectors: where moves are applied, and where the collector learns which were.

``file`` appends to a moves log in HOTS's JSON-lines format
(``{"container_name", "old_host", "new_host", "time"}``); ``kafka`` publishes the same
records to a topic. Either way the log is the record of what was applied: the next batch's
model reads it back (the closed loop HOTS's file connector simulates). A move logged at
``time`` applies from the next tick on.

Applying is idempotent per decision tick: the moves of a tick replace any logged earlier
for the same tick (a rerun of a batch), and applying the same moves again reports
``unchanged``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.json as pajson
from pydantic import Field, model_validator

from headwater.atomic import replace_file, write_all
from headwater.config import ComponentConfig
from headwater.errors import HeadwaterError, SinkError
from headwater.placement.applied import AppliedMoves

MOVE_KEYS = ("container_name", "old_host", "new_host", "time")


class ConnectorConfig(ComponentConfig):
    file: str | None = Field(
        default=None, description="Moves log (JSON lines); default <lake>/<pipeline>/moves.jsonl."
    )
    kafka: str | None = Field(default=None, description="Topic the moves are published to.")

    @model_validator(mode="after")
    def _one(self) -> ConnectorConfig:
        if self.file is not None and self.kafka is not None:
            raise ValueError("give file or kafka, not both")
        return self

    @property
    def kind(self) -> Literal["file", "kafka"]:
        return "kafka" if self.kafka is not None else "file"


def normalise(move: dict[str, Any]) -> dict[str, Any]:
    return {k: (int(move[k]) if k == "time" else str(move[k])) for k in MOVE_KEYS}


def hots_json(move: dict[str, Any]) -> str:
    """A move as HOTS writes it (its time a string)."""
    return json.dumps({**move, "time": str(move["time"])})


@dataclass(frozen=True)
class _Read:
    """What a moves log held when it was last read: the file, the bytes and lines of it
    parsed (whole lines only), and the moves on them."""

    identity: tuple[int, int]
    size: int
    lines: int
    moves: AppliedMoves  # extended in place as the log grows


class FileConnector:
    """A moves log: read back incrementally, appended to for a new decision tick.

    Every batch reads the log back and the sink writes its moves: re-reading and rewriting
    the whole log each time made a long loop's cost grow with its history. What was parsed
    is kept with the file's identity; a log that grew in place is read on from where it was
    left, anything else (a rewrite replaces the file) from its start. Other writers should
    append whole lines or replace the file.
    """

    def __init__(self, path: Path):
        self.path = path
        self._last: _Read | None = None

    def applied(self) -> AppliedMoves:
        return self._read()[0]

    def _read(self) -> tuple[AppliedMoves, bool]:
        """The moves logged, and whether the log can be appended to: it ends with a whole
        line. A log cut short by a crash during an append ends with part of a line; that
        part was never applied (its batch did not commit), is ignored here and is dropped
        by the next write."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                last = self._last
                identity = (st.st_dev, st.st_ino)
                if last is None or last.identity != identity or st.st_size < last.size:
                    last = _Read(identity, 0, 0, AppliedMoves())
                f.seek(last.size)
                data = f.read()
        except FileNotFoundError:
            self._last = None
            return AppliedMoves(), True
        whole = data.rfind(b"\n") + 1
        count = data.count(b"\n", 0, whole)
        parsed = _parse_bulk(data[:whole]) if count >= BULK else None
        if parsed is None:  # a few lines, or one Arrow refuses: line by line, named if bad
            parsed = self._parse(data[:whole].decode().split("\n")[:-1], last.lines)
        moves = last.moves
        moves.extend(parsed)
        self._last = _Read(last.identity, last.size + whole, last.lines + count, moves)
        tail = data[whole:].decode(errors="replace")
        if not tail.strip():
            return moves, not tail
        try:  # a last line with no newline: counted, in a copy (it may yet be completed)
            return AppliedMoves([*moves, normalise(json.loads(tail))]), False
        except (ValueError, KeyError, TypeError):
            return moves, False

    def _parse(self, lines: list[str], before: int) -> list[dict[str, Any]]:
        out = []
        for n, line in enumerate(lines, before + 1):
            if not line.strip():
                continue
            try:
                out.append(normalise(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise HeadwaterError(
                    f"moves log {self.path}:{n}: not a move ({exc}); expected JSON with "
                    f"{', '.join(MOVE_KEYS)}. Fix or remove the line."
                ) from exc
        return out

    def apply(self, moves: list[dict[str, Any]], tick: int) -> str:
        logged, appendable = self._read()
        mine = [normalise(m) for m in moves]
        if logged.at(tick) == mine:
            return "unchanged"
        try:
            if appendable and (logged.last_time is None or logged.last_time < tick):
                self._append(mine)  # the usual case: the next window's decision
            else:  # a rerun replaces its tick's moves; a partial last line is dropped
                self._rewrite([m for m in logged if m["time"] != tick] + mine)
        except OSError as exc:
            raise SinkError(f"moves log {self.path}: cannot write ({exc})", transient=True) from exc
        return "applied"

    @staticmethod
    def _lines(moves: list[dict[str, Any]]) -> bytes:
        return "".join(hots_json(m) + "\n" for m in moves).encode()

    def _append(self, moves: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            write_all(fd, self._lines(moves))  # a crash part-way leaves a partial line: ignored
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rewrite(self, moves: list[dict[str, Any]]) -> None:
        replace_file(self.path, self._lines(moves), fsync=True)

    def close(self) -> None:
        """Nothing to release: the log is opened for each read and write."""


#: Lines from which a log is parsed by Arrow's JSON reader: a loop that ran for weeks has
#: logged 10^5 moves, read once by each new process (json per line: 4 s a million); for a
#: batch's few new lines, starting the reader's threads costs more than it saves.
BULK = 1000


def _parse_bulk(data: bytes) -> list[dict[str, Any]] | None:
    """The moves on whole lines of JSON, as :func:`normalise` gives them, or None when
    Arrow cannot read them so (a bad line, a key missing, a time that is not an integer)."""
    try:
        table = pajson.read_json(pa.BufferReader(data))
        if any(k not in table.column_names or table[k].null_count for k in MOVE_KEYS):
            return None
        columns = [table[k].cast(pa.int64() if k == "time" else pa.string()) for k in MOVE_KEYS]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # a dict a row from Python lists: two thirds of what Table.to_pylist costs
    names, olds, news, times = (c.to_pylist() for c in columns)
    return [
        {"container_name": c, "old_host": o, "new_host": n, "time": t}
        for c, o, n, t in zip(names, olds, news, times, strict=True)
    ]


#: Headers on every move headwater publishes: the decision tick, and which decision for it
#: (a rerun of a window is a new decision and replaces the tick's moves).
TICK_HEADER, DECISION_HEADER = "headwater.tick", "headwater.decision"


@dataclass
class _Decision:
    """The moves read back for one tick: those of the latest decision published for it."""

    id: str | None
    moves: dict[str, dict[str, Any]] = field(default_factory=dict)  # by container


class KafkaConnector:
    """Moves published to a topic, HOTS's records as JSON, and read back incrementally.

    One producer and one consumer serve the connector's life: a producer made for every
    batch (idempotence set up anew each time) cost about half a second a window, and
    reading the topic back from its start grew with its history. Every move is keyed by
    its decision tick, so all of a decision's moves share a partition and the latest
    decision for a tick is the one read last; it replaces the tick's earlier moves, and a
    rerun that decides nothing for a tick that had moves publishes a tombstone (no value)
    to say so. Records without headwater's headers (other publishers) are merged by
    container and tick, the later winning.
    """

    def __init__(self, topic: str, kafka: Any, timeout: float = 30.0):
        self.topic = topic
        self.kafka = kafka
        self.timeout = timeout
        self._consumer: Any = None
        self._producer: Any = None
        self._next: dict[int, int] = {}  # partition -> the next offset to read
        self._ticks: dict[int, _Decision] = {}
        self._touched: set[int] = set()  # ticks whose moves changed in this read
        self._log = AppliedMoves()

    def applied(self) -> AppliedMoves:
        from confluent_kafka import KafkaException

        try:
            self._catch_up()
        except KafkaException as exc:
            raise HeadwaterError(
                f"moves topic {self.topic}: cannot read it back ({exc})", transient=True
            ) from exc
        return self._log

    def _catch_up(self) -> None:
        """Read on, then bring the log up to date: extended with ticks after the last one
        it holds, else (a tick's moves replaced, or a read from the start) built anew."""
        self._touched = set()
        reset = self._read_on()
        last = self._log.last_time
        if reset or any(last is not None and t <= last for t in self._touched):
            self._log = AppliedMoves(
                m for tick in sorted(self._ticks) for m in self._ticks[tick].moves.values()
            )
        else:
            self._log.extend(
                m for tick in sorted(self._touched) for m in self._ticks[tick].moves.values()
            )

    def _read_on(self) -> bool:
        """Read what was published since the last call (all of it after a retention cut, or
        on a new topic: then True)."""
        from confluent_kafka import Consumer, TopicPartition

        if self._consumer is None:
            # a fetch waiting on the broker for more data holds up the next look-up of the
            # partitions' ends: half a second a call with the default wait
            settings = {
                "group.id": "headwater-moves-reader",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
            self._consumer = Consumer(self.kafka.settings(**settings))
        consumer = self._consumer
        meta = consumer.list_topics(self.topic, timeout=self.timeout).topics[self.topic]
        if meta.error is not None:  # not created yet: nothing was applied
            self._next, self._ticks = {}, {}
            return True
        marks = {p: self._marks(TopicPartition(self.topic, p)) for p in sorted(meta.partitions)}
        reset = False
        if any(
            self._next.get(p, low) < low or self._next.get(p, 0) > high
            for p, (low, high) in marks.items()
        ):
            self._next, self._ticks = {}, {}  # records gone (retention) or a new topic
            reset = True
        for p, (low, high) in marks.items():
            start = self._next.get(p, low)
            if start < high:
                self._read(consumer, TopicPartition(self.topic, p, start), high)
            self._next[p] = max(start, high)
        return reset

    def _marks(self, partition: Any) -> tuple[int, int]:
        """A partition's first and next offsets. A topic just created has no leader for a
        moment (NOT_LEADER_FOR_PARTITION): retried, within the timeout."""
        from confluent_kafka import KafkaError, KafkaException

        deadline, pause = time.monotonic() + self.timeout, 0.02
        while True:
            try:
                return self._consumer.get_watermark_offsets(partition, timeout=self.timeout)
            except KafkaException as exc:
                error = exc.args[0]
                no_leader = error.code() in (
                    KafkaError.NOT_LEADER_FOR_PARTITION,
                    KafkaError.LEADER_NOT_AVAILABLE,
                )
                if not (no_leader or error.retriable()) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _read(self, consumer: Any, start: Any, high: int) -> None:
        consumer.assign([start])
        try:
            position = start.offset
            while position < high:
                msg = consumer.poll(self.timeout)
                if msg is None:
                    raise HeadwaterError(f"moves topic {self.topic}: read stalled", transient=True)
                if msg.error() is not None:
                    continue
                position = msg.offset() + 1
                self._take(msg)
        finally:
            consumer.unassign()  # no fetching while the batch works

    def _take(self, msg: Any) -> None:
        headers = {k: v.decode() for k, v in (msg.headers() or []) if v is not None}
        value = msg.value()
        try:
            # decoded first: json.loads of bytes detects their encoding, a fifth of its time
            move = normalise(json.loads(value.decode())) if value is not None else None
        except (ValueError, KeyError, TypeError) as exc:
            raise HeadwaterError(
                f"moves topic {self.topic} partition {msg.partition()} offset {msg.offset()}: "
                f"not a move ({exc}); expected JSON with {', '.join(MOVE_KEYS)}"
            ) from exc
        if DECISION_HEADER not in headers:  # another publisher's move
            if move is not None:
                self._touched.add(move["time"])
                self._ticks.setdefault(move["time"], _Decision(None)).moves[
                    move["container_name"]
                ] = move
            return
        tick, decision = int(headers[TICK_HEADER]), headers[DECISION_HEADER]
        self._touched.add(tick)
        if tick not in self._ticks or self._ticks[tick].id != decision:
            self._ticks[tick] = _Decision(decision)  # a later decision replaces the tick's
        if move is not None:
            self._ticks[tick].moves[move["container_name"]] = move

    def apply(self, moves: list[dict[str, Any]], tick: int) -> str:
        mine = {m["container_name"]: m for m in map(normalise, moves)}
        logged = {m["container_name"]: m for m in self.applied().at(tick)}
        if logged == mine:
            return "unchanged"
        headers = [
            (TICK_HEADER, str(tick).encode()),
            (DECISION_HEADER, uuid.uuid4().hex.encode()),
        ]
        records = [hots_json(m).encode() for m in mine.values()]
        self._publish(records or [None], headers)
        return "applied"

    def _publish(self, values: list[bytes | None], headers: list[tuple[str, bytes]]) -> None:
        from confluent_kafka import Producer

        if self._producer is None:
            settings = {"enable.idempotence": True, "acks": "all"}
            self._producer = Producer(self.kafka.settings(**settings))
        failed: list[str] = []
        for value in values:
            self._producer.produce(
                self.topic,
                value,
                key=headers[0][1],  # the tick: a decision's moves share a partition
                headers=headers,
                on_delivery=lambda err, _msg: failed.append(str(err)) if err else None,
            )
        left = self._producer.flush(self.timeout)
        if left or failed:
            raise SinkError(
                f"moves topic {self.topic}: {left + len(failed)} of {len(values)} records not "
                f"delivered ({'; '.join(failed[:3]) or 'flush timed out'}); the batch stays "
                "pending and a rerun publishes them again",
                transient=True,
            )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout)
            self._producer = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


Connector = FileConnector | KafkaConnector


class SharedConnector:
    """A process's one connector to a moves log or topic, for each user of it.

    A placement pipeline has two: its cluster model reads the moves back and its moves sink
    applies them. Each used to read the whole history on its first batch in a process
    (every Dagster run is one), so a loop that had logged 100,000 moves spent 0.4 s a run
    reading them twice. The users now share what was read, under one lock; the connector
    closes with its last user.
    """

    def __init__(self, key: tuple[str, ...], connector: Connector):
        self._key = key
        self._connector: Connector | None = connector

    @property
    def target(self) -> str:
        """The log's path or the topic's name."""
        c = self._live()
        return str(c.path) if isinstance(c, FileConnector) else c.topic

    def applied(self) -> AppliedMoves:
        with _LOCK:
            return self._live().applied()

    def apply(self, moves: list[dict[str, Any]], tick: int) -> str:
        with _LOCK:
            return self._live().apply(moves, tick)

    def close(self) -> None:
        with _LOCK:
            if self._connector is None:
                return
            self._connector = None
            connector, users = _OPEN[self._key]
            if users > 1:
                _OPEN[self._key] = (connector, users - 1)
                return
            del _OPEN[self._key]
            connector.close()

    def _live(self) -> Connector:
        if self._connector is None:
            raise HeadwaterError(f"moves connector {self._key[1]}: used after close")
        return self._connector


#: The connectors open in this process, by target, with how many users each has.
_OPEN: dict[tuple[str, ...], tuple[Connector, int]] = {}
_LOCK = threading.RLock()


def connector_for(config: ConnectorConfig, ctx: Any) -> SharedConnector:
    """The process's connector for the config's target, shared with its other users."""
    if config.kind == "kafka":
        # the topic on the same cluster, reached with the same settings
        key = ("kafka", str(config.kafka), ctx.kafka.model_dump_json())

        def make() -> Connector:
            return KafkaConnector(str(config.kafka), ctx.kafka)
    else:
        path = (
            ctx.path(config.file)
            if config.file
            else ctx.lake.pipeline_dir(ctx.pipeline) / "moves.jsonl"
        )
        key = ("file", os.path.realpath(path))

        def make() -> Connector:
            return FileConnector(path)

    with _LOCK:
        connector, users = _OPEN.get(key, (None, 0))
        _OPEN[key] = (connector or make(), users + 1)
        return SharedConnector(key, _OPEN[key][0])
