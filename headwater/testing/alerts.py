"""Many distinct real alerts from a few: the ZTF sample repeated with new candids.

For tests and benchmarks that need thousands of alerts where every one is distinct (so
"exactly once" can be checked by candid). Each copy is the original alert re-encoded with its
own writer schema, as ZTF sends it (an Avro container per message); only ``candid`` (top level
and in ``candidate``) changes. ``cutouts=False`` empties the three image stamps, which are
three quarters of every alert's bytes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import fastavro

from headwater.decoders.avro_wire import parse_container, write_container, write_long
from headwater.errors import HeadwaterError

CANDID_STEP = 10**12  # far above any real ZTF candid's range in the sample: no collisions


def _originals(files: list[Path]) -> list[tuple[bytes, bytes, object, dict]]:
    """(schema JSON, sync marker, parsed schema, record) of every alert in ``files``."""
    out = []
    for f in files:
        data = f.read_bytes()
        container = parse_container(data)
        schema = fastavro.parse_schema(json.loads(container.schema))
        for record in fastavro.reader(io.BytesIO(data)):
            out.append((container.schema, container.sync, schema, record))
    return out


def distinct_alerts(files: list[Path], n: int, cutouts: bool = True) -> Iterator[bytes]:
    """``n`` alert messages cycling through ``files``; copy ``k`` gets a candid + k·10¹²."""
    for _candid, message in distinct_alerts_with_candids(files, n, cutouts):
        yield message


def distinct_alerts_with_candids(
    files: list[Path], n: int, cutouts: bool = True
) -> Iterator[tuple[int, bytes]]:
    """Like :func:`distinct_alerts`, each message with its candid."""
    templates = [_template(*original, cutouts) for original in _originals(files)]
    for i in range(n):
        schema_json, sync, parts, candid = templates[i % len(templates)]
        new = candid + (i // len(templates)) * CANDID_STEP
        yield new, write_container(schema_json, [(1, write_long(new).join(parts))], sync)


def _template(schema_json: bytes, sync: bytes, schema, record: dict, cutouts: bool):
    """The alert's encoded body split around its two candids (top level and candidate).

    A new candid's varint is spliced in (the block length is recomputed), so a copy costs a
    join instead of a full Avro encoding (ZTF alerts take milliseconds each to encode).
    """
    alert = dict(record)
    if not cutouts:
        for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            alert[key] = None
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, alert)
    old = write_long(record["candid"])
    parts = body.getvalue().split(old)
    if len(parts) != 3:
        raise HeadwaterError(
            f"alert {record['candid']}: expected its candid encoded twice in the body "
            f"(top level and candidate), found {len(parts) - 1}"
        )
    return schema_json, sync, parts, record["candid"]


def write_alerts(folder: Path, messages: Iterator[bytes]) -> list[Path]:
    """One ``.avro`` file per message, names sorting in message order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, value in enumerate(messages):
        path = folder / f"{i:07d}.avro"
        path.write_bytes(value)
        paths.append(path)
    return paths
