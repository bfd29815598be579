"""The plain core end to end on real ZTF alerts: streams, reruns, quarantine, new input."""

import csv
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest

from headwater.errors import SourceError
from headwater.pipeline import Pipeline
from headwater.spec import load_spec, parse_overrides
from tests.conftest import SHARED


def run_all(pipeline: Pipeline):
    pipeline.plan()
    return [pipeline.run(b) for b in pipeline.pending()]


def stream_rows(pipeline: Pipeline, stream: str) -> list[dict]:
    files = sorted(pipeline.lake.stream_dir(pipeline.name, stream).rglob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def expected_from_manifest(rows):
    sso = {int(r["candid"]) for r in rows if r["ssnamenr"] not in ("null", "")}
    extragalactic = {
        int(r["candid"])
        for r in rows
        if r["ssnamenr"] in ("null", "") and float(r["rb"]) > 0.65 and float(r["magpsf"]) < 19
    }
    return {
        "raw": {int(r["candid"]) for r in rows},
        "solar_system": sso,
        "extragalactic": extragalactic,
    }


def test_every_stream_matches_the_manifest(ztf_spec, ztf_manifest):
    pipeline = Pipeline(load_spec(ztf_spec(batch=7)))
    reports = run_all(pipeline)
    assert [r.batch.records for r in reports] == [7, 7, 7, 7, 2]
    for stream, want in expected_from_manifest(ztf_manifest).items():
        got = [r["candid"] for r in stream_rows(pipeline, stream)]
        assert sorted(got) == sorted(want), stream  # no duplicates either
    con = duckdb.connect(str(pipeline.lake.database("ztf")), read_only=True)
    assert con.execute("select count(*) from solar_system").fetchone()[0] == 11
    assert con.execute("select count(*) from _quarantine").fetchone()[0] == 0


def test_rerunning_a_batch_rewrites_identical_bytes(ztf_spec):
    pipeline = Pipeline(load_spec(ztf_spec(batch=10)))
    first = run_all(pipeline)
    files = sorted(pipeline.lake.root.rglob("*.parquet"))
    before = {f: f.read_bytes() for f in files}
    again = pipeline.run(first[1].batch)
    assert again.batch.id == first[1].batch.id
    assert sorted(pipeline.lake.root.rglob("*.parquet")) == files
    assert {f: f.read_bytes() for f in files} == before
    assert len(stream_rows(pipeline, "raw")) == 30
    # a fresh pipeline object cutting the same input finds nothing new
    assert Pipeline(load_spec(pipeline.spec.file)).plan() == []


def test_bad_messages_are_quarantined_and_the_batch_completes(ztf_spec, alerts_copy):
    good = sorted(alerts_copy.rglob("*.avro"))[0].read_bytes()
    (alerts_copy / "zz_truncated.avro").write_bytes(good[:3000])
    (alerts_copy / "zz_not_avro.avro").write_bytes(b'{"json": "instead"}')
    pipeline = Pipeline(load_spec(ztf_spec()))
    [report] = run_all(pipeline)
    assert report.decoded == 30 and report.quarantined == 2
    q = pq.read_table(report.quarantine_path).to_pylist()
    assert sorted(r["source"] for r in q) == ["zz_not_avro.avro", "zz_truncated.avro"]
    by_source = {r["source"]: r for r in q}
    assert by_source["zz_truncated.avro"]["raw"] == good[:3000]
    assert by_source["zz_not_avro.avro"]["error"].startswith("avro: not an Avro object container")
    assert {r["stage"] for r in q} == {"decode"} and {r["pipeline"] for r in q} == {"ztf"}
    con = duckdb.connect(str(pipeline.lake.database("ztf")), read_only=True)
    assert con.execute("select count(*) from _quarantine").fetchone()[0] == 2
    assert len(stream_rows(pipeline, "raw")) == 30


def test_a_batch_of_nothing_but_bad_messages_completes(ztf_spec, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"{i}.avro").write_bytes(b"\x00garbage" * i)
    pipeline = Pipeline(load_spec(ztf_spec(alerts=junk)))
    [report] = run_all(pipeline)
    assert report.decoded == 0 and report.quarantined == 3
    assert {s.rows_out for s in report.streams.values()} == {0}
    assert not list(pipeline.lake.stream_dir("ztf", "raw").rglob("*.parquet"))
    con = duckdb.connect(str(pipeline.lake.database("ztf")), read_only=True)
    assert con.execute("select count(*) from _quarantine").fetchone()[0] == 3
    assert pipeline.ledger.get(report.batch.window, report.batch.id).status == "done"


def test_new_files_make_new_batches_and_nothing_else(ztf_spec, alerts_copy, tmp_path):
    newcomer = sorted(alerts_copy.rglob("*.avro"))[-1]
    parked = tmp_path / newcomer.name
    shutil.move(newcomer, parked)
    pipeline = Pipeline(load_spec(ztf_spec()))
    assert [b.records for b in pipeline.plan()] == [29]
    run_all(pipeline)
    assert pipeline.plan() == []
    shutil.move(parked, newcomer)
    [batch] = pipeline.plan()
    assert batch.coordinates["ranges"] == [[newcomer.relative_to(alerts_copy).as_posix(), 0, 1]]


def test_an_empty_folder_is_nothing_to_do_and_a_missing_one_is_an_error(ztf_spec, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    pipeline = Pipeline(load_spec(ztf_spec(alerts=empty)))
    assert pipeline.plan() == [] and pipeline.pending() == []
    missing = Pipeline(load_spec(ztf_spec(alerts=tmp_path / "nope")))
    with pytest.raises(SourceError, match=r"folder .*nope does not exist"):
        missing.plan()


def test_a_vanished_file_is_quarantined_not_lost(ztf_spec, alerts_copy):
    pipeline = Pipeline(load_spec(ztf_spec()))
    [batch] = pipeline.plan()
    victim = alerts_copy / batch.coordinates["ranges"][0][0]
    victim.unlink()
    report = pipeline.run(batch)
    q = pq.read_table(report.quarantine_path).to_pylist()
    assert [(r["stage"], r["source"]) for r in q] == [("source", batch.coordinates["ranges"][0][0])]
    assert "cannot read" in q[0]["error"]


def test_csv_lines_source_end_to_end(tmp_path, write_spec):
    data = tmp_path / "usage"
    data.mkdir()
    (data / "a.csv").write_text("timestamp,machine_id,cpu\n1,m1,0.5\n2,m2,oops\n3,m1\n")
    (data / "b.csv").write_text("timestamp,machine_id,cpu\n4,m2,0.25\n")
    spec = write_spec(f"""\
        name: usage
        lake: {tmp_path / "lake"}
        source: {{files: {{path: {data}, format: csv, max_records_per_batch: 2}}}}
        decode: {{csv: {{types: {{cpu: double}}}}}}
        streams:
          busy:
            processors: [{{sql: "select machine_id, cpu from batch where cpu > 0.3"}}]
            sinks: [parquet, duckdb]
        """)
    pipeline = Pipeline(load_spec(spec))
    reports = run_all(pipeline)
    assert [r.batch.coordinates["ranges"] for r in reports] == [
        [["a.csv", 0, 2]],
        [["a.csv", 2, 3], ["b.csv", 0, 1]],
    ]
    assert stream_rows(pipeline, "busy") == [{"machine_id": "m1", "cpu": 0.5}]
    q = [r for rep in reports for r in pq.read_table(rep.quarantine_path).to_pylist()]
    assert [(r["source"], r["offset"], r["raw"]) for r in q] == [
        ("a.csv", 1, b"2,m2,oops"),
        ("a.csv", 2, b"3,m1"),
    ]
    assert "invalid value 'oops'" in q[0]["error"]
    assert q[1]["error"] == "csv: expected 3 columns, got 2: '3,m1'"


@pytest.mark.skipif(not (SHARED / "ztf" / "alerts").is_dir(), reason="../shared not present")
def test_all_shared_ztf_alerts_match_the_full_manifest(ztf_spec):
    with open(SHARED / "ztf" / "MANIFEST.csv") as fh:
        rows = list(csv.DictReader(fh))
    pipeline = Pipeline(load_spec(ztf_spec(batch=40, alerts=SHARED / "ztf" / "alerts")))
    run_all(pipeline)
    want = expected_from_manifest(rows)
    assert len(want["raw"]) == 110 and len(want["solar_system"]) == 34
    for stream, ids in want.items():
        assert sorted(r["candid"] for r in stream_rows(pipeline, stream)) == sorted(ids), stream


def counting_reads(pipeline: Pipeline) -> list[str]:
    """Record the id-free coordinates of every read the pipeline's source makes."""
    reads: list[str] = []
    read = pipeline.source.read

    def recorded(coordinates):
        reads.append(coordinates["ranges"][0][0])
        return read(coordinates)

    pipeline.source.read = recorded
    return reads


def beside_a_plain_run(ztf_spec, lake) -> tuple[Pipeline, Pipeline]:
    """The sample run batch after batch, and the same spec planned (not run) into ``lake``:
    outputs to compare with, and the pipeline to try another way of running on."""
    plain = Pipeline(load_spec(ztf_spec(batch=10)))
    run_all(plain)
    pipeline = Pipeline(load_spec(ztf_spec(batch=10), parse_overrides([f"lake={lake}"])))
    pipeline.plan()
    return plain, pipeline


def test_the_expected_next_batch_is_read_ahead_and_gives_the_same_outputs(ztf_spec, tmp_path):
    plain, pipeline = beside_a_plain_run(ztf_spec, tmp_path / "ahead")
    batches = pipeline.pending()
    reads = counting_reads(pipeline)
    for k, batch in enumerate(batches):
        pipeline.expect(batches[k + 1] if k + 1 < len(batches) else None)
        pipeline.run(batch)
        if k + 1 < len(batches):  # the next one is read already, before its run
            assert pipeline._ahead is not None and pipeline._ahead[0] == batches[k + 1].id
    assert len(reads) == len(batches)  # each batch read once
    for stream in ("raw", "solar_system", "extragalactic"):
        assert stream_rows(pipeline, stream) == stream_rows(plain, stream)
    pipeline.close()
    assert pipeline._reader is None


def fail_second_decode(pipeline: Pipeline) -> None:
    """The pipeline's second decode (of any batch) fails, as if the broker went away."""
    decode, calls = pipeline.decoder.decode, []

    def failing_second(raw):
        calls.append(raw)
        if len(calls) == 2:
            raise SourceError("the broker went away")
        return decode(raw)

    pipeline.decoder.decode = failing_second


def test_a_read_ahead_error_is_raised_by_that_batch_s_run(ztf_spec):
    pipeline = Pipeline(load_spec(ztf_spec(batch=10)))
    pipeline.plan()
    first, second, *_ = pipeline.pending()
    fail_second_decode(pipeline)
    pipeline.expect(second)
    pipeline.run(first)  # fine: the error belongs to the next batch
    with pytest.raises(SourceError, match="broker went away"):
        pipeline.run(second)
    pipeline.close()


def test_a_batch_other_than_the_expected_one_is_read_when_it_runs(ztf_spec):
    pipeline = Pipeline(load_spec(ztf_spec(batch=10)))
    pipeline.plan()
    first, second, third, *_ = pipeline.pending()
    reads = counting_reads(pipeline)
    pipeline.expect(second)
    pipeline.run(first)
    report = pipeline.run(third)  # not the one expected: read now, after the other finished
    assert report.decoded == third.records
    assert reads == [
        first.coordinates["ranges"][0][0],
        second.coordinates["ranges"][0][0],
        third.coordinates["ranges"][0][0],
    ]
    assert pipeline._ahead is None
    pipeline.close()


def test_streams_whose_chains_start_alike_share_that_work(ztf_spec, monkeypatch):
    """Two streams start by excluding solar-system objects from raw: that runs once a batch;
    solar_system's include, configured otherwise, on its own."""
    from headwater.processors.solar_system import SolarSystem

    spec = ztf_spec(batch=100)
    spec.write_text(
        spec.read_text()
        + """  faint:
    from: raw
    processors:
      - solar_system: {action: exclude}
      - sql: "select * from batch where candidate.magpsf >= 19"
    sinks: [parquet]
"""
    )
    calls = []
    real = SolarSystem.process
    monkeypatch.setattr(
        SolarSystem, "process", lambda self, t: calls.append(self.config.action) or real(self, t)
    )
    pipeline = Pipeline(load_spec(spec))
    [report] = run_all(pipeline)
    assert sorted(calls) == ["exclude", "include"]
    bright, faint = report.streams["extragalactic"], report.streams["faint"]
    assert bright.rows_in == faint.rows_in == report.decoded
    sso = {r["candid"] for r in stream_rows(pipeline, "solar_system")}
    faint_ids = {r["candid"] for r in stream_rows(pipeline, "faint")}
    assert sso and faint_ids and not sso & faint_ids
    assert faint_ids.isdisjoint(r["candid"] for r in stream_rows(pipeline, "extragalactic"))
