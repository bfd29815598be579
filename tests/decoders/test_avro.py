import io
import json

import fastavro
import pyarrow as pa
import pytest

from headwater.batch import RawBatch, raw_table
from headwater.decoders import avro_wire
from headwater.decoders.avro import AvroConfig, AvroDecoder
from tests.conftest import SAMPLES, raw_from_files, ztf_files

RUBIN_SCHEMAS = {
    "path": str(SAMPLES / "lsst" / "schema"),
    "pattern": "{major}/{minor}/lsst.v{major}_{minor}.alert.avsc",
}


def decoder(ctx, **config) -> AvroDecoder:
    return AvroDecoder(AvroConfig(**config), ctx)


def fastavro_records(files):
    out = []
    for f in files:
        with open(f, "rb") as fh:
            out.extend(fastavro.reader(fh))
    return out


def test_batch_mixing_ztf_schema_versions_gets_the_union_schema(ctx):
    files = ztf_files()
    decoded = decoder(ctx).decode(raw_from_files(files))
    table = decoded.table
    assert decoded.rejects.num_rows == 0
    assert table.num_rows == len(files)
    versions = set(table["schemavsn"].to_pylist())
    assert {"3.2", "3.3", "4.01", "4.02"} <= versions
    # fp_hists exists only from 4.x on: null for older rows, a list for newer ones
    fp = dict(zip(table["schemavsn"].to_pylist(), table["fp_hists"].to_pylist(), strict=True))
    assert fp["3.2"] is None and isinstance(fp["4.02"], list)
    assert pa.types.is_struct(table.schema.field("candidate").type)
    assert pa.types.is_list(table.schema.field("prv_candidates").type)


def indexed(files) -> RawBatch:
    """The files as one batch, each message's offset its index in ``files``."""
    return RawBatch(
        raw_table(["f"] * len(files), list(range(len(files))), [f.read_bytes() for f in files])
    )


def test_decoded_cells_equal_fastavro_records(ctx):
    files = ztf_files()
    table = decoder(ctx).decode(indexed(files)).table
    assert sorted(table["_offset"].to_pylist()) == list(range(len(files)))
    for row in table.to_pylist():
        expected = fastavro_records([files[row["_offset"]]])[0]
        for key, value in expected.items():
            if isinstance(value, dict):  # a struct holds the union of versions' fields
                assert {k: row[key][k] for k in value} == value, key
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                assert [{k: r[k] for k in v} for r, v in zip(row[key], value, strict=True)] == value
            else:
                assert row[key] == value, key


def test_rows_come_by_writer_in_message_order_within_each(ctx):
    files = ztf_files()
    writers = [avro_wire.parse_container(f.read_bytes()).schema for f in files]
    table = decoder(ctx).decode(indexed(files)).table
    got = table["_offset"].to_pylist()
    by_writer = [i for w in dict.fromkeys(writers) for i, x in enumerate(writers) if x == w]
    assert len(set(writers)) > 1 and got == by_writer


def test_lineage_columns_point_at_the_message(ctx):
    files = ztf_files()[:3]
    raw = RawBatch(raw_table(["a", "b", "c"], [7, 8, 9], [f.read_bytes() for f in files]))
    table = decoder(ctx).decode(raw).table
    assert table["_source"].to_pylist() == ["a", "b", "c"]
    assert table["_offset"].to_pylist() == [7, 8, 9]


def test_cutouts_can_be_dropped(ctx):
    table = decoder(ctx, cutouts="drop").decode(raw_from_files(ztf_files()[:2])).table
    assert not [c for c in table.column_names if c.startswith("cutout")]
    assert "candidate" in table.column_names


def test_corrupt_and_truncated_messages_are_quarantined_and_the_rest_decodes(ctx):
    good = [f.read_bytes() for f in ztf_files()[:3]]
    truncated = good[0][: len(good[0]) - 500]
    values = [good[0], b"not avro at all", truncated, good[1], None, good[2]]
    raw = RawBatch(raw_table(["f"] * 6, list(range(6)), values))
    decoded = decoder(ctx).decode(raw)
    assert decoded.table["_offset"].to_pylist() == [0, 3, 5]
    rej = decoded.rejects.to_pydict()
    assert rej["_offset"] == [1, 2, 4]
    assert "not an Avro object container" in rej["error"][0]
    assert "truncated" in rej["error"][1] or "sync marker" in rej["error"][1]
    assert "tombstone" in rej["error"][2]
    assert rej["raw"][0] == b"not avro at all" and rej["raw"][1] == truncated


def test_schema_is_parsed_once_per_distinct_writer_schema(ctx):
    d = decoder(ctx)
    d.decode(raw_from_files(ztf_files()))
    distinct = {avro_wire.parse_container(f.read_bytes()).schema for f in ztf_files()}
    assert set(d._writers) == distinct
    assert len(distinct) < len(ztf_files())


def test_schemaless_with_a_configured_schema(ctx, tmp_path):
    schema = {
        "type": "record",
        "name": "m",
        "namespace": "plant",
        "fields": [
            {"name": "sensor", "type": "string"},
            {"name": "value", "type": ["null", "double"]},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
        ],
    }
    path = tmp_path / "m.avsc"
    path.write_text(json.dumps(schema))
    parsed = fastavro.parse_schema(schema)
    records = [
        {"sensor": "t1", "value": 1.5, "tags": ["a"]},
        {"sensor": "t2", "value": None, "tags": []},
    ]
    bodies = []
    for r in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r)
        bodies.append(buf.getvalue())
    raw = RawBatch(raw_table(["t"] * 3, [0, 1, 2], [*bodies, bodies[0] + b"\x00\x01"]))
    decoded = decoder(ctx, framing="schemaless", schema_file=str(path)).decode(raw)
    assert decoded.table.select(["sensor", "value", "tags"]).to_pylist() == records
    assert "2 bytes left over" in decoded.rejects["error"][0].as_py()


def test_rubin_wire_format_resolved_from_local_schema_folder(ctx):
    files = sorted((SAMPLES / "lsst" / "wire").rglob("*.avro"))
    manifest = {}
    with open(SAMPLES / "lsst" / "MANIFEST.csv") as fh:
        import csv

        for row in csv.DictReader(fh):
            manifest[row["file"].rsplit("/", 1)[-1]] = row
    raw = RawBatch(
        raw_table([f.name for f in files], [0] * len(files), [f.read_bytes() for f in files])
    )
    decoded = decoder(ctx, framing="confluent", schemas=RUBIN_SCHEMAS).decode(raw)
    assert decoded.rejects.num_rows == 0
    table = decoded.table
    assert table.num_rows == len(files) == 12
    for row in table.select(["_source", "diaSource"]).to_pylist():
        expected = manifest[row["_source"]]
        assert row["diaSource"]["ra"] == pytest.approx(float(expected["ra"]), abs=1e-9)
        assert row["diaSource"]["band"] == expected["band"]


def test_unknown_schema_id_is_quarantined(ctx):
    body = (SAMPLES / "lsst" / "wire" / "synthetic" / "lsst.v9_0.avro").read_bytes()
    unknown = avro_wire.frame_confluent(4242, body[5:])
    raw = RawBatch(raw_table(["x", "y"], [0, 1], [body, unknown]))
    decoded = decoder(ctx, framing="confluent", schemas=RUBIN_SCHEMAS).decode(raw)
    assert decoded.table.num_rows == 1
    assert decoded.rejects["error"][0].as_py().startswith("avro: unknown schema id 4242: no file")


def test_confluent_needs_exactly_one_schema_source():
    with pytest.raises(ValueError, match="exactly one of schemas"):
        AvroConfig(framing="confluent")
    with pytest.raises(ValueError, match="needs schema_file"):
        AvroConfig(framing="schemaless")
