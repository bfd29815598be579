"""``headwater topics apply|list|describe|delete PIPELINE``: the spec's Kafka topics."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from headwater.cli.common import SetOption, err, fail, home, out, resolve_spec
from headwater.errors import HeadwaterError

topics_app = typer.Typer(
    no_args_is_help=True,
    help="Create, inspect and delete the Kafka topics a pipeline declares or uses.",
)

PipelineArg = Annotated[str, typer.Argument(help="Spec file or pipeline name.")]


def _load(pipeline: str, overrides: list[str] | None):
    from headwater.spec import load_spec, parse_overrides

    return load_spec(resolve_spec(pipeline), parse_overrides(overrides or []), base_dir=home())


def used_topics(spec) -> dict[str, str]:
    """Every topic the pipeline names, and its role: declared, source or sink."""
    roles: dict[str, str] = {}
    for name in spec.model.topics:
        roles[name] = "declared"
    source = spec.source.config
    for name in getattr(source, "topics", None) or []:
        roles[name] = roles.get(name, "") + ("+" if name in roles else "") + "source"
    for stream in spec.streams:
        for sink in stream.sinks:
            name = getattr(sink.config, "topic", None)
            if sink.name == "kafka" and name:
                roles[name] = roles.get(name, "") + ("+" if name in roles else "") + "sink"
    return roles


@topics_app.command("apply")
def apply(
    pipeline: PipelineArg,
    dry_run: Annotated[bool, typer.Option(help="Show what would change; change nothing.")] = False,
    set_: SetOption = None,
) -> None:
    """Create missing declared topics; add partitions and set configs on existing ones."""
    from headwater.kafka.topics import Topics

    try:
        spec = _load(pipeline, set_)
        if not spec.model.topics:
            fail(HeadwaterError(f"{spec.file}: no topics: block; nothing to apply"))
        changes = Topics(spec.model.kafka).apply(spec.model.topics, dry_run=dry_run)
    except HeadwaterError as exc:
        fail(exc)
    verb = "would be " if dry_run else ""
    for c in changes:
        colour = {"created": "green", "updated": "yellow", "refused": "red"}.get(c.action, "dim")
        details = f": {'; '.join(c.details)}" if c.details else ""
        out.print(f"[{colour}]{c.topic} {verb}{c.action}[/]{details}", highlight=False)
    if any(c.action == "refused" for c in changes):
        raise typer.Exit(1)


@topics_app.command("list")
def list_(pipeline: PipelineArg, set_: SetOption = None) -> None:
    """The pipeline's topics: role, partitions, messages held, configs set."""
    from headwater.kafka.topics import Topics

    try:
        spec = _load(pipeline, set_)
        roles = used_topics(spec)
        admin = Topics(spec.model.kafka)
        have = admin.existing()
        states = {s.name: s for s in admin.describe([n for n in roles if n in have])}
    except HeadwaterError as exc:
        fail(exc)
    table = Table(title=f"topics of {spec.name} on {spec.model.kafka.describe()}")
    for col in ("topic", "role", "partitions", "replication", "messages", "configs"):
        table.add_column(col)
    for name, role in roles.items():
        s = states.get(name)
        if s is None:
            table.add_row(name, role, "[red]missing[/]", "", "", "")
            continue
        configs = ", ".join(f"{k}={v}" for k, v in sorted(s.configs.items()))
        table.add_row(
            name, role, str(s.partitions), str(s.replication_factor), str(s.messages), configs
        )
    out.print(table)


@topics_app.command("describe")
def describe(
    pipeline: PipelineArg,
    topic: Annotated[str | None, typer.Argument(help="One topic; default all it uses.")] = None,
    set_: SetOption = None,
) -> None:
    """Per partition: start and end offsets, the consumer group's committed offset and lag."""
    from headwater.kafka.topics import Topics

    try:
        spec = _load(pipeline, set_)
        names = [topic] if topic else list(used_topics(spec))
        admin = Topics(spec.model.kafka)
        states = admin.describe(names)
        group = getattr(spec.source.config, "group", None)
        group = spec.model.kafka.group(group) if group else None
        lag = admin.lag(group, names) if group else {}
    except HeadwaterError as exc:
        fail(exc)
    for s in states:
        title = f"{s.name}: {s.partitions} partitions, {s.messages} messages held"
        table = Table(title=title + (f", group {group}" if group else ""))
        for col in ("partition", "start", "end", "committed", "lag"):
            table.add_column(col, justify="right")
        for p, low, high in s.offsets:
            done, _end = lag.get((s.name, p), (-1, high))
            table.add_row(
                str(p),
                str(low),
                str(high),
                str(done) if done >= 0 else "-",
                str(high - (done if done >= 0 else low)),
            )
        out.print(table)
        for k, v in sorted(s.configs.items()):
            out.print(f"  {k} = {v}", highlight=False)


@topics_app.command("delete")
def delete(
    pipeline: PipelineArg,
    topics: Annotated[
        list[str] | None, typer.Argument(help="Topics; default all declared.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete (data is lost).")] = False,
    set_: SetOption = None,
) -> None:
    """Delete declared topics (or the ones named). Needs --yes."""
    from headwater.kafka.topics import Topics

    try:
        spec = _load(pipeline, set_)
        names = topics or list(spec.model.topics)
        unknown = [n for n in names if n not in used_topics(spec)]
        if unknown:
            fail(HeadwaterError(f"{unknown} are not topics of pipeline {spec.name}; not deleted"))
        if not yes:
            err.print(f"would delete {names} and every message in them; add --yes to do it")
            raise typer.Exit(1)
        gone = Topics(spec.model.kafka).delete(names)
    except HeadwaterError as exc:
        fail(exc)
    out.print(f"deleted: {', '.join(gone) or 'nothing (none existed)'}")
