"""Where Confluent-framed messages find their writer schema: a local folder or a registry.

A local folder maps a schema id to a file through a pattern. ``{id}`` is the id itself;
``{major}``/``{minor}`` split it the way Rubin registers versions (id = major*100 + minor), so
``{major}/{minor}/lsst.v{major}_{minor}.alert.avsc`` finds Rubin's official schema folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastavro
from pydantic import Field

from headwater.config import ComponentConfig, Secret
from headwater.errors import DecodeError, HeadwaterError


class LocalSchemasConfig(ComponentConfig):
    path: str = Field(description="Folder holding the .avsc files.")
    pattern: str = Field(
        default="{id}.avsc",
        description="File of a schema id, relative to path; placeholders {id}, {major}, {minor}.",
    )


class RegistryConfig(ComponentConfig):
    url: str = Field(description="Schema Registry URL, e.g. http://localhost:8081.")
    basic_auth: Secret | None = Field(
        default=None, description="'user:password' for HTTP basic auth, from an env var."
    )


class LocalSchemas:
    """Schemas by id from a folder, named sub-schemas resolved from the same folder."""

    def __init__(self, root: Path, pattern: str):
        self.root = root
        self.pattern = pattern

    def file_for(self, schema_id: int) -> Path:
        return self.root / self.pattern.format(
            id=schema_id, major=schema_id // 100, minor=schema_id % 100
        )

    def get(self, schema_id: int) -> Any:
        path = self.file_for(schema_id)
        if not path.is_file():
            raise DecodeError(
                f"unknown schema id {schema_id}: no file {path} "
                f"(schemas folder {self.root}, pattern {self.pattern!r})"
            )
        try:
            return fastavro.schema.load_schema(str(path))
        except Exception as exc:
            raise DecodeError(f"schema id {schema_id}: cannot load {path}: {exc}") from exc


class RegistrySchemas:
    """Schemas by id from a Confluent Schema Registry (confluent-kafka's client)."""

    def __init__(self, config: RegistryConfig):
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ImportError as exc:  # the registry client's own dependencies are missing
            raise HeadwaterError(
                f"the schema registry client cannot be imported ({exc}); reinstall headwater "
                "so that confluent-kafka[schemaregistry] is complete: pip install -e ."
            ) from exc
        conf: dict[str, str] = {"url": config.url}
        if config.basic_auth is not None:
            conf["basic.auth.user.info"] = config.basic_auth.resolve()
        self._client = SchemaRegistryClient(conf)
        self.url = config.url

    def get(self, schema_id: int) -> Any:
        try:
            schema = self._client.get_schema(schema_id)
        except Exception as exc:
            raise DecodeError(
                f"unknown schema id {schema_id}: the registry at {self.url} answered: {exc}"
            ) from exc
        return fastavro.parse_schema(json.loads(schema.schema_str))
