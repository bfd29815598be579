"""The files source's read of whole-file messages: straight into Arrow, or file by file."""

import os
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from headwater.sources import files as files_mod
from headwater.sources.files import FilesConfig, FileSource


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    (root / "a" / "1.bin").write_bytes(b"\x00first\xff")
    (root / "a" / "2.bin").write_bytes(b"")  # an empty message is a message, not a null
    (root / "b.bin").write_bytes(os.urandom(70_000))
    return root


def source(ctx, root) -> FileSource:
    return FileSource(FilesConfig(path=str(root), format="messages"), ctx)


def read_both(ctx, root, monkeypatch) -> tuple[pa.Table, pa.Table]:
    src = source(ctx, root)
    [(coords, _)] = src.plan([])
    fast = src.read(coords)
    monkeypatch.setattr(files_mod, "_read_whole_files", lambda root, rels: None)
    slow = src.read(coords)
    return fast, slow


def test_whole_files_read_into_arrow_equal_the_file_by_file_read(ctx, folder, monkeypatch):
    fast, slow = read_both(ctx, folder, monkeypatch)
    assert fast.messages.equals(slow.messages)
    values = fast.messages["value"].to_pylist()
    assert values == [(folder / r).read_bytes() for r in ("a/1.bin", "a/2.bin", "b.bin")]
    assert fast.messages["_source"].to_pylist() == ["a/1.bin", "a/2.bin", "b.bin"]


@pytest.mark.parametrize("now", [b"x" * 10, b"x" * 100_000, b""])
def test_a_file_that_changes_size_while_read_is_read_file_by_file(ctx, folder, monkeypatch, now):
    src = source(ctx, folder)
    [(coords, _)] = src.plan([])
    real_sizes = files_mod._native.file_sizes

    def changed_after_sizes(prefix, rels):  # the size seen is not the size read
        sizes = real_sizes(prefix, rels)
        (folder / "b.bin").write_bytes(now)
        return sizes

    monkeypatch.setattr(files_mod._native, "file_sizes", changed_after_sizes)
    raw = src.read(coords)
    assert raw.messages["value"].to_pylist()[-1] == now  # what the file holds now


def test_many_files_read_on_threads_land_in_order(ctx, tmp_path, monkeypatch):
    root = tmp_path / "many"
    root.mkdir()
    want = [os.urandom(k * 37 % 5000) for k in range(301)]  # some empty, all different
    for k, data in enumerate(want):
        (root / f"{k:04d}.bin").write_bytes(data)
    for cores in (1, 3):
        monkeypatch.setattr(files_mod, "threads", lambda cores=cores: cores)
        fast, slow = read_both(ctx, root, monkeypatch)
        monkeypatch.undo()
        assert fast.messages["value"].to_pylist() == want
        assert fast.messages.equals(slow.messages)


def test_the_compiled_read_refuses_what_it_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="2 files but 1 sizes"):
        files_mod._native.read_files("/", ["a", "b"], [1], 1)
    with pytest.raises(ValueError, match="at most 2147483647"):
        files_mod._native.read_files("/", ["a", "b"], [2**30, 2**30], 1)
    (tmp_path / "f").write_bytes(b"abc")
    array, failed = files_mod._native.read_files(f"{tmp_path}/", ["f", "gone"], [3, 1], 2)
    assert array is None and failed == 1
    array, failed = files_mod._native.read_files(f"{tmp_path}/", ["f", "f"], [3, 3], 2)
    assert failed is None and array.to_pylist() == [b"abc", b"abc"]


def test_a_read_buffer_is_reused_once_arrow_lets_it_go_and_never_before(tmp_path):
    """The compiled read lends its buffer to Arrow and keeps it for a later read only once
    the array is dropped: a batch's read never lands in memory another batch still holds."""
    names = [f"m{k}" for k in range(8)]
    for k, name in enumerate(names):
        (tmp_path / name).write_bytes(bytes([k]) * 2_500_000)  # 20 MB: no other test reads as much
    sizes = [2_500_000] * len(names)

    def read(rels=names):
        array, failed = files_mod._native.read_files(f"{tmp_path}/", rels, sizes, 2)
        assert failed is None
        return array

    first = read()
    second = read()  # the first is alive: memory of its own
    assert second.buffers()[2].address != first.buffers()[2].address
    address = first.buffers()[2].address
    del first
    third = read(names[::-1])  # the first's memory, now holding these files
    assert third.buffers()[2].address == address
    assert third.to_pylist() == [(tmp_path / n).read_bytes() for n in names[::-1]]
    assert second.to_pylist() == [(tmp_path / n).read_bytes() for n in names]


def test_a_vanished_file_is_unreadable_in_both_reads(ctx, folder, monkeypatch):
    src = source(ctx, folder)
    [(coords, _)] = src.plan([])
    (folder / "a" / "1.bin").unlink()
    raw = src.read(coords)
    assert raw.messages["_source"].to_pylist() == ["a/2.bin", "b.bin"]
    [(rel, _, reason)] = raw.unreadable
    assert rel == "a/1.bin" and "cannot read" in reason


def settle(root) -> None:
    """Date every folder under root a minute back, as if nothing had changed there lately."""
    past = time.time() - 60
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(d, (past, past))


def listed(src, monkeypatch) -> tuple[list[str], int]:
    """(the files the source lists now, how many times it listed the folder to know)."""
    globs = []
    glob = Path.glob
    monkeypatch.setattr(Path, "glob", lambda self, p: globs.append(p) or glob(self, p))
    try:
        return src._files(), len(globs)
    finally:
        monkeypatch.setattr(Path, "glob", glob)


def test_a_settled_folder_is_not_listed_again_until_something_in_it_changes(
    ctx, folder, monkeypatch
):
    src = source(ctx, folder)
    settle(folder)
    first = ["a/1.bin", "a/2.bin", "b.bin"]
    assert listed(src, monkeypatch) == (first, 1)
    assert listed(src, monkeypatch) == (first, 0)  # nothing changed: the listing stands
    (folder / "a" / "3.bin").write_bytes(b"new")  # a new file in a subfolder
    assert listed(src, monkeypatch) == (["a/1.bin", "a/2.bin", "a/3.bin", "b.bin"], 1)
    settle(folder)
    (folder / "c" / "d").mkdir(parents=True)  # a new subfolder, then a file in it
    assert listed(src, monkeypatch)[1] == 1
    settle(folder)
    assert listed(src, monkeypatch)[1] == 1  # the listing after the change was not kept
    (folder / "c" / "d" / "4.bin").write_bytes(b"deep")
    (folder / "b.bin").unlink()
    assert listed(src, monkeypatch) == (["a/1.bin", "a/2.bin", "a/3.bin", "c/d/4.bin"], 1)


@pytest.mark.parametrize(
    ("fraction_ns", "age_ns", "kept"),
    [
        (123_456_789, 50_000_000, False),  # fine-grained times: changed a 20th of a second ago
        (123_456_789, 150_000_000, True),
        (0, 150_000_000, False),  # whole seconds: the clock may be coarse
        (0, 2_500_000_000, True),
    ],
)
def test_a_listing_is_kept_once_no_later_change_could_leave_the_times_as_they_are(
    ctx, folder, monkeypatch, fraction_ns, age_ns, kept
):
    """Within a timestamp's resolution a second change can leave a folder's time as it was:
    a listing made that close after a change is not reused."""
    changed = (int(time.time()) - 60) * 1_000_000_000 + fraction_ns
    for d in (folder, folder / "a"):
        os.utime(d, ns=(changed, changed))
    monkeypatch.setattr(files_mod.time, "time_ns", lambda: changed + age_ns)
    src = source(ctx, folder)
    assert listed(src, monkeypatch)[1] == 1
    assert listed(src, monkeypatch)[1] == (0 if kept else 1)


def test_files_held_back_by_min_age_are_looked_at_again(ctx, folder, monkeypatch):
    src = FileSource(FilesConfig(path=str(folder), min_age_seconds=30), ctx)
    old = time.time() - 60
    for rel in ("a/1.bin", "a/2.bin"):
        os.utime(folder / rel, (old, old))
    settle(folder)
    assert listed(src, monkeypatch) == (["a/1.bin", "a/2.bin"], 1)  # b.bin is too young
    os.utime(folder / "b.bin", (old, old))  # its time passes; no folder changes
    assert listed(src, monkeypatch) == (["a/1.bin", "a/2.bin", "b.bin"], 1)


def test_an_idle_poll_over_the_same_listing_and_batches_is_answered_at_once(
    ctx, folder, monkeypatch
):
    src = source(ctx, folder)
    settle(folder)
    previous = [coords for coords, _ in src.plan([])]
    assert src.plan(previous) == []  # all of it covered
    counted = []
    count = src._count
    monkeypatch.setattr(src, "_count", lambda rel: counted.append(rel) or count(rel))
    assert src.plan(previous) == [] and counted == []  # nothing looked at again
    assert src.plan(list(previous)) == [] and counted == []  # the same batches, a new list
    assert src.plan(previous[:0]) != []  # other batches: planned anew
    (folder / "c.bin").write_bytes(b"new")
    [(coords, n)] = src.plan(previous)
    assert coords["ranges"] == [["c.bin", 0, 1]] and n == 1


def test_a_line_appended_in_a_settled_folder_is_still_planned(ctx, tmp_path):
    root = tmp_path / "lines"
    root.mkdir()
    (root / "m.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    settle(root)
    src = FileSource(FilesConfig(path=str(root), format="lines"), ctx)
    previous = [coords for coords, _ in src.plan([])]
    assert src.plan(previous) == []
    with open(root / "m.jsonl", "a") as fh:  # the folder's time does not change
        fh.write('{"a": 3}\n')
    [(coords, n)] = src.plan(previous)
    assert coords["ranges"] == [["m.jsonl", 2, 3]] and n == 1


def test_split_proportional_takes_from_every_file_and_goes_on_where_it_stopped(ctx, tmp_path):
    """Files written side by side (one per host) are cut across: each batch takes from
    every pending file in proportion to what it has left; lines appended later are planned
    from where the batches before ended, once."""
    root = tmp_path / "hosts"
    root.mkdir()
    for name, n in (("a.csv", 10), ("b.csv", 20), ("c.csv", 30)):
        (root / name).write_text("tick\n" + "".join(f"{i}\n" for i in range(n)))
    config = FilesConfig(path=str(root), format="csv", max_records_per_batch=12)
    in_order = FileSource(config, ctx).plan([])
    assert [r[0] for r in in_order[0][0]["ranges"]] == ["a.csv", "b.csv"]
    src = FileSource(config.model_copy(update={"split": "proportional"}), ctx)
    planned = src.plan([])
    assert [n for _, n in planned] == [12] * 5
    first = planned[0][0]["ranges"]
    assert first == [["a.csv", 0, 2], ["b.csv", 0, 4], ["c.csv", 0, 6]]
    read = Counter()
    for coords, _ in planned:
        for rel, start, end in coords["ranges"]:
            assert start == read[rel]  # each file's ranges follow each other
            read[rel] = end
    assert read == {"a.csv": 10, "b.csv": 20, "c.csv": 30}
    previous = [coords for coords, _ in planned]
    with open(root / "b.csv", "a") as fh:
        fh.write("20\n21\n")
    [(coords, n)] = src.plan(previous)
    assert coords["ranges"] == [["b.csv", 20, 22]] and n == 2
