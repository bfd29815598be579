"""``kafka``: publish a stream's rows to a topic; the batch is done only when every delivery
report came back without error.

```yaml
sinks:
  - kafka: {topic: ztf_solar_system, format: avro, key: objectId}
  - kafka:
      topic: lsst_out
      format: confluent          # magic byte + schema id + Avro body
      schema_id: 701             # registered out of band; the schema comes from schemas:
      schemas:
        path: samples/lsst/schema
        pattern: "{major}/{minor}/lsst.v{major}_{minor}.alert.avsc"
```

``avro`` writes one Avro container per message with the schema inside, as ZTF publishes its
alerts; ``confluent`` takes its schema id from ``schema_id`` or by registering the schema with
a Schema Registry (subject ``<topic>-value``); ``json`` is one object per message. Each
message carries the headers ``headwater.pipeline`` and ``headwater.batch``: a consumer that
sees a batch twice (a batch re-run republishes it) can drop the repeat. The producer is
idempotent, so retries inside one batch do not duplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaException, Producer
from pydantic import Field, model_validator

from headwater.arrow import column_path
from headwater.batch import LINEAGE_COLUMNS, has_payload
from headwater.config import ComponentConfig
from headwater.decoders.schemas import LocalSchemas, LocalSchemasConfig, RegistryConfig
from headwater.errors import HeadwaterError, SinkError
from headwater.kafka.connection import ClientErrors, ClientSettings
from headwater.kafka.encode import AvroEncoder, avro_schema, json_values, load_schema_file
from headwater.sinks.base import Sink, Target


class KafkaSinkConfig(ComponentConfig):
    topic: str = Field(description="Topic to publish to (must exist: headwater topics apply).")
    format: Literal["avro", "confluent", "json"] = Field(
        default="avro", description="avro (container per message), confluent (wire) or json."
    )
    key: str | None = Field(
        default=None, description="Column (dotted path) whose value keys each message."
    )
    schema_file: str | None = Field(
        default=None, description="Avro schema (.avsc) to write with; default derived."
    )
    schema_id: int | None = Field(default=None, ge=0, description="Confluent schema id to use.")
    schemas: LocalSchemasConfig | None = Field(
        default=None, description="Folder of schemas by id: the schema_id's file is the schema."
    )
    registry: RegistryConfig | None = Field(
        default=None, description="Schema Registry that assigns the schema id (confluent)."
    )
    lineage: bool = Field(default=False, description="Also publish _source and _offset.")
    delivery_timeout_seconds: float = Field(default=60.0, gt=0)
    client: ClientSettings = Field(
        default_factory=dict, description="Extra librdkafka producer settings (no secrets)."
    )

    @model_validator(mode="after")
    def _framing(self) -> KafkaSinkConfig:
        if self.format == "confluent" and (self.schema_id is None) == (self.registry is None):
            raise ValueError("format confluent needs exactly one of schema_id or registry")
        if self.format != "confluent" and (self.schema_id is not None or self.registry):
            raise ValueError("schema_id and registry apply to format confluent only")
        if self.schemas is not None and self.schema_id is None:
            raise ValueError("schemas: picks the schema of schema_id; give schema_id too")
        if self.schemas is not None and self.schema_file is not None:
            raise ValueError("give schema_file or schemas, not both")
        if self.format == "json" and (self.schema_file or self.schemas):
            raise ValueError("format json takes no Avro schema")
        return self


class KafkaSink(Sink):
    Config = KafkaSinkConfig

    def __init__(self, config: KafkaSinkConfig, ctx):
        super().__init__(config, ctx)
        self._producer: Producer | None = None
        self._encoders: dict[pa.Schema, AvroEncoder] = {}
        self.errors = ClientErrors()

    def producer(self) -> Producer:
        if self._producer is None:
            settings = self.ctx.kafka.settings(
                **self.config.client,
                **{
                    "enable.idempotence": True,  # retries inside a batch never duplicate
                    "acks": "all",
                    "linger.ms": 20,
                    "compression.type": "zstd",
                    "message.timeout.ms": int(self.config.delivery_timeout_seconds * 1000),
                    "log_level": 3,
                    "error_cb": self.errors,
                },
            )
            self._producer = Producer(settings)
        return self._producer

    def write(self, target: Target, table: pa.Table) -> dict[str, Any]:
        c: KafkaSinkConfig = self.config
        if not has_payload(table) or table.num_rows == 0:
            return {"topic": c.topic, "messages": 0, "bytes": 0}
        keys = self._keys(table)
        body = (
            table
            if c.lineage
            else table.drop_columns([n for n in LINEAGE_COLUMNS if n in table.column_names])
        )
        values = self._values(body, lambda i: _where(table, i))
        headers = [("headwater.pipeline", target.pipeline), ("headwater.batch", target.batch.id)]
        delivered = self._send(values, keys, headers)
        return {
            "topic": c.topic,
            "messages": delivered,
            "bytes": sum(len(v) for v in values),
            "format": c.format,
        }

    def _keys(self, table: pa.Table) -> list[bytes | None]:
        if self.config.key is None:
            return [None] * table.num_rows
        try:
            col = column_path(table, self.config.key)
        except HeadwaterError as exc:
            raise SinkError(f"sink {self.ctx.where}: key: {exc}") from exc
        return [None if k is None else k.encode() for k in pc.cast(col, pa.string()).to_pylist()]

    def _values(self, table: pa.Table, where: Callable[[int], str]) -> list[bytes]:
        if self.config.format == "json":
            return json_values(table)
        encoder = self._encoders.get(table.schema)
        if encoder is None:
            encoder = self._encoders[table.schema] = self._encoder(table.schema)
        return encoder.encode(table, where)

    def _encoder(self, schema: pa.Schema) -> AvroEncoder:
        c: KafkaSinkConfig = self.config
        if c.schemas is not None:
            local = LocalSchemas(self.ctx.path(c.schemas.path), c.schemas.pattern)
            avro = load_schema_file(str(local.file_for(c.schema_id)))
        elif c.schema_file is not None:
            avro = load_schema_file(str(self.ctx.path(c.schema_file)))
        else:
            avro = avro_schema(schema, c.topic, namespace=f"headwater.{self.ctx.pipeline}")
        framing = "container" if c.format == "avro" else "confluent"
        schema_id = c.schema_id
        if c.format == "confluent" and c.registry is not None:
            schema_id = self._register(avro)
        return AvroEncoder(avro, framing, schema_id)

    def _register(self, avro: Any) -> int:
        import json

        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

        conf = {"url": self.config.registry.url}
        if self.config.registry.basic_auth is not None:
            conf["basic.auth.user.info"] = self.config.registry.basic_auth.resolve()
        subject = f"{self.config.topic}-value"
        try:
            client = SchemaRegistryClient(conf)
            return client.register_schema(subject, Schema(json.dumps(avro), "AVRO"))
        except Exception as exc:  # the client raises its own and HTTP errors
            raise SinkError(
                f"sink {self.ctx.where}: registering the schema under {subject} at "
                f"{self.config.registry.url} failed: {exc}"
            ) from exc

    def _send(self, values: list[bytes], keys: list[bytes | None], headers) -> int:
        producer, topic = self.producer(), self.config.topic
        failed: list[str] = []
        ok = [0]

        def delivered(err, msg) -> None:
            if err is None:
                ok[0] += 1
            else:
                failed.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

        for value, key in zip(values, keys, strict=True):
            while True:
                try:
                    producer.produce(topic, value, key=key, headers=headers, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    producer.poll(0.1)
                except KafkaException as exc:
                    raise SinkError(
                        f"sink {self.ctx.where}: cannot publish to {topic}: {exc}",
                        transient=True,
                    ) from exc
            producer.poll(0)
        left = producer.flush(self.config.delivery_timeout_seconds + 5)
        if left or failed:
            raise SinkError(
                f"sink {self.ctx.where}: {len(failed) + left} of {len(values)} messages to "
                f"{topic} were not delivered ({'; '.join(failed[:3]) or 'flush timed out'}; "
                f"{self.errors.explain()}). The batch is not committed; a rerun publishes again.",
                transient=True,
            )
        return ok[0]

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None


def _where(table: pa.Table, i: int) -> str:
    """Row ``i``'s origin (source@offset) for error messages."""
    if "_source" in table.column_names and "_offset" in table.column_names:
        return f"{table['_source'][i].as_py()}@{table['_offset'][i].as_py()}"
    return f"#{i}"
