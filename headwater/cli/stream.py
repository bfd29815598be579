"""``headwater stream PIPELINE``: run batches as input arrives, until stopped."""

from __future__ import annotations

import enum
from typing import Annotated

import typer
from rich.markup import escape

from headwater.cli.common import (
    GroupOption,
    SetOption,
    app,
    err,
    fail,
    home,
    now,
    out,
    resolve_spec,
    with_group,
)
from headwater.errors import HeadwaterError


class Record(enum.StrEnum):
    events = "events"
    runs = "runs"


@app.command()
def stream(
    pipeline: Annotated[str, typer.Argument(help="Spec file or pipeline name.")],
    max_wait_ms: Annotated[
        int | None, typer.Option(help="Cut a batch once input waited this long (spec: worker).")
    ] = None,
    idle_exit: Annotated[
        float, typer.Option(help="Exit after this many seconds without input; 0 = never.")
    ] = 0.0,
    max_batches: Annotated[int, typer.Option(help="Exit after this many batches.")] = 0,
    record: Annotated[
        Record | None,
        typer.Option(
            help="events: asset events per batch; runs: a Dagster run per batch "
            "(spec: worker.record).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No line per batch.")] = False,
    partition_group: GroupOption = None,
    set_: SetOption = None,
) -> None:
    """Keep the pipeline open and run each batch as soon as input arrives.

    A batch is cut at max_records_per_batch records or after max_wait_ms, whichever comes
    first; each is recorded in Dagster as a materialization of the pipeline's assets (asset
    events, or a run with --record runs). SIGTERM or Ctrl-C finish the batch in hand, commit
    it, and exit.
    """
    from headwater.resources.project import get_pipeline, release_pipeline
    from headwater.worker import StreamWorker
    from headwater.worker_lock import WorkerLock

    try:
        spec_file = resolve_spec(pipeline)
        overrides = with_group(spec_file, set_ or [], partition_group)
        p = get_pipeline(str(spec_file), tuple(overrides), str(home()))
        lock = WorkerLock.of(p, partition_group, "headwater stream").acquire()
        worker = StreamWorker(
            spec_file,
            p,
            overrides,
            home(),
            max_wait_ms=p.spec.model.worker.max_wait_ms if max_wait_ms is None else max_wait_ms,
            poll_ms=p.spec.model.worker.poll_ms,
            idle_exit_seconds=idle_exit,
            max_batches=max_batches,
            record=str(record or p.spec.model.worker.record),
            on_batch=None if quiet else _report,
            on_error=lambda exc: err.print(
                f"{now()} [yellow]waiting:[/] {escape(str(exc))}", highlight=False
            ),
        )
        p.warm()  # ready before saying so: the first batches do not pay for start-up
        wait = f"{worker.max_wait * 1000:.0f} ms"
        cap = worker.cap()  # a source without a record cap cuts its own (a usage window)
        rule = (
            f"at most {cap} records or {wait}"
            if cap
            else f"as it cuts them, once input waited {wait}"
        )
        out.print(
            f"pipeline [bold]{p.name}[/]: streaming from its {p.spec.source.name} source "
            f"(batches {rule}); Ctrl-C stops after the batch in hand"
        )
        stats = worker.run_until_signalled()
    except HeadwaterError as exc:
        fail(exc)
    finally:
        if "p" in locals():
            release_pipeline(p)
        if "lock" in locals():
            lock.release()
    out.print(
        f"stopped: {stats.batches} batch(es), {stats.records} records, {stats.failed} failed "
        "attempt(s)"
    )


def _report(outcome) -> None:
    s = outcome.summary
    if outcome.success:
        out.print(
            f"{now()} {outcome.batch.window} {outcome.batch.id}: {s.get('messages', 0)} messages, "
            f"{s.get('quarantined', 0)} quarantined, {s.get('seconds', 0):.2f}s "
            f"({_where(outcome)})",
            highlight=False,
        )
    else:
        err.print(
            f"[red]{now()} batch {outcome.batch.id} failed[/] ({_where(outcome)}): "
            f"{escape(str(outcome.error))}; retrying from the same offsets",
            highlight=False,
        )


def _where(outcome) -> str:
    return f"run {outcome.run_id[:8]}" if outcome.run_id else "asset events"
