"""Run recorded batches as Dagster runs, in this process (what ``headwater run`` does).

Each batch is one run of the pipeline's job on the batch's window, with the batch id in its
run config, so it shows up in the web UI and can be re-executed from there exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwater.batch import Batch
from headwater.pipeline import BatchReport, Pipeline, in_turn, overlapped


@dataclass
class RunOutcome:
    batch: Batch
    success: bool
    run_id: str
    summary: dict[str, Any]
    error: str = ""


def dagster_home(root: Path) -> Path:
    """The folder for ``DAGSTER_HOME`` that gives the instance ``dagster_instance`` builds: the
    project root when it has a dagster.yaml (whose storage paths are relative to the root),
    else ``.dagster`` (Dagster's defaults put everything under it)."""
    if (root / "dagster.yaml").exists():
        return root
    (root / ".dagster").mkdir(parents=True, exist_ok=True)
    return root / ".dagster"


def dagster_instance(root: Path, capture_logs: bool = True):
    """``$DAGSTER_HOME``'s instance, else the project's: root/dagster.yaml, storage in .dagster.

    ``capture_logs=False`` leaves out the capture of each step's stdout and stderr (two helper
    processes per run): the stream worker's runs print nothing, and it saves them ~50 ms.
    """
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import ConfigurableClassData

    if os.environ.get("DAGSTER_HOME"):
        ref = DagsterInstance.get().get_ref()
    else:
        home = root / ".dagster"
        home.mkdir(parents=True, exist_ok=True)
        config_dir = dagster_home(root)  # the folder with the dagster.yaml in use
        cwd = Path.cwd()
        os.chdir(root)  # dagster.yaml's relative storage paths are relative to the project root
        try:
            ref = InstanceRef.from_dir(str(home), config_dir=str(config_dir))
        finally:
            os.chdir(cwd)
    if not capture_logs:
        ref = ref._replace(
            compute_logs_data=ConfigurableClassData(
                "dagster._core.storage.noop_compute_log_manager", "NoOpComputeLogManager", "{}"
            )
        )
    return DagsterInstance.from_ref(ref)


class BatchRunner:
    """One pipeline's job and Dagster instance, loaded once; ``run`` executes one batch."""

    def __init__(
        self, spec_file: Path, pipeline: Pipeline, overrides: list[str], root: Path, instance=None
    ):
        from headwater.assets.definitions import build_definitions, job_name
        from headwater.assets.streams import op_name

        self.pipeline = pipeline
        self.overrides = list(overrides)
        self.op = op_name(pipeline.spec)
        defs = build_definitions([spec_file], root=str(root))
        self.job = defs.resolve_job_def(job_name(pipeline.spec))
        self.instance = instance or dagster_instance(root)

    def report_missing(self) -> int:
        """Nothing to do: a run is its batch's record in Dagster, kept even if it died."""
        return 0

    def refuse_claimed(self, batches: list[Batch], command: str) -> None:
        refuse_claimed(self.instance, self.pipeline, batches, command)

    def run_each(
        self, batches: list[Batch], stop: Callable[[], bool] = lambda: False
    ) -> Iterator[RunOutcome]:
        """Each batch's outcome in turn, up to the first failure or ``stop()``: a Dagster
        run is done when it ends, so runs do not overlap."""
        return one_at_a_time(self.run, self.pipeline, batches, stop)

    def run(self, batch: Batch) -> RunOutcome:
        from headwater.sensors.batches import batch_run_config, batch_tags

        config = batch_run_config(batch, self.overrides).model_dump()
        source = self.pipeline.source
        result = self.job.execute_in_process(
            run_config={
                "ops": {self.op: {"config": config}},
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
            instance=self.instance,
            partition_key=batch.window,
            tags={
                **batch_tags(
                    batch,
                    source.describe(batch.coordinates),
                    self.pipeline.group(batch.coordinates),
                ),
                IN_PROCESS_TAG: "true",
            },
            raise_on_error=False,
        )
        entry = self.pipeline.ledger.find(batch.window, batch.id)
        error = "" if result.success else _failure(result)
        return RunOutcome(
            batch, result.success, result.run_id, entry.summary if entry else {}, error
        )


class EventRunner:
    """Runs a batch in this process, outside any Dagster run, then reports a materialization
    of every asset of the pipeline for it (Dagster's asset events for work done elsewhere).

    What ``headwater stream`` uses by default: a Dagster run costs about 0.3 s of CPU (its
    run record, a SQLite shard, some 25 events), more than the batch itself at a batch every
    few hundred ms; the events cost tens of ms. The metadata and the batch's tags are those a
    run would give, and materializing the batch's partition from the web UI (or running it
    by id) replays it from the same coordinates, as re-executing a run does.
    """

    def __init__(self, pipeline: Pipeline, instance):
        self.pipeline = pipeline
        self.instance = instance
        self._reporter: ThreadPoolExecutor | None = None
        self._reporting: Future | None = None

    def run(self, batch: Batch) -> RunOutcome:
        from headwater.errors import HeadwaterError

        try:
            report = self.pipeline.run(batch)
        except HeadwaterError as exc:  # the batch stays pending: the worker runs it again
            self._report_failure(batch, str(exc))
            return RunOutcome(batch, False, "", {}, str(exc))
        self._report(report)
        return RunOutcome(batch, True, "", report.summary())

    def run_each(
        self, batches: list[Batch], stop: Callable[[], bool] = lambda: False
    ) -> Iterator[RunOutcome]:
        """Each batch's outcome in turn, up to the first failure or ``stop()``, each batch
        processed while the one before it finishes its writes
        (:func:`~headwater.pipeline.overlapped`); its events are reported once committed."""
        try:
            for batch, done in overlapped(self.pipeline, batches, stop):
                if isinstance(done, BatchReport):
                    self._report_behind(done)
                    yield RunOutcome(batch, True, "", done.summary())
                else:
                    self._reported()
                    self._report_failure(batch, str(done))
                    yield RunOutcome(batch, False, "", {}, str(done))
        finally:
            self._reported()

    def _report_behind(self, report: BatchReport) -> None:
        """Report a committed batch's events on a helper thread while the next batch runs:
        Dagster's SQLite event log commits every event (0.05-0.3 s a batch, mostly waiting
        on the disk), which had the next batch wait. One batch's events at a time, in
        order; all are out when run_each returns. A batch whose events a kill cut off gets
        them at the next start (report_missing)."""
        self._reported()
        if self._reporter is None:
            self._reporter = ThreadPoolExecutor(1, thread_name_prefix="headwater-events")
        self._reporting = self._reporter.submit(self._report, report)

    def _reported(self) -> None:
        """Wait for the events under way, if any; their error, if any, is raised here."""
        reporting, self._reporting = self._reporting, None
        if reporting is not None:
            reporting.result()

    def refuse_claimed(self, batches: list[Batch], command: str) -> None:
        refuse_claimed(self.instance, self.pipeline, batches, command)

    def report_missing(self, recent: int = 50) -> int:
        """Report the events of the latest window's last ``recent`` done batches that have
        none: a worker killed after a batch was done and before its events went out. The
        lake and the ledger have the batch; this puts it back in the web UI. Returns how
        many batches it reported."""
        from headwater.assets.streams import asset_key
        from headwater.lake import QUARANTINE
        from headwater.ledger import DONE

        ledger = self.pipeline.ledger
        windows = ledger.windows()
        if not windows:
            return 0
        done = [e for e in ledger.window(windows[-1]) if e.status == DONE][-recent:]
        key = asset_key(self.pipeline.spec, QUARANTINE)  # every batch materializes it
        records = (
            self.instance.fetch_materializations(key, limit=4 * recent).records if done else []
        )
        seen: set[str] = set()
        for r in records:
            meta = r.asset_materialization.metadata
            if "batch_id" in meta:
                seen.add(meta["batch_id"].value)
            seen.update(meta["batch_ids"].value if "batch_ids" in meta else [])
        missing = [e for e in done if e.batch.id not in seen]
        for e in missing:
            self._report(BatchReport.from_summary(e.batch, e.summary))
        return len(missing)

    def _report_failure(self, batch: Batch, error: str) -> None:
        """A failed attempt, as an observation of every asset of the pipeline: with no run
        to fail, this is what the web UI shows of it."""
        from dagster import AssetObservation, MetadataValue

        from headwater.assets.streams import asset_key
        from headwater.lake import QUARANTINE

        spec = self.pipeline.spec
        metadata = {
            "batch_id": batch.id,
            "coordinates": MetadataValue.json(batch.coordinates),
            "error": MetadataValue.text(error),
            "next": "the batch stays pending; the worker retries it from the same coordinates",
        }
        for name in [s.name for s in spec.streams] + [QUARANTINE]:
            self.instance.report_runless_asset_event(
                AssetObservation(asset_key(spec, name), partition=batch.window, metadata=metadata)
            )

    def _report(self, report: BatchReport) -> None:
        from dagster import AssetMaterialization

        from headwater.assets.streams import asset_metadata

        batch = report.batch
        # asset events take only short plain tag values; the coordinates are in the metadata
        tags = {"headwater/pipeline": batch.pipeline, "headwater/batch_id": batch.id}
        for key, metadata in asset_metadata(self.pipeline.spec, [report]):
            self.instance.report_runless_asset_event(
                AssetMaterialization(key, partition=batch.window, metadata=metadata, tags=tags)
            )


def one_at_a_time(
    run: Callable[[Batch], RunOutcome],
    pipeline: Pipeline,
    batches: list[Batch],
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[RunOutcome]:
    """``run`` on each batch in turn (the next one read ahead), up to the first failure or
    ``stop()``."""
    for batch in in_turn(pipeline, batches):
        if stop():
            return
        outcome = run(batch)
        yield outcome
        if not outcome.success:
            return


#: Tags the runs this process executes itself (``headwater run``, ``headwater stream
#: --record runs``): the worker lock keeps two such processes apart, and one killed leaves its
#: run "started" for ever, which must not stop the next from running the batch again.
IN_PROCESS_TAG = "headwater/in_process"


def claimed_batches(instance, pipeline: str) -> dict[str, str]:
    """Batch id → run id, for the pipeline's runs that Dagster has queued, is starting or is
    running (launched by the sensor or from the web UI): their batches are theirs until they end."""
    from dagster import DagsterRunStatus, RunsFilter

    active = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
    ]
    runs = instance.get_runs(
        filters=RunsFilter(statuses=active, tags={"headwater/pipeline": pipeline})
    )
    return {
        r.tags["headwater/batch_id"]: r.run_id
        for r in runs
        if "headwater/batch_id" in r.tags and not _in_process(r.tags)
    }


def _in_process(tags: dict[str, str]) -> bool:
    """Executed by a headwater command itself; not a re-execution of one from the web UI,
    which may copy its parent's tags but runs in a process of Dagster's."""
    from dagster._core.storage.tags import PARENT_RUN_ID_TAG

    return IN_PROCESS_TAG in tags and PARENT_RUN_ID_TAG not in tags


def refuse_claimed(instance, pipeline: Pipeline, batches: list[Batch], command: str) -> None:
    """Fail when Dagster runs hold some of ``batches``: running them here as well would
    process each twice at once (a placement loop's moves applied twice), and running only the
    others would take a closed loop's windows out of order."""
    from headwater.errors import HeadwaterError

    claimed = claimed_batches(instance, pipeline.name)
    held = [(b.id, claimed[b.id]) for b in batches if b.id in claimed]
    if not held:
        return
    shown = ", ".join(f"{b} (run {r[:8]})" for b, r in held[:3])
    more = f" and {len(held) - 3} more" if len(held) > 3 else ""
    raise HeadwaterError(
        f"{command}: {len(held)} pending batch(es) of pipeline {pipeline.name} have a Dagster "
        f"run queued or running: {shown}{more}. Wait for those runs to end (Runs in the web "
        "UI), or terminate them there (a run whose process is gone can be marked canceled), "
        "then start this again."
    )


def run_batches(
    spec_file: Path,
    pipeline: Pipeline,
    batches: list[Batch],
    overrides: list[str],
    root: Path,
    on_done: Callable[[RunOutcome], None] | None = None,
    instance=None,
) -> list[RunOutcome]:
    runner = BatchRunner(spec_file, pipeline, overrides, root, instance)
    outcomes = []
    for batch in in_turn(pipeline, batches):
        outcome = runner.run(batch)
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    return outcomes


def _failure(result) -> str:
    for event in result.all_events:
        if event.is_failure and event.event_specific_data is not None:
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                return error.message.strip()
    return "the run failed (see the run's logs in the web UI)"
