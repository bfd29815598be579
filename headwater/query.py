"""``headwater query``: DuckDB over every pipeline's views, read-only.

Each ``<lake>/<pipeline>.duckdb`` is attached read-only under the pipeline's name and put on
the search path, so ``select * from solar_system`` and ``select * from ztf.solar_system``
both work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from headwater.errors import HeadwaterError


def run_query(lake: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    databases = sorted(lake.glob("*.duckdb"))
    if not databases:
        raise HeadwaterError(
            f"no pipeline outputs in {lake}: no <pipeline>.duckdb there. Run a pipeline "
            "with a duckdb sink first (headwater run pipelines/ztf.yaml), or pass --lake."
        )
    con = duckdb.connect(":memory:")
    try:
        names = []
        for db in databases:
            name = db.stem
            con.execute(f"ATTACH '{db.as_posix()}' AS \"{name}\" (READ_ONLY)")
            names.append(name)
        con.execute(f"SET search_path = '{','.join(names)}'")
        rel = con.sql(sql)
        if rel is None:
            return [], []
        return list(rel.columns), rel.fetchall()
    except duckdb.Error as exc:
        raise HeadwaterError(f"query failed: {exc}") from exc
    finally:
        con.close()
