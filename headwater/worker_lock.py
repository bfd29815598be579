"""One ``headwater stream`` worker per pipeline (or per partition group) on a lake.

Two workers on the same batches would both cut and run them: for a placement loop, two
models deciding from the same state; for any pipeline, every batch done twice. A worker
holds an advisory lock (``flock``) in ``<lake>/<pipeline>/_workers/`` while it runs; the
kernel drops it when the process ends, however it ends, so a killed worker leaves no stale
lock. A worker of every group holds ``all.lock`` exclusively; a worker of one partition group
holds ``all.lock`` shared and its group's lock exclusively, so workers of different groups
run side by side and none runs beside a worker of every group.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from headwater.errors import HeadwaterError


class WorkerLock:
    def __init__(self, folder: Path, pipeline: str, group: int | None):
        self.folder, self.pipeline, self.group = folder, pipeline, group
        self._files: list[IO[str]] = []

    def acquire(self) -> WorkerLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            if self.group is None:
                self._take("all.lock", fcntl.LOCK_EX)
            else:
                self._take("all.lock", fcntl.LOCK_SH)
                self._take(f"group-{self.group}.lock", fcntl.LOCK_EX)
        except BlockingIOError:
            holder = self._holder()
            self.release()
            raise HeadwaterError(self._message(holder)) from None
        return self

    def _take(self, name: str, mode: int) -> None:
        f = open(self.folder / name, "a+")  # noqa: SIM115  (held open for the lock's life)
        try:
            fcntl.flock(f, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            self._last = self.folder / name
            f.close()
            raise
        self._files.append(f)
        if mode == fcntl.LOCK_EX:  # who holds it, for the next worker's message
            f.truncate(0)
            f.write(f"{os.getpid()}\n")
            f.flush()

    def _holder(self) -> str:
        """Who holds the lock that was refused: a PID, or workers of partition groups."""
        with open(self._last) as f:
            try:  # shared holders only: group workers (the PID there is an earlier holder's)
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return "workers of partition groups are"
            except BlockingIOError:
                pid = f.read().strip()
        return f"another headwater stream (PID {pid}) is" if pid else "another headwater stream is"

    def _message(self, holder: str) -> str:
        which = "" if self.group is None else f" (partition group {self.group})"
        return (
            f"{holder} running pipeline {self.pipeline}{which} on this lake "
            f"({self.folder}): two workers would cut and run the same batches. Stop the "
            "running worker first; to run partition groups in parallel, give every worker its own "
            "--partition-group."
        )

    def release(self) -> None:
        for f in self._files:
            f.close()  # closing drops the flock
        self._files = []

    def __enter__(self) -> WorkerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
