"""The compiled decoding path: same table as fastavro cell by cell, falls back without loss."""

import io
import json
import random
import threading

import fastavro
import pyarrow as pa
import pytest

from headwater import _native
from headwater.batch import RawBatch, raw_table
from headwater.decoders import avro_native
from headwater.decoders.avro import AvroConfig, AvroDecoder
from headwater.decoders.avro_inline import inline_named_types
from tests.conftest import SAMPLES, SHARED, raw_from_files, ztf_files

RUBIN_SCHEMAS = {
    "path": str(SAMPLES / "lsst" / "schema"),
    "pattern": "{major}/{minor}/lsst.v{major}_{minor}.alert.avsc",
}


def both(ctx, raw, **config):
    fast = AvroDecoder(AvroConfig(engine="compiled", **config), ctx).decode(raw)
    slow = AvroDecoder(AvroConfig(engine="fastavro", **config), ctx).decode(raw)
    return fast, slow


def same_cells(fast: pa.Table, slow: pa.Table) -> None:
    """Same schema, and every cell and null the same (NaN equal to NaN, as in the alerts)."""
    assert fast.schema.equals(slow.schema)
    for name in fast.column_names:
        a, b = fast[name], slow[name]
        if not a.equals(b):  # Arrow's equality holds NaN unequal to itself
            dump = lambda col: json.dumps(col.to_pylist(), default=repr)  # noqa: E731
            assert dump(a) == dump(b), name


def same(fast, slow) -> None:
    """Same decoded table, cell by cell, and the same rejects."""
    same_cells(fast.table, slow.table)
    assert fast.rejects.equals(slow.rejects)


@pytest.mark.parametrize("cutouts", ["keep", "drop"])
def test_ztf_sample_decodes_the_same_as_fastavro(ctx, cutouts):
    fast, slow = both(ctx, raw_from_files(ztf_files()), cutouts=cutouts)
    same(fast, slow)
    assert fast.stats["compiled_groups"] >= 4 and fast.stats["fallback_groups"] == 0


def test_rubin_wire_format_decodes_the_same_as_fastavro(ctx):
    files = sorted((SAMPLES / "lsst" / "wire").rglob("*.avro"))
    fast, slow = both(ctx, raw_from_files(files), framing="confluent", schemas=RUBIN_SCHEMAS)
    same(fast, slow)
    assert fast.stats["fallback_groups"] == 0


@pytest.mark.skipif(not (SHARED / "ztf" / "alerts").is_dir(), reason="../shared not present")
def test_every_shared_ztf_alert_decodes_the_same_as_fastavro(ctx):
    files = sorted((SHARED / "ztf" / "alerts").rglob("*.avro"))
    fast, slow = both(ctx, raw_from_files(files), cutouts="keep")
    same(fast, slow)
    assert fast.table.num_rows == len(files)


@pytest.mark.skipif(not (SHARED / "lsst").is_dir(), reason="../shared not present")
@pytest.mark.parametrize("folder", ["fink_rubin_v9_0", "sample_data"])
def test_shared_rubin_containers_decode_the_same_as_fastavro(ctx, folder):
    files = sorted((SHARED / "lsst" / folder).rglob("*.avro"))
    fast, slow = both(ctx, raw_from_files(files))
    same(fast, slow)
    assert fast.table.num_rows >= len(files) and fast.stats["fallback_groups"] == 0


def sensor_schema(tmp_path) -> tuple[dict, str]:
    schema = {
        "type": "record",
        "name": "m",
        "fields": [{"name": "sensor", "type": "string"}, {"name": "value", "type": "double"}],
    }
    path = tmp_path / "m.avsc"
    path.write_text(json.dumps(schema))
    return schema, str(path)


def sensor_bodies(schema: dict, n: int) -> list[bytes]:
    parsed, bodies = fastavro.parse_schema(schema), []
    for i in range(n):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, {"sensor": f"s{i}", "value": float(i)})
        bodies.append(buf.getvalue())
    return bodies


def test_one_bad_message_costs_only_itself(ctx, tmp_path):
    schema, path = sensor_schema(tmp_path)
    bodies = sensor_bodies(schema, 5)
    bodies[2] += b"\x00\x01"  # stray bytes after a good record (the old reader spun on it)
    raw = RawBatch(raw_table(["t"] * 5, list(range(5)), bodies))
    fast = AvroDecoder(AvroConfig(framing="schemaless", schema_file=path), ctx).decode(raw)
    assert fast.stats == {"compiled_groups": 1, "fallback_groups": 0}  # the group stays compiled
    assert fast.table["sensor"].to_pylist() == ["s0", "s1", "s3", "s4"]
    assert fast.rejects["_offset"].to_pylist() == [2]
    assert "bytes left over" in fast.rejects["error"][0].as_py()


def test_a_group_whose_schema_the_compiled_decoder_refuses_is_read_by_fastavro(
    ctx, tmp_path, monkeypatch
):
    schema, path = sensor_schema(tmp_path)
    raw = RawBatch(raw_table(["t"] * 3, [0, 1, 2], sensor_bodies(schema, 3)))
    refuse = lambda job: ValueError("no compiled decoding into Arrow large_utf8")  # noqa: E731
    monkeypatch.setattr(avro_native, "_one", refuse)
    out = AvroDecoder(AvroConfig(framing="schemaless", schema_file=path), ctx).decode(raw)
    assert out.stats == {"compiled_groups": 0, "fallback_groups": 1}
    assert out.table["value"].to_pylist() == [0.0, 1.0, 2.0]


def test_the_compiled_decoder_refuses_an_arrow_type_it_does_not_build(tmp_path):
    schema, _ = sensor_schema(tmp_path)
    arrow = pa.struct([("sensor", pa.large_string()), ("value", pa.float64())])
    with pytest.raises(ValueError, match=r"(?i)large_?utf8"):
        _native.decode(json.dumps(schema), arrow, sensor_bodies(schema, 1), [1], [])


def test_corrupt_bodies_are_refused_one_by_one_and_never_hang(tmp_path):
    """Every kind of damage ends in an error for that body, quickly: the loops are bounded
    by the bytes left, so no count read from garbage can make them spin."""
    schema = {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "xs", "type": {"type": "array", "items": "null"}},
            {"name": "ys", "type": {"type": "array", "items": "long"}},
            {"name": "s", "type": ["null", "string"]},
        ],
    }
    arrow = pa.struct(
        [("xs", pa.list_(pa.null())), ("ys", pa.list_(pa.int64())), ("s", pa.string())]
    )
    good = b"\x00" + b"\x04\x02\x04\x00" + b"\x02\x02a"  # [], [1, 2], "a"
    bad = {
        "huge null array": b"\xfe\xff\xff\xff\x0f\x00\x00\x00",
        "long array past the end": b"\x00\xfe\xff\xff\x0f\x02",
        "union branch 7": b"\x00\x00\x0e",
        "not UTF-8": b"\x00\x00\x02\x02\xff",
        "truncated varint": b"\x00\x00\x02\x80",
        "negative length": b"\x00\x00\x02\x01",
    }
    bodies = [good, *bad.values(), good]
    done = threading.Event()
    out: list = []
    worker = threading.Thread(
        target=lambda: (
            out.append(_native.decode(json.dumps(schema), arrow, bodies, [1] * 8, [])),
            done.set(),
        )
    )
    worker.start()
    assert done.wait(30), "the compiled decoder did not finish on corrupt input"
    batch, failed = out[0]
    assert batch.num_rows == 2 and batch.column("ys").to_pylist() == [[1, 2], [1, 2]]
    assert [i for i, _ in failed] == list(range(1, 7))
    reasons = dict(zip(bad, (r for _, r in failed), strict=True))
    assert "bytes are left" in reasons["huge null array"] or "items" in reasons["huge null array"]
    assert "UTF-8" in reasons["not UTF-8"] and "union branch" in reasons["union branch 7"]


def by_offset(table: pa.Table, offsets: set[int]) -> pa.Table:
    keep = pa.array([o in offsets for o in table["_offset"].to_pylist()])
    return table.filter(keep).sort_by("_offset")


def test_damaged_ztf_alerts_are_kept_as_fastavro_reads_them_or_refused(ctx):
    """Bytes of real alerts flipped, cut or inserted at random (seeded). Every message the
    compiled path keeps is the per-message path's row, cell by cell; every message fastavro
    refuses it refuses too; the only others it refuses are ones fastavro reads into wrong
    values, for a reason that says so."""
    rng = random.Random(7)
    files = ztf_files()
    values = []
    for k in range(240):
        data = bytearray(files[k % len(files)].read_bytes())
        if k % 4 == 3:
            data = data[: rng.randrange(len(data) // 3, len(data))]
        else:
            for _ in range(rng.choice([1, 2, 8])):
                data[rng.randrange(len(data) // 3, len(data))] = rng.randrange(256)
        values.append(bytes(data))
    raw = RawBatch(raw_table(["z"] * len(values), list(range(len(values))), values))
    fast, slow = both(ctx, raw)
    kept = set(fast.table["_offset"].to_pylist())
    assert kept and kept <= set(slow.table["_offset"].to_pylist())
    same_cells(by_offset(fast.table, kept), by_offset(slow.table, kept))
    rejects = fast.rejects.to_pydict()
    refused = dict(zip(rejects["_offset"], rejects["error"], strict=True))
    assert set(slow.rejects["_offset"].to_pylist()) <= set(refused)
    stricter = set(refused) - set(slow.rejects["_offset"].to_pylist())
    assert kept | set(refused) == set(range(len(values)))
    assert all("union branch -" in refused[o] or "boolean byte" in refused[o] for o in stricter), [
        refused[o] for o in stricter
    ]


def test_bodies_fastavro_reads_into_wrong_values_are_refused(ctx, tmp_path):
    """fastavro takes a union branch index of -2 as Python's list[-2] and a boolean byte 2 as
    true; the compiled decoder refuses both bodies, naming the fault, and keeps the good one."""
    schema = {
        "type": "record",
        "name": "r",
        "fields": [{"name": "b", "type": "boolean"}, {"name": "u", "type": ["null", "int"]}],
    }
    path = tmp_path / "r.avsc"
    path.write_text(json.dumps(schema))
    bodies = [b"\x01\x02\x08", b"\x01\x03", b"\x02\x00"]  # good; branch -2; boolean 2
    raw = RawBatch(raw_table(["t"] * 3, [0, 1, 2], bodies))
    fast, slow = both(ctx, raw, framing="schemaless", schema_file=str(path))
    assert slow.table.num_rows == 3  # what fastavro makes of them
    assert fast.table.to_pylist() == [{"b": True, "u": 4, "_source": "t", "_offset": 0}]
    errors = fast.rejects["error"].to_pylist()
    assert fast.rejects["_offset"].to_pylist() == [1, 2]
    assert "union branch -2" in errors[0] and "boolean byte 2" in errors[1]


def test_every_avro_type_decodes_the_same_as_fastavro(ctx, tmp_path):
    schema = {
        "type": "record",
        "name": "every",
        "fields": [
            {"name": "n", "type": "null"},
            {"name": "b", "type": "boolean"},
            {"name": "i", "type": "int"},
            {"name": "l", "type": ["null", "long"]},
            {"name": "f", "type": "float"},
            {"name": "d", "type": ["double", "null"]},
            {"name": "by", "type": "bytes"},
            {"name": "s", "type": ["null", "string"]},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
            {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 3}},
            {"name": "wide", "type": ["null", "int", "long"]},
            {"name": "num", "type": ["int", "double"]},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {
                "name": "dec",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
            },
            {"name": "m", "type": {"type": "map", "values": ["null", "int"]}},
            {
                "name": "rec",
                "type": [
                    "null",
                    {
                        "type": "record",
                        "name": "Inner",
                        "fields": [
                            {"name": "xs", "type": {"type": "array", "items": "E"}},
                            {"name": "o", "type": ["null", "F"]},
                        ],
                    },
                ],
            },
        ],
    }
    path = tmp_path / "every.avsc"
    path.write_text(json.dumps(schema))
    import datetime as dt
    import decimal

    rows = []
    for k in range(40):
        rows.append(
            {
                "n": None,
                "b": k % 2 == 0,
                "i": -k * 1000,
                "l": None if k % 3 == 0 else k << 40,
                "f": k / 4,
                "d": None if k % 5 == 0 else -k / 3,
                "by": bytes(range(k % 7)),
                "s": None if k % 4 == 0 else "é" * k,
                "e": "AB"[k % 2],
                "fx": bytes([k, k, k]),
                "wide": [None, k, k << 35][k % 3],
                "num": [k, k + 0.5][k % 2],
                "day": dt.date(2025, 1, 1) + dt.timedelta(days=k),
                "ts": dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=k),
                "dec": decimal.Decimal(k * 101 - 2000) / 100,
                "m": {f"k{j}": (None if j == 1 else j) for j in range(k % 3)},
                "rec": None if k % 6 == 0 else {"xs": ["A", "B"][: k % 3], "o": None},
            }
        )
    parsed = fastavro.parse_schema(schema)
    bodies = []
    for r in rows:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r)
        bodies.append(buf.getvalue())
    raw = RawBatch(raw_table(["t"] * len(bodies), list(range(len(bodies))), bodies))
    fast, slow = both(ctx, raw, framing="schemaless", schema_file=str(path))
    same(fast, slow)
    assert fast.stats["compiled_groups"] == 1 and fast.stats["fallback_groups"] == 0
    assert slow.table.num_rows == 40


def test_named_type_references_are_inlined_under_new_names():
    cutout = {"type": "record", "name": "cutout", "fields": [{"name": "b", "type": "bytes"}]}
    schema = {
        "type": "record",
        "name": "alert",
        "namespace": "ztf",
        "fields": [
            {"name": "a", "type": ["null", cutout]},
            {"name": "b", "type": ["null", "cutout"]},
            {"name": "c", "type": ["null", "ztf.cutout"]},
        ],
    }
    out = inline_named_types(schema)
    kinds = [f["type"][1] for f in out["fields"]]
    assert all(isinstance(k, dict) and k["type"] == "record" for k in kinds)
    assert len({k["name"] for k in kinds}) == 3  # one definition per name in a schema
    fastavro.parse_schema(out)  # a valid schema


def test_the_batch_summary_counts_compiled_and_fallback_groups(ztf_spec, tmp_path):
    from headwater.pipeline import Pipeline
    from headwater.spec import load_spec

    pipeline = Pipeline(load_spec(ztf_spec(batch=30), base_dir=tmp_path))
    [batch] = pipeline.plan()
    summary = pipeline.run(batch).summary()
    assert summary["decode"]["compiled_groups"] >= 4
    assert summary["decode"]["fallback_groups"] == 0
