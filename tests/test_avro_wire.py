import io

import fastavro
import pytest

from headwater.decoders import avro_wire
from headwater.errors import DecodeError
from tests.conftest import ztf_files


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (-1, b"\x01"),
        (1, b"\x02"),
        (-64, b"\x7f"),
        (64, b"\x80\x01"),
        (2**31, b"\x80\x80\x80\x80\x10"),
        (-(2**63), b"\xff" * 9 + b"\x01"),
    ],
)
def test_long_round_trips_byte_exact(value, encoded):
    assert avro_wire.write_long(value) == encoded
    assert avro_wire.read_long(encoded, 0) == (value, len(encoded))


def test_truncated_varint_is_diagnosed():
    with pytest.raises(DecodeError, match="truncated varint at byte 1 of 1"):
        avro_wire.read_long(b"\x80", 0)


def test_parse_container_matches_fastavro_on_real_alerts():
    for path in ztf_files()[:5]:
        data = path.read_bytes()
        c = avro_wire.parse_container(data)
        reader = fastavro.reader(io.BytesIO(data))
        assert c.count == 1 and c.codec == "null"
        record = fastavro.schemaless_reader(io.BytesIO(c.blocks[0][1]), reader.writer_schema)
        assert record == next(reader)


def test_write_container_round_trips_through_fastavro():
    schema = {"type": "record", "name": "r", "fields": [{"name": "x", "type": "long"}]}
    parsed = fastavro.parse_schema(schema)
    bodies = []
    for x in (1, -5, 300):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, {"x": x})
        bodies.append(buf.getvalue())
    sync = bytes(range(16))
    data = avro_wire.write_container(
        b'{"type":"record","name":"r","fields":[{"name":"x","type":"long"}]}',
        [(3, b"".join(bodies))],
        sync,
    )
    assert [r["x"] for r in fastavro.reader(io.BytesIO(data))] == [1, -5, 300]
    c = avro_wire.parse_container(data)
    assert c.sync == sync and c.blocks == [(3, b"".join(bodies))]


def test_container_diagnoses_bad_framing():
    data = ztf_files()[0].read_bytes()
    with pytest.raises(DecodeError, match=r"expected magic b'Obj\\x01', got b'\\x00"):
        avro_wire.parse_container(b"\x00" + data[1:])
    with pytest.raises(DecodeError, match="truncated Avro container"):
        avro_wire.parse_container(data[: len(data) // 2])
    corrupt = data[:-1] + bytes([data[-1] ^ 0xFF])
    with pytest.raises(DecodeError, match="sync marker mismatch"):
        avro_wire.parse_container(corrupt)


def test_confluent_framing_round_trips_and_diagnoses():
    framed = avro_wire.frame_confluent(900, b"body")
    assert framed == b"\x00\x00\x00\x03\x84body"
    assert avro_wire.split_confluent(framed) == (900, b"body")
    with pytest.raises(DecodeError, match=r"expected magic byte 0, got 79 .*container file"):
        avro_wire.split_confluent(ztf_files()[0].read_bytes())
    with pytest.raises(DecodeError, match="3 bytes, expected at least 5"):
        avro_wire.split_confluent(b"\x00\x00\x01")


def test_container_parser_remembers_headers_and_still_checks_every_message():
    files = ztf_files()
    first, other = files[0].read_bytes(), files[-1].read_bytes()
    parser = avro_wire.ContainerParser()
    a = parser.parse(first)
    b = parser.parse(first)  # the known header: same schema object, same blocks
    assert b.schema is a.schema
    assert [bytes(d) for _, d in b.blocks] == [bytes(d) for _, d in a.blocks]
    assert b.header_size == a.header_size == avro_wire.parse_container(first).header_size
    c = parser.parse(other)  # another writer: parsed in full
    assert c.schema == avro_wire.parse_container(other).schema != a.schema
    with pytest.raises(DecodeError, match="sync marker mismatch"):
        parser.parse(first[:-1] + b"\x00")  # known header, corrupt tail: still refused
    with pytest.raises(DecodeError, match="truncated"):
        parser.parse(first[: a.header_size + 3])
