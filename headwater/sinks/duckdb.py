"""``duckdb``: a database file whose views cover every stream's Parquet and the quarantine.

After a run, ``SELECT * FROM solar_system`` works in ``<lake>/<pipeline>.duckdb`` (or through
``headwater query``). Views read the Parquet files by glob with ``union_by_name`` (a stream
can mix writer schema versions) and expose the partition as a ``window`` column. They are
refreshed after each batch so a new column shows up at once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from pydantic import Field

from headwater.config import ComponentConfig
from headwater.errors import SinkError
from headwater.lake import QUARANTINE, Lake
from headwater.quarantine import QUARANTINE_SCHEMA
from headwater.sinks.base import Sink, Target


class DuckDBConfig(ComponentConfig):
    database: str | None = Field(
        default=None, description="Database file; default <lake>/<pipeline>.duckdb."
    )
    lock_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long to wait for another writer's lock."
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def view_sql(lake: Lake, pipeline: str, stream: str) -> str:
    glob = lake.glob(pipeline, stream).replace("'", "''")
    return (
        f"CREATE OR REPLACE VIEW {_quote(stream)} AS SELECT * FROM read_parquet('{glob}', "
        "union_by_name = true, hive_partitioning = true, hive_types_autocast = false)"
    )


def empty_quarantine_sql() -> str:
    duck = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.binary(): "BLOB"}
    cols = ", ".join(f"NULL::{duck[f.type]} AS {_quote(f.name)}" for f in QUARANTINE_SCHEMA)
    return (
        f"CREATE OR REPLACE VIEW {_quote(QUARANTINE)} AS "
        f"SELECT {cols}, NULL::VARCHAR AS window WHERE false"
    )


#: Statements this process already ran per database file (its path and inode): a view reads
#: a glob, so new files show without recreating it; only a changed statement needs a write.
_APPLIED: dict[tuple[str, int], set[str]] = {}


def refresh_views(
    database: Path, lake: Lake, pipeline: str, streams: list[str], lock_timeout: float = 30.0
) -> None:
    """(Re)create a view per stream that has files, and the quarantine view."""
    statements = [
        view_sql(lake, pipeline, s)
        for s in streams
        if any(lake.stream_dir(pipeline, s).glob("*/*.parquet"))
    ]
    has_quarantine = any(lake.stream_dir(pipeline, QUARANTINE).glob("*/*.parquet"))
    statements.append(
        view_sql(lake, pipeline, QUARANTINE) if has_quarantine else empty_quarantine_sql()
    )
    key = (str(database), database.stat().st_ino if database.exists() else -1)
    if set(statements) <= _APPLIED.get(key, set()):
        return
    _execute(database, statements, lock_timeout)
    _APPLIED.setdefault((str(database), database.stat().st_ino), set()).update(statements)


def _execute(database: Path, statements: list[str], lock_timeout: float) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            with duckdb.connect(str(database)) as con:
                for sql in statements:
                    con.execute(sql)
            return
        except duckdb.IOException as exc:  # another process holds the write lock
            if time.monotonic() > deadline:
                raise SinkError(
                    f"cannot update views in {database}: still locked after {lock_timeout}s "
                    f"({exc}). Close other DuckDB sessions on it."
                ) from exc
            time.sleep(0.2)


class DuckDBSink(Sink):
    Config = DuckDBConfig
    requires = ("parquet",)

    def database(self) -> Path:
        if self.config.database:
            return self.ctx.path(self.config.database)
        return self.ctx.lake.database(self.ctx.pipeline)

    def write(self, target: Target, table: pa.Table) -> dict[str, Any]:
        db = self.database()
        refresh_views(
            db, self.ctx.lake, target.pipeline, [target.stream], self.config.lock_timeout_seconds
        )
        return {"database": str(db), "view": target.stream}
