"""JSON decoder: one JSON object per message, parsed for the whole batch by Arrow.

The whole batch is parsed at once (``pyarrow.json``); only when that fails are the messages
checked one by one, so that the bad ones are quarantined and the rest decoded together.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
from pydantic import Field, field_validator

from headwater.batch import RawBatch
from headwater.decoders.base import Decoded, Decoder, DecoderConfig
from headwater.decoders.types import arrow_type, check_type_names
from headwater.quarantine import Refused, rejects


class JsonConfig(DecoderConfig):
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Column types to enforce (name: int64|double|string|timestamp[ms]|…); "
        "other columns are inferred.",
    )

    _types = field_validator("columns")(classmethod(lambda cls, v: check_type_names(v)))


class JsonDecoder(Decoder):
    Config = JsonConfig

    def decode(self, raw: RawBatch) -> Decoded:
        values = raw.messages["value"].to_pylist()
        good = list(range(len(values)))
        try:
            table = self._parse(values)
        except (pa.ArrowInvalid, ValueError):
            good, refused = self._sift(raw, values)
            table = self._parse([values[i] for i in good])
        else:
            refused = rejects([], [], [], [])
        table = table.drop_columns([c for c in self.config.drop if c in table.column_names])
        return self.finish(table, np.asarray(good, dtype=np.int64), raw, [refused])

    def _parse(self, values: list[bytes | None]) -> pa.Table:
        if not values:
            return pa.table({})
        explicit = pa.schema([(k, arrow_type(v)) for k, v in self.config.columns.items()])
        options = pj.ParseOptions(
            explicit_schema=explicit if len(explicit) else None, newlines_in_values=False
        )
        body = b"\n".join(v.replace(b"\n", b" ") for v in values)  # one object per line
        return pj.read_json(pa.py_buffer(body), parse_options=options)

    def _sift(self, raw: RawBatch, values: list[bytes | None]) -> tuple[list[int], pa.Table]:
        sources = raw.messages["_source"].to_pylist()
        offsets = raw.messages["_offset"].to_pylist()
        good: list[int] = []
        refused = Refused()
        for i, value in enumerate(values):
            reason = _problem(value)
            if reason is None:
                try:
                    self._parse([value])
                except (pa.ArrowInvalid, ValueError) as exc:
                    reason = f"json: does not fit the column types: {exc}"
            if reason is None:
                good.append(i)
            else:
                refused.add(sources[i], offsets[i], reason, value)
        return good, refused.table()


def _problem(value: bytes | None) -> str | None:
    if value is None:
        return "json: message has no value"
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        return f"json: not valid JSON: {exc}"
    if not isinstance(parsed, dict):
        return f"json: expected an object per message, got {type(parsed).__name__}"
    return None
