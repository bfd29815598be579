"""A plugin reference in a component's settings — ``balance`` or ``{balance: {settings}}`` —
resolved through the registry and validated with the plugin's own config model at load."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ValidationError

from headwater import registry
from headwater.errors import ComponentNotFoundError


def resolve(kind: str, value: Any) -> tuple[str, Any]:
    """``(name, validated config)``; raises ValueError naming what was expected."""
    name, settings = registry.split_reference(kind, value)
    try:
        cls = registry.lookup(kind, name)
    except ComponentNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    try:
        return name, cls.Config.model_validate(cls.config_input(settings))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{name}: {where + ': ' if where else ''}{first['msg']}") from exc


def build(kind: str, name: str, config: Any, ctx: Any) -> Any:
    return registry.lookup(kind, name)(config, ctx)


def reference(kind: str) -> Any:
    """The type of a config field naming a plugin of ``kind``: checked at load, held as
    ``(name, validated config)``."""
    return Annotated[Any, AfterValidator(lambda value: resolve(kind, value))]
