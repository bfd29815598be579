"""``usage``: a HOTS ``container_usage.csv`` replayed as windows of ``window_ticks`` ticks.

One batch per window of ticks, ``[start, start + window_ticks)``: coordinates are the
window and the file's record range that holds it (records in file order, the header
aside). A window is cut once a tick at or after its last one has arrived, so a file that
grows is picked up window by window. A row whose tick is not an integer travels with its
neighbours, and rows out of order stay where they are in the file: the cluster model
refuses both, with the reason. The records are CSV lines for the ``csv`` decoder.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from pydantic import Field

from headwater.batch import RawBatch, raw_table
from headwater.config import ComponentConfig
from headwater.errors import SourceError
from headwater.placement.usage import NUMBER
from headwater.sources.base import Source


class UsageSourceConfig(ComponentConfig):
    path: str = Field(description="HOTS's container_usage.csv, or the folder holding it.")
    file: str = Field(default="container_usage.csv", description="File name inside a folder.")
    window_ticks: int = Field(gt=0, description="Ticks per batch.")
    tick: str = Field(default="timestamp", description="The integer tick column.")


class UsageSource(Source):
    Config = UsageSourceConfig
    concurrent_reads = True

    @property
    def file(self) -> Path:
        p = self.ctx.path(self.config.path).resolve()
        return p / self.config.file if p.is_dir() else p

    def _records(self, path: Path) -> tuple[bytes, list[bytes]]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SourceError(
                f"source {self.ctx.where}: cannot read {path}: {exc.strerror}. "
                "Fix source.usage.path (a container_usage.csv or its folder)."
            ) from exc
        lines = [line for line in data.splitlines() if line]
        if not lines:
            return b"", []
        return lines[0], lines[1:]

    def _ticks(self, header: bytes, records: list[bytes]) -> np.ndarray:
        """Each record's tick; NaN where it is not a number."""
        names = next(csv.reader([header.decode(errors="replace")]), [])
        if self.config.tick not in names:
            raise SourceError(
                f"source {self.ctx.where}: {self.file} has no column {self.config.tick!r} "
                f"(header: {names}); set source.usage.tick"
            )
        text = b"\n".join([header, *records]) + b"\n"
        table = pcsv.read_csv(
            pa.BufferReader(text),
            convert_options=pcsv.ConvertOptions(
                include_columns=[self.config.tick], column_types={self.config.tick: pa.string()}
            ),
            parse_options=pcsv.ParseOptions(invalid_row_handler=lambda row: "error"),
        )
        col = table[self.config.tick]
        col = pc.if_else(pc.match_substring_regex(col, NUMBER), col, None)
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)

    def plan(self, previous: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
        path = str(self.file)
        done = [c for c in previous if c.get("file") == path]
        line0 = max((c["lines"][1] for c in done), default=0)
        tick0 = max((c["ticks"][1] for c in done), default=None)
        header, records = self._records(self.file)
        if len(records) <= line0:
            return []
        ticks = self._ticks(header, records)[line0:]
        seen = np.fmax.accumulate(np.where(np.isnan(ticks), -np.inf, ticks))
        if not np.isfinite(seen[-1]):
            return []
        start = int(seen[np.isfinite(seen)][0]) if tick0 is None else int(tick0)
        w = self.config.window_ticks
        window = np.where(np.isfinite(seen), (seen - start) // w, 0).astype(np.int64)
        window = np.maximum(window, 0)
        complete = int((seen[-1] - start + 1) // w)  # windows whose last tick has arrived
        out = []
        for k in range(int(window[0]), complete):
            lines = np.flatnonzero(window == k)
            if not len(lines):
                continue
            lo, hi = line0 + int(lines[0]), line0 + int(lines[-1]) + 1
            coords = {
                "file": path,
                "lines": [lo, hi],
                "ticks": [start + k * w, start + (k + 1) * w],
            }
            out.append((coords, hi - lo))
        return out

    def read(self, coordinates: dict[str, Any]) -> RawBatch:
        path = Path(coordinates["file"])
        header, records = self._records(path)
        lo, hi = coordinates["lines"]
        taken = records[lo:hi]
        unreadable = []
        if len(taken) < hi - lo:
            unreadable.append(
                (
                    path.name,
                    lo + len(taken),
                    f"usage: {path} has {len(records)} records, the "
                    f"batch expected {hi} (the file shrank)",
                )
            )
        rel = path.name
        table = raw_table([rel] * len(taken), list(range(lo, lo + len(taken))), taken)
        return RawBatch(table, {rel: header}, unreadable)

    def group(self, coordinates: dict[str, Any]) -> str | None:
        """One group: a placement loop's windows run one at a time, in order (each batch's
        model starts from the state and the moves the previous one left)."""
        return "windows"

    def describe(self, coordinates: dict[str, Any]) -> str:
        s, e = coordinates["ticks"]
        lo, hi = coordinates["lines"]
        return f"ticks [{s}, {e}) of {coordinates['file']} (records {lo} to {hi})"
