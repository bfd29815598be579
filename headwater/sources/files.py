"""``files``: replay a folder as a stream — the embedded default source.

The folder is walked recursively in a stable order (sorted relative paths). In ``messages``
format each file is one message (one Kafka message per file, as ZTF alerts are kept); in
``lines`` and ``csv`` formats each line is a record (CSV files keep their header aside).
A batch's coordinates are the files and record ranges it covers: ``[[path, start, end], …]``.
A backlog is cut file after file, or with ``split: proportional`` across the pending files
in proportion to what each has left (files written side by side, one per host or agent).
Files should appear atomically (write then rename); a file that grows by whole lines is
picked up again from where the last batch ended.
"""

from __future__ import annotations

import glob as globmod
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from headwater import _native
from headwater.batch import RawBatch, chunk_spans, raw_table
from headwater.config import ComponentConfig
from headwater.cores import threads
from headwater.errors import SourceError
from headwater.settle import settled
from headwater.sources.base import Source, cut_across, cut_ranges


class FilesConfig(ComponentConfig):
    path: str = Field(description="The folder to replay (relative to the project root).")
    pattern: str = Field(default="**/*", description="Glob of the files to read, under path.")
    format: Literal["messages", "lines", "csv"] = Field(
        default="messages",
        description="messages: one message per file; lines: one per line; csv: one per line "
        "after the header.",
    )
    max_records_per_batch: int = Field(default=10_000, gt=0, description="Batch size cap.")
    split: Literal["in_order", "proportional"] = Field(
        default="in_order",
        description="How a backlog over max_records_per_batch is cut: in_order takes file "
        "after file, in sorted order (files that follow each other in time, such as one a "
        "day); proportional takes from every pending file in proportion to what it has "
        "left, so that files written side by side (one per host or agent) give each batch "
        "the same stretch of time (what a placement loop's ticks need).",
    )
    min_age_seconds: float = Field(
        default=0.0, ge=0, description="Ignore files modified more recently than this."
    )


@dataclass
class _Listing:
    """A folder's listing, and the modification time of every folder under it when listed.

    Creating, removing or renaming a file changes its folder's modification time, so while no
    folder's time has changed the listing stands: a poll stats the folders (tens, for 50,000
    ZTF alert files in folders of 1,000) instead of listing and statting every file (0.3 s).
    A file rewritten in place keeps its folder's time; plan() counts records file by file.
    """

    root: Path
    folders: dict[str, int]  # path -> st_mtime_ns, -1 if it could not be looked at
    files: list[str]

    @staticmethod
    def times_under(root: Path) -> dict[str, int]:
        below = globmod.glob("**/", root_dir=root, recursive=True)  # as the pattern's ** walks
        return {p: _mtime_ns(p) for p in [str(root), *(str(root / d) for d in below)]}

    def unchanged(self) -> bool:
        return all(_mtime_ns(p) == t for p, t in self.folders.items())

    def settled(self, scanned_ns: int) -> bool:
        """No folder changed too close to the listing for a later change to show (see
        headwater.settle)."""
        return all(settled(t, scanned_ns) for t in self.folders.values() if t >= 0)


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1  # gone or unreadable: never equal to a folder's time once it is back


class FileSource(Source):
    Config = FilesConfig
    concurrent_reads = True  # reading files touches no state of the source

    @property
    def root(self) -> Path:
        return self.ctx.path(self.config.path).resolve()

    def __init__(self, config: FilesConfig, ctx: Any):
        super().__init__(config, ctx)
        self._listing: _Listing | None = None
        self._idle: tuple[list[str], list[dict[str, Any]]] | None = None

    def _files(self) -> list[str]:
        """The folder's files matching the pattern, sorted. A worker asks every poll: the
        last listing is reused while no folder under the root has changed (see _Listing)."""
        root = self.root
        if not root.is_dir():
            raise SourceError(
                f"source {self.ctx.where}: folder {root} does not exist or is not a folder. "
                "Fix source.files.path (or pass --set source.files.path=…)."
            )
        last = self._listing
        if last is not None and last.root == root and last.unchanged():
            return last.files
        scanned = time.time_ns()
        folders = _Listing.times_under(root)  # their times first: a change while listing shows
        files, complete = self._glob(root)
        listing = _Listing(root, folders, files)
        self._listing = listing if complete and listing.settled(scanned) else None
        return files

    def _glob(self, root: Path) -> tuple[list[str], bool]:
        """(the matching files, whether the list holds however long it is kept: no file was
        left out for being younger than min_age_seconds)."""
        now = time.time()
        out, complete = [], True
        for p in root.glob(self.config.pattern):
            if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
                continue
            if (
                self.config.min_age_seconds
                and now - p.stat().st_mtime < self.config.min_age_seconds
            ):
                complete = False
                continue
            out.append(p.relative_to(root).as_posix())
        return sorted(out), complete

    def _count(self, rel: str) -> int:
        if self.config.format == "messages":
            return 1
        data = (self.root / rel).read_bytes()
        n = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        return max(n - 1, 0) if self.config.format == "csv" else n

    def plan(self, previous: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
        previous = list(previous)
        files = self._files()
        if self._nothing_new(files, previous):
            return []
        root = str(self.root)
        covered: dict[str, int] = {}
        for coords in previous:
            if coords.get("root") != root:
                continue
            for rel, _start, end in coords["ranges"]:
                covered[rel] = max(covered.get(rel, 0), end)
        pending: list[list[Any]] = []
        for rel in files:
            total = self._count(rel)
            start = covered.get(rel, 0)
            if total > start:
                pending.append([rel, start, total])
        cap = self.config.max_records_per_batch
        cut = cut_across if self.config.split == "proportional" else cut_ranges
        planned = [({"root": root, "ranges": r}, n) for r, n in cut(pending, cap)]
        # one file, one message: nothing new while the listing and the batches stand
        idle = not planned and self.config.format == "messages"
        self._idle = (files, previous) if idle else None
        return planned

    def _nothing_new(self, files: list[str], previous: list[dict[str, Any]]) -> bool:
        """Whether the last plan found nothing to do, over this very listing (the same list:
        the folders are unchanged) and these very batches (the ledger hands back the same
        objects while their entries are unchanged). An idle worker asks 20 times a second;
        covering 50,000 files' batches again took 17 ms each time."""
        if self._idle is None:
            return False
        last_files, last_previous = self._idle
        return (
            files is last_files
            and len(previous) == len(last_previous)
            and all(a is b for a, b in zip(previous, last_previous, strict=True))
        )

    def read(self, coordinates: dict[str, Any]) -> RawBatch:
        root = Path(coordinates["root"])
        if self.config.format == "messages":
            whole = _read_whole_files(root, [rel for rel, _, _ in coordinates["ranges"]])
            if whole is not None:
                return whole
        sources: list[str] = []
        offsets: list[int] = []
        values: list[bytes] = []
        headers: dict[str, bytes] = {}
        unreadable: list[tuple[str, int, str]] = []
        for rel, start, end in coordinates["ranges"]:
            try:
                data = (root / rel).read_bytes()
            except OSError as exc:
                unreadable.append((rel, start, f"files: cannot read {root / rel}: {exc.strerror}"))
                continue
            if self.config.format == "messages":
                records = [data]
            else:
                lines = data.splitlines()
                if self.config.format == "csv":
                    headers[rel] = lines[0] if lines else b""
                    lines = lines[1:]
                records = lines[start:end]
                if len(records) < end - start:
                    unreadable.append(
                        (
                            rel,
                            start + len(records),
                            f"files: {rel} has {len(lines)} records, the batch "
                            f"expected up to {end} (the file shrank)",
                        )
                    )
            sources.extend([rel] * len(records))
            offsets.extend(range(start, start + len(records)))
            values.extend(records)
        return RawBatch(raw_table(sources, offsets, values), headers, unreadable)

    def describe(self, coordinates: dict[str, Any]) -> str:
        ranges = coordinates["ranges"]
        first, last = ranges[0], ranges[-1]
        span = f"{first[0]}[{first[1]}:{first[2]}]"
        if len(ranges) > 1:
            span += f" … {last[0]}[{last[1]}:{last[2]}]"
        return f"{len(ranges)} file(s) under {coordinates['root']}: {span}"


def _read_whole_files(root: Path, rels: list[str]) -> RawBatch | None:
    """One message per file, each file read straight into the batch's Arrow buffer: no
    ``bytes`` per file and no second copy (a batch of alerts is hundreds of MB). None if a
    file changed size while it was read (files should be written, then renamed into the
    folder): the caller reads the batch file by file instead."""
    sizes, kept, unreadable = [], [], []
    prefix = os.path.join(root, "")
    for rel, size in zip(rels, _native.file_sizes(prefix, rels), strict=True):
        if size is not None:
            sizes.append(size)
            kept.append(rel)
            continue
        try:
            os.stat(prefix + rel)  # gone, or not ours to read: ask again for the reason
        except OSError as exc:
            unreadable.append((rel, 0, f"files: cannot read {root / rel}: {exc.strerror}"))
            continue
        return None  # it is back: the file-by-file read takes it as it is now
    chunks = []
    for start, stop in chunk_spans(np.asarray(sizes, np.int64)):
        chunk = _read_chunk(prefix, kept[start:stop], sizes[start:stop])
        if chunk is None:
            return None
        chunks.append(chunk)
    values = pa.chunked_array(chunks, pa.binary())
    return RawBatch(raw_table(kept, [0] * len(kept), values), {}, unreadable)


def _read_chunk(prefix: str, rels: list[str], sizes: list[int]) -> pa.Array | None:
    # compiled, without the GIL: a Python loop of system calls on the read-ahead thread gave
    # the GIL up and took it back at each call, which cost four times the reads while the
    # main thread worked
    array, failed = _native.read_files(prefix, rels, sizes, threads())
    return None if failed is not None else array  # None: the file-by-file read names it
