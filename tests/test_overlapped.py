"""A backlog run overlapped: batch k+1 is processed while batch k's writes finish; commits in
order; an error or a stop commits nothing past the batch in hand."""

import threading

import pytest

from headwater.errors import SinkError, SourceError
from headwater.ledger import DONE, PENDING
from headwater.pipeline import BatchReport, Pipeline, overlapped
from headwater.spec import load_spec
from tests.test_pipeline import beside_a_plain_run, fail_second_decode, stream_rows

STREAMS = ("raw", "solar_system", "extragalactic")


def backlog(spec) -> tuple[Pipeline, list]:
    pipeline = Pipeline(load_spec(spec))
    pipeline.plan()
    return pipeline, pipeline.pending()


def traced(pipeline: Pipeline) -> list[str]:
    """Log each batch's start, source commit and ledger completion, in order."""
    log: list[str] = []
    start, commit, complete = pipeline.start, pipeline.source.commit, pipeline.ledger.complete

    def started(batch):
        log.append(f"start {batch.id}")
        return start(batch)

    def committed(batch):
        log.append(f"commit {batch.id}")
        return commit(batch)

    def completed(batch, summary):
        log.append(f"done {batch.id}")
        return complete(batch, summary)

    pipeline.start, pipeline.source.commit = started, committed
    pipeline.ledger.complete = completed
    return log


def statuses(pipeline: Pipeline, batches) -> list[str]:
    return [pipeline.ledger.find(b.window, b.id).status for b in batches]


def sink(pipeline: Pipeline, stream: str, name: str):
    return dict(pipeline.sinks[stream])[name]


def test_the_next_batch_is_processed_while_this_one_writes(ztf_spec, tmp_path):
    plain, pipeline = beside_a_plain_run(ztf_spec, tmp_path / "overlapped")
    first, second, third = pipeline.pending()
    log = traced(pipeline)
    # the first batch's raw Parquet file is held until the second batch is started: run one
    # batch after another, this would wait for ever (here: fail after 10 s)
    parquet = sink(pipeline, "raw", "parquet")
    write, second_started = parquet.write, threading.Event()
    start = pipeline.start

    def gated(target, table):
        if target.batch.id == first.id and not second_started.wait(10):
            raise SinkError("the next batch was not started while this one wrote")
        return write(target, table)

    def starting(batch):
        if batch.id == second.id:
            second_started.set()
        return start(batch)

    parquet.write, pipeline.start = gated, starting
    outcomes = list(overlapped(pipeline, [first, second, third]))
    assert [b.id for b, _ in outcomes] == [first.id, second.id, third.id]
    assert all(isinstance(done, BatchReport) for _, done in outcomes)
    f, s, t = first.id, second.id, third.id
    assert log == [
        *(f"start {f}", f"start {s}", f"commit {f}", f"done {f}"),
        *(f"start {t}", f"commit {s}", f"done {s}", f"commit {t}", f"done {t}"),
    ]
    for stream in STREAMS:
        assert stream_rows(pipeline, stream) == stream_rows(plain, stream)
    pipeline.close()


def test_a_failed_commit_stops_the_run_and_the_batch_after_it_is_not_committed(ztf_spec):
    pipeline, (first, second, third) = backlog(ztf_spec(batch=10))
    duckdb = sink(pipeline, "raw", "duckdb")  # written when the batch finishes
    write = duckdb.write

    def refusing(target, table):
        if target.batch.id == first.id:
            raise SinkError("the database is read-only")
        return write(target, table)

    duckdb.write = refusing
    log = traced(pipeline)
    outcomes = list(overlapped(pipeline, [first, second, third]))
    assert [(b.id, type(done)) for b, done in outcomes] == [(first.id, SinkError)]
    assert "commit" not in " ".join(log) and f"start {third.id}" not in log
    assert statuses(pipeline, [first, second, third]) == [PENDING] * 3
    duckdb.write = write  # mended: run again from the failed batch, all come out whole
    assert [type(d) for _, d in overlapped(pipeline, [first, second, third])] == [BatchReport] * 3
    assert len(stream_rows(pipeline, "raw")) == 30
    pipeline.close()


def test_a_batch_that_fails_to_start_still_lets_the_one_before_commit(ztf_spec):
    pipeline, (first, second, third) = backlog(ztf_spec(batch=10))
    fail_second_decode(pipeline)
    outcomes = list(overlapped(pipeline, [first, second, third]))
    assert [(b.id, type(done)) for b, done in outcomes] == [
        (first.id, BatchReport),
        (second.id, SourceError),
    ]
    assert statuses(pipeline, [first, second, third]) == [DONE, PENDING, PENDING]
    pipeline.close()


def test_a_stop_finishes_the_batch_in_hand_and_starts_no_other(ztf_spec):
    pipeline, (first, second, third) = backlog(ztf_spec(batch=10))
    log = traced(pipeline)
    stopping = threading.Event()
    done = []
    for batch, report in overlapped(pipeline, [first, second, third], stopping.is_set):
        done.append((batch.id, type(report)))
        stopping.set()  # the second batch was started with the first: it is finished too
    assert done == [(first.id, BatchReport), (second.id, BatchReport)]
    assert f"start {third.id}" not in log
    assert statuses(pipeline, [first, second, third]) == [DONE, DONE, PENDING]
    pipeline.close()


def test_closing_early_abandons_the_started_batch_uncommitted(ztf_spec):
    pipeline, (first, second, third) = backlog(ztf_spec(batch=10))
    log = traced(pipeline)
    outcomes = overlapped(pipeline, [first, second, third])
    batch, _ = next(outcomes)
    outcomes.close()
    assert batch.id == first.id and log[-1] == f"done {first.id}"
    assert f"commit {second.id}" not in log
    assert statuses(pipeline, [first, second, third]) == [DONE, PENDING, PENDING]
    assert pipeline.run(second).decoded == second.records  # it runs again whole
    pipeline.close()


@pytest.mark.parametrize("fail_at", [0, 1])
def test_the_event_runner_stops_at_a_failed_batch_and_reports_each_once(
    ztf_spec, tmp_path, fail_at
):
    """``headwater stream``'s runner overlaps its batches: it stops at the one that fails
    (shown in Dagster as an observation); run again from it, every batch is materialized
    once, in order, whole."""
    from dagster import AssetKey

    from headwater.runner import EventRunner, dagster_instance

    pipeline, batches = backlog(ztf_spec(batch=10))
    duckdb = sink(pipeline, "raw", "duckdb")
    write, refused = duckdb.write, []

    def once(target, table):
        if target.batch.id == batches[fail_at].id and not refused:
            refused.append(target.batch.id)
            raise SinkError("the database is busy")
        return write(target, table)

    duckdb.write = once
    runner = EventRunner(pipeline, dagster_instance(tmp_path, capture_logs=False))
    outcomes = list(runner.run_each(batches))
    assert [(o.batch.id, o.success) for o in outcomes] == [
        *((b.id, True) for b in batches[:fail_at]),
        (batches[fail_at].id, False),
    ]
    assert [o.success for o in runner.run_each(batches[fail_at:])] == [True] * (3 - fail_at)
    pipeline.close()
    assert statuses(pipeline, batches) == [DONE] * 3
    assert len(stream_rows(pipeline, "raw")) == 30
    key = AssetKey(["ztf", "raw"])
    records = runner.instance.fetch_materializations(key, limit=10).records
    records = sorted(records, key=lambda r: r.storage_id)
    ids = [r.asset_materialization.metadata["batch_id"].value for r in records]
    if fail_at == 0:  # reported behind the next batch's work, yet each once and in order
        assert ids == [b.id for b in batches]
    assert sorted(ids) == sorted(b.id for b in batches)  # each once
    [seen] = runner.instance.fetch_observations(key, limit=5).records
    assert seen.asset_observation.metadata["batch_id"].value == batches[fail_at].id


def test_events_that_cannot_be_reported_stop_the_runner_with_their_error(ztf_spec, tmp_path):
    from headwater.runner import EventRunner, dagster_instance

    pipeline, batches = backlog(ztf_spec(batch=10))
    runner = EventRunner(pipeline, dagster_instance(tmp_path, capture_logs=False))
    report, reports = runner.instance.report_runless_asset_event, []
    per_batch = len(pipeline.spec.streams) + 1  # every stream's asset, and the quarantine's

    def refusing(event):
        reports.append(event)
        if len(reports) > per_batch:  # from the second batch's first event on
            raise RuntimeError("the event log is locked")
        return report(event)

    runner.instance.report_runless_asset_event = refusing
    with pytest.raises(RuntimeError, match="event log is locked"):
        list(runner.run_each(batches))
    pipeline.close()
    assert statuses(pipeline, batches)[:2] == [DONE, DONE]  # committed; report_missing mends
