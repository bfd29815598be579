"""Small files written whole, then renamed into place: a reader sees the old file or the
new one, never part of one.

The ledger writes two such files a batch and a placement model one more; through
``Path.write_text`` (a buffered writer, a ``mkdir`` first every time) each cost about
twice what one ``write`` call and a rename do.
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, data: bytes | memoryview, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename; with
    ``fsync``, the data is on disk before the rename (the folder itself is not synced)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # the folder's first file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind
        raise


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``: one call, unless the kernel takes less."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]
