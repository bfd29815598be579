"""The Parquet sink's files: atomic, and columns written plain where the spec says so."""

import errno
import os
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headwater.batch import Batch
from headwater.sinks.base import Target
from headwater.sinks.parquet import ParquetConfig, ParquetSink


def alerts() -> pa.Table:
    stamp = pa.struct([("fileName", pa.string()), ("stampData", pa.binary())])
    return pa.table(
        {
            "candid": pa.array([1, 2, 3], pa.int64()),
            "cutoutScience": pa.array(
                [{"fileName": f"s{i}.fits.gz", "stampData": bytes([i]) * 5000} for i in range(3)],
                stamp,
            ),
            "prv": pa.array([[1.0, 2.0], [], [3.0]], pa.list_(pa.float64())),
        }
    )


def write(ctx, config: ParquetConfig, table: pa.Table) -> pq.FileMetaData:
    batch = Batch("p", "b1", "2026-11-24", "files", {}, "now", table.num_rows)
    out = ParquetSink(config, ctx).write(Target("p", "raw", batch), table)
    assert pq.read_table(out["path"]).equals(table)  # the same rows, however encoded
    return pq.ParquetFile(out["path"]).metadata


def columns(meta: pq.FileMetaData) -> dict[str, tuple[str, tuple]]:
    group = meta.row_group(0)
    return {
        group.column(i).path_in_schema: (group.column(i).compression, group.column(i).encodings)
        for i in range(meta.num_columns)
    }


def test_plain_columns_have_no_dictionary_and_no_compression(ctx):
    config = ParquetConfig(plain=["cutoutScience.stampData", "not_in_this_batch"])
    found = columns(write(ctx, config, alerts()))
    codec, encodings = found["cutoutScience.stampData"]
    assert codec == "UNCOMPRESSED" and "RLE_DICTIONARY" not in encodings
    for path in ("candid", "cutoutScience.fileName", "prv.list.element"):
        assert found[path][0] == "ZSTD" and "RLE_DICTIONARY" in found[path][1], path


def test_a_struct_named_plain_covers_its_fields_and_levels_apply_to_the_rest(ctx):
    config = ParquetConfig(plain=["cutoutScience"], compression="gzip", compression_level=9)
    found = columns(write(ctx, config, alerts()))
    assert found["cutoutScience.fileName"][0] == found["cutoutScience.stampData"][0]
    assert found["cutoutScience.fileName"][0] == "UNCOMPRESSED"
    assert found["candid"][0] == "GZIP"


def test_without_plain_every_column_is_compressed(ctx):
    found = columns(write(ctx, ParquetConfig(), alerts()))
    assert {codec for codec, _ in found.values()} == {"ZSTD"}


@pytest.fixture
def direct(monkeypatch):
    """Every table written around the page cache; the O_DIRECT opens counted."""
    from headwater.sinks import parquet as sink

    monkeypatch.setattr(sink, "DIRECT_BYTES", 0)
    opens = []
    real_open = os.open

    def counted(path, flags, *mode):
        if flags & os.O_DIRECT:
            opens.append(path)
        return real_open(path, flags, *mode)

    monkeypatch.setattr(sink.os, "open", counted)
    return opens


def stamps_table(n: int = 300) -> pa.Table:
    rng = np.random.default_rng(1)
    stamps = [rng.bytes(int(k)) for k in rng.integers(1_000, 9_000, n)]
    return pa.table({"candid": np.arange(n), "stamp": pa.array(stamps, pa.binary())})


def test_a_file_written_around_the_page_cache_has_the_usual_bytes(tmp_path, direct):
    from headwater.sinks.parquet import write_atomically

    table = stamps_table()
    size = write_atomically(tmp_path / "direct.parquet", table, compression="none")
    assert len(direct) == 1  # it went the O_DIRECT way
    usual = pa.BufferOutputStream()
    pq.write_table(table, usual, compression="none")
    assert (tmp_path / "direct.parquet").read_bytes() == usual.getvalue().to_pybytes()
    assert size == usual.getvalue().size and size % 4096  # cut back from whole blocks
    assert pq.read_table(tmp_path / "direct.parquet").equals(table)
    assert [p.name for p in tmp_path.iterdir()] == ["direct.parquet"]  # no temporary left


def test_without_o_direct_or_room_the_file_is_written_the_usual_way(tmp_path, direct, monkeypatch):
    from headwater.sinks import parquet as sink

    table = stamps_table()
    counted = sink.os.open

    def no_direct(path, flags, *mode):  # as tmpfs answers
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return counted(path, flags, *mode)

    monkeypatch.setattr(sink.os, "open", no_direct)
    sink.write_atomically(tmp_path / "a.parquet", table)
    assert pq.read_table(tmp_path / "a.parquet").equals(table)
    monkeypatch.setattr(sink.os, "open", counted)
    monkeypatch.setattr(sink, "_buffers", threading.local())  # none mapped yet
    monkeypatch.setattr(sink, "_room", lambda table: 4096)  # the file would not fit
    sink.write_atomically(tmp_path / "b.parquet", table)
    assert pq.read_table(tmp_path / "b.parquet").equals(table)
    assert direct == []  # neither went the O_DIRECT way
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]
