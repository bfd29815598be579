"""``HeadwaterProject``: where the project lives, and the pipelines built from its specs.

A pipeline (its components, its schema caches, its connections) is built once per process
and reused by every batch, keyed by spec file, overrides and the Kafka resource's settings.
"""

# no `from __future__ import annotations`: Dagster reads these annotations at runtime

import json
import os
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource

from headwater.pipeline import Pipeline
from headwater.resources.kafka import KafkaResource
from headwater.spec import load_spec, parse_overrides

_PIPELINES: dict[tuple[str, str, tuple[str, ...], float, str], Pipeline] = {}


def project_root(root: str = "") -> Path:
    """The project root: ``root`` if given, else ``$HEADWATER_HOME``, else the working dir."""
    return Path(root or os.environ.get("HEADWATER_HOME") or Path.cwd()).resolve()


def get_pipeline(
    spec_file: str,
    overrides: tuple[str, ...] = (),
    root: str = "",
    kafka: dict[str, Any] | None = None,
) -> Pipeline:
    """The pipeline of ``spec_file``; ``kafka`` replaces keys of the spec's ``kafka:`` block."""
    base = project_root(root)
    mtime = Path(spec_file).stat().st_mtime  # an edited spec is reloaded
    # no Kafka settings, None or {}, is one key: the CLI and the Dagster op share the pipeline
    key = (str(spec_file), str(base), tuple(overrides), mtime, json.dumps(kafka or None))
    pipeline = _PIPELINES.get(key)
    if pipeline is None:
        spec = load_spec(spec_file, parse_overrides(list(overrides)), base_dir=base)
        connection = spec.model.kafka.merged(**kafka) if kafka else None
        pipeline = _PIPELINES[key] = Pipeline(spec, kafka=connection)
    return pipeline


def release_pipeline(pipeline: Pipeline) -> None:
    """Close ``pipeline`` and forget it: a closed pipeline (its connectors, its read-ahead)
    must not be handed out again, as the next command in the same process would get it."""
    for key, cached in list(_PIPELINES.items()):
        if cached is pipeline:
            del _PIPELINES[key]
    pipeline.close()


def close_pipelines() -> None:
    """Close every cached pipeline's clients (a process about to stop, or a test's broker)."""
    while _PIPELINES:
        _PIPELINES.popitem()[1].close()


class HeadwaterProject(ConfigurableResource):
    """The headwater project: its root folder (relative spec paths resolve there) and the
    Kafka cluster its pipelines use."""

    root: str = ""
    kafka: KafkaResource

    def pipeline(self, spec_file: str, overrides: tuple[str, ...] = ()) -> Pipeline:
        return get_pipeline(spec_file, tuple(overrides), self.root, self.kafka.overrides())
