"""Which usage rows are refused for their ticks: each container's own order, within a batch
and against the windows already modelled (a batch may end part-way through a tick, and a
topic's partitions interleave containers)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from headwater.placement.usage import Hosts, Modelled, UsageColumns, refusals

HOSTS = Hosts(["h1", "h2"], np.array([[10.0], [10.0]]), {})
COLS = UsageColumns()


def usage(rows: list[tuple], sources: list[str] | None = None) -> pa.Table:
    """rows: (tick, container[, cpu]); in arrival order."""
    columns = {
        "timestamp": pa.array([r[0] for r in rows], pa.int64()),
        "container_id": pa.array([r[1] for r in rows], pa.string()),
        "machine_id": pa.array(["h1"] * len(rows), pa.string()),
        "cpu": pa.array([r[2] if len(r) > 2 else 1.0 for r in rows], pa.float64()),
        "_offset": pa.array(range(len(rows)), pa.int64()),
    }
    if sources is not None:
        columns["_source"] = pa.array(sources, pa.string())
    return pa.table(columns)


def why(table: pa.Table, modelled: Modelled | None = None) -> list[str]:
    return [r.split(": ", 1)[1] if r else "" for r in refusals(table, HOSTS, COLS, modelled)]


def test_containers_interleaved_out_of_tick_order_are_all_kept():
    # a topic's partitions read one after the other: c2's ticks come after c1's later ones
    table = usage([(0, "c1"), (1, "c1"), (2, "c1"), (0, "c2"), (1, "c2"), (2, "c2")])
    assert why(table) == [""] * 6


def test_a_containers_own_tick_earlier_or_repeated_is_refused():
    table = usage([(0, "c1"), (2, "c1"), (1, "c1"), (2, "c1"), (3, "c1")])
    reasons = why(table)
    assert reasons[:2] == ["", ""] and reasons[4] == ""
    assert "out of order" in reasons[2]
    assert "duplicate" in reasons[3]


def test_a_refused_row_does_not_set_its_containers_order():
    # the first tick-0 row is refused (negative): the one that follows is the tick's row
    table = usage([(0, "c1", -1.0), (0, "c1", 2.0), (1, "c1")])
    assert [r.split(":")[0] for r in why(table)] == ["cpu is negative", "", ""]


def test_order_is_kept_per_file_or_partition():
    # the same container in two sources: each source's rows are in order by themselves
    table = usage([(5, "c1"), (6, "c1"), (1, "c1"), (2, "c1")], ["p0", "p0", "p1", "p1"])
    assert why(table) == [""] * 4


def test_rows_after_what_was_modelled_are_kept_per_container():
    # the last window ended part-way through tick 4: c1 was modelled up to 4, c2 up to 3
    modelled = Modelled(end=5, ticks={"c1": 4, "c2": 3})
    table = usage([(4, "c2"), (5, "c2"), (4, "c1"), (5, "c1"), (3, "c3")])
    reasons = why(table, modelled)
    assert reasons[0] == reasons[1] == reasons[3] == ""
    assert reasons[2] == "tick 4 of c1, modelled up to tick 4 (late row)"
    assert reasons[4] == ""  # a container never modelled: its first row is new


def test_a_state_without_ticks_refuses_every_row_before_its_end():
    table = usage([(4, "c1"), (5, "c2")])
    assert "late row" in why(table, Modelled(end=5))[0]
    assert why(table, Modelled(end=5))[1] == ""


def test_refusals_match_each_containers_series_read_in_order():
    """Against the rule stated row by row, on random batches: per (container, source), a row
    whose tick is not above every earlier kept row's is refused."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(0, 40))
        rows = [
            (int(rng.integers(0, 7)), str(rng.choice(["a", "b", "c"])), str(rng.choice(["x", "y"])))
            for _ in range(n)
        ]
        expected, best = [], {}
        for t, c, s in rows:
            seen = best.get((c, s))
            fresh = seen is None or t > seen
            expected.append("" if fresh else "duplicate" if t == seen else "out of order")
            if fresh:
                best[(c, s)] = t
        table = usage([(t, c) for t, c, _ in rows], [s for _, _, s in rows])
        kinds = [
            "" if not r else "duplicate" if "duplicate" in r else "out of order" for r in why(table)
        ]
        assert kinds == expected, rows
