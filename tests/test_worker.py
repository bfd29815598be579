"""The stream worker's loop on a scripted pipeline: waits out a broker outage, cuts on time or
size, stops on request. The real broker and Dagster runs are in tests/kafka/test_stream.py."""

import gc
from pathlib import Path
from types import SimpleNamespace

import pytest

from headwater.batch import Batch
from headwater.errors import HeadwaterError, SourceError
from headwater.runner import RunOutcome, one_at_a_time
from headwater.worker import StreamWorker


class ScriptedPipeline:
    """peek() answers from a script: an exception to raise, or the planned batches."""

    def __init__(self, script, cap=10):
        self.script = list(script)
        self.source = SimpleNamespace(config=SimpleNamespace(max_records_per_batch=cap))
        self.recorded: list[Batch] = []

        self.warmed = 0
        self.expected: list[str | None] = []

    def warm(self):
        self.warmed += 1

    def expect(self, batch):
        self.expected.append(batch.id if batch else None)

    def pending(self):
        return []

    def peek(self):
        step = self.script.pop(0) if self.script else []
        if isinstance(step, Exception):
            raise step
        return step, []

    def record(self, planned):
        batches = [
            Batch("p", f"b{len(self.recorded) + i}", "w", "kafka", c, "now", n)
            for i, (c, n) in enumerate(planned)
        ]
        self.recorded += batches
        return batches


class Runner:
    def __init__(self, pipeline, fail_once=()):
        self.pipeline = pipeline
        self.ran: list[str] = []
        self.each: list[list[str]] = []  # the batches of each run_each call
        self.fail_once = set(fail_once)
        self.reconciled = 0

    def run_each(self, batches, stop):
        self.each.append([b.id for b in batches])
        return one_at_a_time(self.run, self.pipeline, batches, stop)

    def report_missing(self):
        self.reconciled += 1
        return 0

    def refuse_claimed(self, batches, command):
        """No Dagster instance here: no run claims a batch."""

    def run(self, batch):
        self.ran.append(batch.id)
        if batch.id in self.fail_once:
            self.fail_once.discard(batch.id)
            return RunOutcome(batch, False, "run", {}, "the database is busy")
        return RunOutcome(batch, True, "run", {})


def worker(pipeline, **kw) -> tuple[StreamWorker, Runner, list]:
    runner, errors = Runner(pipeline, kw.pop("fail_once", ())), []
    w = StreamWorker(
        Path("x.yaml"),
        pipeline,
        [],
        Path("."),
        max_wait_ms=kw.pop("max_wait_ms", 0),
        poll_ms=1,
        idle_exit_seconds=kw.pop("idle_exit", 0.05),
        max_backoff_seconds=0.01,
        on_error=errors.append,
        runner=runner,
        **kw,
    )
    return w, runner, errors


def test_a_broker_outage_is_waited_out_then_batches_resume():
    down = SourceError("cannot reach Kafka", transient=True)
    pipeline = ScriptedPipeline([down, down, [({"ranges": [1]}, 3)]])
    w, runner, errors = worker(pipeline)
    stats = w.run()
    assert errors == [down, down]
    assert runner.ran == ["b0"] and stats.batches == 1 and stats.records == 3
    assert pipeline.warmed == 1  # its decoder was warmed (helpers started) before the first batch
    assert runner.reconciled == 1  # and a batch left without its events got them first


def test_what_start_up_made_is_frozen_out_of_the_collector_s_walks_while_it_runs():
    pipeline = ScriptedPipeline([])
    frozen = []
    peek = pipeline.peek
    pipeline.peek = lambda: frozen.append(gc.get_freeze_count()) or peek()
    w, _runner, _ = worker(pipeline)
    w.run()
    assert frozen and all(n > 0 for n in frozen)
    assert gc.get_freeze_count() == 0  # thawed once it stopped


def test_a_permanent_error_stops_the_worker():
    gone = SourceError("topics ['t'] do not exist")
    w, _runner, _errors = worker(ScriptedPipeline([gone]))
    with pytest.raises(HeadwaterError, match="do not exist"):
        w.run()


def test_every_groups_batch_is_run_when_a_cut_is_made():
    two_groups = [({"group": 0}, 4), ({"group": 1}, 2)]
    pipeline = ScriptedPipeline([two_groups])
    w, runner, _ = worker(pipeline)
    w.run()
    assert runner.ran == ["b0", "b1"]
    assert pipeline.expected == ["b1", None]  # each run is told which batch comes next


def test_a_failed_batch_is_retried_alone_then_the_rest_go_on_in_order():
    three = [({"r": k}, 10) for k in range(3)]
    w, runner, _ = worker(ScriptedPipeline([three]), fail_once={"b1"})
    stats = w.run()
    assert runner.ran == ["b0", "b1", "b1", "b2"]
    assert runner.each == [["b0", "b1", "b2"], ["b2"]]  # b1 retried alone, in between
    assert (stats.batches, stats.failed, stats.records) == (3, 1, 30)


def test_no_batch_is_started_past_max_batches():
    three = [({"r": k}, 10) for k in range(3)]
    w, runner, _ = worker(ScriptedPipeline([three]), max_batches=2)
    stats = w.run()
    assert runner.each == [["b0", "b1"]] and stats.batches == 2


def test_a_partial_batch_waits_for_max_wait_a_full_one_does_not():
    partial = [({"r": 1}, 3)]
    # max_wait 10 s: a partial batch seen once, then nothing more arrives -> never cut
    w, runner, _ = worker(ScriptedPipeline([partial]), max_wait_ms=10_000)
    w.run()
    assert runner.ran == []
    full = [({"r": 1}, 10)]
    w, runner, _ = worker(ScriptedPipeline([full]), max_wait_ms=10_000)
    w.run()
    assert runner.ran == ["b0"]


def test_a_backlog_is_run_each_batch_read_ahead_while_the_one_before_runs(ztf_spec, tmp_path):
    from headwater.pipeline import Pipeline
    from headwater.runner import EventRunner, dagster_instance
    from headwater.spec import load_spec

    pipeline = Pipeline(load_spec(ztf_spec(batch=10), base_dir=tmp_path))
    decoded: list[int] = []
    decode = pipeline.decoder.decode
    pipeline.decoder.decode = lambda raw: decoded.append(raw.messages.num_rows) or decode(raw)
    runner = EventRunner(pipeline, dagster_instance(tmp_path, capture_logs=False))
    w = StreamWorker(
        Path("x.yaml"), pipeline, [], tmp_path, max_wait_ms=0, idle_exit_seconds=0.05, runner=runner
    )
    try:
        stats = w.run()
        assert pipeline._reader is not None and pipeline._ahead is None  # ahead, and all used
    finally:
        pipeline.close()
    batches = [e.batch for e in pipeline.ledger.entries()]
    assert stats.batches == len(batches) == 3 and all(
        e.status == "done" for e in pipeline.ledger.entries()
    )
    assert decoded == [b.records for b in batches]  # each batch read and decoded once


def test_a_batch_done_without_its_events_gets_them_when_a_worker_starts(ztf_spec, tmp_path):
    from dagster import AssetKey

    from headwater.pipeline import Pipeline
    from headwater.runner import EventRunner, dagster_instance
    from headwater.spec import load_spec

    pipeline = Pipeline(load_spec(ztf_spec(batch=10), base_dir=tmp_path))
    first, second, third = pipeline.plan()
    runner = EventRunner(pipeline, dagster_instance(tmp_path, capture_logs=False))
    assert runner.run(first).success
    done = pipeline.run(second)  # done in the lake and the ledger; killed before its events
    try:
        assert runner.report_missing() == 1
        assert runner.report_missing() == 0  # once only
    finally:
        pipeline.close()
    records = runner.instance.fetch_materializations(AssetKey(["ztf", "raw"]), limit=10).records
    raw = {r.asset_materialization.metadata["batch_id"].value: r for r in records}
    assert set(raw) == {first.id, second.id}  # the third is pending: nothing to report
    late = raw[second.id].asset_materialization
    assert late.partition == second.window
    assert late.metadata["rows_out"].value == done.streams["raw"].rows_out
    assert late.metadata["coordinates"].value == second.coordinates
    assert third.id not in raw


def test_a_failed_attempt_shows_in_dagster_as_an_observation(ztf_spec, tmp_path, monkeypatch):
    from dagster import AssetKey

    from headwater.errors import SinkError
    from headwater.ledger import PENDING
    from headwater.pipeline import Pipeline
    from headwater.runner import EventRunner, dagster_instance
    from headwater.spec import load_spec

    pipeline = Pipeline(load_spec(ztf_spec(batch=30), base_dir=tmp_path))
    [batch] = pipeline.plan()

    def refuse(_batch):
        raise SinkError("sink parquet: the disk is full", transient=True)

    monkeypatch.setattr(pipeline, "run", refuse)
    runner = EventRunner(pipeline, dagster_instance(tmp_path, capture_logs=False))
    outcome = runner.run(batch)
    assert not outcome.success and "disk is full" in outcome.error
    for stream in ("raw", "solar_system", "_quarantine"):
        [record] = runner.instance.fetch_observations(AssetKey(["ztf", stream]), limit=5).records
        seen = record.asset_observation
        assert seen.partition == batch.window
        assert seen.metadata["batch_id"].value == batch.id
        assert "disk is full" in seen.metadata["error"].value
    key = AssetKey(["ztf", "raw"])
    assert runner.instance.fetch_materializations(key, limit=5).records == []
    assert pipeline.ledger.get(batch.window, batch.id).status == PENDING
    pipeline.close()
