"""A batch that ends part-way through a tick holds that tick back (``hold_partial_tick``).

A source that does not cut on tick boundaries (a topic, a folder of files) hands the model
batches ending anywhere; the model then keeps the last tick's rows until a later tick (or
every running container's row) comes, and models them with the next batch. Driven here by
the files source, one message a CSV line, cut every ``n`` lines: no broker needed (the
Kafka tests run the same over a real topic)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from headwater.pipeline import Pipeline
from headwater.spec.load import load_spec
from tests.placement.test_pipeline import THESIS

SPEC = """
name: held
lake: lake
source: {{files: {{path: data, pattern: "*.csv", format: csv, max_records_per_batch: {n}}}}}
decode:
  csv: {{types: {{timestamp: int64, container_id: string, machine_id: string, cpu: double}}}}
streams:
  cluster_model:
    processors:
      - cluster_model: {{hosts: {hosts}, history_ticks: {history}{extra}}}
    sinks: [parquet]
  placement_decisions:
    from: cluster_model
    processors: [{{placement: {{strategy: balance, heatmap: false}}}}]
    sinks: [parquet, moves]
"""


def thesis_rows() -> list[dict]:
    with open(THESIS / "container_usage.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def project(tmp_path: Path, n: int, history: int = 0, extra: str = "", rows=None) -> Path:
    data = tmp_path / "data"
    data.mkdir(parents=True)
    rows = thesis_rows() if rows is None else rows
    with open(data / "usage.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    spec = tmp_path / "pipelines" / "held.yaml"
    spec.parent.mkdir()
    hosts = THESIS / "node_meta.csv"
    spec.write_text(SPEC.format(n=n, hosts=hosts, history=history, extra=extra))
    return spec


def open_pipeline(spec: Path) -> Pipeline:
    return Pipeline(load_spec(spec, base_dir=spec.parents[1]))


def model_rows(report) -> list[dict]:
    path = report.streams["cluster_model"].outputs["parquet"]["path"]
    return [r for r in pq.read_table(path).to_pylist() if r["tick"] is not None]


def moves_log(tmp_path: Path) -> list[dict]:
    path = tmp_path / "lake" / "held" / "moves.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("n", [7, 13, 25])
def test_ticks_cut_across_batches_are_modelled_whole_and_once(tmp_path, n):
    spec = project(tmp_path, n)
    pipeline = open_pipeline(spec)
    try:
        assert pipeline.processors["cluster_model"][0].hold  # a files source: on by default
        reports = [pipeline.run(b) for b in pipeline.plan()]
    finally:
        pipeline.close()
    assert len(reports) == -(-120 // n) and all(r.quarantined == 0 for r in reports)
    modelled = [(r["tick"], r["container_id"]) for rep in reports for r in model_rows(rep)]
    expected = [(int(r["timestamp"]), r["container_id"]) for r in thesis_rows()]
    assert sorted(modelled) == sorted(expected)  # every row, once
    windows = []
    for rep in reports:
        per_tick = Counter(r["tick"] for r in model_rows(rep))
        assert set(per_tick.values()) <= {10}  # whole ticks only: all ten containers
        window = rep.streams["placement_decisions"].metadata["window"]
        assert window == ([min(per_tick), max(per_tick)] if per_tick else [])
        windows += [window] if window else []
        status = rep.streams["placement_decisions"].outputs["moves"]["status"]
        assert (status == "no decision") == (not per_tick)
    # the windows follow each other, and every move was decided at a window's end
    assert [w[0] for w in windows[1:]] == [w[1] + 1 for w in windows[:-1]]
    assert {int(m["time"]) for m in moves_log(tmp_path)} <= {w[1] for w in windows}


def test_a_rerun_of_any_batch_reads_what_its_first_run_read(tmp_path):
    """Three rows a batch: tick 0 takes four batches, three of them modelling nothing and
    adding to the rows held back. A rerun of any batch, in any order (last first; the one
    completing tick 0, then the one completing tick 1, alone), starts from the state before
    it with the rows held back for it, and models and holds what its first run did (one
    that modelled nothing holds what is held there now)."""
    spec = project(tmp_path, 3, history=4)
    pipeline = open_pipeline(spec)
    try:
        batches = pipeline.plan()
        first = {b.id: pipeline.run(b) for b in batches}
        log = moves_log(tmp_path)
        order = [*reversed(batches), batches[3], batches[6], *batches]
        again = [(b.id, pipeline.run(b)) for b in order]
    finally:
        pipeline.close()
    held = [first[b.id].streams["cluster_model"].metadata["rows_held"] for b in batches[:4]]
    assert held == [3, 6, 9, 2]  # tick 0 waits for its tenth row; then tick 1's two
    key = ("tick", "container_id", "host_id", "history")
    for batch_id, rerun in again:
        report = first[batch_id]
        rows = sorted(tuple(r[k] for k in key) for r in model_rows(rerun))
        assert rows == sorted(tuple(r[k] for k in key) for r in model_rows(report))
        assert rerun.quarantined == 0
        now, then = (r.streams["cluster_model"].metadata["rows_held"] for r in (rerun, report))
        # a batch that modelled nothing reruns with what later ones added to the held tick
        assert now == then if rows else now >= then
    assert moves_log(tmp_path) == log


def test_a_tick_every_running_container_reported_is_not_held(tmp_path):
    """Cut at tick boundaries (ten rows a tick), nothing waits: each batch decides on its
    own tick."""
    spec = project(tmp_path, 20)
    pipeline = open_pipeline(spec)
    try:
        reports = [pipeline.run(b) for b in pipeline.plan()]
    finally:
        pipeline.close()
    assert [r.streams["cluster_model"].metadata["rows_held"] for r in reports] == [0] * 6
    windows = [r.streams["placement_decisions"].metadata["window"] for r in reports]
    assert windows == [[t, t + 1] for t in range(0, 12, 2)]


def test_held_back_events_wait_for_their_tick(tmp_path):
    """An event in the held tick is not applied before it: a container started at tick 3
    whose start is in a batch cut inside tick 3 is placed from tick 3, with its rows."""
    rows = [r for r in thesis_rows() if int(r["timestamp"]) <= 4]
    for r in rows:
        r["event_type"] = ""
    start = {"timestamp": "3", "container_id": "c_new", "machine_id": "n_1", "cpu": ""}
    at3 = next(i for i, r in enumerate(rows) if int(r["timestamp"]) == 3)
    rows.insert(at3 + 2, {**start, "event_type": "container.started"})
    rows.insert(at3 + 3, {**start, "cpu": "0.5", "event_type": ""})
    rows.append({**start, "timestamp": "4", "cpu": "0.5", "event_type": ""})
    spec = project(tmp_path, at3 + 5, rows=rows)
    pipeline = open_pipeline(spec)
    try:
        reports = [pipeline.run(b) for b in pipeline.plan()]
    finally:
        pipeline.close()
    assert [r.quarantined for r in reports] == [0, 0]
    model = [r.streams["cluster_model"].metadata for r in reports]
    assert model[0]["rows_held"] == 5 and model[0]["events_applied"] == 0
    assert model[1]["events_applied"] == 1 and model[1]["rows_held"] == 0
    new = [r for r in model_rows(reports[1]) if r["container_id"] == "c_new"]
    assert [(r["tick"], r["host_id"]) for r in new] == [(3, "n_1"), (4, "n_1")]


def test_the_usage_source_does_not_hold_and_a_spec_can_turn_it_off(tmp_path):
    from tests.placement.test_pipeline import project as usage_project

    pipeline = open_pipeline(usage_project(tmp_path / "usage"))
    try:
        assert not pipeline.processors["cluster_model"][0].hold  # windows of whole ticks
    finally:
        pipeline.close()
    (tmp_path / "files").mkdir()
    spec = project(tmp_path / "files", 7, extra=", hold_partial_tick: false")
    pipeline = open_pipeline(spec)
    try:
        assert not pipeline.processors["cluster_model"][0].hold
        first = pipeline.run(pipeline.plan()[0])
    finally:
        pipeline.close()
    assert Counter(r["tick"] for r in model_rows(first)) == {0: 7}  # part of tick 0
    assert "rows_held" not in first.streams["cluster_model"].metadata


def run_rows(tmp_path: Path, rows: list[dict], n: int) -> list:
    pipeline = open_pipeline(project(tmp_path, n, rows=rows))
    try:
        return [pipeline.run(b) for b in pipeline.plan()]
    finally:
        pipeline.close()


def test_ticks_wait_for_containers_whose_rows_lag(tmp_path):
    """Half the containers six ticks ahead of the others (as when their partition was read
    further): the first batch models the ticks all have reported and holds the rest; the
    next ones, bringing the laggards' ticks, model the rest, tick by whole tick."""
    rows = thesis_rows()
    ahead = {f"c_{i}" for i in range(1, 6)}
    first = [r for r in rows if int(r["timestamp"]) <= (5 if r["container_id"] in ahead else 2)]
    rest = [r for r in rows if r not in first]
    reports = run_rows(tmp_path, first + rest, len(first))  # 45 rows a batch
    assert all(r.quarantined == 0 for r in reports)
    ticks = [Counter(r["tick"] for r in model_rows(rep)) for rep in reports]
    assert ticks[0] == {0: 10, 1: 10, 2: 10}
    assert reports[0].streams["cluster_model"].metadata["rows_held"] == 15
    assert all(set(t.values()) <= {10} for t in ticks)  # every tick whole
    assert sum(ticks, Counter()) == {t: 10 for t in range(12)}  # every row, once


def test_a_container_that_stops_reporting_holds_ticks_back_only_for_a_while(tmp_path):
    """c_10 sends nothing after tick 3 and no stop event. Ticks wait for it while it is at
    most max_lag_ticks (3) behind; then they are modelled without it."""
    rows = [r for r in thesis_rows() if r["container_id"] != "c_10" or int(r["timestamp"]) <= 3]
    reports = run_rows(tmp_path, rows, 9)
    assert all(r.quarantined == 0 for r in reports)
    windows = [r.streams["placement_decisions"].metadata["window"] for r in reports]
    decided = [w for w in windows if w]
    assert decided[-1][1] == 11  # everything modelled in the end
    ends = [w[1] for w in decided]
    # waited for c_10 while the newest tick was 6 or less...
    assert 4 not in ends and 5 not in ends
    assert any(6 <= e < 11 for e in ends)  # ...not once it was more than three behind
    modelled = sorted((r["tick"], r["container_id"]) for rep in reports for r in model_rows(rep))
    assert modelled == sorted((int(r["timestamp"]), r["container_id"]) for r in rows)


def per_host_project(tmp_path: Path, split: str) -> Path:
    """The thesis example as one file per host (as each host's agent would write it)."""
    spec = project(tmp_path, 40)
    rows = thesis_rows()
    (tmp_path / "data" / "usage.csv").unlink()
    for host in sorted({r["machine_id"] for r in rows}):
        with open(tmp_path / "data" / f"{host}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if r["machine_id"] == host)
    spec.write_text(spec.read_text().replace("format: csv,", f"format: csv, split: {split},"))
    return spec


def run_spec(spec: Path) -> tuple[list, list[dict]]:
    pipeline = open_pipeline(spec)
    try:
        reports = [pipeline.run(b) for b in pipeline.plan()]
    finally:
        pipeline.close()
    return reports, moves_log(spec.parents[1])


@pytest.mark.parametrize("split", ["proportional", "in_order"])
def test_files_written_side_by_side_cut_in_proportion_give_the_usage_windows(tmp_path, split):
    """One file per host, 60 rows each, batches of 40. Cut in proportion, each batch takes
    the same four ticks from both files: the windows, and the moves, are those of the usage
    source's windows of four ticks. Cut file after file, the first batch holds one host's
    eight ticks: nothing is lost, but the first decision comes late."""
    usage = project(tmp_path / "usage", 40)
    source = '{files: {path: data, pattern: "*.csv", format: csv, max_records_per_batch: 40}}'
    text = usage.read_text()
    assert source in text
    usage.write_text(text.replace(source, f"{{usage: {{path: {THESIS}, window_ticks: 4}}}}"))
    expected, want = run_spec(usage)
    windows = [r.streams["placement_decisions"].metadata["window"] for r in expected]
    assert windows == [[0, 3], [4, 7], [8, 11]] and want
    reports, got = run_spec(per_host_project(tmp_path / "files", split))
    assert all(r.quarantined == 0 for r in reports)
    windows = [r.streams["placement_decisions"].metadata["window"] for r in reports]
    if split == "proportional":
        assert windows == [[0, 3], [4, 7], [8, 11]]
        assert got == want
    else:
        assert windows[0] == [0, 7] and got != want
