"""Definitions from specs: each spec becomes its assets, a job and a sensor.

:mod:`headwater.definitions` builds them for every spec in ``pipelines/`` when Dagster loads
it; the CLI builds them for the one spec it runs, so another spec's mistake never stops it.
This module only wires; the factories in :mod:`headwater.assets` and
:mod:`headwater.sensors` build the pieces.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from headwater.assets import build_stream_assets
from headwater.assets.catalogs import build_catalog_assets
from headwater.resources import HeadwaterProject
from headwater.resources.kafka import KafkaResource
from headwater.resources.project import project_root
from headwater.sensors import build_batch_sensor
from headwater.spec import load_spec
from headwater.spec.load import LoadedSpec


def job_name(spec: LoadedSpec) -> str:
    return f"{spec.name}_job"


def pipeline_definitions(spec: LoadedSpec) -> Definitions:
    assets = build_stream_assets(spec)
    # in-process: a multiprocess run costs seconds of start-up per batch
    job = define_asset_job(
        job_name(spec),
        selection=AssetSelection.assets(assets),  # partitioned as its assets are
        executor_def=in_process_executor,
    )
    catalogs = build_catalog_assets(spec)  # materialized on their own, not by the batch job
    return Definitions(
        assets=[assets, *catalogs], jobs=[job], sensors=[build_batch_sensor(spec, job)]
    )


def spec_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def project_resource(base: Path) -> HeadwaterProject:
    """The project resource. Its Kafka resource is empty, so each spec's ``kafka:`` block
    rules; the launchpad or a deployment's own definitions can point it elsewhere."""
    return HeadwaterProject(root=str(base), kafka=KafkaResource())


def build_definitions(specs: list[Path] | None = None, root: str = "") -> Definitions:
    base = project_root(root)
    if specs is None:
        folder = Path(os.environ.get("HEADWATER_PIPELINES") or base / "pipelines")
        specs = spec_files(folder)
    loaded = [load_spec(f, base_dir=base) for f in specs]
    return Definitions.merge(  # one resource shared by every pipeline
        *(pipeline_definitions(s) for s in loaded),
        Definitions(resources={"headwater": project_resource(base)}),
    )
