"""What every ``headwater`` command shares: the app, consoles, spec lookup, errors, bars."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from headwater.errors import HeadwaterError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="headwater: event streams into data assets, on Dagster.",
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec value for this run: KEY.PATH=VALUE (repeatable)."),
]


def home() -> Path:
    return Path(os.environ.get("HEADWATER_HOME") or Path.cwd()).resolve()


def resolve_spec(pipeline: str) -> Path:
    """A spec path as given, or a pipeline name looked up in ``<root>/pipelines``."""
    p = Path(pipeline)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p.resolve()
    for suffix in (".yaml", ".yml"):
        candidate = home() / "pipelines" / f"{pipeline}{suffix}"
        if candidate.exists():
            return candidate
    raise HeadwaterError(
        f"no pipeline {pipeline!r}: not a file, and no pipelines/{pipeline}.yaml under {home()}"
    )


def fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def now() -> str:
    """The time a long-running command's lines start with."""
    return dt.datetime.now().strftime("%H:%M:%S")


class _ClientLines(logging.Handler):
    """The Kafka clients' own lines on stderr, timed and named like the commands' own."""

    def emit(self, record: logging.LogRecord) -> None:
        if _in_a_dagster_run(logging.getLogger(record.name)):
            return  # the run's own console logger prints it, with the run and step
        try:
            line = escape(record.getMessage())  # librdkafka's [client] [thread] are not markup
            err.print(f"{now()} [yellow]kafka client:[/] {line}", highlight=False)
        except Exception:  # logging must not fail the command
            self.handleError(record)


def _in_a_dagster_run(logger: logging.Logger) -> bool:
    """A Dagster run in this process is capturing the logger (``python_logs``)."""
    return any(type(h).__module__.startswith("dagster") for h in logger.handlers)


def show_client_lines() -> None:
    """Print the Kafka clients' lines (``headwater.kafka.client``, warnings and up; each
    distinct one once a minute) through the command's console, once per process."""
    from headwater.kafka.client_log import client_logger

    logger = client_logger()
    if not any(isinstance(h, _ClientLines) for h in logger.handlers):
        handler = _ClientLines(logging.WARNING)
        logger.addHandler(handler)


def progress_bar() -> Progress:
    """A bar with a count and the elapsed time, on stderr, cleared when done."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=err, transient=True)


def short(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


GroupOption = Annotated[
    int | None,
    typer.Option(
        "--partition-group",
        help="Kafka source: cut and run only this partition group's batches (one process "
        "per group runs them in parallel).",
    ),
]


def with_group(spec_file: Path, overrides: list[str], group: int | None) -> list[str]:
    """The overrides, plus the one that restricts a Kafka source to ``group``."""
    if group is None:
        return overrides
    from headwater.spec import load_spec, parse_overrides

    spec = load_spec(spec_file, parse_overrides(overrides), base_dir=home())
    if spec.source.name != "kafka":
        raise HeadwaterError(
            f"--partition-group applies to a kafka source; {spec_file} reads {spec.source.name}"
        )
    return [*overrides, f"source.kafka.only_group={group}"]
