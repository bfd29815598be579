"""The stream assets of one pipeline, as one multi-asset.

Every stream (and the quarantine) is an asset partitioned by time window. One run decodes a
batch once and materializes all streams of the pipeline from it. The run config names the
batches (their ids in the window's ledger); with none named, the run replays every batch
recorded in its window — so re-materializing a window from the UI replays exactly its batches.
"""

# no `from __future__ import annotations`: Dagster reads these annotations at runtime

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Backoff,
    Config,
    DailyPartitionsDefinition,
    Failure,
    HourlyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    TimeWindowPartitionsDefinition,
    multi_asset,
)
from pydantic import Field

from headwater.assets.catalogs import catalog_key, catalogs_used
from headwater.batch import Batch, batch_id_for
from headwater.errors import HeadwaterError
from headwater.lake import QUARANTINE
from headwater.pipeline import BatchReport, Pipeline
from headwater.resources.project import HeadwaterProject
from headwater.spec.load import LoadedSpec


class BatchRunConfig(Config):
    """Which batches of the partition's window to run."""

    batch_ids: list[str] = Field(
        default_factory=list,
        description="Batch ids recorded in this window's ledger; empty = every batch of it.",
    )
    batches: dict[str, str] = Field(
        default_factory=dict,
        description="Each batch id's record (JSON: coordinates, window, records) as it was cut; "
        "re-recorded if the ledger lost it, checked against the ledger otherwise.",
    )
    overrides: list[str] = Field(
        default_factory=list, description="Spec overrides KEY.PATH=VALUE used for this run."
    )


def partitions_for(spec: LoadedSpec) -> TimeWindowPartitionsDefinition:
    p = spec.model.partitions
    start = p.start.isoformat()
    if p.cadence == "hourly":
        # end_offset=1: the window in progress exists, so batches cut now have a partition
        return HourlyPartitionsDefinition(start_date=f"{start}-00:00", end_offset=1)
    return DailyPartitionsDefinition(start_date=start, end_offset=1)


def op_name(spec: LoadedSpec) -> str:
    return f"{spec.name}__streams"


def asset_key(spec: LoadedSpec, stream: str) -> AssetKey:
    return AssetKey([spec.name, stream])


def build_stream_assets(spec: LoadedSpec):
    partitions = partitions_for(spec)
    specs = [
        AssetSpec(
            asset_key(spec, s.name),
            deps=([asset_key(spec, s.parent)] if s.parent else [])
            + [catalog_key(spec, c) for c in catalogs_used(spec, s.name)],
            description=s.description or f"Stream {s.name} of pipeline {spec.name}.",
            group_name=spec.name,
            kinds={k.name for k in s.sinks if k.name in ("parquet", "duckdb")} or None,
            partitions_def=partitions,
        )
        for s in spec.streams
    ]
    specs.append(
        AssetSpec(
            asset_key(spec, QUARANTINE),
            group_name=spec.name,
            description="Inputs that could not be read, decoded or processed.",
            partitions_def=partitions,
            kinds={"parquet"},
        )
    )
    spec_file = str(spec.file)

    retries = spec.model.retries

    @multi_asset(
        name=op_name(spec),
        specs=specs,
        partitions_def=partitions,
        can_subset=False,
        description=spec.model.description or None,
        retry_policy=RetryPolicy(
            max_retries=retries.max_retries,
            delay=retries.delay_seconds,
            backoff=Backoff.EXPONENTIAL,
        ),
    )
    def _streams(
        context: AssetExecutionContext, config: BatchRunConfig, headwater: HeadwaterProject
    ):
        pipeline = headwater.pipeline(spec_file, tuple(config.overrides))
        pipeline.warm(wait=False)  # a decoder's helpers, if it has any, start while it reads
        try:
            batches = [
                batch_for(pipeline, context.partition_key, b, config.batches.get(b))
                for b in config.batch_ids
            ]
            reports = run_window(context, pipeline, context.partition_key, batches)
        except HeadwaterError as exc:
            if exc.transient:
                raise  # the retry policy runs the batch again, from the same coordinates
            raise Failure(description=str(exc), allow_retries=False) from exc
        yield from materializations(spec, reports)

    return _streams


def batch_for(pipeline: Pipeline, window: str, batch_id: str, record: str | None) -> Batch:
    """The batch as recorded in the ledger; from the run config if the ledger lost it."""
    if record is None:
        return pipeline.ledger.get(window, batch_id).batch
    given = Batch.from_json(json.loads(record))
    if (
        given.id != batch_id
        or given.window != window
        or batch_id_for(pipeline.name, given.source, given.coordinates) != batch_id
    ):
        raise Failure(
            description=f"run config: batch {batch_id}'s record does not match its id; "
            "re-execute the batch from its original run or by id alone",
            allow_retries=False,
        )
    return pipeline.ledger.record(given).batch  # the recorded one if the ledger has it


def run_window(
    context: AssetExecutionContext, pipeline: Pipeline, window: str, batches: list[Batch]
) -> list[BatchReport]:
    batches = batches or [e.batch for e in pipeline.ledger.window(window)]
    reports = []
    for batch in batches:
        context.log.info(f"batch {batch.id}: {pipeline.source.describe(batch.coordinates)}")
        reports.append(pipeline.run(batch))
    if not batches:
        context.log.info(f"window {window} has no recorded batches: nothing to do")
    return reports


def materializations(spec: LoadedSpec, reports: list[BatchReport]):
    for key, metadata in asset_metadata(spec, reports):
        yield MaterializeResult(asset_key=key, metadata=metadata)


def asset_metadata(
    spec: LoadedSpec, reports: list[BatchReport]
) -> Iterator[tuple[AssetKey, dict[str, Any]]]:
    """Each asset of the pipeline (its streams, then the quarantine) with the metadata of
    its materialization by these batches: a run's, or the stream worker's asset events."""
    batches = _batch_meta(reports)
    for s in spec.streams:
        rows_in = sum(r.streams[s.name].rows_in for r in reports)
        rows_out = sum(r.streams[s.name].rows_out for r in reports)
        seconds = sum(r.seconds for r in reports)
        paths = [r.streams[s.name].outputs.get("parquet", {}).get("path") for r in reports]
        meta: dict[str, Any] = {
            **batches,
            "rows_in": rows_in,
            "rows_out": rows_out,
            "rows_quarantined": sum(r.streams[s.name].quarantined for r in reports),
            "seconds": round(seconds, 3),
            "rows_per_second": round(rows_in / seconds, 1) if seconds else 0.0,
        }
        meta.update(_processor_meta([r.streams[s.name].metadata for r in reports]))
        if paths and paths[0]:
            meta["path"] = (
                MetadataValue.path(paths[0]) if len(paths) == 1 else MetadataValue.json(paths)
            )
        yield asset_key(spec, s.name), meta
    q_paths = [r.quarantine_path for r in reports if r.quarantine_path]
    yield (
        asset_key(spec, QUARANTINE),
        {
            **batches,
            "rows_quarantined": sum(r.quarantined for r in reports),
            "decode_fallback_groups": sum(
                r.decode_stats.get("fallback_groups", 0) for r in reports
            ),
            "paths": MetadataValue.json(q_paths),
        },
    )


def _processor_meta(per_batch: list[dict[str, Any]]) -> dict[str, Any]:
    """What the stream's processors reported: as is for one batch, else a list per batch."""
    per_batch = [m for m in per_batch if m]
    if len(per_batch) != 1:
        return {"processors": MetadataValue.json(per_batch)} if per_batch else {}
    out: dict[str, Any] = {}
    for key, value in per_batch[0].items():
        if key == "heatmap":
            out[key] = MetadataValue.path(value)
            out["heatmap_image"] = MetadataValue.md(_inline_png(value))
        elif isinstance(value, dict | list):
            out[key] = MetadataValue.json(value)
        else:
            out[key] = value
    return out


def _inline_png(path: str) -> str:
    """The PNG as Markdown the web UI shows inline (a data URI: no file server needed)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![host load before and after the moves](data:image/png;base64,{data})"


#: Coordinates longer than this (as JSON) are summarised in the metadata: a batch of 5,000
#: files' ranges, stored with each of the pipeline's assets, cost more than the events
#: themselves. The ledger keeps them whole (``headwater batches``).
COORDINATES_SHOWN = 4_000


def _batch_meta(reports: list[BatchReport]) -> dict[str, Any]:
    if len(reports) == 1:
        b = reports[0].batch
        text = json.dumps(b.coordinates)
        if len(text) <= COORDINATES_SHOWN:
            return {"batch_id": b.id, "coordinates": MetadataValue.json(b.coordinates)}
        return {
            "batch_id": b.id,
            "coordinates": MetadataValue.text(
                f"{text[:COORDINATES_SHOWN]}… ({len(text):,} characters; all of it: "
                f"headwater batches {b.pipeline} --format json)"
            ),
        }
    return {"batch_ids": MetadataValue.json([r.batch.id for r in reports]), "batches": len(reports)}
