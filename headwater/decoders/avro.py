"""The Avro decoder: object container files, schemaless bodies, and the Confluent framing.

Each distinct writer schema is parsed once per process and cached by its bytes (ZTF
carries its ~23 KB schema in every message). Messages are grouped by writer schema; the
output is one table whose schema is the union of the batch's writer schemas. Its rows come
group by group (writers in the order first seen), in message order within each: a batch with
one writer, the usual case, keeps message order. Putting a mixed batch back in message order
cost as much as decoding it (a copy of every nested column), and the lineage columns
``_source`` / ``_offset`` say where each row came from.
"""

from __future__ import annotations

import io
import json
from typing import Any, Literal

import fastavro
import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from headwater.batch import RawBatch, binary_views
from headwater.cores import threads
from headwater.decoders import avro_fast, avro_native, avro_wire
from headwater.decoders.avro_arrow import avro_to_arrow, drop_fields, unify
from headwater.decoders.base import Decoded, Decoder, DecoderConfig
from headwater.decoders.schemas import (
    LocalSchemas,
    LocalSchemasConfig,
    RegistryConfig,
    RegistrySchemas,
)
from headwater.errors import DecodeError
from headwater.quarantine import Refused


class AvroConfig(DecoderConfig):
    framing: Literal["container", "schemaless", "confluent"] = Field(
        default="container",
        description="container: schema inside every message (ZTF); schemaless: a configured "
        ".avsc; confluent: magic byte 0 + 4-byte schema id + body (Rubin).",
    )
    schema_file: str | None = Field(
        default=None, description="The writer schema (.avsc) for framing: schemaless."
    )
    schemas: LocalSchemasConfig | None = Field(
        default=None, description="framing confluent: a local folder of schemas keyed by id."
    )
    registry: RegistryConfig | None = Field(
        default=None, description="framing confluent: a Schema Registry to resolve ids."
    )
    cutouts: Literal["keep", "drop"] = Field(
        default="keep", description="drop leaves out every top-level field named cutout*."
    )
    engine: Literal["compiled", "fastavro"] = Field(
        default="compiled",
        description="compiled: each writer schema's messages decoded at once by headwater's "
        "compiled decoder (fastavro reads a group whose schema it does not handle; a message it "
        "refuses is quarantined with the reason); fastavro: per message.",
    )

    @model_validator(mode="after")
    def _framing_needs(self) -> AvroConfig:
        if self.framing == "schemaless" and not self.schema_file:
            raise ValueError("framing 'schemaless' needs schema_file: path/to/schema.avsc")
        if self.framing == "confluent" and (self.schemas is None) == (self.registry is None):
            raise ValueError(
                "framing 'confluent' needs exactly one of schemas: {path: …} or registry: {url: …}"
            )
        return self


#: Records converted to Arrow at a time: bounds the Python objects alive during a batch.
CHUNK_ROWS = 512
#: Messages below which a group is not split further between the compiled decoder's threads.
MIN_PART = 256


class _Writer:
    """A parsed writer schema, its Arrow schema, and its form for the compiled decoder."""

    __slots__ = ("_compiled", "arrow", "parsed", "source", "struct")

    def __init__(self, parsed: Any, source_json: Any):
        self.parsed = parsed
        self.source = source_json
        self.arrow = avro_to_arrow(source_json)
        self.struct = pa.struct(list(self.arrow))
        self._compiled: str | None = None

    def compiled(self) -> str:
        if self._compiled is None:
            self._compiled = avro_fast.reader_schema(self.source)
        return self._compiled


class AvroDecoder(Decoder):
    Config = AvroConfig

    def __init__(self, config: AvroConfig, ctx):
        super().__init__(config, ctx)
        self._writers: dict[Any, _Writer] = {}
        self._containers = avro_wire.ContainerParser()
        self._by_id: Any = None
        if config.framing == "schemaless":
            path = ctx.path(config.schema_file)
            parsed = fastavro.schema.load_schema(str(path))
            self._writers["static"] = _Writer(parsed, parsed)
        elif config.framing == "confluent":
            self._by_id = (
                LocalSchemas(ctx.path(config.schemas.path), config.schemas.pattern)
                if config.schemas
                else RegistrySchemas(config.registry)
            )
        dropped = set(config.drop)
        self._dropped = dropped
        self._drop_cutouts = config.cutouts == "drop"

    # -- one message --------------------------------------------------------------------

    def _writer_for(self, key: Any, load) -> _Writer:
        writer = self._writers.get(key)
        if writer is None:
            parsed, source_json = load()
            writer = self._writers[key] = _Writer(parsed, source_json)
        return writer

    def _frame(self, value: bytes) -> tuple[Any, list[tuple[int, bytes]]]:
        """A message's writer key and its ``(record count, body)`` blocks (schema loaded)."""
        framing = self.config.framing
        if framing == "container":
            c = self._containers.parse(value)

            def load():
                try:
                    source = json.loads(c.schema)
                except ValueError as exc:
                    raise DecodeError(f"container schema is not valid JSON: {exc}") from exc
                return fastavro.parse_schema(source), source

            self._writer_for(c.schema, load)
            return c.schema, c.blocks
        if framing == "confluent":
            schema_id, body = avro_wire.split_confluent(value)

            def load_id():
                parsed = self._by_id.get(schema_id)
                return parsed, parsed

            self._writer_for(schema_id, load_id)
            return schema_id, [(1, body)]
        return "static", [(1, value)]

    # -- the batch ------------------------------------------------------------------------

    def decode(self, raw: RawBatch) -> Decoded:
        values = binary_views(raw.messages["value"])  # views of the batch's bytes, no copies
        sources = raw.messages["_source"]
        offsets = raw.messages["_offset"]
        refused = Refused()

        def refuse(i: int, exc: Exception) -> None:
            value = values[i]
            raw_bytes = None if value is None else bytes(value)
            refused.add(sources[i].as_py(), offsets[i].as_py(), _reason(exc), raw_bytes)

        # pass 1, cheap: framing and writer schemas, so the output schema is known up front
        framed: list[tuple[int, Any, list[tuple[int, bytes]]]] = []
        for i, value in enumerate(values):
            try:
                if value is None:
                    raise DecodeError("message has no value (a tombstone)")
                framed.append((i, *self._frame(value)))
            except Exception as exc:
                refuse(i, exc)
        schema = self._output_schema(list(dict.fromkeys(key for _, key, _ in framed)))
        groups: dict[Any, list[tuple[int, list[tuple[int, bytes]]]]] = {}
        for i, key, blocks in framed:
            groups.setdefault(key, []).append((i, blocks))
        stats = {"compiled_groups": 0, "fallback_groups": 0}
        done: list[tuple[pa.Table, np.ndarray]] = []
        slow = list(groups.items())
        if self.config.engine == "compiled" and groups:
            done, slow = self._decode_compiled(groups, schema, stats, refuse)
        for key, members in slow:  # fastavro, which also names any bad message
            done.append(self._per_message(key, members, schema, refuse))
        tables = [table for table, _ in done]
        row_message = np.concatenate([r for _, r in done]) if done else np.zeros(0, np.int64)
        table = pa.concat_tables(tables) if tables else _to_table([], schema)
        decoded = self.finish(table, row_message, raw, [refused.table()])
        decoded.stats = stats
        return decoded

    def _decode_compiled(self, groups: dict, schema: pa.Schema, stats: dict, refuse) -> tuple:
        """Decode every group with the compiled decoder, large groups split so that every
        core works. Returns the decoded parts (table, row-to-message indices) and the groups
        fastavro must read: those whose schema the compiled decoder does not handle. A message
        it refuses is refused with its reason; the rest of its group is kept.

        The compiled decoder is stricter than fastavro, which reads some corrupt bodies into
        wrong values (a negative union branch index picks a branch counted from the end, a
        boolean byte other than 0 or 1 reads as true): those are refused here, where fastavro
        would have kept a wrong row."""
        size = threads()
        parts: list[tuple[Any, list]] = []
        for key, members in groups.items():
            step = max(MIN_PART, -(-len(members) // size))
            parts += [(key, members[k : k + step]) for k in range(0, len(members), step)]
        jobs = [self._job(key, members, schema) for key, members in parts]
        done: list[tuple[pa.Table, np.ndarray]] = []
        slow: list[tuple[Any, list]] = []
        for (key, members), result in zip(parts, avro_native.decode(jobs), strict=True):
            if isinstance(result, Exception):
                stats["fallback_groups"] += 1
                slow.append((key, members))
                continue
            stats["compiled_groups"] += 1
            table, rows, refused = _kept_rows(members, *result)
            done.append((avro_fast.conform(table, schema), rows))
            for i, reason in refused:
                refuse(i, DecodeError(_body_error(reason)))
        return done, slow

    def _job(self, key: Any, members: list, schema: pa.Schema) -> avro_native.Job:
        writer = self._writers[key]
        blocks = [block for _, blocks in members for block in blocks]
        return avro_native.Job(
            writer.compiled(),
            writer.struct,
            [data for _, data in blocks],
            [count for count, _ in blocks],
            [f.name for f in writer.arrow if f.name not in schema.names],
        )

    def _per_message(
        self, key: Any, members: list, schema: pa.Schema, refuse
    ) -> tuple[pa.Table, np.ndarray]:
        """fastavro, message by message, in chunks so few Python dicts live at once."""
        parsed = self._writers[key].parsed
        chunks: list[pa.Table] = []
        records: list[dict] = []
        row_message: list[int] = []
        for i, blocks in members:
            try:
                recs = [r for count, data in blocks for r in _read_body(data, parsed, count)]
            except Exception as exc:
                refuse(i, exc)
                continue
            records.extend(recs)
            row_message.extend([i] * len(recs))
            if len(records) >= CHUNK_ROWS:
                chunks.append(_to_table(records, schema))
                records = []
        chunks.append(_to_table(records, schema))
        return pa.concat_tables(chunks), np.asarray(row_message, dtype=np.int64)

    def _output_schema(self, keys: list[Any]) -> pa.Schema:
        if not keys:
            return pa.schema([])
        schema = unify([self._writers[k].arrow for k in keys])
        dropped = set(self._dropped)
        if self._drop_cutouts:
            dropped |= {f.name for f in schema if f.name.startswith("cutout")}
        return drop_fields(schema, dropped)


def _kept_rows(
    members: list, batch: pa.RecordBatch, failed: list[tuple[int, str]]
) -> tuple[pa.Table, np.ndarray, list]:
    """The compiled decoder's rows with the message each came from, less the rows of any
    message one of whose blocks it refused; and those messages with the first reason."""
    block_msg = np.asarray([i for i, blocks in members for _ in blocks], np.int64)
    counts = np.asarray([c for _, blocks in members for c, _ in blocks], np.int64)
    ok = np.ones(len(block_msg), bool)
    ok[[b for b, _ in failed]] = False
    rows = np.repeat(block_msg[ok], counts[ok])
    table = pa.Table.from_batches([batch])
    if ok.all():
        return table, rows, []
    bad = np.unique(block_msg[~ok])
    keep = ~np.isin(rows, bad)
    if not keep.all():  # good blocks of a message with a bad one: the message goes whole
        table, rows = table.filter(pa.array(keep)), rows[keep]
    reasons: dict[int, str] = {}
    for b, reason in failed:
        reasons.setdefault(int(block_msg[b]), reason)
    return table, rows, sorted(reasons.items())


def _body_error(reason: str) -> str:
    if "left over" in reason:
        return reason
    return (
        f"Avro body does not match its writer schema ({reason}); the message is truncated or "
        "was written with another schema"
    )


def _read_body(data: bytes, parsed: Any, count: int) -> list[dict]:
    fo = io.BytesIO(data)
    try:
        records = [fastavro.schemaless_reader(fo, parsed) for _ in range(count)]
    except Exception as exc:
        raise DecodeError(
            f"Avro body does not match its writer schema ({type(exc).__name__}: {exc}); "
            "the message is truncated or was written with another schema"
        ) from exc
    left = len(data) - fo.tell()
    if left:
        raise DecodeError(
            f"{left} bytes left over after the record: the message was written with another "
            "schema or is corrupt"
        )
    return records


def _reason(exc: Exception) -> str:
    if isinstance(exc, DecodeError):
        return f"avro: {exc}"
    return f"avro: {type(exc).__name__}: {exc}"


def _to_table(records: list[dict], schema: pa.Schema) -> pa.Table:
    try:
        return pa.Table.from_pylist(records, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        raise DecodeError(f"decoded records do not fit the unified Arrow schema: {exc}") from exc
