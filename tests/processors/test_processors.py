"""Built-in processors on real ZTF alerts and on small tables."""

import csv

import duckdb
import pyarrow as pa
import pytest

from headwater.decoders.avro import AvroConfig, AvroDecoder
from headwater.errors import ProcessorError
from headwater.processors.record import PASS, SKIP, RecordAdapter, RecordConfig
from headwater.processors.select import Select, SelectConfig
from headwater.processors.solar_system import SolarSystem, SolarSystemConfig, normalise_designations
from headwater.processors.sql import Sql, SqlConfig, filter_condition
from tests.conftest import SAMPLES, raw_from_files, ztf_files


@pytest.fixture
def alerts(ctx) -> pa.Table:
    return AvroDecoder(AvroConfig(cutouts="drop"), ctx).decode(raw_from_files(ztf_files())).table


@pytest.fixture
def manifest() -> dict[int, dict]:
    with open(SAMPLES / "ztf" / "MANIFEST.csv") as fh:
        return {int(r["candid"]): r for r in csv.DictReader(fh)}


def candids(table):
    return set(table["candid"].to_pylist())


def is_sso(row):
    return row["ssnamenr"] not in ("null", "")


def test_solar_system_include_and_exclude_partition_the_batch(ctx, alerts, manifest):
    inc = SolarSystem(SolarSystemConfig(action="include"), ctx)(alerts).table
    exc = SolarSystem(SolarSystemConfig(action="exclude"), ctx)(alerts).table
    assert candids(inc) == {c for c, r in manifest.items() if is_sso(r)}
    assert candids(exc) == {c for c, r in manifest.items() if not is_sso(r)}
    assert inc.num_rows + exc.num_rows == alerts.num_rows


def test_solar_system_treats_the_string_null_and_real_nulls_as_no_object(ctx):
    table = pa.table(
        {
            "candidate": pa.array(
                [
                    {"ssnamenr": "null", "ssdistnr": -999.0},
                    {"ssnamenr": None, "ssdistnr": None},
                    {"ssnamenr": " 2830 ", "ssdistnr": 1.0},
                    {"ssnamenr": "", "ssdistnr": -999.0},
                ]
            )
        }
    )
    out = SolarSystem(SolarSystemConfig(), ctx)(table).table
    assert [c["ssnamenr"] for c in out["candidate"].to_pylist()] == [" 2830 "]


def test_solar_system_targets_and_distance(ctx, alerts, manifest):
    sso = [r for r in manifest.values() if is_sso(r)]
    target = sso[0]["ssnamenr"]
    out = SolarSystem(SolarSystemConfig(targets=[target]), ctx)(alerts).table
    assert candids(out) == {int(r["candid"]) for r in sso if r["ssnamenr"] == target}


def test_solar_system_max_distance_ignores_the_missing_value_marker(ctx):
    # the sample's SSO alerts all sit at 0.0 arcsec, so distances are made up here
    table = pa.table(
        {
            "candidate": pa.array(
                [
                    {"ssnamenr": "1", "ssdistnr": 0.5},
                    {"ssnamenr": "2", "ssdistnr": 3.0},
                    {"ssnamenr": "3", "ssdistnr": -999.0},
                    {"ssnamenr": "4", "ssdistnr": None},
                ]
            )
        }
    )
    out = SolarSystem(SolarSystemConfig(max_distance_arcsec=1.0), ctx)(table).table
    assert [c["ssnamenr"] for c in out["candidate"].to_pylist()] == ["1"]
    out = SolarSystem(SolarSystemConfig(action="exclude", max_distance_arcsec=1.0), ctx)(
        table
    ).table
    assert [c["ssnamenr"] for c in out["candidate"].to_pylist()] == ["2", "3", "4"]


def test_designations_are_compared_in_normal_form():
    assert normalise_designations(
        pa.array(["2002MA06", "2002 ma6", "624188", "2830"])
    ).to_pylist() == ["2002MA6", "2002MA6", "624188", "2830"]


def test_sql_filters_over_nested_columns(ctx, alerts, manifest):
    q = "select * from batch where candidate.rb > 0.65 and candidate.magpsf < 19"
    out = Sql(SqlConfig(query=q), ctx)(alerts).table
    want = {c for c, r in manifest.items() if float(r["rb"]) > 0.65 and float(r["magpsf"]) < 19}
    assert candids(out) == want
    assert out.schema.field("candidate").type == alerts.schema.field("candidate").type


@pytest.mark.parametrize(
    "query",
    [
        "select * from batch where candidate.rb > 0.65 and candidate.magpsf < 19",
        "SELECT * FROM batch b WHERE b.candidate.fid = 2 OR b.candidate.isdiffpos = 'f'",
        "select * from batch where candid in (select max(candid) from batch)",
        "select * from batch where candidate.ssnamenr",  # a string as a condition
    ],
)
def test_sql_filter_runs_as_a_condition_with_the_rows_of_the_query(ctx, alerts, query):
    assert filter_condition(query) is not None
    shuffled = alerts.take(list(range(alerts.num_rows))[::-1])
    con = duckdb.connect()
    con.register("batch", shuffled)
    try:
        want = con.sql(query).to_arrow_table()
    except duckdb.Error as exc:  # DuckDB refuses ZTF's "null" as a boolean: so does the filter
        with pytest.raises(ProcessorError, match=str(exc).split(":")[0]):
            Sql(SqlConfig(query=query), ctx)(shuffled)
        return
    out = Sql(SqlConfig(query=query), ctx)(shuffled).table
    assert out["candid"].to_pylist() == want["candid"].to_pylist()  # same rows, same order
    assert out.schema == shuffled.schema  # Arrow types kept exactly, no DuckDB round trip


@pytest.mark.parametrize(
    "query",
    [
        "select * from batch",
        "select distinct * from batch where candid > 0",
        "select * from batch where candid > 0 order by candid",
        "select * from batch where candid > 0 limit 3",
        "select candid from batch where candid > 0",
        "select * exclude (candid) from batch where candid > 0",
        "with t as (select 1) select * from batch where candid > 0",
        "select * from batch where candid > 0 using sample 10",
        "select * from batch tablesample 10 rows where candid > 0",
        "select * from batch where candid > 0 qualify row_number() over () = 1",
        "select * from batch where candid > 0 union all select * from batch",
    ],
)
def test_sql_other_queries_run_as_written(ctx, alerts, query):
    assert filter_condition(query) is None
    out = Sql(SqlConfig(query=query), ctx)(alerts).table
    con = duckdb.connect()
    con.register("batch", alerts)
    want = con.sql(query).to_arrow_table()
    if "sample" not in query:
        assert sorted(out["candid" if "candid" in out.column_names else 0].to_pylist()) == sorted(
            want["candid" if "candid" in want.column_names else 0].to_pylist()
        )


@pytest.mark.parametrize(
    "query",
    ["select * from batch where count(*) > 1", "select * from batch where rank() over () = 1"],
)
def test_sql_condition_that_where_refuses_fails_as_written(ctx, query):
    with pytest.raises(ProcessorError, match="WHERE clause cannot contain"):
        Sql(SqlConfig(query=query), ctx)(pa.table({"x": [1, 2]}))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("select * from read_parquet('/etc/passwd')", "reach outside its batch"),
        ("select * from read_csv('/etc/passwd')", "reach outside its batch"),
        ("select * from glob('/*')", "reach outside its batch"),
    ],
)
def test_sql_cannot_read_files(ctx, query, message):
    with pytest.raises(ProcessorError, match=message):
        Sql(SqlConfig(query=query), ctx)(pa.table({"x": [1]}))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("copy batch to '/tmp/x.csv'", "got a COPY statement"),
        ("attach '/tmp/x.db' as x", "got a ATTACH statement"),
        ("install httpfs", "got a LOAD statement"),
        ("load httpfs", "got a LOAD statement"),
        ("set enable_external_access = true", "got a SET statement"),
        ("select 1; select 2", "exactly one SELECT statement, got 2"),
        ("selec * from batch", "does not parse"),
    ],
)
def test_sql_refuses_anything_but_one_select(query, message):
    with pytest.raises(ValueError, match=message):
        SqlConfig(query=query)


def test_sql_error_names_the_processor_and_the_columns(ctx):
    with pytest.raises(
        ProcessorError, match=r"(?s)^processor test: query failed: .*Columns of `batch`: x"
    ):
        Sql(SqlConfig(query="select nope from batch"), ctx)(pa.table({"x": [1]}))


def test_select_flatten_keep_drop_rename(ctx):
    t = pa.table({"c": [{"ra": 1.0, "dec": 2.0}], "id": [5], "_source": ["f"], "_offset": [0]})
    kept = Select(SelectConfig(keep=["id", "c.ra"], rename={"c_ra": "ra"}), ctx)(t).table
    assert kept.to_pylist() == [{"id": 5, "ra": 1.0, "_source": "f", "_offset": 0}]
    flat = Select(SelectConfig(flatten=True, drop=["_source", "_offset"]), ctx)(t).table
    assert flat.column_names == ["c_ra", "c_dec", "id"]
    with pytest.raises(ProcessorError, match=r"cannot drop \['nope'\]: no such column"):
        Select(SelectConfig(drop=["nope"]), ctx)(t)
    lenient = Select(SelectConfig(drop=["nope", "_offset"], missing="ignore"), ctx)(t).table
    assert lenient.column_names == ["c", "id", "_source"]


class Bright:
    def __init__(self, limit: float):
        self.limit = limit

    def process(self, record):
        if record["mag"] is None:
            raise ValueError("no magnitude")
        return PASS if record["mag"] < self.limit else SKIP


def odd(record):
    return record["mag"] % 2 == 1 if record["mag"] != 4 else "maybe"


def test_record_adapter_runs_a_per_record_class_and_quarantines_its_errors(ctx):
    t = pa.table({"mag": [17.0, 20.0, None, 18.5], "_source": ["f"] * 4, "_offset": [0, 1, 2, 3]})
    result = RecordAdapter(RecordConfig(processor=f"{__name__}:Bright", args={"limit": 19}), ctx)(t)
    assert result.table["mag"].to_pylist() == [17.0, 18.5]
    assert result.rejects["_offset"].to_pylist() == [2]
    assert "raised ValueError: no magnitude" in result.rejects["error"][0].as_py()


def test_record_adapter_takes_functions_and_refuses_odd_answers(ctx):
    t = pa.table({"mag": [1, 2, 3, 4], "_source": ["f"] * 4, "_offset": [0, 1, 2, 3]})
    result = RecordAdapter(RecordConfig(processor=f"{__name__}:odd"), ctx)(t)
    assert result.table["mag"].to_pylist() == [1, 3]
    assert result.rejects["error"][0].as_py().endswith("returned 'maybe'; expected PASS or SKIP")


def test_a_filter_that_keeps_every_row_passes_the_table_on_uncopied(ctx):
    from headwater.processors.base import Processor

    class Mask(Processor):
        def process(self, table):
            return pa.array([v != 2 for v in table["v"].to_pylist()])

    table = pa.table({"v": [1, 3, 4]})
    assert Mask(None, ctx)(table).table is table  # a batch is not copied to keep it whole
    two = pa.table({"v": [1, 2, 4]})
    assert Mask(None, ctx)(two).table["v"].to_pylist() == [1, 4]
