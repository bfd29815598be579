"""Confluent-framed Rubin alerts resolved through a Schema Registry's REST API.

The registry here is a small local HTTP server answering ``GET /schemas/ids/{id}`` the way
Confluent's does, so the real confluent-kafka client and its HTTP path are exercised.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fastavro
import pytest

from headwater.batch import RawBatch, raw_table
from headwater.decoders.avro import AvroConfig, AvroDecoder
from tests.conftest import SAMPLES

SCHEMAS = SAMPLES / "lsst" / "schema"


def registered(schema_id: int) -> str:
    path = (
        SCHEMAS
        / str(schema_id // 100)
        / str(schema_id % 100)
        / (f"lsst.v{schema_id // 100}_{schema_id % 100}.alert.avsc")
    )
    # the full schema (logical types kept), named sub-schemas inlined as a registry holds it
    return json.dumps(fastavro.schema.load_schema(str(path), _write_hint=False))


@pytest.fixture
def registry():
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                try:
                    body = {"schema": registered(int(parts[2]))}
                    code = 200
                except OSError:
                    body, code = {"error_code": 40403, "message": "Schema not found"}, 404
            else:
                body, code = {"error_code": 404, "message": "not found"}, 404
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()
    thread.join()


def test_wire_format_alerts_resolve_through_the_registry(ctx, registry, monkeypatch):
    url, seen = registry
    monkeypatch.setenv("TEST_REGISTRY_AUTH", "alice:s3cret")
    config = AvroConfig(
        framing="confluent", registry={"url": url, "basic_auth": {"env": "TEST_REGISTRY_AUTH"}}
    )
    files = sorted((SAMPLES / "lsst" / "wire").rglob("*.avro"))
    raw = RawBatch(
        raw_table([f.name for f in files], [0] * len(files), [f.read_bytes() for f in files])
    )
    decoder = AvroDecoder(config, ctx)
    decoded = decoder.decode(raw)
    assert decoded.rejects.num_rows == 0 and decoded.table.num_rows == len(files)
    local = AvroDecoder(
        AvroConfig(
            framing="confluent",
            schemas={
                "path": str(SCHEMAS),
                "pattern": "{major}/{minor}/lsst.v{major}_{minor}.alert.avsc",
            },
        ),
        ctx,
    ).decode(raw)

    def cells(table):  # JSON so that NaN compares equal to NaN
        return json.dumps(table.select(["alertId", "diaSource"]).to_pylist(), default=str)

    assert cells(decoded.table) == cells(local.table)
    ids = {p.split("?")[0] for p, _ in seen}
    assert len(ids) == 10  # each schema id fetched once, then cached
    assert all(auth and auth.startswith("Basic ") for _, auth in seen)


def test_an_id_the_registry_does_not_know_is_quarantined(ctx, registry):
    url, _ = registry
    decoder = AvroDecoder(AvroConfig(framing="confluent", registry={"url": url}), ctx)
    body = (SAMPLES / "lsst" / "wire" / "synthetic" / "lsst.v9_0.avro").read_bytes()
    bogus = b"\x00" + (4242).to_bytes(4, "big") + body[5:]
    decoded = decoder.decode(RawBatch(raw_table(["a", "b"], [0, 1], [body, bogus])))
    assert decoded.table.num_rows == 1
    error = decoded.rejects["error"][0].as_py()
    assert error.startswith(f"avro: unknown schema id 4242: the registry at {url} answered")
