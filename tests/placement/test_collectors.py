"""The collector's placement resolution and its state store, without a pipeline."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headwater.placement.collectors import Changes, State, StateStore, resolve
from headwater.processors.cluster_model import _from_tick


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


def test_a_state_kept_with_its_history_is_one_file_read_back_by_another_process(tmp_path):
    store = StateStore(tmp_path / "s", keep=2)
    tables = {end: pa.table({"tick": [end - 1], "cpu": [float(end)]}) for end in (4, 8, 12)}
    for end, table in tables.items():
        store.save(State(end, 1, {"c": f"h{end}"}), table)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        f"state-{8:020d}.arrow",
        f"state-{12:020d}.arrow",
    ]
    fresh = StateStore(tmp_path / "s")
    assert fresh.latest(11) == State(8, 1, {"c": "h8"})
    assert fresh.history(12).equals(tables[12])
    assert fresh.history(4) is None  # pruned: two kept
    fresh.save(State(12, 0, {"c": "h0"}))  # a rerun without history: the JSON replaces it
    assert StateStore(tmp_path / "s").latest(12) == State(12, 0, {"c": "h0"})
    assert not (tmp_path / "s" / f"state-{12:020d}.arrow").exists()


def test_a_large_history_is_kept_compressed_and_read_back_whole(tmp_path):
    n = 100_000  # above a megabyte: LZ4-compressed
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "tick": np.repeat(np.arange(10), n // 10),
            "container_id": pa.array([f"c_{i % 5000}" for i in range(n)]),
            "cpu": rng.random(n),
        }
    )
    store = StateStore(tmp_path / "s")
    store.save(State(10, 0, {"c_0": "h1"}), table)
    path = tmp_path / "s" / f"state-{10:020d}.arrow"
    assert path.stat().st_size < table.nbytes / 1.5  # compressed on disk
    fresh = StateStore(tmp_path / "s")  # another process
    assert fresh.latest(10) == State(10, 0, {"c_0": "h1"})
    assert fresh.history(10).equals(table)


def test_states_and_history_kept_by_an_earlier_version_are_still_read(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    table = pa.table({"tick": [3], "cpu": [1.5]})
    (folder / f"state-{4:020d}.json").write_text('{"end": 4, "since_rebuild": 0, "placement": {}}')
    pq.write_table(table, folder / f"usage-{4:020d}.parquet")
    store = StateStore(folder, keep=1)
    assert store.latest(5) == State(4, 0, {})
    assert store.history(4).equals(table)
    store.save(State(8, 0, {}), table)  # the newer window's file is the one kept
    assert sorted(p.name for p in folder.iterdir()) == [f"state-{8:020d}.arrow"]


@pytest.mark.parametrize(
    "ticks",
    [
        [1, 2, 2, 3, 4, None, None],  # a model's order: by tick, idle hosts last
        [3, 1, 4, None, 2, 2, None],  # any other order
        [None, None],
        [],
    ],
)
def test_rows_from_a_tick_on_are_those_a_filter_keeps(ticks):
    table = pa.table({"tick": pa.array(ticks, pa.int64()), "row": list(range(len(ticks)))})
    expected = [r for r, t in enumerate(ticks) if t is not None and t >= 2]
    assert _from_tick(table, 2)["row"].to_pylist() == expected


def test_the_latest_state_passes_over_files_that_are_not_states(tmp_path):
    folder = tmp_path / "s"
    store = StateStore(folder, keep=10)
    store.save(State(4, 0, {"c": "h4"}))
    store.save(State(8, 0, {"c": "h8"}), pa.table({"tick": [7]}))
    for stray in ("state-.json", "state-x.json", f"state-{6:020d}.txt", f"state-{5:019d}.json"):
        (folder / stray).write_text("{}")
    fresh = StateStore(folder)
    assert fresh.latest(7).placement == {"c": "h4"}
    (folder / f"state-{8:020d}.json").write_text('{"end": 8, "since_rebuild": 0, "placement": {}}')
    assert fresh.latest(9).placement == {"c": "h8"}  # both kinds (a rerun cut short): Arrow's


def test_old_states_are_pruned_in_batches_a_tenth_past_what_is_kept(tmp_path):
    folder = tmp_path / "s"
    store = StateStore(folder, keep=10)

    def kept() -> list[int]:
        return sorted(int(p.name[6:26]) for p in folder.iterdir())

    for end in range(1, 12):
        store.latest(end)  # as a batch does: what it lists counts
        store.save(State(end, 0, {}))
    assert kept() == list(range(1, 12))  # 11: within a tenth past 10
    store.latest(12)
    store.save(State(12, 0, {}))
    assert kept() == list(range(3, 13))  # pruned back to the newest 10
