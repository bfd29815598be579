"""The batch ledger: every batch's coordinates, recorded before the batch is processed.

One small JSON document per batch under ``<lake>/<pipeline>/_batches/window=<w>/<id>.json``,
written atomically. A time window (a Dagster partition) lists exactly the batches recorded in
it, so re-materializing a window replays them; one file per batch keeps concurrent writers
(parallel runs, the sensor) from ever rewriting each other's records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwater.atomic import replace_file
from headwater.batch import Batch
from headwater.errors import HeadwaterError

PENDING = "pending"
DONE = "done"


@dataclass(frozen=True)
class Entry:
    batch: Batch
    status: str
    summary: dict[str, Any]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # compact: json's C encoder (an indent means its pure-Python one, slow on the ranges of
    # a batch of thousands of files); `jq .` shows an entry indented
    replace_file(path, json.dumps(data, sort_keys=True, separators=(",", ":")).encode())


class Ledger:
    def __init__(self, root: Path):
        self.root = root
        # parsed entries by file, valid while the file's (inode, mtime, size) is unchanged:
        # a sensor tick or a stream worker scans the whole ledger, but parses only what changed
        self._cache: dict[Path, tuple[tuple[int, int, int], Entry]] = {}

    def _file(self, window: str, batch_id: str) -> Path:
        return self.root / f"window={window}" / f"{batch_id}.json"

    def record(self, batch: Batch) -> Entry:
        """Record a new batch (pending). A batch already recorded keeps its first record."""
        existing = self.find(batch.window, batch.id)
        if existing is not None:
            return existing
        _write_json(
            self._file(batch.window, batch.id),
            {"batch": batch.to_json(), "status": PENDING, "summary": {}},
        )
        return Entry(batch, PENDING, {})

    def complete(self, batch: Batch, summary: dict[str, Any]) -> None:
        _write_json(
            self._file(batch.window, batch.id),
            {"batch": batch.to_json(), "status": DONE, "summary": summary},
        )

    def find(self, window: str, batch_id: str) -> Entry | None:
        path = self._file(window, batch_id)
        try:
            st = path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._cache.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise HeadwaterError(f"batch ledger entry {path} is unreadable: {exc}") from exc
        entry = Entry(Batch.from_json(data["batch"]), data["status"], data.get("summary", {}))
        self._cache[path] = (stamp, entry)
        return entry

    def get(self, window: str, batch_id: str) -> Entry:
        entry = self.find(window, batch_id)
        if entry is None:
            raise HeadwaterError(
                f"batch {batch_id} is not recorded in window {window} (ledger {self.root}); "
                "run a batch by the id its sensor or CLI run recorded"
            )
        return entry

    def windows(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name.removeprefix("window=") for p in self.root.glob("window=*"))

    def window(self, window: str) -> list[Entry]:
        """The batches recorded in a window, in the order they were cut."""
        entries = [
            self.get(window, p.stem) for p in (self.root / f"window={window}").glob("*.json")
        ]
        return sorted(entries, key=lambda e: (e.batch.created_at, e.batch.seq, e.batch.id))

    def entries(self) -> Iterator[Entry]:
        for w in self.windows():
            yield from self.window(w)
