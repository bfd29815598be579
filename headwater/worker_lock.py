"""One process cutting and running a pipeline's batches (or a partition group's) on a lake.

Two processes on the same batches — two ``headwater stream`` workers, or a worker and a
``headwater run`` — would both cut and run them: for a placement loop, two models deciding
from the same state; for any pipeline, every batch done twice. Each holds an advisory lock
(``flock``) in ``<lake>/<pipeline>/_workers/`` while it runs; the kernel drops it when the
process ends, however it ends, so a killed worker leaves no stale lock. A process of every
group holds ``all.lock`` exclusively; one of a single partition group holds ``all.lock``
shared and its group's lock exclusively, so groups run side by side and none beside a
process of every group. The batch sensor holds it while it cuts (its tick is skipped while
a worker runs); the runs it launches are queued per group by the run coordinator instead.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from headwater.errors import HeadwaterError


class WorkerLock:
    def __init__(self, folder: Path, pipeline: str, group: int | None, command: str):
        self.folder, self.pipeline, self.group = folder, pipeline, group
        self.command = command  # named in the refusal the next process gets
        self._files: list[IO[str]] = []
        self._refused: Path | None = None

    @classmethod
    def of(cls, pipeline, group: int | None, command: str) -> WorkerLock:
        """The lock of a :class:`headwater.pipeline.Pipeline` (or one partition group)."""
        return cls(
            pipeline.lake.pipeline_dir(pipeline.name) / "_workers", pipeline.name, group, command
        )

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
            self._refused = self.folder / name
            f.close()
            raise
        self._files.append(f)
        if mode == fcntl.LOCK_EX:  # who holds it, for the next process's message
            f.truncate(0)
            f.write(f"{self.command}, PID {os.getpid()}\n")
            f.flush()

    def _holder(self) -> str:
        """Who holds the lock that was refused, with the verb."""
        with open(self._refused) as f:
            try:  # shared holders only: partition groups' (what is written is an earlier one's)
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return "processes of single partition groups are"
            except BlockingIOError:
                who = f.read().strip()
        return f"another process ({who}) is" if who else "another process is"

    def _message(self, holder: str) -> str:
        which = "" if self.group is None else f" (partition group {self.group})"
        return (
            f"{self.command}: {holder} cutting and running the batches of pipeline "
            f"{self.pipeline}{which} on this lake ({self.folder}); two would run the same "
            "batches. Wait for it or stop it; to run partition groups in parallel, give each "
            "process its own --partition-group."
        )

    def release(self) -> None:
        for f in self._files:
            f.close()  # closing drops the flock
        self._files = []

    def __enter__(self) -> WorkerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
