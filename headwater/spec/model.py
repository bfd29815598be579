"""The shape of a pipeline spec.

```yaml
name: ztf
source: {files: {path: samples/ztf/alerts, max_records_per_batch: 50}}
decode: {avro: {framing: container}}
streams:
  raw: {sinks: [parquet, duckdb]}
  solar_system:
    from: raw
    processors: [{solar_system: {action: include}}]
    sinks: [parquet, duckdb]
```

A component is written ``name``, ``{name: {settings}}`` or ``{name: scalar}`` (its shorthand);
``name`` may be an import path ``package.module:Class``. The component's own config model
validates its settings (see :mod:`headwater.spec.load`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from headwater.crossmatch.catalog import CatalogSpec
from headwater.kafka.connection import KafkaConnection, Scalar

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ComponentSpec(BaseModel):
    """A component reference after parsing: its registered name and validated config."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    config: Any
    where: str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PartitionsSpec(Strict):
    cadence: Literal["hourly", "daily"] = Field(
        default="daily",
        description="Batches are grouped in time windows (Dagster partitions) of this size.",
    )
    start: dt.date = Field(
        default=dt.date(2025, 1, 1), description="First window; earlier ones do not exist."
    )


class SensorSpec(Strict):
    interval_seconds: int = Field(default=30, ge=1, description="Time between sensor ticks.")
    max_batches_per_tick: int = Field(default=20, ge=1, description="Runs requested per tick.")
    running: bool = Field(default=False, description="Start the sensor running by default.")


class WorkerSpec(Strict):
    max_wait_ms: int = Field(
        default=500, ge=0, description="headwater stream: cut a batch once input waited this long."
    )
    poll_ms: int = Field(default=50, ge=1, description="How often the worker looks for input.")
    record: Literal["events", "runs"] = Field(
        default="events",
        description="How headwater stream records a batch in Dagster: 'events' runs it in the "
        "worker and reports one materialization per asset (tens of ms a batch: sub-second "
        "latency); 'runs' runs it as a Dagster run (on the Runs page, about 0.3 s a batch).",
    )


class RetrySpec(Strict):
    max_retries: int = Field(
        default=3, ge=0, description="Attempts after a transient failure (broker away)."
    )
    delay_seconds: float = Field(
        default=2.0, ge=0, description="First pause; doubles with every attempt."
    )


class TopicSpec(Strict):
    partitions: int = Field(ge=1, description="Number of partitions (can grow, never shrink).")
    replication_factor: int = Field(default=1, ge=1, description="Copies of each partition.")
    config: dict[str, Scalar] = Field(
        default_factory=dict, description="Topic configs, e.g. retention.ms: 604800000."
    )


class StreamSpec(Strict):
    from_: str | None = Field(
        default=None, alias="from", description="The stream this one reads; default the source."
    )
    description: str = ""
    processors: list[Any] = Field(default_factory=list)
    sinks: list[Any] = Field(description="Where the stream lands; [] for none.")


class PipelineSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Pipeline name, a Python identifier.")
    description: str = ""
    lake: str = Field(default="lake", description="Root folder of outputs and batch ledger.")
    partitions: PartitionsSpec = Field(default_factory=PartitionsSpec)
    sensor: SensorSpec = Field(default_factory=SensorSpec)
    worker: WorkerSpec = Field(default_factory=WorkerSpec)
    retries: RetrySpec = Field(default_factory=RetrySpec)
    kafka: KafkaConnection = Field(
        default_factory=KafkaConnection, description="The Kafka cluster, if the pipeline uses one."
    )
    topics: dict[str, TopicSpec] = Field(
        default_factory=dict, description="Topics `headwater topics apply` creates or updates."
    )
    catalogs: dict[str, CatalogSpec] = Field(
        default_factory=dict,
        description="Catalogs and watchlists by name, for crossmatch processors.",
    )
    source: Any
    decode: Any
    streams: dict[str, StreamSpec] = Field(min_length=1)
