"""JSON-lines and CSV decoders: whole-batch parsing, bad records quarantined, types enforced."""

import pyarrow as pa
import pytest

from headwater.batch import RawBatch, raw_table
from headwater.decoders.csv import CsvConfig, CsvDecoder
from headwater.decoders.jsonlines import JsonConfig, JsonDecoder


def raw(values, headers=None):
    return RawBatch(raw_table(["f"] * len(values), list(range(len(values))), values), headers or {})


def test_json_decodes_a_batch_and_quarantines_bad_lines(ctx):
    d = JsonDecoder(JsonConfig(columns={"value": "double"}), ctx)
    decoded = d.decode(
        raw(
            [
                b'{"sensor": "a", "value": 1}',
                b'{"sensor": "b",',
                b"[1, 2]",
                b'{"sensor": "c", "value": 2.5}',
            ]
        )
    )
    assert decoded.table.select(["sensor", "value"]).to_pylist() == [
        {"sensor": "a", "value": 1.0},
        {"sensor": "c", "value": 2.5},
    ]
    assert decoded.table.schema.field("value").type == pa.float64()
    errors = decoded.rejects["error"].to_pylist()
    assert decoded.rejects["_offset"].to_pylist() == [1, 2]
    assert errors[0].startswith("json: not valid JSON")
    assert errors[1] == "json: expected an object per message, got list"


def test_json_required_fields_are_enforced(ctx):
    d = JsonDecoder(JsonConfig(required=["machine.id"]), ctx)
    decoded = d.decode(
        raw([b'{"machine": {"id": "m1"}, "t": 1}', b'{"machine": {}, "t": 2}', b'{"t": 3}'])
    )
    assert decoded.table["t"].to_pylist() == [1]
    assert decoded.rejects["error"].to_pylist() == ["required field 'machine.id' is missing"] * 2


def test_csv_uses_the_file_header_and_quarantines_ragged_rows(ctx):
    d = CsvDecoder(CsvConfig(types={"cpu": "double"}), ctx)
    decoded = d.decode(
        raw([b"1,m1,0.5", b"2,m2", b"", b"3,m3,1.0"], headers={"f": b"timestamp,machine_id,cpu\n"})
    )
    assert decoded.table.select(["timestamp", "machine_id", "cpu"]).to_pylist() == [
        {"timestamp": 1, "machine_id": "m1", "cpu": 0.5},
        {"timestamp": 3, "machine_id": "m3", "cpu": 1.0},
    ]
    rej = dict(
        zip(
            decoded.rejects["_offset"].to_pylist(),
            decoded.rejects["error"].to_pylist(),
            strict=True,
        )
    )
    assert rej[1] == "csv: expected 3 columns, got 2: '2,m2'"
    assert rej[2] == "csv: empty record"


def test_csv_without_header_takes_configured_columns(ctx):
    d = CsvDecoder(CsvConfig(columns=["a", "b"]), ctx)
    assert d.decode(raw([b"1,x", b"2,y"])).table.select(["a", "b"]).to_pylist() == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": "y"},
    ]


def test_unknown_column_type_is_a_config_error():
    with pytest.raises(ValueError, match="column 'cpu' has unknown type 'dbl'"):
        CsvConfig(types={"cpu": "dbl"})


def test_csv_a_value_of_the_wrong_type_is_refused_and_its_neighbours_kept(ctx):
    d = CsvDecoder(CsvConfig(types={"cpu": "double"}), ctx)
    decoded = d.decode(raw([b"1,m1,0.5", b"2,m2,abc", b"3,m3,1.0"], headers={"f": b"t,m,cpu\n"}))
    assert decoded.table["t"].to_pylist() == [1, 3]
    assert decoded.rejects["_offset"].to_pylist() == [1]
    assert "abc" in decoded.rejects["error"][0].as_py()


def test_csv_a_clean_batch_parses_as_the_row_by_row_reader_does(ctx):
    """Clean batches take Arrow's threaded reader; rows with faults the serial one, which
    numbers them. Both must give the same table, inferred types included."""
    d = CsvDecoder(CsvConfig(types={"cpu": "double"}), ctx)
    lines = [b"1,m1,0.5,true,2026-11-24", b"2,,1,false,2026-11-25", b"3,m3,NA,,"]
    header = b"t,m,cpu,ok,day\n"
    fast, kept = d._read_clean([0, 1, 2], lines, header)
    slow, _ = d._read([0, 1, 2], lines, header, [])
    assert kept == [0, 1, 2]
    assert fast.equals(slow)
    assert fast.schema.field("day").type == pa.date32()
    assert fast["m"].to_pylist() == ["m1", "", "m3"]


@pytest.mark.parametrize(
    "values, headers",
    [
        # the usual batch: one header, every message a line
        ([b"1,m1,0.5", b"2,m2,1", b"3,m3,NA"], {"f": b"t,m,cpu\n", "g": b"t,m,cpu\n"}),
        # a blank message, one ending in CRLF, a null one: each must take the other path
        ([b"1,m1,0.5", b"  ", b"3,m3,1.0"], {"f": b"t,m,cpu\n"}),
        ([b"1,m1,0.5\r\n", b"3,m3,1.0"], {"f": b"t,m,cpu\r\n"}),
        ([b"1,m1,0.5", None, b"3,m3,1.0"], {"f": b"t,m,cpu\n"}),
        # two records in one message, a ragged row, a bad value
        ([b"1,m1,0.5\n2,m2,0.7", b"3,m3,1.0"], {"f": b"t,m,cpu\n"}),
        ([b"1,m1,0.5", b"2,m2", b"3,m3,1.0"], {"f": b"t,m,cpu\n"}),
        ([b"1,m1,0.5", b"2,m2,abc", b"3,m3,1.0"], {"f": b"t,m,cpu\n"}),
    ],
)
def test_csv_a_whole_batch_decodes_as_message_by_message(ctx, values, headers):
    """The whole-batch parse (no Python per message) is taken only where it gives what the
    message-by-message one gives: same rows, lineage and refusals."""
    d = CsvDecoder(CsvConfig(types={"cpu": "double"}), ctx)
    sources = ["f", "g", "f"][: len(values)] if "g" in headers else ["f"] * len(values)
    batch = RawBatch(raw_table(sources, list(range(len(values))), values), headers)
    whole = d._decode_whole(batch)
    decoded = d.decode(batch)
    reference = _message_by_message(d, batch)
    assert decoded.table.equals(reference.table)
    assert decoded.rejects.equals(reference.rejects)
    assert (whole is not None) == (len(headers) > 1)  # only the usual batch is parsed whole
    if whole is not None:
        assert whole.table.equals(reference.table)
        assert whole.table["_source"].to_pylist() == sources
        assert whole.table["cpu"].to_pylist() == [0.5, 1.0, None]


def _message_by_message(d, batch):
    saved, d._decode_whole = d._decode_whole, lambda raw: None
    try:
        return d.decode(batch)
    finally:
        d._decode_whole = saved


def test_csv_a_message_of_two_records_is_refused_and_the_rest_kept(ctx):
    d = CsvDecoder(CsvConfig(types={"cpu": "double"}), ctx)
    decoded = d.decode(raw([b"1,m1,0.5\n2,m2,0.7", b"3,m3,1.0"], headers={"f": b"t,m,cpu\n"}))
    assert decoded.table["t"].to_pylist() == [3]
    assert decoded.table["_offset"].to_pylist() == [1]
    assert decoded.rejects["error"].to_pylist() == ["csv: 2 records in one message; expected one"]
