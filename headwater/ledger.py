"""The batch ledger: every batch's coordinates, recorded before the batch is processed.

One small JSON document per batch under ``<lake>/<pipeline>/_batches/window=<w>/<id>.json``,
written atomically. A time window (a Dagster partition) lists exactly the batches recorded in
it, so re-materializing a window replays them; one file per batch keeps concurrent writers
(parallel runs, the sensor) from ever rewriting each other's records.
"""

from __future__ import annotations

import json
import os
import time
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


#: A window folder unchanged for this long is settled: its listing is kept while the
#: folder's mtime stays the same. Every change to an entry renames a file into the folder,
#: which sets its mtime; the wait covers file systems whose clock for it is coarse.
SETTLED_NS = 2_000_000_000


class Ledger:
    def __init__(self, root: Path):
        self.root = root
        # parsed entries by file, valid while the file's (inode, mtime, size) is unchanged:
        # a sensor tick or a stream worker scans the whole ledger, but parses only what changed
        self._cache: dict[tuple[str, str], tuple[tuple[int, int, int], Entry]] = {}
        self._root = str(root)
        # the entries of settled windows, by the folder's (inode, mtime): a scan of a ledger
        # of 20,000 batches took 0.3 s a cut even with every entry parsed already
        self._settled: dict[str, tuple[tuple[int, int], list[Entry]]] = {}

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
        return self._find(window, batch_id, f"{self._root}/window={window}/{batch_id}.json")

    def _find(self, window: str, batch_id: str, path: str) -> Entry | None:
        # a string path and a stat: a scan of a window finds thousands of entries, and
        # pathlib's joins cost as much as the stat
        key = (window, batch_id)
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._cache.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            with open(path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise HeadwaterError(f"batch ledger entry {path} is unreadable: {exc}") from exc
        entry = Entry(Batch.from_json(data["batch"]), data["status"], data.get("summary", {}))
        self._cache[key] = (stamp, entry)
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
        folder = self.root / f"window={window}"
        try:
            st = os.stat(folder)  # before the listing: a change during it is seen next time
            stamp = (st.st_ino, st.st_mtime_ns)
            held = self._settled.get(window)
            if held is not None and held[0] == stamp:
                return list(held[1])
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        prefix = f"{folder}/"
        entries = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                entry = self._find(window, name[:-5], prefix + name)
                if entry is not None:  # else removed since the listing
                    entries.append(entry)
        entries.sort(key=lambda e: (e.batch.created_at, e.batch.seq, e.batch.id))
        if time.time_ns() - st.st_mtime_ns > SETTLED_NS:
            self._settled[window] = (stamp, entries)
        return list(entries)

    def entries(self) -> Iterator[Entry]:
        for w in self.windows():
            yield from self.window(w)
