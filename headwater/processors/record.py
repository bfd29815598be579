"""``record``: run a user's record-at-a-time processor, ``process(record) -> PASS | SKIP``.

This is LSST:UK's CandidateProcessor interface for users who want it. It is the slow path
(one Python call per row) and is measured as such in ``benchmarks/``. A record that makes
the user's code raise is quarantined with the error; the others go on.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import pyarrow as pa
from pydantic import Field, field_validator

from headwater import registry
from headwater.config import ComponentConfig
from headwater.processors.base import Processed, Processor
from headwater.quarantine import Refused


class Response(enum.Enum):
    """What a record processor answers: pass the record on, or skip the rest of the chain."""

    PASS = "pass"
    SKIP = "skip"


PASS = Response.PASS
SKIP = Response.SKIP


class RecordConfig(ComponentConfig):
    processor: str = Field(
        description="Import path of a class with process(record) -> PASS|SKIP, "
        "or of such a function: 'mypkg.filters:BrightOnly'."
    )

    @field_validator("processor")
    @classmethod
    def _import_path(cls, value: str) -> str:
        if ":" not in value:
            raise ValueError(f"expected an import path 'package.module:Name', got {value!r}")
        return value

    args: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the class."
    )


class RecordAdapter(Processor):
    Config = RecordConfig
    shorthand = "processor"

    def __init__(self, config: RecordConfig, ctx):
        super().__init__(config, ctx)
        target = registry.lookup("processors", config.processor)
        if isinstance(target, type):
            self._fn = target(**config.args).process
        elif config.args:
            raise ValueError("args are given but the processor is a function, not a class")
        else:
            self._fn = target

    def process(self, table: pa.Table) -> Processed:
        keep: list[bool] = []
        refused = Refused()
        for row in table.to_pylist():
            try:
                answer = self._fn(row)
                error = None
            except Exception as exc:
                answer, error = None, f"raised {type(exc).__name__}: {exc}"
            if error is None and (answer is PASS or answer is True):
                keep.append(True)
                continue
            keep.append(False)
            if error is None and answer is not SKIP and answer is not False:
                error = f"returned {answer!r}; expected PASS or SKIP"
            if error is not None:
                refused.add(
                    row.get("_source"),
                    row.get("_offset"),
                    f"processor {self.config.processor} {error}",
                    json.dumps(row, default=str).encode(),
                )
        return Processed(table.filter(pa.array(keep, pa.bool_())), refused.table())
