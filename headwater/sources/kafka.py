"""``kafka``: topics cut into replayable offset-range batches; offsets committed after durable.

``plan`` reads every matching partition's end offset and cuts ``[start, end)`` ranges of at
most ``max_records_per_batch`` records (Spark's maxOffsetsPerTrigger; ``split`` says whether
a backlog is cut partition after partition or in proportion over them): a partition starts
where the last recorded batch ended, else at the group's committed offset, else at
``start``. A batch reads exactly its ranges (assign + seek, never subscribe), so re-running
it reads the same records. ``commit`` moves the consumer group forward only, after every
sink confirmed, so the group's lag is what standard Kafka tools show and a crash only means
a rerun.
"""

from __future__ import annotations

import itertools
import re
import time
import zlib
from collections.abc import Iterable
from typing import Any, Literal

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition
from pydantic import Field, model_validator

from headwater.batch import Batch, RawBatch, raw_table
from headwater.config import ComponentConfig
from headwater.errors import SourceError
from headwater.kafka.connection import ClientErrors, ClientSettings
from headwater.sources.base import Source, cut_across, cut_ranges


class KafkaConfig(ComponentConfig):
    """The cluster comes from the spec's ``kafka:`` block (servers, security)."""

    topics: list[str] | None = Field(default=None, description="Topics to read, by name.")
    pattern: str | None = Field(
        default=None, description="A regex: every matching topic is read as one stream."
    )
    group: str = Field(description="Consumer group whose offsets record what is done.")
    max_records_per_batch: int = Field(default=10_000, gt=0, description="Batch size cap.")
    split: Literal["auto", "in_order", "proportional"] = Field(
        default="auto",
        description="How a backlog over max_records_per_batch is cut: proportional takes "
        "from every partition in proportion to its backlog, so a batch holds the same "
        "stretch of time from each (what a placement loop's ticks need); in_order takes "
        "partition after partition (a tenth faster on ZTF alerts: fewer partitions read at "
        "once). auto: proportional for a closed loop (placement), else in_order.",
    )
    start: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a partition with no history starts."
    )
    read_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Give up reading a batch's ranges after this long."
    )
    coordinator_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long to retry while the group coordinator moves."
    )
    partition_groups: int = Field(
        default=1,
        ge=1,
        description="Partitions are split into this many groups; batches of different groups "
        "cover disjoint partitions and may run in parallel.",
    )
    only_group: int | None = Field(
        default=None, ge=0, description="Cut and run only this group's batches (one worker each)."
    )
    client: ClientSettings = Field(
        default_factory=dict, description="Extra librdkafka consumer settings (no secrets)."
    )

    @model_validator(mode="after")
    def _one_selector(self) -> KafkaConfig:
        if (self.topics is None) == (self.pattern is None):
            raise ValueError("give exactly one of topics: [names] or pattern: regex")
        if self.only_group is not None and self.only_group >= self.partition_groups:
            raise ValueError(
                f"only_group {self.only_group} is not a group: groups are 0 to "
                f"{self.partition_groups - 1} (partition_groups: {self.partition_groups})"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regex: {exc}") from exc
        return self


_TRANSIENT = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
}


class KafkaSource(Source):
    Config = KafkaConfig

    def __init__(self, config: KafkaConfig, ctx):
        super().__init__(config, ctx)
        self._consumer: Consumer | None = None
        self.errors = ClientErrors()
        self.group_id = ctx.kafka.group(config.group)

    def _servers(self) -> str:
        return self.ctx.kafka.describe()

    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                self.ctx.kafka.settings(
                    # alerts are ~70 KB: librdkafka's 1 MB per partition per fetch would make
                    # a 5,000-alert batch hundreds of round trips
                    **{"max.partition.fetch.bytes": 16 * 1024 * 1024},
                    **self.config.client,
                    **{
                        "group.id": self.group_id,
                        "enable.auto.commit": False,
                        "enable.partition.eof": False,
                        # a batch never silently jumps past lost data
                        "auto.offset.reset": "error",
                        "log_level": 3,
                        "error_cb": self.errors,
                    },
                )
            )
        return self._consumer

    def _group_call(self, what: str, call):
        """Run a consumer-group call, retrying while the coordinator loads or moves."""
        deadline = time.monotonic() + self.config.coordinator_timeout_seconds
        while True:
            try:
                return call()
            except KafkaException as exc:
                err = exc.args[0]
                transient = err.retriable() or err.code() in _TRANSIENT
                if not transient or time.monotonic() > deadline:
                    raise SourceError(
                        f"source {self.ctx.where}: {what} for group "
                        f"{self.group_id} failed: {err.str()}",
                        transient=transient,
                    ) from exc
                time.sleep(0.5)

    def partitions(self) -> list[tuple[str, int]]:
        try:
            meta = self.consumer().list_topics(timeout=10)
        except KafkaException as exc:
            self.consumer().poll(0.5)  # serve error_cb: the background errors say why
            raise SourceError(
                f"source {self.ctx.where}: cannot reach Kafka at {self._servers()}: "
                f"{self.errors.explain(exc)}",
                transient=True,
            ) from exc
        if self.config.topics is not None:
            missing = [t for t in self.config.topics if t not in meta.topics]
            if missing:
                raise SourceError(
                    f"source {self.ctx.where}: topics {missing} do not exist on "
                    f"{self._servers()}; create them (headwater topics apply)"
                )
            names = self.config.topics
        else:
            names = sorted(t for t in meta.topics if re.search(self.config.pattern, t))
        return sorted((t, p) for t in names for p in meta.topics[t].partitions)

    def _starts(
        self, tps: list[tuple[str, int]], previous: Iterable[dict[str, Any]]
    ) -> dict[tuple[str, int], int]:
        starts: dict[tuple[str, int], int] = {}
        for coords in previous:
            for topic, partition, _start, end in coords.get("ranges", []):
                key = (topic, partition)
                starts[key] = max(starts.get(key, 0), end)
        unknown = [TopicPartition(t, p) for t, p in tps if (t, p) not in starts]
        if unknown:
            found = self._group_call(
                "reading committed offsets", lambda: self.consumer().committed(unknown, timeout=10)
            )
            for tp in found:
                if tp.offset != OFFSET_INVALID and tp.offset >= 0:
                    starts[(tp.topic, tp.partition)] = tp.offset
        return starts

    def plan(self, previous: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
        tps = self.partitions()
        starts = self._starts(tps, previous)
        pending = []
        for topic, partition in tps:
            low, high = self._watermarks(topic, partition)
            start = starts.get((topic, partition))
            if start is None:
                start = low if self.config.start == "earliest" else high
            if high > start:
                pending.append([topic, partition, start, high])
        cap = self.config.max_records_per_batch
        split = self.config.split
        proportional = split == "proportional" or (split == "auto" and self.aligned)
        cut = cut_across if proportional else cut_ranges
        groups: dict[int, list[list[Any]]] = {}
        for item in pending:
            groups.setdefault(self.group_of(item[0], item[1]), []).append(item)
        cuts = {
            g: [({"group": g, "ranges": r}, n) for r, n in cut(items, cap)]
            for g, items in sorted(groups.items())
            if self.config.only_group in (None, g)
        }
        # interleaved (g0, g1, g0, …): a sensor tick's runs can start in parallel at once
        return [b for row in itertools.zip_longest(*cuts.values()) for b in row if b]

    def group_of(self, topic: str, partition: int) -> int:
        """A partition's group: stable while the topic lives, whatever else appears."""
        return (zlib.crc32(topic.encode()) + partition) % self.config.partition_groups

    def owns(self, coordinates: dict[str, Any]) -> bool:
        return self.config.only_group in (None, coordinates.get("group"))

    @classmethod
    def parallel_groups(cls, config: KafkaConfig) -> tuple[str, int]:
        return "partition_groups", config.partition_groups

    def group(self, coordinates: dict[str, Any]) -> str | None:
        return str(coordinates.get("group", 0))

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        try:
            return self.consumer().get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10
            )
        except KafkaException as exc:
            raise SourceError(
                f"source {self.ctx.where}: cannot read the offsets of {topic}[{partition}] "
                f"on {self._servers()}: {self.errors.explain(exc)}",
                transient=True,
            ) from exc

    def read(self, coordinates: dict[str, Any]) -> RawBatch:
        consumer = self.consumer()
        ranges = {(t, p): (s, e) for t, p, s, e in coordinates["ranges"]}
        try:
            self._check_retention(consumer, ranges)
            consumer.assign([TopicPartition(t, p, s) for (t, p), (s, _e) in ranges.items()])
            try:
                columns = self._drain(consumer, ranges)
            finally:
                consumer.unassign()
        except KafkaException as exc:  # the broker went away mid-read: the run is retried
            raise SourceError(
                f"source {self.ctx.where}: reading {self.describe(coordinates)} from "
                f"{self._servers()} failed: {self.errors.explain(exc)}",
                transient=True,
            ) from exc
        return RawBatch(raw_table(*columns))

    def _check_retention(self, consumer: Consumer, ranges: dict) -> None:
        for (topic, partition), (start, end) in ranges.items():
            low, _high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10
            )
            if low > start:
                raise SourceError(
                    f"source {self.ctx.where}: topic {topic} partition {partition} no longer "
                    f"holds offsets [{start}, {min(low, end)}) of this batch: retention "
                    f"deleted them (the partition now starts at {low}). Nothing was skipped; "
                    "the batch cannot be replayed as recorded."
                )

    def _drain(self, consumer: Consumer, ranges: dict) -> tuple[list, list, list, list]:
        """Consume until every range's end: exactly the ranges' messages, partition by
        partition (topics and partitions sorted), each in offset order. Not in arrival order:
        how partitions interleave differs from one read to the next, and a re-run must
        write the same rows in the same order (the same Parquet bytes)."""
        got: dict[tuple[str, int], tuple[list, list, list]] = {tp: ([], [], []) for tp in ranges}
        next_offset = {tp: s for tp, (s, e) in ranges.items() if e > s}
        deadline = time.monotonic() + self.config.read_timeout_seconds
        while next_offset:
            if time.monotonic() > deadline:
                raise SourceError(
                    f"source {self.ctx.where}: reading the batch's ranges took over "
                    f"{self.config.read_timeout_seconds}s; unfinished: {sorted(next_offset)} "
                    f"({self.errors.explain()})",
                    transient=True,
                )
            # consume() waits for the full count or the timeout: ask only for what is left
            left = sum(ranges[tp][1] - o for tp, o in next_offset.items())
            for msg in consumer.consume(num_messages=min(left, 1000), timeout=1.0):
                if msg.error():
                    raise SourceError(
                        f"source {self.ctx.where}: {msg.error()}",
                        transient=not msg.error().fatal(),
                    )
                tp = (msg.topic(), msg.partition())
                if tp not in next_offset or msg.offset() >= ranges[tp][1]:
                    continue
                offsets, values, keys = got[tp]
                offsets.append(msg.offset())
                values.append(msg.value())
                keys.append(msg.key())
                next_offset[tp] = msg.offset() + 1
                if next_offset[tp] >= ranges[tp][1]:
                    del next_offset[tp]
            for tp in list(next_offset):  # compacted or transactional gaps: trust the position
                [pos] = consumer.position([TopicPartition(*tp)])
                if pos.offset >= ranges[tp][1]:
                    del next_offset[tp]
        sources, offsets, values, keys = [], [], [], []
        for tp in sorted(got):
            o, v, k = got[tp]
            sources += [f"{tp[0]}:{tp[1]}"] * len(o)
            offsets += o
            values += v
            keys += k
        return sources, offsets, values, keys

    def commit(self, batch: Batch) -> None:
        """Advance the group to each range's end; never backwards (old batches re-run)."""
        consumer = self.consumer()
        ends = [TopicPartition(t, p, e) for t, p, _s, e in batch.coordinates["ranges"]]
        found = self._group_call(
            "reading committed offsets", lambda: consumer.committed(ends, timeout=10)
        )
        committed = {(tp.topic, tp.partition): tp.offset for tp in found}
        forward = [tp for tp in ends if tp.offset > committed.get((tp.topic, tp.partition), -1)]
        if forward:
            self._group_call(
                "committing offsets", lambda: consumer.commit(offsets=forward, asynchronous=False)
            )

    def describe(self, coordinates: dict[str, Any]) -> str:
        ranges = ", ".join(f"{t}[{p}]:{s}-{e}" for t, p, s, e in coordinates["ranges"])
        return f"group {coordinates.get('group', 0)}: {ranges}"

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
