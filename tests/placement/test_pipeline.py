"""The placement pipeline end to end (no Dagster): usage windows → cluster model → moves →
moves log → the next window's model, on HOTS's thesis example and on bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from headwater.errors import SpecError
from headwater.pipeline import BatchReport, Pipeline, overlapped
from headwater.placement.generate import generate, hosts_table, usage_table
from headwater.spec.load import load_spec

REPO = Path(__file__).resolve().parents[2]
THESIS = REPO / "samples" / "placement" / "hots_examples" / "thesis_ex_10"

SPEC = """
name: place
lake: lake
source: {{usage: {{path: data, window_ticks: {window}}}}}
decode:
  csv: {{types: {{timestamp: int64, container_id: string, machine_id: string, cpu: double}}}}
streams:
  cluster_model:
    processors:
      - cluster_model: {{hosts: data/node_meta.csv{collector}}}
    sinks: [parquet, duckdb]
  placement_decisions:
    from: cluster_model
    processors:
      - placement: {{strategy: {{balance: {{move_budget: {budget}}}}}, heatmap: {heatmap}}}
    sinks: [parquet, duckdb, moves]
"""


def project(
    tmp_path: Path, data: Path | None = None, window=4, budget=10, collector="", heatmap="false"
) -> Path:
    shutil.copytree(data or THESIS, tmp_path / "data")
    spec = tmp_path / "pipelines" / "p.yaml"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(SPEC.format(window=window, budget=budget, collector=collector, heatmap=heatmap))
    return spec


def run_all(spec: Path) -> list:
    pipeline = Pipeline(load_spec(spec, base_dir=spec.parents[1]))
    try:
        return [pipeline.run(b) for b in pipeline.plan()]
    finally:
        pipeline.close()


def moves_log(tmp_path: Path) -> list[dict]:
    path = tmp_path / "lake" / "place" / "moves.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def meta(report, stream="placement_decisions") -> dict:
    return report.streams[stream].metadata


def test_thesis_example_closed_loop(tmp_path):
    reports = run_all(project(tmp_path, heatmap="true"))
    assert [r.batch.coordinates["ticks"] for r in reports] == [[0, 4], [4, 8], [8, 12]]
    log = moves_log(tmp_path)
    assert log and set(log[0]) == {"container_name", "old_host", "new_host", "time"}
    assert {m["time"] for m in log} <= {"3", "7", "11"}  # a window's last tick
    for r in reports:
        m = meta(r)
        assert m["after_overloaded_host_ticks"] == 0
        assert m["after_peak_utilisation"] <= m["before_peak_utilisation"]
        assert Path(m["heatmap"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the closed loop: each model places a moved container where the previous batch sent it
    db = duckdb.connect(str(tmp_path / "lake" / "place.duckdb"), read_only=True)
    for move in log:
        t = int(move["time"])
        if t + 1 >= 12:
            continue
        host = db.execute(
            "select distinct host_id from cluster_model where container_id = ? and tick = ?",
            [move["container_name"], t + 1],
        ).fetchall()
        later = [
            m
            for m in log
            if m["container_name"] == move["container_name"] and int(m["time"]) == t + 4
        ]
        if not later:
            assert host == [(move["new_host"],)]
        raw = [
            line
            for line in (THESIS / "container_usage.csv").read_text().splitlines()
            if line.startswith(f"{t + 1},{move['container_name']},")
        ]
        assert raw and raw[0].split(",")[2] == move["old_host"] != move["new_host"]


def test_rerun_replaces_and_reports_unchanged(tmp_path):
    spec = project(tmp_path)
    first = run_all(spec)
    log = moves_log(tmp_path)
    pipeline = Pipeline(load_spec(spec, base_dir=spec.parents[1]))
    try:
        again = pipeline.run(first[1].batch)  # a batch in the middle, after later ones ran
    finally:
        pipeline.close()
    assert moves_log(tmp_path) == log
    assert again.streams["placement_decisions"].outputs["moves"]["status"] == "unchanged"
    assert meta(again) == {
        **meta(first[1]),
        "after_solve_seconds": meta(again)["after_solve_seconds"],
    }


def test_generated_cluster_over_several_batches(tmp_path):
    model = generate(100, 10, ticks=24, seed=3)
    data = tmp_path / "gen"
    data.mkdir()
    pcsv.write_csv(
        usage_table(model), data / "container_usage.csv", pcsv.WriteOptions(quoting_style="none")
    )
    pcsv.write_csv(
        hosts_table(model), data / "node_meta.csv", pcsv.WriteOptions(quoting_style="none")
    )
    reports = run_all(project(tmp_path, data, window=6, budget=100))
    assert len(reports) == 4
    first, rest = meta(reports[0]), [meta(r) for r in reports[1:]]
    assert first["before_overloaded_host_ticks"] > 0 and first["after_overloaded_host_ticks"] == 0
    # later windows start from the moves already applied: far fewer overloads, fewer moves
    for m in rest:
        assert m["before_overloaded_host_ticks"] < first["before_overloaded_host_ticks"]
        assert m["after_overloaded_host_ticks"] == 0
        assert m["after_moves"] < first["after_moves"]


BAD_USAGE = """timestamp,container_id,machine_id,cpu
0,c_1,n_1,1.0
0,c_2,n_1,-2.0
0,c_3,n_9,1.0
0,c_4,n_3,1.0
0,c_5,n_2,
1,c_1,n_1,1.0
0,c_1,n_1,1.0
1,c_3,n_2,1.0
2,c_1,n_1,1.0
3,c_1,n_1,1.0
"""


def test_bad_usage_rows_are_quarantined_with_the_reason_and_counted(tmp_path):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "container_usage.csv").write_text(BAD_USAGE)
    (data / "node_meta.csv").write_text("machine_id,cpu\nn_1,4\nn_2,4\nn_3,\n")
    [report] = run_all(project(tmp_path, data, window=4))
    q = pq.read_table(report.quarantine_path).to_pylist()
    errors = sorted(r["error"] for r in q)
    assert len(errors) == 5 == report.quarantined
    assert any("cpu is negative" in e for e in errors)
    assert any("unknown host 'n_9'" in e or "unknown host n_9" in e for e in errors)
    assert any("n_3 has no usable capacity" in e for e in errors)
    assert any("cpu is missing" in e for e in errors)
    assert any("out of order" in e for e in errors)
    assert {r["offset"] for r in q} == {1, 2, 3, 4, 6}  # each row traced to its record
    m = meta(report)
    assert m["rows_ignored"] == 5
    assert meta(report, "cluster_model")["rows_refused"] == 5


def test_late_rows_of_a_modelled_window_are_refused(tmp_path):
    data = tmp_path / "late"
    data.mkdir()
    shutil.copy(THESIS / "node_meta.csv", data)
    rows = (THESIS / "container_usage.csv").read_text().splitlines()
    (data / "container_usage.csv").write_text("\n".join(rows[:41]) + "\n")  # ticks 0..3
    spec = project(tmp_path, data, window=4)
    run_all(spec)
    late = [*rows[41:81], "1,c_1,n_1,0.5", *rows[81:]]  # a tick-1 row among tick-4..7 rows
    (tmp_path / "data" / "container_usage.csv").write_text("\n".join(rows[:41] + late) + "\n")
    reports = run_all(spec)
    assert [r.batch.coordinates["ticks"] for r in reports] == [[4, 8], [8, 12]]
    errors = [r["error"] for r in pq.read_table(reports[0].quarantine_path).to_pylist()]
    assert len(errors) == 1
    assert "late row" in errors[0]


def test_a_usage_file_without_the_tick_column_fails_saying_so(tmp_path):
    data = tmp_path / "nocol"
    data.mkdir()
    (data / "container_usage.csv").write_text("t,container_id,machine_id,cpu\n0,a,n_1,1\n")
    (data / "node_meta.csv").write_text("machine_id,cpu\nn_1,4\n")
    with pytest.raises(Exception, match="no column 'timestamp'"):
        run_all(project(tmp_path, data))


EVENTS = """timestamp,container_id,machine_id,cpu,event_type
0,c1,n_1,1.0,
0,c2,n_1,1.0,
1,c1,n_1,1.0,
1,c2,n_1,1.0,
2,c3,n_2,,container.started
2,c1,n_2,1.0,
2,c2,n_1,1.0,
2,c3,n_2,2.0,
2,c2,,,compute.metrics.update
3,c2,n_2,,container.moved
3,c1,n_2,1.0,
3,c2,n_1,1.0,
3,c3,n_2,2.0,
4,c1,,,container.stopped
4,c2,n_1,1.0,
4,c3,n_2,2.0,
5,c1,n_1,1.0,
5,c2,n_1,1.0,
5,c3,n_2,2.0,
6,c1,n_1,1.0,
6,c2,n_1,1.0,
7,c2,n_1,1.0,
7,c1,n_1,1.0,
"""


def test_incremental_updates_between_full_rebuilds(tmp_path):
    data = tmp_path / "events"
    data.mkdir()
    (data / "container_usage.csv").write_text(EVENTS)
    (data / "node_meta.csv").write_text("machine_id,cpu\nn_1,10\nn_2,10\n")
    collector = ", collector: {usage: {period: 3}}"
    reports = run_all(project(tmp_path, data, window=2, budget=0, collector=collector))
    modes = [meta(r, "cluster_model")["mode"] for r in reports]
    assert modes == ["rebuild", "incremental", "incremental", "rebuild"]
    db = duckdb.connect(str(tmp_path / "lake" / "place.duckdb"), read_only=True)
    host = dict(
        ((c, t), h)
        for c, t, h in db.execute(
            "select container_id, tick, host_id from cluster_model where tick is not null"
        ).fetchall()
    )
    # incremental: c1's rows claim n_2, the model keeps it where it was (no event moved it)
    assert host["c1", 2] == host["c1", 3] == "n_1"
    # started on n_2 by an event; moved by an event from its tick on
    assert host["c3", 2] == "n_2"
    assert (host["c2", 2], host["c2", 3], host["c2", 4]) == ("n_1", "n_2", "n_2")
    # stopped at tick 4: its tick-5 row is refused; the rebuild at tick 6 trusts rows again
    assert ("c1", 5) not in host and host["c1", 6] == "n_1" and host["c2", 6] == "n_1"
    second = meta(reports[1], "cluster_model")
    assert second["events_applied"] == 2 and second["events_ignored"] == 1
    third = meta(reports[2], "cluster_model")
    assert third["refused_by_reason"] == {"stopped": 1} and third["containers"] == 2
    q = pq.read_table(reports[2].quarantine_path).to_pylist()
    assert [r["offset"] for r in q] == [16] and "stopped" in q[0]["error"]


def test_history_ticks_carry_earlier_windows_into_the_model(tmp_path):
    collector = ", history_ticks: 4"
    reports = run_all(project(tmp_path, window=4, collector=collector))
    second = pq.read_table(reports[1].streams["cluster_model"].outputs["parquet"]["path"])
    rows = second.filter(second["tick"].is_valid()).to_pylist()
    assert {r["tick"] for r in rows if r["history"]} == {0, 1, 2, 3}
    assert {r["tick"] for r in rows if not r["history"]} == {4, 5, 6, 7}
    assert meta(reports[1], "cluster_model")["ticks"] == 4
    assert meta(reports[1])["window"] == [4, 7]  # the decision is scored on its window
    # no history on the first batch; the third carries the second's window only
    third = pq.read_table(reports[2].streams["cluster_model"].outputs["parquet"]["path"])
    flags = zip(third["tick"].to_pylist(), third["history"].to_pylist(), strict=True)
    assert {t for t, h in flags if h} == {4, 5, 6, 7}


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("{balanse: {}}", "unknown strategy 'balanse'; known strategies: balance, consolidate"),
        ("{balance: {move_budget: -1}}", "balance: move_budget: Input should be greater than"),
        ("{workload_balance: {threshold: 2}}", "threshold: Input should be less than or equal"),
    ],
)
def test_a_bad_strategy_fails_at_load_naming_file_line_and_key(tmp_path, strategy, expected):
    from headwater.errors import SpecError

    spec = project(tmp_path)
    spec.write_text(spec.read_text().replace("{balance: {move_budget: 10}}", strategy))
    with pytest.raises(SpecError) as err:
        load_spec(spec, base_dir=tmp_path)
    [problem] = err.value.problems
    assert problem.startswith(f"{spec}:")
    assert "streams.placement_decisions.processors[0].placement.strategy" in problem
    assert expected in problem


def test_memory_is_a_second_metric_with_its_own_capacity(tmp_path):
    """CPU fits everywhere; memory overloads host a until a container moves."""
    data = tmp_path / "mem"
    data.mkdir()
    rows = ["timestamp,container_id,machine_id,cpu,memory"]
    for t in range(4):
        rows += [f"{t},c1,a,1.0,6.0", f"{t},c2,a,1.0,6.0", f"{t},c3,b,1.0,1.0"]
    (data / "container_usage.csv").write_text("\n".join(rows) + "\n")
    (data / "node_meta.csv").write_text("machine_id,cpu,memory\na,8,10\nb,8,10\n")
    spec = project(tmp_path, data, window=4)
    text = spec.read_text().replace(
        "hosts: data/node_meta.csv", "hosts: data/node_meta.csv, columns: {metrics: [cpu, memory]}"
    )
    spec.write_text(text.replace("heatmap: false", "heatmap: false, metrics: [cpu, memory]"))
    [report] = run_all(spec)
    m = meta(report)
    assert m["before_overloaded_host_ticks"] == 4 and m["before_peak_utilisation"] == 1.2
    assert m["after_overloaded_host_ticks"] == 0 and m["after_moves"] == 1


@pytest.mark.parametrize(
    "strategy",
    ["{workload_balance: {threshold: 0.6}}", "{consolidate: {move_budget: 3}}", "balance"],
)
def test_every_strategy_runs_in_the_loop_and_its_moves_are_applied(tmp_path, strategy):
    spec = project(tmp_path)
    spec.write_text(spec.read_text().replace("{balance: {move_budget: 10}}", strategy))
    reports = run_all(spec)
    name = strategy.strip("{").split(":")[0]
    decided = []
    for r in reports:
        assert meta(r)["strategy"] == name
        decided += pq.read_table(
            r.streams["placement_decisions"].outputs["parquet"]["path"]
        ).to_pylist()
    log = moves_log(tmp_path)
    assert [(m["container_name"], m["new_host"], int(m["time"])) for m in log] == [
        (d["container_name"], d["new_host"], d["time"]) for d in decided
    ]
    assert decided
    if name == "consolidate":  # two hosts near full: neither can be emptied
        for r in reports:  # a window's overload is moved off, where a container fits
            m = meta(r)
            assert m["after_hosts_used"] == 2 and m["after_overloaded_host_ticks"] == 0
            assert (m["after_moves"] > 0) == (m["before_overloaded_host_ticks"] > 0)


def test_no_feasible_placement_gives_the_best_effort_and_says_so(tmp_path):
    data = tmp_path / "tight"
    shutil.copytree(THESIS, data)
    (data / "node_meta.csv").write_text("machine_id,cpu\nn_1,4\nn_2,4\n")  # 8 CPU for up to 9
    reports = run_all(project(tmp_path, data))
    hot = [meta(r) for r in reports if meta(r)["before_overloaded_host_ticks"]]
    assert hot
    for m in hot:
        assert m["best_effort"] is True
        assert m["after_overloaded_host_ticks"] <= m["before_overloaded_host_ticks"]
        assert m["after_overload_volume"] <= m["before_overload_volume"]
    # some tick needs more than the 8 CPU there are: no strategy can clear it
    assert any(m["after_overloaded_host_ticks"] > 0 for m in hot)


def test_a_placement_loop_runs_its_windows_one_at_a_time(tmp_path):
    """The sensor tags every window's run with one group: the run queue allows one at a time
    (dagster.yaml), so each batch starts from the state and moves the previous one left."""
    from headwater.sensors.batches import batch_tags

    pipeline = Pipeline(load_spec(project(tmp_path), base_dir=tmp_path))
    try:
        batches = pipeline.plan()
        tags = [batch_tags(b, "", pipeline.source.group(b.coordinates)) for b in batches]
    finally:
        pipeline.close()
    assert len(batches) == 3
    assert {t["headwater/partition_group"] for t in tags} == {"place:windows"}


def test_a_backlog_run_overlapped_decides_what_one_batch_at_a_time_decides(tmp_path):
    """``headwater stream`` runs a backlog overlapped: batch k+1 processed while batch k's
    sinks write. A placement loop's model reads the moves batch k applies, so its batches
    must not overlap: they did, and each window was decided on a stale placement."""
    model = generate(20, 4, ticks=48, period=24, seed=20)
    data = tmp_path / "gen"
    data.mkdir()
    plain = pcsv.WriteOptions(quoting_style="none")
    pcsv.write_csv(usage_table(model), data / "container_usage.csv", plain)
    pcsv.write_csv(hosts_table(model), data / "node_meta.csv", plain)
    logs = []
    for name, overlap in (("plain", False), ("overlapped", True)):
        root = tmp_path / name
        root.mkdir()
        pipeline = Pipeline(load_spec(project(root, data, window=6, budget=20), base_dir=root))
        try:
            assert pipeline.closed_loop
            batches = pipeline.plan()
            if overlap:
                outcomes = list(overlapped(pipeline, batches))
                assert all(isinstance(done, BatchReport) for _, done in outcomes)
            else:
                for batch in batches:
                    pipeline.run(batch)
        finally:
            pipeline.close()
        logs.append(moves_log(root))
    assert logs[0]  # the loop moved containers, so a stale placement would show
    assert logs[1] == logs[0]


def test_a_closed_loop_runs_in_one_group_whatever_its_source(tmp_path):
    """The run queue keeps one run per group at a time: a folder of usage files has no groups
    of its own (its batches may run in parallel), so a closed loop's batches get one."""
    spec = project(tmp_path).read_text()
    spec = spec.replace("{usage: {path: data, window_ticks: 4}}", "{files: {path: data}}")
    (tmp_path / "pipelines" / "p.yaml").write_text(spec)
    pipeline = Pipeline(load_spec(tmp_path / "pipelines" / "p.yaml", base_dir=tmp_path))
    try:
        assert pipeline.closed_loop
        assert pipeline.source.group({"files": []}) is None
        assert pipeline.group({"files": []}) == "loop"
    finally:
        pipeline.close()


def test_a_closed_loop_fed_by_parallel_groups_fails_at_load_naming_the_key(tmp_path):
    spec = project(tmp_path).read_text()
    kafka = (
        'kafka: {bootstrap_servers: "127.0.0.1:9"}\n'
        "source: {kafka: {topics: [usage], group: g, partition_groups: 3}}"
    )
    spec = spec.replace("source: {usage: {path: data, window_ticks: 4}}", kafka)
    (tmp_path / "pipelines" / "p.yaml").write_text(spec)
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "pipelines" / "p.yaml", base_dir=tmp_path)
    (problem,) = info.value.problems
    assert "p.yaml:5: source.kafka.partition_groups: 3 groups of batches" in problem
    assert "streams.cluster_model.processors[0].cluster_model runs a closed loop" in problem
    assert "Set partition_groups: 1" in problem


def test_a_host_added_to_the_hosts_file_counts_from_the_next_batch(tmp_path):
    """A worker keeps its pipeline for weeks: the hosts file is read again once it changed."""
    pipeline = Pipeline(load_spec(project(tmp_path), base_dir=tmp_path))
    try:
        first, *rest = pipeline.plan()
        before = meta(pipeline.run(first), "cluster_model")["hosts"]
        hosts = tmp_path / "data" / "node_meta.csv"
        added = hosts.read_text().rstrip("\n") + "\nn_new,100\n"
        tmp = hosts.with_suffix(".tmp")
        tmp.write_text(added)
        tmp.replace(hosts)  # replaced whole, as a hosts file should be
        after = [pipeline.run(b) for b in rest]
    finally:
        pipeline.close()
    assert [meta(r, "cluster_model")["hosts"] for r in after] == [before + 1] * len(rest)
    db = duckdb.connect(str(tmp_path / "lake" / "place.duckdb"), read_only=True)
    idle = db.execute("select count(*) from cluster_model where host_id = 'n_new'").fetchone()
    db.close()
    assert idle == (len(rest),)  # an idle host's row in each later window's model


def test_a_missing_hosts_file_fails_at_load_naming_the_key(tmp_path):
    from headwater.errors import SpecError

    spec = project(tmp_path)
    text = spec.read_text().replace("data/node_meta.csv", "data/nodes.csv")
    spec.write_text(text.replace("path: data,", "path: elsewhere,"))
    with pytest.raises(SpecError) as err:
        load_spec(spec, base_dir=tmp_path)
    problems = err.value.problems
    [problem] = problems  # a usage file may appear later; the hosts are reference data
    assert "cluster_model.hosts: no such file or folder" in problem and "nodes.csv" in problem
