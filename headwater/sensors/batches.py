"""The batch sensor: each tick cuts the new input into batches and requests their runs.

Batches are recorded in the ledger before their run is requested, and every pending batch
is requested again on later ticks: the ``run_key`` is the batch id, so Dagster launches each
batch once, and a tick that died between recording and requesting loses nothing.
"""

# no `from __future__ import annotations`: Dagster reads these annotations at runtime

import json

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunConfig,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from headwater.assets.streams import BatchRunConfig, op_name
from headwater.batch import Batch
from headwater.errors import HeadwaterError
from headwater.resources.project import HeadwaterProject
from headwater.spec.load import LoadedSpec
from headwater.worker_lock import WorkerLock

CURSOR_VERSION = 1


def batch_tags(batch: Batch, describe: str, group: str | None = None) -> dict[str, str]:
    """Run tags; ``headwater/partition_group`` lets the run queue keep one run per group."""
    tags = {
        "headwater/pipeline": batch.pipeline,
        "headwater/batch_id": batch.id,
        "headwater/window": batch.window,
        "headwater/records": str(batch.records),
        "headwater/coordinates": describe[:1000],
    }
    if group is not None:
        tags["headwater/partition_group"] = f"{batch.pipeline}:{group}"
    return tags


def batch_run_config(batch: Batch, overrides: list[str] | None = None) -> BatchRunConfig:
    """A run's config names its batch and carries its record: the run alone can replay it."""
    return BatchRunConfig(
        batch_ids=[batch.id],
        batches={batch.id: json.dumps(batch.to_json(), sort_keys=True)},
        overrides=list(overrides or []),
    )


def run_request(spec: LoadedSpec, batch: Batch, pipeline) -> RunRequest:
    coords = batch.coordinates
    return RunRequest(
        run_key=batch.id,
        partition_key=batch.window,
        run_config=RunConfig(ops={op_name(spec): batch_run_config(batch)}),
        tags=batch_tags(batch, pipeline.source.describe(coords), pipeline.group(coords)),
    )


def waiting_groups(context: SensorEvaluationContext, pipeline: str) -> set[str]:
    """Partition groups with a run still waiting to start. Their new input waits for the next
    tick, to be cut then as one larger batch: a group's runs go one at a time, so cutting
    a batch per tick behind a queue would only add runs and their start-up cost."""
    runs = context.instance.get_runs(
        filters=RunsFilter(
            statuses=[
                DagsterRunStatus.QUEUED,
                DagsterRunStatus.NOT_STARTED,
                DagsterRunStatus.STARTING,
            ],
            tags={"headwater/pipeline": pipeline},
        )
    )
    prefix = f"{pipeline}:"
    return {
        r.tags["headwater/partition_group"].removeprefix(prefix)
        for r in runs
        if "headwater/partition_group" in r.tags
    }


def build_batch_sensor(spec: LoadedSpec, job):
    s = spec.model.sensor
    spec_file = str(spec.file)

    @sensor(
        name=f"{spec.name}_batches",
        job=job,
        minimum_interval_seconds=s.interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if s.running else DefaultSensorStatus.STOPPED,
        description=f"Cuts new input of pipeline {spec.name} into batches and runs them.",
    )
    def _sensor(context: SensorEvaluationContext, headwater: HeadwaterProject):
        pipeline = headwater.pipeline(spec_file)
        try:
            # not while a headwater stream worker (or run) cuts and runs the same batches
            with WorkerLock.of(pipeline, None, "the batch sensor"):
                new, pending = pipeline.cut(hold=waiting_groups(context, spec.name))
            pending = pending[: s.max_batches_per_tick]
        except HeadwaterError as exc:
            return SkipReason(f"cannot cut batches: {exc}")
        if not pending:
            return SkipReason("no new input since the last batch")
        cursor = json.dumps(
            {
                "v": CURSOR_VERSION,
                "last_batch": pending[-1].id,
                "new": len(new),
                "requested": len(pending),
            }
        )
        return SensorResult(
            run_requests=[run_request(spec, b, pipeline) for b in pending],
            cursor=cursor,
        )

    return _sensor
