"""``HeadwaterProject``: where the project lives, and the pipelines built from its specs.

A pipeline (its components, its schema caches, its connections) is built once per process
and reused by every batch, keyed by spec file and overrides.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource

from headwater.pipeline import Pipeline
from headwater.spec import load_spec, parse_overrides

_PIPELINES: dict[tuple[str, str, tuple[str, ...], float], Pipeline] = {}


def project_root(root: str = "") -> Path:
    """The project root: ``root`` if given, else ``$HEADWATER_HOME``, else the working dir."""
    return Path(root or os.environ.get("HEADWATER_HOME") or Path.cwd()).resolve()


def get_pipeline(spec_file: str, overrides: tuple[str, ...] = (), root: str = "") -> Pipeline:
    base = project_root(root)
    mtime = Path(spec_file).stat().st_mtime  # an edited spec is reloaded
    key = (str(spec_file), str(base), tuple(overrides), mtime)
    pipeline = _PIPELINES.get(key)
    if pipeline is None:
        spec = load_spec(spec_file, parse_overrides(list(overrides)), base_dir=base)
        pipeline = _PIPELINES[key] = Pipeline(spec)
    return pipeline


class HeadwaterProject(ConfigurableResource):
    """The headwater project: its root folder (relative spec paths resolve there)."""

    root: str = ""

    def pipeline(self, spec_file: str, overrides: tuple[str, ...] = ()) -> Pipeline:
        return get_pipeline(spec_file, tuple(overrides), self.root)
