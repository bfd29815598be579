"""The Parquet sink's files: atomic, and columns written plain where the spec says so."""

import pyarrow as pa
import pyarrow.parquet as pq

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
