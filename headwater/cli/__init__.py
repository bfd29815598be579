"""``headwater``: run pipelines, query their outputs, validate specs, open the web UI."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from headwater.cli.common import (
    GroupOption,
    SetOption,
    app,
    err,
    fail,
    home,
    out,
    progress_bar,
    resolve_spec,
    short,
    show_client_lines,
    with_group,
)
from headwater.cli.topics import topics_app
from headwater.errors import HeadwaterError

app.add_typer(topics_app, name="topics")

import headwater.cli.stream  # noqa: E402, F401  (registers `headwater stream`)


@app.command()
def validate(
    pipelines: Annotated[list[str], typer.Argument(help="Spec files or names.")],
    set_: SetOption = None,
) -> None:
    """Check specs without reading any data."""
    from headwater.spec import load_spec, parse_overrides

    failed = False
    for name in pipelines:
        try:
            spec = load_spec(resolve_spec(name), parse_overrides(set_ or []), base_dir=home())
        except HeadwaterError as exc:
            err.print(str(exc), highlight=False, markup=False)
            failed = True
            continue
        streams = ", ".join(s.name for s in spec.streams)
        out.print(f"[green]ok[/] {escape(f'{spec.file}: pipeline {spec.name}, streams {streams}')}")
    if failed:
        raise typer.Exit(1)


@app.command()
def run(
    pipeline: Annotated[str, typer.Argument(help="Spec file or pipeline name.")],
    set_: SetOption = None,
    max_batches: Annotated[int, typer.Option(help="Process at most this many.")] = 0,
    partition_group: GroupOption = None,
) -> None:
    """Cut every pending batch and process it now, in-process, as Dagster runs."""
    try:
        spec_file = resolve_spec(pipeline)
        overrides = with_group(spec_file, set_ or [], partition_group)
        _run(spec_file, overrides, max_batches, partition_group)
    except HeadwaterError as exc:
        fail(exc)


def _run(spec_file: Path, overrides: list[str], max_batches: int, group: int | None) -> None:
    from headwater.resources.project import get_pipeline
    from headwater.worker_lock import WorkerLock

    pipeline = get_pipeline(str(spec_file), tuple(overrides), str(home()))
    with WorkerLock.of(pipeline, group, "headwater run"):
        _cut_and_run(spec_file, overrides, max_batches, pipeline)


def _cut_and_run(spec_file: Path, overrides: list[str], max_batches: int, pipeline) -> None:
    from headwater.runner import dagster_instance, refuse_claimed, run_batches

    new, pending = pipeline.cut()
    if max_batches:
        pending = pending[:max_batches]
    if not pending:
        out.print(
            f"pipeline [bold]{pipeline.name}[/]: nothing to do — no new input since the last batch."
        )
        return
    # what the runs print goes to this terminal: no capture of it per run (two helper
    # processes, ~60 ms a run); runs the web UI or the sensor launch keep theirs
    instance = dagster_instance(home(), capture_logs=False)
    refuse_claimed(instance, pipeline, pending, "headwater run")
    out.print(
        f"pipeline [bold]{pipeline.name}[/]: {len(new)} new batch(es), {len(pending)} to process"
    )
    started = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task("batches", total=len(pending))
        results = run_batches(
            spec_file,
            pipeline,
            pending,
            overrides,
            home(),
            on_done=lambda _: progress.advance(task),
            instance=instance,
        )
    _summary(pipeline, results, time.perf_counter() - started)
    failed = [r for r in results if not r.success]
    if failed:
        for r in failed:
            err.print(f"[red]batch {r.batch.id} failed[/]: {escape(str(r.error))}", highlight=False)
        err.print("Failed batches stay pending; `headwater run` again retries them.")
        raise typer.Exit(1)


def _summary(pipeline, results, seconds: float) -> None:
    streams: dict[str, list[int]] = {s.name: [0, 0, 0] for s in pipeline.spec.streams}
    messages = quarantined = 0
    for r in results:
        messages += r.summary.get("messages", 0)
        quarantined += r.summary.get("quarantined", 0)
        for name, s in r.summary.get("streams", {}).items():
            acc = streams[name]
            acc[0] += s["rows_in"]
            acc[1] += s["rows_out"]
            acc[2] += s["quarantined"]
    table = Table(title=f"pipeline {pipeline.name}: {len(results)} batch(es) in {seconds:.2f}s")
    for col in ("stream", "rows in", "rows out", "quarantined", "output"):
        table.add_column(col, justify="left" if col in ("stream", "output") else "right")
    for name, (rin, rout, q) in streams.items():
        table.add_row(
            name,
            str(rin),
            str(rout),
            str(q),
            Text(short(pipeline.lake.stream_dir(pipeline.name, name))),
        )
    out.print(table)
    rate = messages / seconds if seconds else 0.0
    out.print(
        f"{messages} messages, {quarantined} quarantined, {rate:,.0f} messages/s "
        "(Dagster run start-up included). "
        f"DuckDB: {escape(str(pipeline.lake.database(pipeline.name)))}"
    )
    first = pipeline.spec.streams[-1].name
    out.print(f'Try: headwater query "select count(*) from {first}"', highlight=False)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="DuckDB SQL over the streams' views.")],
    lake: Annotated[Path, typer.Option(help="Lake folder holding <pipeline>.duckdb.")] = Path(
        "lake"
    ),
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    limit: Annotated[int, typer.Option(help="Rows shown in table format.")] = 50,
) -> None:
    """Run SQL over every pipeline's outputs (views named after the streams)."""
    from headwater.query import run_query

    if fmt not in ("table", "csv", "json"):
        fail(HeadwaterError(f"--format must be table, csv or json, got {fmt!r}"))
    root = lake if lake.is_absolute() else home() / lake
    try:
        columns, rows = run_query(root, sql)
    except HeadwaterError as exc:
        fail(exc)
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows(rows)
    elif fmt == "json":
        for row in rows:
            sys.stdout.write(json.dumps(dict(zip(columns, row, strict=True)), default=str) + "\n")
    else:
        _table(columns, rows, limit)


def _table(columns: list[str], rows: list[tuple[Any, ...]], limit: int) -> None:
    table = Table()
    for c in columns:
        table.add_column(Text(c), overflow="fold", max_width=60)
    for row in rows[:limit]:
        table.add_row(*(_cell(v) for v in row))
    out.print(table)
    if len(rows) > limit:
        out.print(f"({len(rows)} rows, {limit} shown; --limit or --format csv for all)")


def _cell(value: Any) -> Text:
    """A value as it is: data is never read as Rich markup (``[/x]`` would be an error)."""
    text = "NULL" if value is None else str(value)
    return Text(text if len(text) <= 200 else text[:200] + "…")


@app.command()
def batches(
    pipeline: Annotated[str, typer.Argument(help="Spec file or pipeline name.")],
    window: Annotated[str | None, typer.Option(help="Only this window.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    set_: SetOption = None,
) -> None:
    """List recorded batches: window, id, status, records, coordinates."""
    from headwater.resources.project import get_pipeline

    try:
        p = get_pipeline(str(resolve_spec(pipeline)), tuple(set_ or []), str(home()))
        entries = p.ledger.window(window) if window else list(p.ledger.entries())
    except HeadwaterError as exc:
        fail(exc)
    if fmt == "json":
        for e in entries:
            line = {**e.batch.to_json(), "status": e.status, "summary": e.summary}
            sys.stdout.write(json.dumps(line) + "\n")
        return
    if not entries:
        where = f" in window {window}" if window else ""
        out.print(
            f"pipeline [bold]{p.name}[/]: no batches recorded{where} yet. headwater run "
            f"{p.name} (or a stream worker, or the sensor) cuts them from new input."
        )
        return
    table = Table(title=f"batches of {p.name}")
    for col in ("window", "batch", "status", "records", "quarantined", "coordinates"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            e.batch.window,
            e.batch.id,
            e.status,
            str(e.batch.records),
            str(e.summary.get("quarantined", "")),
            Text(p.source.describe(e.batch.coordinates)),  # file names are not markup
        )
    out.print(table)


@app.command()
def produce(
    folder: Annotated[
        Path, typer.Argument(help="Folder of message files (one per message), or one file.")
    ],
    topic: Annotated[str, typer.Argument(help="Topic to send them to (must exist).")],
    bootstrap_servers: Annotated[
        str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka host:port list.")
    ] = "127.0.0.1:9092",
    pattern: Annotated[str, typer.Option(help="Glob of files under the folder.")] = "**/*",
    repeat: Annotated[int, typer.Option(help="Send the folder this many times.")] = 1,
    rate: Annotated[
        float, typer.Option(help="Messages per second; 0 = as fast as possible.")
    ] = 0.0,
    timeout: Annotated[float, typer.Option(help="Seconds a message may wait for delivery.")] = 30.0,
    csv_rows: Annotated[
        str | None,
        typer.Option(
            help="Send each row of CSV files as a JSON message, keyed by this column "
            "(HOTS's container_usage.csv: container_id)."
        ),
    ] = None,
) -> None:
    """Load a folder of messages into a topic, keyed by file name, with a progress bar."""
    from headwater.produce import csv_rows as rows_of
    from headwater.produce import message_files, produce_files, produce_messages

    try:
        files = [folder] if folder.is_file() else message_files(folder, pattern)
        config = {"message.timeout.ms": str(int(timeout * 1000))}
        rows = rows_of(files, csv_rows) * repeat if csv_rows is not None else None
        started = time.perf_counter()
        with progress_bar() as progress:
            task = progress.add_task(f"to {topic}", total=len(rows or files * repeat))

            def advance(n: int) -> None:
                progress.advance(task, n)

            if rows is not None:
                sent = produce_messages(rows, topic, bootstrap_servers, rate, advance, config)
            else:
                sent = produce_files(
                    files,
                    topic,
                    bootstrap_servers,
                    repeat=repeat,
                    rate=rate,
                    on_sent=advance,
                    config=config,
                )
    except HeadwaterError as exc:
        fail(exc)
    seconds = time.perf_counter() - started
    out.print(
        f"{sent} messages to {topic} on {bootstrap_servers} in {seconds:.2f}s "
        f"({sent / seconds if seconds else 0:,.0f}/s)"
    )


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Web UI port.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Start the Dagster web UI and daemon on this project (dagster dev)."""
    from headwater.ports import cannot_listen
    from headwater.runner import dagster_home

    root = home()
    # dagster dev's web server, refused the port, logs it and stays up serving nothing
    busy = cannot_listen(host, port)
    if busy:
        fail(
            HeadwaterError(
                f"headwater ui: cannot listen on {host}:{port} ({busy}); another headwater ui "
                "or dagster dev may hold it. Stop it, or pass another --port."
            )
        )
    if not os.environ.get("DAGSTER_HOME"):
        # the instance `headwater run` uses (see runner.dagster_instance): without
        # DAGSTER_HOME, dagster dev announces a temporary instance "removed when dagster dev
        # exits" and makes a folder for it, though the runs land in the project's .dagster/
        os.environ["DAGSTER_HOME"] = str(dagster_home(root))
    cmd = [
        sys.executable,
        # `dagster dev` says it is superseded by `dg dev`, another package: not the user's call
        "-W",
        "ignore:Function `dev_command` is superseded",
        "-m",
        "dagster",
        "dev",
        "-w",
        str(root / "workspace.yaml"),
        "-p",
        str(port),
        "-h",
        host,
    ]
    out.print(f"Dagster UI on http://{host}:{port} (Ctrl-C stops it)")
    os.chdir(root)
    # dagster dev stops on SIGTERM by handing it to SIGINT's handler; a shell starts a
    # background job with SIGINT ignored, and that survives exec: `kill PID` (a process
    # manager's stop) would then be ignored too
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # become `dagster dev` so that signals (Ctrl-C, SIGTERM) reach it directly
    os.execv(sys.executable, cmd)


def main() -> None:
    show_client_lines()
    app()
