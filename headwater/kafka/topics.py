"""Topic admin from the spec: create or update declared topics, list, describe, delete.

``apply`` is explicit and idempotent: a missing topic is created with its partitions,
replication factor and configs; an existing one gains partitions (Kafka cannot remove them)
and has its differing configs altered; a second ``apply`` changes nothing. Nothing here runs
on its own: the source never creates topics (the broker refuses auto-creation too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from headwater.errors import HeadwaterError
from headwater.kafka.connection import ClientErrors, KafkaConnection
from headwater.spec.model import TopicSpec

TIMEOUT = 30.0


class TopicError(HeadwaterError):
    """A topic could not be created, changed, read or deleted."""


@dataclass
class Change:
    topic: str
    action: str  # created | updated | unchanged | refused
    details: list[str] = field(default_factory=list)


@dataclass
class TopicState:
    name: str
    partitions: int
    replication_factor: int
    messages: int  # sum of (end - start) over partitions: what the log holds now
    configs: dict[str, str]  # the ones set on the topic (not broker defaults)
    offsets: list[tuple[int, int, int]] = field(default_factory=list)  # partition, low, high


def _admin(conn: KafkaConnection, errors: ClientErrors) -> AdminClient:
    return AdminClient(conn.settings(log_level=3, error_cb=errors))


def _wait(futures: dict[Any, Any], what: str, errors: ClientErrors) -> dict[Any, Any]:
    out = {}
    for key, future in futures.items():
        try:
            out[key] = future.result(timeout=TIMEOUT)
        except KafkaException as exc:
            raise TopicError(f"{what} {key}: {errors.explain(exc)}") from exc
        except TimeoutError as exc:
            raise TopicError(f"{what} {key}: no answer in {TIMEOUT}s; {errors.explain()}") from exc
    return out


class Topics:
    """Admin operations on one cluster."""

    def __init__(self, conn: KafkaConnection):
        self.conn = conn
        self.errors = ClientErrors()
        self.admin = _admin(conn, self.errors)
        self.errors.serve = lambda: self.admin.poll(0)

    def existing(self) -> dict[str, int]:
        """Every topic's name and partition count (internal topics left out).

        Asks once a second until TIMEOUT, so that a refused login is reported at once
        rather than after the whole wait."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            try:
                meta = self.admin.list_topics(timeout=max(min(1.0, left), 0.1))
                break
            except KafkaException as exc:
                why = self.errors.explain(exc)
                if self.errors.login_refused() or left <= 1.0:
                    raise TopicError(
                        f"cannot reach Kafka at {self.conn.describe()}: {why}"
                    ) from exc
        return {n: len(t.partitions) for n, t in meta.topics.items() if not n.startswith("__")}

    def configs(self, names: list[str]) -> dict[str, dict[str, str]]:
        """The configs set on each topic (dynamic ones, not broker defaults)."""
        if not names:
            return {}
        resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
        found = _wait(self.admin.describe_configs(resources), "reading configs of", self.errors)
        return {
            r.name: {
                k: e.value
                for k, e in entries.items()
                if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
            }
            for r, entries in found.items()
        }

    def apply(self, declared: dict[str, TopicSpec], dry_run: bool = False) -> list[Change]:
        have = self.existing()
        current = self.configs([n for n in declared if n in have])
        changes = []
        for name, spec in sorted(declared.items()):
            if name not in have:
                changes.append(self._create(name, spec, dry_run))
            else:
                changes.append(self._update(name, spec, have[name], current[name], dry_run))
        return changes

    def _create(self, name: str, spec: TopicSpec, dry_run: bool) -> Change:
        topic = NewTopic(
            name,
            num_partitions=spec.partitions,
            replication_factor=spec.replication_factor,
            config={k: _text(v) for k, v in spec.config.items()},
        )
        what = f"{spec.partitions} partitions, replication {spec.replication_factor}"
        details = [what, *(f"{k}={_text(v)}" for k, v in sorted(spec.config.items()))]
        if not dry_run:
            _wait(self.admin.create_topics([topic]), "creating topic", self.errors)
        return Change(name, "created", details)

    def _update(
        self, name: str, spec: TopicSpec, partitions: int, configs: dict[str, str], dry_run: bool
    ) -> Change:
        details, refused = [], []
        if spec.partitions < partitions:
            refused.append(
                f"spec asks for {spec.partitions} partitions but the topic has {partitions}; "
                "Kafka cannot remove partitions (recreate the topic to shrink it)"
            )
        elif spec.partitions > partitions:
            details.append(f"partitions {partitions} -> {spec.partitions}")
            if not dry_run:
                grow = [NewPartitions(name, spec.partitions)]
                _wait(self.admin.create_partitions(grow), "adding partitions to", self.errors)
        wanted = {k: _text(v) for k, v in spec.config.items()}
        differ = {k: v for k, v in wanted.items() if configs.get(k) != v}
        if differ:
            details += [f"{k}: {configs.get(k, '(default)')} -> {v}" for k, v in differ.items()]
            if not dry_run:
                self._alter(name, differ)
        if refused:
            return Change(name, "refused", refused + details)
        return Change(name, "updated" if details else "unchanged", details)

    def _alter(self, name: str, values: dict[str, str]) -> None:
        entries = [
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in values.items()
        ]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        _wait(self.admin.incremental_alter_configs([resource]), "altering configs of", self.errors)

    def describe(self, names: list[str]) -> list[TopicState]:
        have = self.existing()
        missing = [n for n in names if n not in have]
        if missing:
            raise TopicError(
                f"topics {missing} do not exist on {self.conn.describe()}; "
                "declare them under topics: and run `headwater topics apply`"
            )
        meta = self.admin.list_topics(timeout=TIMEOUT).topics
        configs = self.configs(names)
        consumer = Consumer(self.conn.settings(**{"group.id": "headwater-admin", "log_level": 3}))
        try:
            return [self._state(n, meta[n], configs[n], consumer) for n in names]
        finally:
            consumer.close()

    def _state(self, name: str, meta: Any, configs: dict[str, str], consumer: Consumer):
        offsets = []
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=TIMEOUT)
            offsets.append((p, low, high))
        replicas = {len(p.replicas) for p in meta.partitions.values()} or {0}
        return TopicState(
            name,
            len(meta.partitions),
            max(replicas),
            sum(h - lo for _, lo, h in offsets),
            configs,
            offsets,
        )

    def lag(self, group: str, names: list[str]) -> dict[tuple[str, int], tuple[int, int]]:
        """(committed offset, end offset) per partition for a consumer group."""
        consumer = Consumer(self.conn.settings(**{"group.id": group, "log_level": 3}))
        try:
            meta = consumer.list_topics(timeout=TIMEOUT).topics
            tps = [TopicPartition(n, p) for n in names if n in meta for p in meta[n].partitions]
            committed = consumer.committed(tps, timeout=TIMEOUT) if tps else []
            out = {}
            for tp in committed:
                _low, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT)
                out[(tp.topic, tp.partition)] = (tp.offset, high)
            return out
        except KafkaException as exc:
            raise TopicError(f"reading the lag of group {group}: {exc}") from exc
        finally:
            consumer.close()

    def delete(self, names: list[str]) -> list[str]:
        have = self.existing()
        gone = [n for n in names if n in have]
        if gone:
            _wait(self.admin.delete_topics(gone), "deleting topic", self.errors)
        return gone


def _text(value: Any) -> str:
    """Topic configs travel as strings; YAML booleans become Kafka's lower-case words."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
