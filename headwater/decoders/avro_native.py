"""headwater's compiled Avro decoder (``headwater._native``, in Rust), run on threads.

A group of bodies sharing a writer schema goes to the compiled decoder in one call, which
releases the GIL while it decodes: a batch's groups (large ones split) decode side by side on
as many threads as the process may use cores, in this process, with nothing copied between
processes. Every body is decoded and checked on its own; the ones it refuses come back with
their reason while the rest of the group is kept.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from headwater import _native
from headwater.cores import threads


@dataclass
class Job:
    schema: str  # the writer schema as JSON, named types inlined
    arrow: pa.StructType  # the writer's records as Arrow
    bodies: list  # buffers (bytes, memoryviews), each holding counts[i] records
    counts: list[int]
    drop: list[str]  # top-level fields read past, not kept


#: A job's outcome: the batch and the refused bodies' (index, reason), or why the compiled
#: decoder would not take the schema at all.
Result = tuple[pa.RecordBatch, list[tuple[int, str]]] | ValueError


def decode(jobs: list[Job]) -> list[Result]:
    if len(jobs) <= 1:
        return [_one(job) for job in jobs]
    return list(_executor().map(_one, jobs))


def _one(job: Job) -> Result:
    try:
        return _native.decode(job.schema, job.arrow, job.bodies, job.counts, job.drop)
    except ValueError as exc:  # a schema or type the compiled decoder does not handle
        return exc


_EXECUTOR: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    with _LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(threads(), thread_name_prefix="headwater-avro")
        return _EXECUTOR
