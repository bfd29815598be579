"""The batch ledger: one file per batch, read back by any process; a window whose folder has
settled is listed once and its listing kept until the folder changes."""

import os
import time

import pytest

from headwater.batch import Batch
from headwater.errors import HeadwaterError
from headwater.ledger import DONE, PENDING, Ledger
from headwater.settle import COARSE_NS


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
    old = time.time_ns() - 5 * COARSE_NS
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


@pytest.mark.parametrize(
    ("text", "why"), [('{"status": "done"}', "no 'batch' key"), ("[1, 2]", "list indices")]
)
def test_an_entry_that_parses_but_is_not_an_entry_is_unreadable_too(tmp_path, text, why):
    """Valid JSON of another shape (a hand edit) is named like a broken file, with what was
    expected and what to do, rather than a KeyError from deep inside a scan."""
    Ledger(tmp_path).record(batch(0))
    (tmp_path / "window=2026-11-24" / "b0000.json").write_text(text)
    with pytest.raises(HeadwaterError) as caught:
        Ledger(tmp_path).window("2026-11-24")
    assert why in str(caught.value) and "Restore it from a copy" in str(caught.value)


def test_an_active_window_reads_again_only_pending_entries_and_new_names(tmp_path, monkeypatch):
    """A done entry found again under the same inode is not looked at; pending ones and new
    names are, so another process's records and completions are seen at the next scan."""
    mine, other = Ledger(tmp_path), Ledger(tmp_path)
    for i in range(4):
        mine.record(batch(i))
    for i in (0, 1):
        mine.complete(batch(i), {"messages": 10})
    assert [e.status for e in mine.window("2026-11-24")] == [DONE, DONE, PENDING, PENDING]
    statted = []
    stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: statted.append(str(p)) or stat(p, *a, **k))
    other.complete(batch(2), {"messages": 10})
    other.record(batch(4))
    statted.clear()  # what the other ledger looked at
    assert [e.status for e in mine.window("2026-11-24")] == [DONE] * 3 + [PENDING] * 2
    names = sorted(os.path.basename(p) for p in statted)
    assert names == ["b0002.json", "b0003.json", "b0004.json", "window=2026-11-24"]


class Renumbered:
    """A folder entry whose inode is reported as another's (a freed inode given again)."""

    def __init__(self, entry, inode: int):
        self.name, self._inode = entry.name, inode

    def inode(self) -> int:
        return self._inode


@pytest.mark.parametrize("who", ["mine", "other"])
def test_a_done_entry_deleted_and_recorded_again_is_pending(tmp_path, monkeypatch, who):
    """Deleting a done entry by hand makes its batch be cut again; the new record may get the
    freed inode back (made certain here), yet it is read as the pending entry it is."""
    mine = Ledger(tmp_path)
    for i in range(3):
        mine.record(batch(i))
        mine.complete(batch(i), {"messages": 10})
    assert [e.status for e in mine.window("2026-11-24")] == [DONE] * 3
    entry = tmp_path / "window=2026-11-24" / "b0001.json"
    freed = os.stat(entry).st_ino
    entry.unlink()
    assert [e.batch.id for e in mine.window("2026-11-24")] == ["b0000", "b0002"]
    (mine if who == "mine" else Ledger(tmp_path)).record(batch(1))
    scandir = os.scandir

    def reused(path):
        return [Renumbered(e, freed) if e.name == entry.name else e for e in scandir(path)]

    monkeypatch.setattr(os, "scandir", reused)
    assert [e.status for e in mine.window("2026-11-24")] == [DONE, PENDING, DONE]


@pytest.mark.parametrize(
    ("fraction_ns", "age_ns", "kept"),
    [(123_456_789, 50_000_000, False), (123_456_789, 150_000_000, True), (0, 150_000_000, False)],
)
def test_a_window_listing_is_kept_once_its_folder_time_has_settled(
    tmp_path, monkeypatch, fraction_ns, age_ns, kept
):
    ledger = Ledger(tmp_path)
    ledger.record(batch(0))
    folder = tmp_path / "window=2026-11-24"
    changed = (int(time.time()) - 60) * 1_000_000_000 + fraction_ns
    os.utime(folder, ns=(changed, changed))
    monkeypatch.setattr(time, "time_ns", lambda: changed + age_ns)
    ledger.window("2026-11-24")
    scandir = os.scandir
    listings = []
    monkeypatch.setattr(os, "scandir", lambda p: listings.append(p) or scandir(p))
    assert [e.batch.id for e in ledger.window("2026-11-24")] == ["b0000"]
    assert len(listings) == (0 if kept else 1)


def test_batches_recorded_between_scans_take_their_place_in_cut_order(tmp_path):
    ledger = Ledger(tmp_path)
    for i in (1, 3):
        ledger.record(batch(i))
    assert [e.batch.id for e in ledger.window("2026-11-24")] == ["b0001", "b0003"]
    ledger.record(batch(4))  # cut after the others: appended
    assert [e.batch.id for e in ledger.window("2026-11-24")] == ["b0001", "b0003", "b0004"]
    for i in (2, 0):  # cut between and before them (another process's clock)
        ledger.record(batch(i))
    ids = [e.batch.id for e in ledger.window("2026-11-24")]
    assert ids == ["b0000", "b0001", "b0002", "b0003", "b0004"]
    (tmp_path / "window=2026-11-24" / "b0002.json").unlink()
    ids = [e.batch.id for e in Ledger(tmp_path).window("2026-11-24")]
    assert [e.batch.id for e in ledger.window("2026-11-24")] == ids
