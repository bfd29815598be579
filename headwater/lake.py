"""Where a pipeline's outputs live: one layout, derived from pipeline, stream, window and batch id.

``<root>/<pipeline>/<stream>/window=<window>/<batch_id>.parquet`` — a rerun of a batch writes
the same path, so it replaces and never duplicates. The batch ledger sits beside the streams
in ``<root>/<pipeline>/_batches``, the quarantine is the stream ``_quarantine``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

QUARANTINE = "_quarantine"
LEDGER = "_batches"


@dataclass(frozen=True)
class Lake:
    root: Path

    def pipeline_dir(self, pipeline: str) -> Path:
        return self.root / pipeline

    def stream_dir(self, pipeline: str, stream: str) -> Path:
        return self.root / pipeline / stream

    def window_dir(self, pipeline: str, stream: str, window: str) -> Path:
        return self.stream_dir(pipeline, stream) / f"window={window}"

    def batch_file(self, pipeline: str, stream: str, window: str, batch_id: str) -> Path:
        return self.window_dir(pipeline, stream, window) / f"{batch_id}.parquet"

    def ledger_dir(self, pipeline: str) -> Path:
        return self.root / pipeline / LEDGER

    def database(self, pipeline: str) -> Path:
        return self.root / f"{pipeline}.duckdb"

    def glob(self, pipeline: str, stream: str) -> str:
        return str(self.stream_dir(pipeline, stream) / "*" / "*.parquet")

    def component_dir(self, pipeline: str, area: str, where: str) -> Path:
        """A folder of state a component keeps (``where`` is its key path in the spec)."""
        return self.root / pipeline / area / re.sub(r"[^A-Za-z0-9_.-]+", "_", where).strip("_")
