"""The files source's read of whole-file messages: straight into Arrow, or file by file."""

import os

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


def test_a_file_that_changes_size_while_read_is_read_file_by_file(ctx, folder, monkeypatch):
    src = source(ctx, folder)
    [(coords, _)] = src.plan([])
    real_stat = os.stat

    def grown_after_stat(path, *a, **k):  # the size seen is not the size read
        st = real_stat(path, *a, **k)
        if str(path).endswith("b.bin"):
            (folder / "b.bin").write_bytes(b"x" * 10)
        return st

    monkeypatch.setattr(files_mod.os, "stat", grown_after_stat)
    raw = src.read(coords)
    assert raw.messages["value"].to_pylist()[-1] == b"x" * 10  # what the file holds now


def test_a_vanished_file_is_unreadable_in_both_reads(ctx, folder, monkeypatch):
    src = source(ctx, folder)
    [(coords, _)] = src.plan([])
    (folder / "a" / "1.bin").unlink()
    raw = src.read(coords)
    assert raw.messages["_source"].to_pylist() == ["a/2.bin", "b.bin"]
    [(rel, _, reason)] = raw.unreadable
    assert rel == "a/1.bin" and "cannot read" in reason
