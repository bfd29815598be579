"""The collector's placement resolution and its state store, without a pipeline."""

import numpy as np

from headwater.placement.collectors import Changes, State, StateStore, resolve


def rows(containers, ticks, hosts):
    return {
        "container": np.array(containers, dtype=object),
        "tick": np.array(ticks, dtype=np.int64),
        "host": np.array(hosts, dtype=object),
    }


def test_a_change_applies_from_its_tick_and_rows_without_one_keep_their_host():
    changes = Changes()
    changes.add(["a"], [2], ["h2"])  # a moved to h2 from tick 2
    r = rows(["a", "a", "a", "b"], [1, 2, 3, 1], ["h1", "h1", "h1", "h3"])
    host, last = resolve(r, changes)
    assert list(host) == ["h1", "h2", "h2", "h3"]
    assert last == {"a": "h2", "b": "h3"}


def test_the_latest_change_wins_and_row_order_does_not_matter():
    changes = Changes()
    changes.add(["a", "a"], [1, 3], ["h2", "h3"])
    r = rows(["a", "a", "a"], [4, 0, 2], ["h1", "h1", "h1"])
    host, last = resolve(r, changes)
    assert list(host) == ["h3", "h1", "h2"]
    assert last == {"a": "h3"}


def test_the_store_keeps_the_newest_states_and_finds_the_one_before_a_window(tmp_path):
    store = StateStore(tmp_path / "s", keep=2)
    for end in (4, 8, 12, 16):
        store.save(State(end, 0, {"c": f"h{end}"}))
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        f"state-{12:020d}.json",
        f"state-{16:020d}.json",
    ]
    fresh = StateStore(tmp_path / "s")  # another process: from the files
    assert fresh.latest(15).placement == {"c": "h12"}
    assert fresh.latest(16).end == 16
    assert fresh.latest(11) is None
