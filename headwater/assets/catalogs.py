"""Catalogs as Dagster assets: each catalog of a spec, validated and stored in the lake.

Materializing ``<pipeline>/catalogs/<name>`` checks every row of the catalog's file and
writes the validated table, in the matcher's order, to ``<lake>/<pipeline>/_catalogs/``; a
catalog with bad rows fails the materialization with the report. The streams whose
crossmatch processors use a catalog depend on its asset, so the lineage shows in the UI.
"""

# no `from __future__ import annotations`: Dagster reads these annotations at runtime

from dagster import AssetExecutionContext, AssetKey, Failure, MaterializeResult, asset

from headwater.errors import HeadwaterError
from headwater.resources import HeadwaterProject
from headwater.spec.load import LoadedSpec


def catalog_key(spec: LoadedSpec, name: str) -> AssetKey:
    return AssetKey([spec.name, "catalogs", name])


def catalogs_used(spec: LoadedSpec, stream: str) -> list[str]:
    """The catalogs the stream's processors match against."""
    plan = spec.stream(stream)
    names = (getattr(p.config, "catalog", None) for p in plan.processors)
    return sorted({n for n in names if n in spec.model.catalogs})


def build_catalog_assets(spec: LoadedSpec) -> list:
    spec_file = str(spec.file)

    def one(name: str):
        declared = spec.model.catalogs[name]

        @asset(
            key=catalog_key(spec, name),
            group_name=spec.name,
            kinds={"parquet"},
            description=f"Catalog {name} ({declared.path}), validated, in match order.",
        )
        def _catalog(context: AssetExecutionContext, headwater: HeadwaterProject):
            pipeline = headwater.pipeline(spec_file)
            try:
                meta = pipeline.catalogs.materialize(name)
            except HeadwaterError as exc:
                raise Failure(description=str(exc), allow_retries=False) from exc
            context.log.info(f"catalog {name}: {meta['rows']} rows validated, {meta['path']}")
            return MaterializeResult(metadata=meta)

        return _catalog

    return [one(name) for name in spec.model.catalogs]
