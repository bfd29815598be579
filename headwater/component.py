"""What every component (source, decoder, processor, sink) shares: its config model and context.

A component is one class with a nested ``Config`` model (the single source of truth for
parsing, defaults and docs) and a constructor taking that config and a :class:`Context`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from headwater.config import ComponentConfig
from headwater.kafka.connection import KafkaConnection
from headwater.lake import Lake


@dataclass(frozen=True)
class Context:
    """Where a component lives: its pipeline, its key path in the spec, the lake, and the
    pipeline's Kafka connection (used by Kafka sources and sinks)."""

    pipeline: str
    where: str
    base_dir: Path
    lake: Lake
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    catalogs: Any = None  # the pipeline's CatalogStore (crossmatch processors use it)
    #: Whether the pipeline's source cuts its batches on tick boundaries (the usage source's
    #: windows): a placement model then never sees part of a tick (see Source.whole_ticks).
    whole_ticks: bool = False

    def path(self, value: str | Path) -> Path:
        """A path from the spec, resolved against the project's base directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


class Component:
    """Base of all components.

    ``shorthand`` names the config key that a scalar spec value fills, so that
    ``- sql: "select …"`` means ``- sql: {query: "select …"}``.
    """

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    shorthand: ClassVar[str | None] = None

    def __init__(self, config: Any, ctx: Context):
        self.config = config
        self.ctx = ctx

    @classmethod
    def input_files(cls, config: Any) -> dict[str, str]:
        """Files or folders this component reads, by config key: checked when the spec is
        loaded (relative to the project root), not when the first batch needs them."""
        return {}

    @classmethod
    def config_input(cls, value: Any) -> dict[str, Any]:
        """Normalise the raw YAML value given for this component into a config mapping."""
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        if cls.shorthand is not None:
            return {cls.shorthand: value}
        raise ValueError(f"expected a mapping of settings, got {type(value).__name__} {value!r}")
