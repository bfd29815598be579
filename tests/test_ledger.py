"""The batch ledger: one file per batch, read back by any process; a window whose folder has
settled is listed once and its listing kept until the folder changes."""

import os
import time

import pytest

from headwater.batch import Batch
from headwater.errors import HeadwaterError
from headwater.ledger import DONE, PENDING, SETTLED_NS, Ledger


def batch(i: int, window: str = "2026-11-24") -> Batch:
    return Batch(
        pipeline="p",
        id=f"b{i:04d}",
        window=window,
        source="usage",
        coordinates={"ticks": [i * 6, i * 6 + 6]},
        created_at="2026-11-24T00:00:00+00:00",
        records=10,
        seq=i,
    )


def settle(folder) -> None:
    """Date a window folder back, as if its last change were long past."""
    old = time.time_ns() - 5 * SETTLED_NS
    os.utime(folder, ns=(old, old))


def test_entries_are_in_cut_order_and_a_recorded_batch_keeps_its_first_record(tmp_path):
    ledger = Ledger(tmp_path)
    for i in (2, 0, 1):
        ledger.record(batch(i))
    assert [e.batch.id for e in ledger.window("2026-11-24")] == ["b0000", "b0001", "b0002"]
    ledger.complete(batch(1), {"messages": 10})
    again = ledger.record(batch(1))
    assert again.status == DONE and again.summary == {"messages": 10}
    assert ledger.window("nowhere") == [] and ledger.find("2026-11-24", "b9999") is None


def test_a_settled_window_is_listed_once_yet_another_process_changes_are_seen(tmp_path):
    mine, other = Ledger(tmp_path), Ledger(tmp_path)
    for i in range(3):
        mine.record(batch(i))
    folder = tmp_path / "window=2026-11-24"
    settle(folder)
    assert [e.status for e in mine.window("2026-11-24")] == [PENDING] * 3
    listed = os.stat(folder).st_mtime_ns
    os.rename(folder / "b0002.json", tmp_path / "aside.json")  # unseen: the folder is dated
    os.utime(folder, ns=(listed, listed))  # back to the listing's stamp
    assert len(mine.window("2026-11-24")) == 3  # the kept listing
    os.rename(tmp_path / "aside.json", folder / "b0002.json")
    other.complete(batch(1), {"messages": 10})  # another process: a rename into the folder
    other.record(batch(3))
    assert [e.status for e in mine.window("2026-11-24")] == [PENDING, DONE, PENDING, PENDING]
    assert [e.batch.id for e in mine.entries()] == ["b0000", "b0001", "b0002", "b0003"]


def test_an_unreadable_entry_says_which_file(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.record(batch(0))
    (tmp_path / "window=2026-11-24" / "b0000.json").write_text("{not json")
    with pytest.raises(HeadwaterError, match=r"window=2026-11-24/b0000.json is unreadable"):
        Ledger(tmp_path).window("2026-11-24")
