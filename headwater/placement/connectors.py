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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from headwater.atomic import replace_file
from headwater.config import ComponentConfig
from headwater.errors import HeadwaterError, SinkError

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


@dataclass(frozen=True)
class _Read:
    """What a moves log held when it was last read: the file, the bytes and lines of it
    parsed (whole lines only), and the moves on them."""

    identity: tuple[int, int]
    size: int
    lines: int
    moves: list[dict[str, Any]]


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

    def applied(self) -> list[dict[str, Any]]:
        return self._read()[0]

    def _read(self) -> tuple[list[dict[str, Any]], bool]:
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
                    last = _Read(identity, 0, 0, [])
                f.seek(last.size)
                data = f.read()
        except FileNotFoundError:
            self._last = None
            return [], True
        whole = data.rfind(b"\n") + 1
        lines = data[:whole].decode().split("\n")[:-1]
        moves = last.moves + self._parse(lines, last.lines)
        self._last = _Read(last.identity, last.size + whole, last.lines + len(lines), moves)
        tail = data[whole:].decode(errors="replace")
        if not tail.strip():
            return moves, not tail
        try:
            return [*moves, normalise(json.loads(tail))], False  # a last line with no newline
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
        if [m for m in logged if m["time"] == tick] == mine:
            return "unchanged"
        try:
            if appendable and all(m["time"] < tick for m in logged):
                self._append(mine)  # the usual case: the next window's decision
            else:  # a rerun replaces its tick's moves; a partial last line is dropped
                self._rewrite([m for m in logged if m["time"] != tick] + mine)
        except OSError as exc:
            raise SinkError(f"moves log {self.path}: cannot write ({exc})", transient=True) from exc
        return "applied"

    @staticmethod
    def _lines(moves: list[dict[str, Any]]) -> bytes:
        return "".join(json.dumps({**m, "time": str(m["time"])}) + "\n" for m in moves).encode()

    def _append(self, moves: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = memoryview(self._lines(moves))
        try:
            while data:  # a crash part-way leaves part of a line, which _read ignores
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rewrite(self, moves: list[dict[str, Any]]) -> None:
        replace_file(self.path, self._lines(moves), fsync=True)


class KafkaConnector:
    """Moves published to a topic and read back from its start (a moves topic is small)."""

    def __init__(self, topic: str, kafka: Any, timeout: float = 30.0):
        self.topic = topic
        self.kafka = kafka
        self.timeout = timeout

    def applied(self) -> list[dict[str, Any]]:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer(
            self.kafka.settings(
                **{"group.id": "headwater-moves-reader", "enable.auto.commit": False}
            )
        )
        try:
            meta = consumer.list_topics(self.topic, timeout=self.timeout).topics[self.topic]
            if meta.error is not None:  # not created yet: nothing was applied
                return []
            out: list[dict[str, Any]] = []
            for p in sorted(meta.partitions):
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=self.timeout
                )
                out.extend(self._read(consumer, TopicPartition(self.topic, p, low), high))
            by_key = {(m["container_name"], m["time"]): m for m in out}  # a rerun's copy wins
            return sorted(by_key.values(), key=lambda m: m["time"])
        except KafkaException as exc:
            raise HeadwaterError(
                f"moves topic {self.topic}: cannot read it back ({exc})", transient=True
            ) from exc
        finally:
            consumer.close()

    def _read(self, consumer: Any, start: Any, high: int) -> list[dict[str, Any]]:
        consumer.assign([start])
        out: list[dict[str, Any]] = []
        position = start.offset
        while position < high:
            msg = consumer.poll(self.timeout)
            if msg is None:
                raise HeadwaterError(f"moves topic {self.topic}: read stalled", transient=True)
            if msg.error() is not None:
                continue
            position = msg.offset() + 1
            out.append(normalise(json.loads(msg.value())))
        return out

    def apply(self, moves: list[dict[str, Any]], tick: int) -> str:
        from confluent_kafka import Producer

        mine = [normalise(m) for m in moves]
        if not mine or [m for m in self.applied() if m["time"] == tick] == mine:
            return "unchanged"
        producer = Producer(self.kafka.settings(**{"enable.idempotence": True, "acks": "all"}))
        failed: list[str] = []
        for m in mine:
            producer.produce(
                self.topic,
                json.dumps({**m, "time": str(m["time"])}).encode(),
                key=m["container_name"].encode(),
                on_delivery=lambda err, _msg: failed.append(str(err)) if err else None,
            )
        left = producer.flush(self.timeout)
        if left or failed:
            raise SinkError(
                f"moves topic {self.topic}: {left + len(failed)} of {len(mine)} moves not "
                f"delivered ({'; '.join(failed[:3]) or 'flush timed out'}); the batch stays "
                "pending and a rerun publishes them again",
                transient=True,
            )
        return "applied"


def connector_for(config: ConnectorConfig, ctx: Any) -> FileConnector | KafkaConnector:
    if config.kind == "kafka":
        return KafkaConnector(str(config.kafka), ctx.kafka)
    path = (
        ctx.path(config.file)
        if config.file
        else ctx.lake.pipeline_dir(ctx.pipeline) / "moves.jsonl"
    )
    return FileConnector(path)
