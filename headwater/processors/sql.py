"""``sql``: one DuckDB SELECT over the batch, which it sees as the view ``batch``.

The query sees its batch and nothing else. Specs may come from users who must not reach the
machine, so the connection has external access disabled and its configuration locked: reading
files, attaching databases, copying out and installing or loading extensions are refused.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
from pydantic import Field, field_validator

from headwater.config import ComponentConfig
from headwater.errors import ProcessorError
from headwater.processors.base import Processor


def check_select(query: str) -> str:
    """Refuse anything but exactly one SELECT statement (parsed by DuckDB itself)."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise ValueError(f"query does not parse: {exc}") from exc
    if len(statements) != 1:
        raise ValueError(f"expected exactly one SELECT statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ValueError(f"only a SELECT over `batch` is allowed, got a {kind.name} statement")
    return query


class SqlConfig(ComponentConfig):
    query: str = Field(description="A DuckDB SELECT over the view `batch`.")

    _select = field_validator("query")(classmethod(lambda cls, v: check_select(v)))


class Sql(Processor):
    Config = SqlConfig
    shorthand = "query"

    def __init__(self, config: SqlConfig, ctx):
        super().__init__(config, ctx)
        self._con: duckdb.DuckDBPyConnection | None = None

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = duckdb.connect(":memory:")
            con.execute("SET enable_external_access = false")
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("SET autoload_known_extensions = false")
            con.execute("SET lock_configuration = true")
            self._con = con
        return self._con

    def process(self, table: pa.Table) -> pa.Table:
        con = self._connection()
        con.register("batch", table)
        try:
            return con.sql(self.config.query).to_arrow_table()
        except duckdb.PermissionException as exc:
            raise ProcessorError(
                f"processor {self.ctx.where}: the query tried to reach outside its batch "
                f"(files, databases or extensions), which is refused: {exc}"
            ) from exc
        except duckdb.Error as exc:
            raise ProcessorError(
                f"processor {self.ctx.where}: query failed: {exc}. "
                f"Columns of `batch`: {', '.join(table.column_names)}"
            ) from exc
        finally:
            con.unregister("batch")
