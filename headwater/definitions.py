"""The one Dagster entry point: every spec in ``pipelines/`` becomes assets, a job and a sensor.

``dagster dev`` (via workspace.yaml) and ``headwater ui`` load this module; importing it loads
every spec. Code that needs one pipeline imports :mod:`headwater.assets.definitions`.
"""

from __future__ import annotations

from headwater.assets.definitions import build_definitions, job_name, pipeline_definitions

__all__ = ["build_definitions", "defs", "job_name", "pipeline_definitions"]

defs = build_definitions()
