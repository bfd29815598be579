"""Avro wire formats, byte by byte: object container files and the Confluent framing.

Tiny on purpose and tested byte-exactly. Bad framing gets a diagnosis (what was expected at
which offset), not a stack trace from deep inside a reader.

* Object container file: ``Obj\\x01`` + metadata map (``avro.schema``, ``avro.codec``) +
  16-byte sync marker, then blocks of ``count, size, data, sync``.
* Confluent wire format: magic byte ``0`` + schema id (4 bytes, big-endian) + one
  schemaless Avro body.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from headwater.errors import DecodeError

CONTAINER_MAGIC = b"Obj\x01"
SYNC_SIZE = 16
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_SIZE = 5


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode one zig-zag varint at ``pos``; return (value, next position)."""
    shift = 0
    accum = 0
    while True:
        if pos >= len(buf):
            raise DecodeError(f"truncated varint at byte {pos} of {len(buf)}")
        b = buf[pos]
        pos += 1
        accum |= (b & 0x7F) << shift
        if not b & 0x80:
            return (accum >> 1) ^ -(accum & 1), pos
        shift += 7
        if shift > 63:
            raise DecodeError(f"varint longer than 10 bytes at byte {pos}")


def write_long(value: int) -> bytes:
    """Encode one zig-zag varint (the inverse of :func:`read_long`)."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@dataclass(frozen=True)
class Container:
    """A parsed object container: its header and its data blocks (decompressed)."""

    schema: bytes
    codec: str
    sync: bytes
    blocks: list[tuple[int, bytes | memoryview]]  # uncompressed blocks are views, not copies
    header_size: int = 0  # bytes before the first block

    @property
    def count(self) -> int:
        return sum(n for n, _ in self.blocks)


def _read_bytes(buf: bytes, pos: int, what: str) -> tuple[bytes, int]:
    size, pos = read_long(buf, pos)
    if size < 0 or pos + size > len(buf):
        raise DecodeError(
            f"truncated Avro container: {what} of {size} bytes at byte {pos}, "
            f"only {len(buf) - pos} left"
        )
    return buf[pos : pos + size], pos + size


def _read_metadata(buf: bytes, pos: int) -> tuple[dict[str, bytes], int]:
    meta: dict[str, bytes] = {}
    while True:
        count, pos = read_long(buf, pos)
        if count == 0:
            return meta, pos
        if count < 0:  # a negative count is followed by the block's size in bytes
            count = -count
            _, pos = read_long(buf, pos)
        for _ in range(count):
            key, pos = _read_bytes(buf, pos, "metadata key")
            value, pos = _read_bytes(buf, pos, "metadata value")
            meta[bytes(key).decode("utf-8", "replace")] = value


def parse_container(data: bytes) -> Container:
    """Split an Avro object container into header and decompressed blocks."""
    buf = memoryview(data)  # slices of a view share the message's bytes instead of copying
    if buf[:4] != CONTAINER_MAGIC:
        raise DecodeError(
            f"not an Avro object container: expected magic {CONTAINER_MAGIC!r}, "
            f"got {bytes(buf[:4])!r} ({len(buf)} bytes)"
        )
    meta, pos = _read_metadata(buf, 4)
    if "avro.schema" not in meta:
        raise DecodeError("Avro container header has no 'avro.schema' entry")
    codec = bytes(meta.get("avro.codec", b"null")).decode()
    sync = bytes(buf[pos : pos + SYNC_SIZE])
    if len(sync) != SYNC_SIZE:
        raise DecodeError(f"truncated Avro container: no 16-byte sync marker at byte {pos}")
    return _read_blocks(buf, pos, bytes(meta["avro.schema"]), codec)


def _read_blocks(buf: memoryview, pos: int, schema: bytes, codec: str) -> Container:
    """The blocks after a header whose sync marker starts at ``pos``."""
    sync = bytes(buf[pos : pos + SYNC_SIZE])
    pos += SYNC_SIZE
    header_size = pos
    blocks = []
    while pos < len(buf):
        count, pos = read_long(buf, pos)
        data, pos = _read_bytes(buf, pos, "data block")
        if bytes(buf[pos : pos + SYNC_SIZE]) != sync:
            raise DecodeError(
                f"Avro container sync marker mismatch after the block ending at byte {pos}: "
                "the file is truncated or corrupt"
            )
        pos += SYNC_SIZE
        blocks.append((count, _decompress(codec, data)))
    return Container(schema, codec, sync, blocks, header_size)


class ContainerParser:
    """Parses containers, remembering the headers it has seen.

    A ZTF message repeats its producer's header (~23 KB of schema) byte for byte: a message
    starting with a known header skips parsing it, and its schema is the very same ``bytes``
    object as before, so looking it up again costs no hashing.
    """

    MAX_KNOWN = 64

    def __init__(self) -> None:
        self._known: list[tuple[bytes, bytes, str]] = []  # header before sync, schema, codec

    def parse(self, data: bytes | memoryview) -> Container:
        buf = memoryview(data)
        for k, (head, schema, codec) in enumerate(self._known):
            if len(buf) > len(head) + SYNC_SIZE and bytes(buf[: len(head)]) == head:
                if k:  # the most recent writer first: a stream rarely changes it
                    self._known.insert(0, self._known.pop(k))
                return _read_blocks(buf, len(head), schema, codec)
        container = parse_container(buf)
        head = bytes(buf[: container.header_size - SYNC_SIZE])
        self._known.insert(0, (head, container.schema, container.codec))
        del self._known[self.MAX_KNOWN :]
        return container


def _decompress(codec: str, data: memoryview) -> bytes | memoryview:
    if codec == "null":
        return data
    if codec == "deflate":
        try:
            return zlib.decompress(data, -15)
        except zlib.error as exc:
            raise DecodeError(f"corrupt deflate block in Avro container: {exc}") from exc
    raise DecodeError(
        f"Avro container codec {codec!r} is not supported; expected 'null' or 'deflate'"
    )


def _header(schema_json: bytes, sync: bytes) -> bytearray:
    """An uncompressed object container's header: magic, schema and codec, sync marker."""
    header = bytearray(CONTAINER_MAGIC)
    header += write_long(2)
    for key, value in ((b"avro.schema", schema_json), (b"avro.codec", b"null")):
        header += write_long(len(key)) + key + write_long(len(value)) + value
    header += write_long(0) + sync
    return header


def container_parts(schema_json: bytes, count: int, bodies: list, sync: bytes) -> list:
    """An uncompressed object container holding ``count`` records, the concatenation of
    ``bodies``, in one block, as a list of buffers: written or joined without copying the
    bodies more than once."""
    header = _header(schema_json, sync)
    header += write_long(count) + write_long(sum(len(b) for b in bodies))
    return [bytes(header), *bodies, sync]


def write_container(schema_json: bytes, blocks: list[tuple[int, bytes]], sync: bytes) -> bytes:
    """Frame already-encoded record blocks as an uncompressed object container."""
    out = _header(schema_json, sync)
    for count, data in blocks:
        out += write_long(count) + write_long(len(data)) + data + sync
    return bytes(out)


def split_confluent(buf: bytes) -> tuple[int, bytes]:
    """Split a Confluent-framed message into (schema id, schemaless body)."""
    if len(buf) < CONFLUENT_HEADER_SIZE:
        raise DecodeError(
            f"not a Confluent-framed message: {len(buf)} bytes, expected at least "
            f"{CONFLUENT_HEADER_SIZE} (magic byte 0 + 4-byte schema id)"
        )
    if buf[0] != CONFLUENT_MAGIC:
        raise DecodeError(
            f"not a Confluent-framed message: expected magic byte 0, got {buf[0]}"
            + (" (this looks like an Avro container file)" if buf[:4] == CONTAINER_MAGIC else "")
        )
    return int.from_bytes(buf[1:5], "big"), buf[5:]


def frame_confluent(schema_id: int, body: bytes) -> bytes:
    """Prefix a schemaless Avro body with the Confluent magic byte and schema id."""
    if not 0 <= schema_id < 2**32:
        raise ValueError(f"schema id must fit in 4 unsigned bytes, got {schema_id}")
    return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big") + body
