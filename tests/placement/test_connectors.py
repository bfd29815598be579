"""The file connector's moves log: appended for a new decision tick, rewritten for a rerun,
read back incrementally, and safe against a partial last line left by a crash."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest

from headwater.errors import HeadwaterError
from headwater.placement.connectors import (
    BULK,
    ConnectorConfig,
    FileConnector,
    _parse_bulk,
    connector_for,
)


def move(container: str, new: str, time: int, old: str = "h0") -> dict:
    return {"container_name": container, "old_host": old, "new_host": new, "time": time}


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_each_new_decision_tick_is_appended_in_place(tmp_path):
    log = FileConnector(tmp_path / "moves.jsonl")
    assert log.apply([move("a", "h1", 3)], 3) == "applied"
    inode = os.stat(log.path).st_ino
    assert log.apply([move("b", "h2", 7), move("c", "h1", 7)], 7) == "applied"
    assert os.stat(log.path).st_ino == inode  # appended, not rewritten
    assert [(m["container_name"], m["time"]) for m in log.applied()] == [
        ("a", 3),
        ("b", 7),
        ("c", 7),
    ]
    assert lines(log.path)[0] == {**move("a", "h1", 3), "time": "3"}  # HOTS's format


def test_a_rerun_replaces_its_ticks_moves_and_keeps_the_others(tmp_path):
    log = FileConnector(tmp_path / "moves.jsonl")
    log.apply([move("a", "h1", 3)], 3)
    log.apply([move("b", "h2", 7)], 7)
    assert log.apply([move("a", "h1", 3)], 3) == "unchanged"
    assert log.apply([move("z", "h2", 3)], 3) == "applied"
    assert sorted((m["container_name"], m["time"]) for m in log.applied()) == [
        ("b", 7),
        ("z", 3),
    ]
    assert log.apply([], 7) == "applied"  # the rerun decided nothing: its move goes
    assert [m["container_name"] for m in lines(log.path)] == ["z"]


def test_what_another_writer_appends_or_replaces_is_read_back(tmp_path):
    path = tmp_path / "moves.jsonl"
    log, reader = FileConnector(path), FileConnector(path)
    log.apply([move("a", "h1", 3)], 3)
    assert [m["container_name"] for m in reader.applied()] == ["a"]
    log.apply([move("b", "h1", 7)], 7)  # appended: the reader reads on
    assert [m["container_name"] for m in reader.applied()] == ["a", "b"]
    path.write_text(json.dumps(move("x", "h3", 1)) + "\n")  # shorter: read from the start
    assert [m["container_name"] for m in reader.applied()] == ["x"]
    tmp = tmp_path / "other.jsonl"
    tmp.write_text(json.dumps(move("y", "h3", 1)) + "\n" + json.dumps(move("w", "h3", 2)) + "\n")
    os.replace(tmp, path)  # another file, even a longer one: from the start
    assert [m["container_name"] for m in reader.applied()] == ["y", "w"]


def test_a_partial_last_line_from_a_crash_is_ignored_then_dropped(tmp_path):
    path = tmp_path / "moves.jsonl"
    log = FileConnector(path)
    log.apply([move("a", "h1", 3)], 3)
    with open(path, "a") as f:
        f.write('{"container_name": "b", "old_h')  # an append cut short
    assert [m["container_name"] for m in log.applied()] == ["a"]
    assert log.apply([move("c", "h2", 7)], 7) == "applied"
    assert [m["container_name"] for m in lines(path)] == ["a", "c"]


def test_a_last_line_without_its_newline_counts_and_is_not_run_on(tmp_path):
    path = tmp_path / "moves.jsonl"
    path.write_text(json.dumps(move("a", "h1", 3)))  # a log written by hand
    log = FileConnector(path)
    assert [m["container_name"] for m in log.applied()] == ["a"]
    log.apply([move("b", "h2", 7)], 7)
    assert [m["container_name"] for m in lines(path)] == ["a", "b"]


def test_a_bad_line_is_named_by_its_number_also_when_read_on(tmp_path):
    path = tmp_path / "moves.jsonl"
    log = FileConnector(path)
    log.apply([move("a", "h1", 3), move("b", "h1", 3)], 3)
    with open(path, "a") as f:
        f.write("not json\n")
    with pytest.raises(HeadwaterError, match=r"moves\.jsonl:3: not a move"):
        log.applied()


def test_the_moves_read_back_only_grow_in_place_and_a_rewrite_gives_a_new_log(tmp_path):
    """A reader of the log (the collector's move index) goes on from what it took of the
    same object: that object may only grow at its end."""
    path = tmp_path / "moves.jsonl"
    log, reader = FileConnector(path), FileConnector(path)
    seen: list = []

    def read() -> object:
        moves = reader.applied()
        for earlier, snapshot in seen:
            if earlier is moves:
                assert list(moves)[: len(snapshot)] == snapshot
        seen.append((moves, list(moves)))
        return moves

    log.apply([move("a", "h1", 3)], 3)
    first = read()
    log.apply([move("b", "h1", 7), move("c", "h2", 7)], 7)
    assert read() is first and len(first) == 3  # appended: read on, in place
    log.apply([move("z", "h2", 3)], 3)  # a rerun rewrites the log
    rewritten = read()
    assert rewritten is not first and [m["container_name"] for m in rewritten] == ["b", "c", "z"]
    assert [m["container_name"] for m in rewritten.at(7)] == ["b", "c"]
    with open(path, "a") as f:
        f.write(json.dumps(move("d", "h1", 9)))  # no newline yet: counted, in a copy
    partial = read()
    assert partial is not rewritten and partial[-1]["container_name"] == "d"
    with open(path, "a") as f:
        f.write("\n")
    assert read() is rewritten and rewritten[-1]["container_name"] == "d"


def test_a_long_log_read_whole_by_arrow_gives_what_line_by_line_gives(tmp_path):
    """A new process reads a long log at once with Arrow's JSON reader: the same moves as
    json line by line (HOTS's string times or integer ones, blank lines); a log Arrow
    cannot read so (times of both kinds) is read line by line, and a bad line is still
    named by its number."""
    path = tmp_path / "moves.jsonl"
    for kind in (str, int, lambda i: str(i) if i % 2 else i):
        rows = [
            json.dumps({**move(f"c{i % 7}", f"h{i % 3}", i), "time": kind(i)})
            for i in range(BULK + 5)
        ]
        rows.insert(10, "")
        path.write_text("\n".join(rows) + "\n")
        by_line = FileConnector(path)._parse(rows, 0)
        bulk = _parse_bulk(path.read_bytes())
        assert bulk == (None if kind not in (str, int) else by_line)
        applied = FileConnector(path).applied()
        assert list(applied) == by_line and len(applied) == BULK + 5
        assert applied[10] == move("c3", "h1", 10) and applied.last_time == BULK + 4
    rows[500] = '{"container_name": "c1", "time": 3}'
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(HeadwaterError, match=r"moves.jsonl:501: not a move"):
        FileConnector(path).applied()


def test_users_of_one_log_in_a_process_share_one_read_of_it(ctx, tmp_path):
    """The cluster model and the moves sink each used to read the whole history on a
    process's first batch; they now share one connector, closed with its last user."""
    config = ConnectorConfig()  # the pipeline's moves.jsonl in the lake
    model, sink = connector_for(config, ctx), connector_for(config, ctx)
    other = connector_for(ConnectorConfig(file=str(tmp_path / "other.jsonl")), ctx)
    try:
        sink.apply([move("a", "h1", 3)], 3)
        seen = model.applied()
        assert [m["container_name"] for m in seen] == ["a"]
        assert sink.applied() is seen  # one read, not one per user
        assert other.applied() is not seen and len(other.applied()) == 0
        sink.close()
        sink.close()  # a second close is harmless
        with pytest.raises(HeadwaterError, match="used after close"):
            sink.applied()
        model.apply([move("b", "h2", 7)], 7)  # the other user still has it
        assert [m["container_name"] for m in model.applied()] == ["a", "b"]
        late = connector_for(config, ctx)  # open while a user is: the same connector
        assert late.applied() is model.applied()
        late.close()
    finally:
        model.close()
        other.close()
    fresh = connector_for(config, ctx)  # the last user closed it: a new one reads anew
    try:
        assert fresh.applied() is not seen
        assert [m["container_name"] for m in fresh.applied()] == ["a", "b"]
        assert fresh.target == str(ctx.lake.pipeline_dir(ctx.pipeline) / "moves.jsonl")
    finally:
        fresh.close()


def test_a_window_that_decided_nothing_leaves_the_applied_moves(ctx):
    """A window that modelled no tick (its rows refused, or held back) has no decision
    tick; its sink used to apply "no moves at tick 0", wiping the moves decided there."""
    from headwater.batch import Batch
    from headwater.placement.model import DECISION_TICK_KEY, NO_DECISION
    from headwater.processors.placement import MOVES_SCHEMA
    from headwater.sinks.base import Target
    from headwater.sinks.moves import MovesSink

    sink = MovesSink(MovesSink.Config(), ctx)
    target = Target(ctx.pipeline, "decisions", Batch(ctx.pipeline, "b1", "w", "s", {}, "", 0))
    try:
        decided = pa.Table.from_pylist([move("a", "h1", 0)], MOVES_SCHEMA)
        first = sink.write(target, decided.replace_schema_metadata({DECISION_TICK_KEY: b"0"}))
        assert first["status"] == "applied"
        none = MOVES_SCHEMA.empty_table().replace_schema_metadata({DECISION_TICK_KEY: NO_DECISION})
        assert sink.write(target, none) == {**first, "moves": 0, "status": "no decision"}
        assert [m["container_name"] for m in sink.connector.applied()] == ["a"]
    finally:
        sink.close()
