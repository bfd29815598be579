"""The moves that bear on a window, found without the whole log: where every row's container
is must be what resolving the rows against every logged move gives."""

import random

import numpy as np

from headwater.placement.applied import AppliedMoves, MoveIndex
from headwater.placement.collectors import Changes, resolve

CONTAINERS = [f"c{i}" for i in range(6)]
HOSTS = ["h0", "h1", "h2"]


def _rows(rng: random.Random, start: int, end: int) -> dict[str, np.ndarray]:
    n = rng.randint(1, 12)
    return {
        "tick": np.array(sorted(rng.randrange(start, end) for _ in range(n)), np.int64),
        "container": np.array([rng.choice(CONTAINERS) for _ in range(n)], dtype=object),
        "host": np.array([rng.choice(HOSTS) for _ in range(n)], dtype=object),
    }


def _every_move(log, end: int) -> Changes:
    """What the collector did before the index: every move applied before the window's end."""
    changes = Changes()
    moves = [m for m in log if m["time"] + 1 < end]
    if moves:
        changes.add(
            [m["container_name"] for m in moves],
            [m["time"] + 1 for m in moves],
            [m["new_host"] for m in moves],
        )
    return changes


def _indexed(index: MoveIndex, log, start: int, end: int) -> Changes:
    changes = Changes()
    found = index.changes(log, start, end)
    if found:
        tick, _, container, host = zip(*found, strict=True)
        changes.add(container, tick, host)
    return changes


def _move(rng: random.Random, time: int) -> dict:
    return {
        "container_name": rng.choice(CONTAINERS),
        "old_host": rng.choice(HOSTS),
        "new_host": rng.choice(HOSTS),
        "time": time,
    }


def test_a_window_resolves_as_against_every_logged_move():
    """Windows in order, with moves logged for each (some late, for earlier ticks, and ties at
    a tick), reruns of earlier windows, and logs replaced whole."""
    rng = random.Random(11)
    for _ in range(60):
        index, log, w = MoveIndex(), AppliedMoves(), 5
        for k in range(25):
            start = k * w if rng.random() > 0.15 else rng.randrange(0, k + 1) * w  # a rerun
            rows = _rows(rng, start, start + w)
            end = int(rows["tick"].max()) + 1
            row_start = int(rows["tick"].min())
            expected = resolve(rows, _every_move(log, end))
            got = resolve(rows, _indexed(index, log, row_start, end))
            assert list(got[0]) == list(expected[0])
            assert got[1] == expected[1]
            if rng.random() < 0.1:  # the log replaced (a rerun rewrote a tick's moves)
                log = AppliedMoves(m for m in log if rng.random() < 0.8)
            log.extend(
                _move(rng, start + w - 1 - rng.randrange(0, 2 * w))
                for _ in range(rng.randint(0, 4))
            )


def test_the_log_grows_in_place_and_answers_a_tick_moves():
    log = AppliedMoves()
    assert log.last_time is None and log.at(3) == [] and len(log) == 0
    log.extend([{"container_name": "a", "time": 5}, {"container_name": "b", "time": 3}])
    log.extend([{"container_name": "c", "time": 5}])
    assert log.last_time == 5
    assert [m["container_name"] for m in log.at(5)] == ["a", "c"]
    assert [m["container_name"] for m in log] == ["a", "b", "c"]
    assert list(log) == [dict(m) for m in log] and log[1]["time"] == 3
