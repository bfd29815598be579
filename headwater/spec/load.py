"""Load a pipeline spec: parse YAML, apply overrides, validate everything, report all problems.

The whole spec is checked before any data is read. Each problem names the file, the line,
the key path and what was expected::

    pipelines/ztf.yaml:14: streams.extragalactic.processors[1].sql.query: only a SELECT over
    `batch` is allowed, got a COPY statement
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from headwater import registry
from headwater.errors import ComponentNotFoundError, SpecError
from headwater.lake import QUARANTINE
from headwater.spec.model import NAME_PATTERN, ComponentSpec, PipelineSpec

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class StreamPlan:
    name: str
    parent: str | None
    processors: list[ComponentSpec]
    sinks: list[ComponentSpec]
    description: str = ""


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec: the model plus resolved components, streams in dependency order."""

    file: Path
    base_dir: Path
    model: PipelineSpec
    source: ComponentSpec
    decode: ComponentSpec
    streams: list[StreamPlan]

    @property
    def name(self) -> str:
        return self.model.name

    def stream(self, name: str) -> StreamPlan:
        return next(s for s in self.streams if s.name == name)


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


#: libyaml's loader where PyYAML was built with it: parsing a spec is most of loading one.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(text: str) -> tuple[Any, dict[Path_, int]]:
    """The YAML document and the line (1-based) of every key and list item, parsed once."""
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return data, _line_map(root)


def _line_map(root: yaml.Node | None) -> dict[Path_, int]:
    """Line (1-based) of every key and list item of a composed YAML document."""
    lines: dict[Path_, int] = {}

    def walk(node: yaml.Node, path: Path_) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, key.value)
                walk(value, sub)
                lines[sub] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


class _Problems:
    def __init__(self, file: str, lines: dict[Path_, int]):
        self.file = file
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: Path_, message: str) -> None:
        probe = tuple(path)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe, 1)
        self.items.append(f"{self.file}:{line}: {format_path(path)}: {message}")

    def from_validation(self, prefix: Path_, exc: ValidationError, model: type[BaseModel]) -> None:
        for err in exc.errors():
            loc = tuple(x for x in err["loc"] if not str(x).startswith("function-"))
            self.add((*prefix, *loc), _explain(err, model, loc))


def _explain(err: dict[str, Any], model: type[BaseModel], loc: Path_) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        return (
            f"unknown key {loc[-1]!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; expected one of: {', '.join(allowed)}"
        )
    if kind == "missing":
        return "required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    got = repr(err.get("input"))
    return f"{msg}; got {got[:80] + '…' if len(got) > 80 else got}"


def _allowed_keys(model: Any, loc: Path_) -> list[str]:
    """The keys a model accepts at ``loc`` (for 'did you mean' on unknown keys)."""
    for part in loc:
        model = _field_model(model, part)
        if model is None:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _field_model(model: Any, part: str | int) -> Any:
    if isinstance(model, _Items):  # a dict key or list index: step into the value type
        return _unwrap(model.of)
    if isinstance(model, type) and issubclass(model, BaseModel):
        for name, f in model.model_fields.items():
            if part in (name, f.alias):
                return _unwrap(f.annotation)
    return None


@dataclass(frozen=True)
class _Items:
    of: Any


def _unwrap(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (dict, list) and args:
        return _Items(args[-1])
    if args and all(isinstance(a, type) for a in args):
        models = [a for a in args if issubclass(a, BaseModel)]
        return models[0] if models else None
    return annotation


def parse_component(
    kind: str, value: Any, path: Path_, problems: _Problems
) -> ComponentSpec | None:
    """Resolve one component reference and validate its settings with its own model."""
    try:
        name, settings = registry.split_reference(kind, value)
    except ValueError as exc:
        problems.add(path, str(exc))
        return None
    try:
        cls = registry.lookup(kind, name)
    except ComponentNotFoundError as exc:
        problems.add(path, str(exc))
        return None
    here = (*path, name)
    try:
        raw = cls.config_input(settings)
    except ValueError as exc:
        problems.add(here, str(exc))
        return None
    try:
        config = cls.Config.model_validate(raw)
    except ValidationError as exc:
        problems.from_validation(here, exc, cls.Config)
        return None
    return ComponentSpec(name=name, config=config, where=format_path(here))


def parse_overrides(items: list[str]) -> list[tuple[Path_, Any]]:
    """``a.b[1].c=VALUE`` strings to (path, YAML-parsed value) pairs."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError("--set", [f"{item!r}: expected KEY.PATH=VALUE"])
        path: list[str | int] = []
        for token in re.findall(r"[^.\[\]]+|\[\d+\]", key):
            path.append(int(token[1:-1]) if token.startswith("[") else token)
        out.append((tuple(path), yaml.safe_load(value) if value else ""))
    return out


def _apply(data: Any, path: Path_, value: Any, file: str) -> None:
    node = data
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise SpecError(file, [f"--set {format_path(path)}: no list item [{part}] there"])
        elif not isinstance(node, dict):
            raise SpecError(
                file, [f"--set {format_path(path)}: {format_path(path[:i])} is not a mapping"]
            )
        if last:
            node[part] = value
        else:
            if isinstance(part, str) and not isinstance(node.get(part), dict | list):
                node[part] = {}
            node = node[part]


def load_spec(
    file: str | Path, overrides: list[tuple[Path_, Any]] | None = None, base_dir: Path | None = None
) -> LoadedSpec:
    """Read, override and validate a spec; :class:`SpecError` lists every problem found."""
    file = Path(file)
    shown = str(file)
    try:
        text = file.read_text()
    except OSError as exc:
        raise SpecError(shown, [f"cannot read the file: {exc.strerror}"]) from exc
    try:
        data, lines = _parse(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark else shown
        raise SpecError(
            shown, [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]
        ) from exc
    if not isinstance(data, dict):
        raise SpecError(
            shown,
            [
                f"{shown}:1: expected a mapping with name, source, decode, "
                f"streams; got {type(data).__name__}"
            ],
        )
    for path, value in overrides or []:
        _apply(data, path, value, shown)
    problems = _Problems(shown, lines)
    try:
        model = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        problems.from_validation((), exc, PipelineSpec)
        raise SpecError(shown, problems.items) from None
    source = parse_component("sources", model.source, ("source",), problems)
    decode = parse_component("decoders", model.decode, ("decode",), problems)
    base = (base_dir or Path.cwd()).resolve()
    streams = _streams(model, problems, base)
    _check_input_files("sources", source, ("source",), base, problems)
    _check_closed_loop(source, streams, problems)
    _check_catalog_files(model, base, problems)
    if problems.items:
        raise SpecError(shown, problems.items)
    return LoadedSpec(
        file=file,
        base_dir=(base_dir or Path.cwd()).resolve(),
        model=model,
        source=source,
        decode=decode,
        streams=streams,
    )


def _streams(model: PipelineSpec, problems: _Problems, base: Path) -> list[StreamPlan]:
    plans: dict[str, StreamPlan] = {}
    for name, stream in model.streams.items():
        here = ("streams", name)
        if not re.match(NAME_PATTERN, name) or name.startswith("_"):
            problems.add(
                here,
                f"stream name {name!r} must be an identifier not starting "
                f"with '_' ({QUARANTINE} is reserved)",
            )
        if stream.from_ is not None and stream.from_ not in model.streams:
            problems.add(
                (*here, "from"),
                f"unknown stream {stream.from_!r}; streams: {', '.join(model.streams)}",
            )
        processors = [
            parse_component("processors", p, (*here, "processors", i), problems)
            for i, p in enumerate(stream.processors)
        ]
        sinks = [
            parse_component("sinks", s, (*here, "sinks", i), problems)
            for i, s in enumerate(stream.sinks)
        ]
        _check_sinks(sinks, here, problems)
        _check_catalogs(processors, model, here, problems)
        for i, p in enumerate(processors):
            _check_input_files("processors", p, (*here, "processors", i), base, problems)
        plans[name] = StreamPlan(
            name,
            stream.from_,
            [p for p in processors if p],
            [s for s in sinks if s],
            stream.description,
        )
    return _in_dependency_order(plans, problems)


def _check_closed_loop(
    source: ComponentSpec | None, streams: list[StreamPlan], problems: _Problems
) -> None:
    """A closed loop (a placement model reading what the last batch applied) runs its
    batches one after another: a source whose groups of batches run in parallel cannot feed
    it."""
    if source is None:
        return
    key, groups = registry.lookup("sources", source.name).parallel_groups(source.config)
    if groups <= 1:
        return
    loop = next(
        (
            p
            for s in streams
            for p in s.processors
            if registry.lookup("processors", p.name).closed_loop
        ),
        None,
    )
    if loop is not None:
        problems.add(
            ("source", source.name, key),
            f"{groups} groups of batches would run in parallel, but {loop.where} runs a closed "
            "loop: each batch reads what the one before it applied, so they run one at a "
            f"time. Set {key}: 1 (or leave it out).",
        )


def _check_input_files(
    kind: str, spec: ComponentSpec | None, here: Path_, base: Path, problems: _Problems
) -> None:
    """The files a component says it reads (``input_files``) are there."""
    if spec is None:
        return
    wanted = registry.lookup(kind, spec.name).input_files(spec.config)
    for key, value in wanted.items():
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.exists():
            problems.add(
                (*here, spec.name, key),
                f"no such file or folder {path} (a relative path is relative to the project root)",
            )


def _check_catalog_files(model: PipelineSpec, base: Path, problems: _Problems) -> None:
    """Every catalog's file is there: found now, not when the first batch needs it."""
    for name, catalog in model.catalogs.items():
        path = Path(catalog.path).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            problems.add(
                ("catalogs", name, "path"),
                f"no such file {path}; expected the catalog's Parquet, CSV, FITS or VOTable "
                "file (a relative path is relative to the project root)",
            )


def _check_catalogs(
    processors: list[ComponentSpec | None], model: PipelineSpec, here: Path_, problems: _Problems
) -> None:
    """A processor naming a catalog (crossmatch) names one the spec declares."""
    for i, p in enumerate(processors):
        name = getattr(p.config, "catalog", None) if p else None
        if name is not None and name not in model.catalogs:
            known = ", ".join(model.catalogs) or "none declared"
            problems.add(
                (*here, "processors", i, p.name, "catalog"),
                f"unknown catalog {name!r}; expected one of the spec's catalogs: ({known})",
            )


def _check_sinks(sinks: list[ComponentSpec | None], here: Path_, problems: _Problems) -> None:
    seen: list[str] = []
    for i, sink in enumerate(sinks):
        if sink is None:
            continue
        needs = getattr(registry.lookup("sinks", sink.name), "requires", ())
        for need in needs:
            if need not in seen:
                problems.add(
                    (*here, "sinks", i),
                    f"sink {sink.name!r} reads what {need!r} writes: list {need!r} before it",
                )
        seen.append(sink.name)


def _in_dependency_order(plans: dict[str, StreamPlan], problems: _Problems) -> list[StreamPlan]:
    ordered: list[StreamPlan] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == "done" or name not in plans:
            return
        if state.get(name) == "visiting":
            problems.add(
                ("streams", name, "from"), "streams form a cycle: " + " -> ".join([*chain, name])
            )
            return
        state[name] = "visiting"
        parent = plans[name].parent
        if parent is not None:
            visit(parent, [*chain, name])
        state[name] = "done"
        ordered.append(plans[name])

    for name in plans:
        visit(name, [])
    return ordered
