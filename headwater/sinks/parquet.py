"""``parquet``: one file per stream per batch, named by the batch id.

``<lake>/<pipeline>/<stream>/window=<window>/<batch_id>.parquet``, written to a temporary
file, fsynced and renamed over the old one: a rerun replaces the file atomically and the
same table always gives the same bytes.
"""

from __future__ import annotations

import errno
import functools
import mmap
import os
import threading
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from headwater.batch import has_payload
from headwater.config import ComponentConfig
from headwater.errors import SinkError
from headwater.sinks.base import Sink, Target


class ParquetConfig(ComponentConfig):
    compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] = "zstd"
    compression_level: int | None = Field(default=None, description="Codec level, if any.")
    row_group_size: int = Field(default=64 * 1024, gt=0, description="Rows per row group.")
    plain: list[str] = Field(
        default_factory=list,
        description="Columns (dotted paths; a struct covers its fields) written as they are, "
        "with no dictionary and no compression: payloads compressed already, such as ZTF's "
        "FITS stamps. Paths a batch does not have are skipped.",
    )


@functools.lru_cache(maxsize=64)
def leaf_paths(schema: pa.Schema) -> tuple[str, ...]:
    """The Parquet column paths of an Arrow schema (``prv_candidates.list.element.jd``)."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    return tuple(c.path for c in pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema)


def write_options(config: ParquetConfig, schema: pa.Schema) -> dict[str, Any]:
    """pyarrow's options for a table of this schema under ``config``."""
    options: dict[str, Any] = {"row_group_size": config.row_group_size}
    leaves = leaf_paths(schema) if config.plain else ()
    plain = {p for p in leaves if any(p == q or p.startswith(q + ".") for q in config.plain)}
    if not plain:
        options.update(compression=config.compression, compression_level=config.compression_level)
        return options
    # Dictionaries and compression only cost time on compressed bytes: an alert's stamps are
    # unique gzipped FITS (zstd gains nothing; each dictionary page fills and falls back).
    rest = [p for p in leaves if p not in plain]
    options["compression"] = {p: "none" if p in plain else config.compression for p in leaves}
    options["use_dictionary"] = rest
    if config.compression_level is not None:
        options["compression_level"] = {p: config.compression_level for p in rest}
    return options


def write_atomically(path: Path, table: pa.Table, **options: Any) -> int:
    """Write ``table`` to ``path`` via a temporary file and a rename; return its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if not (table.nbytes >= DIRECT_BYTES and _write_direct(tmp, table, options)):
            pq.write_table(table, tmp, **options)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SinkError(f"cannot write {path}: {exc}") from exc
    return path.stat().st_size


#: Tables from this size on are written around the page cache (see _write_direct).
DIRECT_BYTES = 32 << 20
_ALIGN = 4096
_buffers = threading.local()


def _write_direct(tmp: Path, table: pa.Table, options: dict[str, Any]) -> bool:
    """Encode the file into this thread's reused, page-aligned buffer and write it with
    O_DIRECT, then fsync; False (nothing written) where that cannot be done: a file system
    without O_DIRECT (tmpfs), or a file larger than the buffer allows.

    A batch of ZTF alerts with their stamps is a 200 MB file. Written through the page cache
    it was copied there (a seventh of the stream worker's CPU), then flushed by fsync; the
    encoding itself took fresh pages from Arrow's pool each time. Here it is encoded into
    memory that stays mapped, and the disk reads it from there."""
    room = _room(table)
    buffer = getattr(_buffers, "map", None)
    if buffer is None or len(buffer) < room:
        # with room to spare: batches differ in size, and a new map is fresh pages to fault
        _buffers.map = None  # the smaller one is unmapped once unreferenced
        buffer = _buffers.map = mmap.mmap(-1, (room + room // 2) // _ALIGN * _ALIGN)
    try:
        out = pa.FixedSizeBufferWriter(pa.py_buffer(buffer))
        pq.write_table(table, out, **options)
        size = out.tell()
        out.close()
    except (pa.ArrowInvalid, pa.ArrowIOError, ValueError):
        return False  # larger than the room left: written the usual way
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # no O_DIRECT here
            return False
        raise
    try:
        with memoryview(buffer) as view:
            at, end = 0, (size + _ALIGN - 1) // _ALIGN * _ALIGN
            while at < end:
                at += os.write(fd, view[at : min(end, at + (64 << 20))])
        os.ftruncate(fd, size)  # the last block was written whole
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # refused: this file system wants other alignments
            raise
        return False
    finally:
        os.close(fd)
    return True


def _room(table: pa.Table) -> int:
    """Bytes enough for the table's Parquet file, in whole blocks: the data, plus Parquet's
    lengths, levels, page headers and footer (a file that needs more is written the usual
    way)."""
    return (int(table.nbytes * 1.25) + (8 << 20) + _ALIGN - 1) // _ALIGN * _ALIGN


class ParquetSink(Sink):
    Config = ParquetConfig
    concurrent = True  # a file of its own per stream and batch; pyarrow writes without the GIL

    def write(self, target: Target, table: pa.Table) -> dict[str, Any]:
        c: ParquetConfig = self.config
        path = self.ctx.lake.batch_file(
            target.pipeline, target.stream, target.batch.window, target.batch.id
        )
        if not has_payload(table):
            # nothing decoded (every message refused): no file, and no stale one from before
            path.unlink(missing_ok=True)
            return {"path": None, "bytes": 0}
        size = write_atomically(path, table, **write_options(c, table.schema))
        return {"path": str(path), "bytes": size}
