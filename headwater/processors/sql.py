"""``sql``: one DuckDB SELECT over the batch, which it sees as the view ``batch``.

The query sees its batch and nothing else. Specs may come from users who must not reach the
machine, so the connection has external access disabled and its configuration locked: reading
files, attaching databases, copying out and installing or loading extensions are refused.

A plain filter, ``SELECT * FROM batch WHERE <condition>`` (recognised in DuckDB's own parse
tree), runs as ``SELECT <condition> FROM batch``: DuckDB reads only the columns the condition
names and returns one boolean per row, and the rows are kept with Arrow's filter. Rows and
their order are those of the SELECT *; the kept rows keep their Arrow types exactly (no round
trip through DuckDB's types); and a batch of alerts' cutouts and histories are not copied into
DuckDB and back, which was most of the cost of a filter.
"""

from __future__ import annotations

import json
from typing import Any

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


#: Parts of a SELECT node that must be empty for it to be a plain filter (no DISTINCT, ORDER,
#: LIMIT, CTE, grouping, HAVING, QUALIFY or SAMPLE).
_PLAIN = {
    "modifiers": [],
    "cte_map": {"map": []},
    "group_expressions": [],
    "group_sets": [],
    "aggregate_handling": "STANDARD_HANDLING",
    "having": None,
    "sample": None,
    "qualify": None,
}


def _is_bare_star(select_list: list[dict[str, Any]]) -> bool:
    if len(select_list) != 1:
        return False
    star = select_list[0]
    return (
        star.get("class") == "STAR"
        and not star.get("columns")
        and star.get("expr") is None
        and star.get("relation_name") in ("", None)
        and not any(star.get(k) for k in ("exclude_list", "replace_list", "rename_list"))
        and not star.get("qualified_exclude_list")
    )


def _is_batch(table: dict[str, Any] | None) -> bool:
    return (
        table is not None
        and table.get("type") == "BASE_TABLE"
        and table.get("table_name") == "batch"
        and not table.get("schema_name")
        and not table.get("catalog_name")
        and table.get("sample") is None
        and table.get("at_clause") is None
        and not table.get("column_name_alias")
    )


def filter_condition(query: str) -> str | None:
    """``SELECT <condition> FROM batch`` if ``query`` is ``SELECT * FROM batch WHERE
    <condition>`` and nothing more, else None. Decided on DuckDB's parse tree, and the new
    query is written back by DuckDB, so no SQL is taken apart by hand."""
    con = duckdb.connect(":memory:")
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
        if tree.get("error") or len(tree.get("statements", [])) != 1:
            return None
        node = tree["statements"][0]["node"]
        if (
            node.get("type") != "SELECT_NODE"
            or node.get("where_clause") is None
            or any(node.get(k) != v for k, v in _PLAIN.items())
            or not _is_bare_star(node.get("select_list", []))
            or not _is_batch(node.get("from_table"))
        ):
            return None
        condition = {
            "class": "CAST",
            "type": "OPERATOR_CAST",
            "alias": "",
            "query_location": 18446744073709551615,  # DuckDB's "no location" (2**64 - 1)
            "child": node["where_clause"],
            "cast_type": {"id": "BOOLEAN", "type_info": None},
            "try_cast": False,
        }
        node["select_list"], node["where_clause"] = [condition], None
        rewritten = con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)])
        return rewritten.fetchall()[0][0]
    except (duckdb.Error, KeyError, TypeError, ValueError):
        return None  # anything unexpected: the query runs as written
    finally:
        con.close()


class SqlConfig(ComponentConfig):
    query: str = Field(description="A DuckDB SELECT over the view `batch`.")

    _select = field_validator("query")(classmethod(lambda cls, v: check_select(v)))


class Sql(Processor):
    Config = SqlConfig
    shorthand = "query"

    def __init__(self, config: SqlConfig, ctx):
        super().__init__(config, ctx)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._condition = filter_condition(config.query)
        self._checked: list[pa.Schema] = []  # schemas the query as written binds on

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = duckdb.connect(":memory:")
            con.execute("SET enable_external_access = false")
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("SET autoload_known_extensions = false")
            con.execute("SET lock_configuration = true")
            self._con = con
        return self._con

    def _binds(self, con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> bool:
        """Whether the query as written is valid on this schema (planned, not run), so that the
        condition is used only where WHERE allows it: an aggregate or a window function is
        refused in a WHERE clause but not in a select list. Else the query runs as written and
        fails with DuckDB's own message."""
        if any(schema.equals(s) for s in self._checked):
            return True
        try:
            con.execute("EXPLAIN " + self.config.query)
        except duckdb.Error:
            return False
        self._checked.append(schema)
        return True

    def process(self, table: pa.Table) -> pa.Table | pa.ChunkedArray:
        con = self._connection()
        con.register("batch", table)
        try:
            if self._condition is None or not self._binds(con, table.schema):
                return con.sql(self.config.query).to_arrow_table()
            return con.sql(self._condition).to_arrow_table().column(0)  # the keep-mask
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
