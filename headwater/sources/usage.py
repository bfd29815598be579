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

from headwater.arrow import joined_lines, split_lines
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
    whole_ticks = True  # windows of window_ticks whole ticks

    @property
    def file(self) -> Path:
        p = self.ctx.path(self.config.path).resolve()
        return p / self.config.file if p.is_dir() else p

    def _scan(
        self, path: Path, offset: int = 0, end: int | None = None
    ) -> tuple[bytes, pa.Array, np.ndarray]:
        """The header, the records from byte ``offset`` (0: after the header) to ``end``, and
        the byte range ``(start, end)`` of each, as an (n, 2) array. Reading on from the last
        batch's end keeps a growing file's cost to what it grew by. A last line without its
        newline counts (a file written once may end so); empty lines are not records."""
        try:
            with open(path, "rb") as fh:
                header = fh.readline()
                fh.seek(max(offset, len(header)))
                base = fh.tell()
                data = fh.read(-1 if end is None else max(end - base, 0))
        except OSError as exc:
            raise SourceError(
                f"source {self.ctx.where}: cannot read {path}: {exc.strerror}. "
                "Fix source.usage.path (a container_usage.csv or its folder)."
            ) from exc
        records, spans = split_lines(data)
        return header.rstrip(b"\r\n"), records, spans + base

    def _ticks(self, header: bytes, records: pa.Array) -> np.ndarray:
        """Each record's tick; NaN where it is not a number."""
        names = next(csv.reader([header.decode(errors="replace")]), [])
        if self.config.tick not in names:
            raise SourceError(
                f"source {self.ctx.where}: {self.file} has no column {self.config.tick!r} "
                f"(header: {names}); set source.usage.tick"
            )
        table = pcsv.read_csv(
            pa.py_buffer(header + b"\n" + joined_lines(records)),
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
        last = max(done, key=lambda c: c["lines"][1], default=None)
        if last is not None and "bytes" in last:  # read on from where the last batch ended
            header, records, spans = self._scan(self.file, last["bytes"][1])
        else:  # no batch yet (or batches recorded before byte ranges): from the start
            header, records, spans = self._scan(self.file)
            records, spans = records[line0:], spans[line0:]
        if not len(records):
            return []
        ticks = self._ticks(header, records)
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
            a, b = int(lines[0]), int(lines[-1]) + 1
            coords = {
                "file": path,
                "lines": [line0 + a, line0 + b],
                "bytes": [int(spans[a, 0]), int(spans[b - 1, 1])],
                "ticks": [start + k * w, start + (k + 1) * w],
            }
            out.append((coords, b - a))
        return out

    def read(self, coordinates: dict[str, Any]) -> RawBatch:
        path = Path(coordinates["file"])
        lo, hi = coordinates["lines"]
        if "bytes" in coordinates:
            b_lo, b_hi = coordinates["bytes"]
            header, records, spans = self._scan(path, b_lo, b_hi)
            taken = records[: int(np.searchsorted(spans[:, 1], b_hi, side="right"))]
            have = f"{int(spans[-1, 1]) if len(spans) else b_lo} bytes"
        else:  # a batch recorded before byte ranges: count its records from the start
            header, records, _spans = self._scan(path)
            taken = records[lo:hi]
            have = f"{len(records)} records"
        unreadable = []
        if len(taken) < hi - lo:
            unreadable.append(
                (
                    path.name,
                    lo + len(taken),
                    f"usage: {path} has {have}, the batch expected records {lo} to {hi} "
                    "(the file shrank or was rewritten)",
                )
            )
        rel = path.name
        table = raw_table(
            [rel] * len(taken), list(range(lo, lo + len(taken))), pa.chunked_array([taken])
        )
        return RawBatch(table, {rel: header}, unreadable)

    def group(self, coordinates: dict[str, Any]) -> str | None:
        """One group: a placement loop's windows run one at a time, in order (each batch's
        model starts from the state and the moves the previous one left)."""
        return "windows"

    def describe(self, coordinates: dict[str, Any]) -> str:
        s, e = coordinates["ticks"]
        lo, hi = coordinates["lines"]
        return f"ticks [{s}, {e}) of {coordinates['file']} (records {lo} to {hi})"
