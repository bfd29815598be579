"""Spec loading: everything is validated before any data is read; messages are exact."""

import pytest

from headwater.errors import SpecError
from headwater.spec import load_spec, parse_overrides

GOOD = """\
name: p
source:
  files: {path: samples/ztf/alerts}
decode: {avro: {framing: container}}
streams:
  raw: {sinks: [parquet, duckdb]}
  sso:
    from: raw
    processors:
      - solar_system: {action: include}
      - sql: "select candid from batch"
    sinks: [parquet]
"""


def problems(path, overrides=()):
    with pytest.raises(SpecError) as info:
        load_spec(path, parse_overrides(list(overrides)))
    return info.value.problems


def test_a_good_spec_loads_with_streams_in_dependency_order(write_spec):
    spec = load_spec(write_spec(GOOD))
    assert [s.name for s in spec.streams] == ["raw", "sso"]
    sso = spec.stream("sso")
    assert [p.name for p in sso.processors] == ["solar_system", "sql"]
    assert sso.processors[1].config.query == "select candid from batch"  # the shorthand
    assert sso.processors[1].where == "streams.sso.processors[1].sql"


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        (
            "files: {path: samples/ztf/alerts}",
            "files: {path: x, max_record_per_batch: 5}",
            "p.yaml:3: source.files.max_record_per_batch: unknown key 'max_record_per_batch' "
            "(did you mean 'max_records_per_batch'?); expected one of: path, pattern, format, "
            "max_records_per_batch, split, min_age_seconds",
        ),
        (
            "- solar_system: {action: include}",
            "- solar_systm: {action: include}",
            "p.yaml:10: streams.sso.processors[0]: unknown processor 'solar_systm'; known "
            "processors: cluster_model, crossmatch, placement, record, select, solar_system, sql. "
            "Fix the name, or give a "
            "class as 'package.module:Class'.",
        ),
        (
            "- solar_system: {action: include}",
            "- solar_system: {action: maybe}",
            "p.yaml:10: streams.sso.processors[0].solar_system.action: Input should be 'include' "
            "or 'exclude'; got 'maybe'",
        ),
        (
            '- sql: "select candid from batch"',
            "- sql: \"copy batch to 'x.csv'\"",
            "p.yaml:11: streams.sso.processors[1].sql.query: only a SELECT over `batch` is "
            "allowed, got a COPY statement; got \"copy batch to 'x.csv'\"",
        ),
        (
            "from: raw",
            "from: raww",
            "p.yaml:8: streams.sso.from: unknown stream 'raww'; streams: raw, sso",
        ),
        (
            "raw: {sinks: [parquet, duckdb]}",
            "raw: {sinks: [duckdb, parquet]}",
            "p.yaml:6: streams.raw.sinks[0]: sink 'duckdb' reads what 'parquet' writes: "
            "list 'parquet' before it",
        ),
        (
            "decode: {avro: {framing: container}}",
            "decode: {avro: {framing: confluent}}",
            "p.yaml:4: decode.avro: framing 'confluent' needs exactly one of schemas: {path: …} "
            "or registry: {url: …}; got {'framing': 'confluent'}",
        ),
        (
            "name: p",
            "name: 9p",
            "p.yaml:1: name: String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'; got '9p'",
        ),
        (
            "  raw: {sinks: [parquet, duckdb]}",
            "  raw: {sink: [parquet]}",
            "p.yaml:6: streams.raw.sink: unknown key 'sink' (did you mean 'sinks'?); expected "
            "one of: from, description, processors, sinks",
        ),
    ],
)
def test_spec_errors_name_file_line_key_and_expectation(write_spec, replace, by, expected):
    path = write_spec(GOOD.replace(replace, by))
    found = problems(path)
    assert [p.removeprefix(str(path.parent) + "/") for p in found][-1] == expected


def test_every_problem_is_reported_at_once(write_spec):
    text = GOOD.replace("from: raw", "from: nope").replace("action: include", "action: x")
    assert len(problems(write_spec(text))) == 2


def test_a_stream_cycle_is_an_error(write_spec):
    text = GOOD + "  a: {from: b, sinks: []}\n  b: {from: a, sinks: []}\n"
    assert problems(write_spec(text))[-1].endswith(
        "streams.a.from: streams form a cycle: a -> b -> a"
    )


def test_missing_required_key_and_bad_yaml(write_spec):
    assert problems(write_spec(GOOD.replace("  raw: {sinks: [parquet, duckdb]}", "  raw: {}")))[
        -1
    ].endswith("p.yaml:6: streams.raw.sinks: required key is missing")
    bad = problems(write_spec("name: p\nsource: [\n"))
    assert "not valid YAML" in bad[0] and "p.yaml:3" in bad[0]


def test_a_secret_must_be_an_env_reference(write_spec):
    text = GOOD.replace(
        "decode: {avro: {framing: container}}",
        "decode: {avro: {framing: confluent, registry: {url: 'http://r', "
        "basic_auth: 'user:hunter2'}}}",
    )
    found = problems(write_spec(text))
    assert found[-1].endswith(
        "decode.avro.registry.basic_auth: a secret must be an environment-variable reference "
        "like {env: VAR_NAME}; a literal value is refused so that it never sits in a spec file;"
        " got 'user:hunter2'"
    )
    ok = text.replace("'user:hunter2'", "{env: REGISTRY_AUTH}")
    spec = load_spec(write_spec(ok))
    assert "hunter2" not in repr(spec.decode.config)


def test_overrides_apply_before_validation(write_spec):
    path = write_spec(GOOD)
    spec = load_spec(
        path,
        parse_overrides(
            [
                "source.files.max_records_per_batch=7",
                "streams.sso.processors[0].solar_system.action=exclude",
                "lake=/tmp/elsewhere",
            ]
        ),
    )
    assert spec.source.config.max_records_per_batch == 7
    assert spec.stream("sso").processors[0].config.action == "exclude"
    assert spec.model.lake == "/tmp/elsewhere"
    assert problems(path, ["source.files.max_records_per_batch=0"])[-1].endswith(
        "source.files.max_records_per_batch: Input should be greater than 0; got 0"
    )
    with pytest.raises(SpecError, match=r"expected KEY\.PATH=VALUE"):
        parse_overrides(["novalue"])


def test_bundled_specs_are_valid():
    from tests.conftest import REPO

    for path in sorted((REPO / "pipelines").glob("*.yaml")):
        load_spec(path, base_dir=REPO)


def test_a_spec_can_name_a_plugin_class_by_import_path(write_spec, tmp_path):
    import pyarrow.parquet as pq

    from headwater.pipeline import Pipeline

    data = tmp_path / "metrics"
    data.mkdir()
    (data / "m.jsonl").write_text("".join(f'{{"v": {v}}}\n' for v in (3, 9, 1, 7)))
    spec = write_spec(f"""\
        name: metrics
        lake: {tmp_path / "lake"}
        source: {{files: {{path: {data}, format: lines}}}}
        decode: json
        streams:
          top: {{processors: [{{"tests.spec.plugin:Top": {{column: v, n: 2}}}}], sinks: [parquet]}}
        """)
    pipeline = Pipeline(load_spec(spec))
    [batch] = pipeline.plan()
    report = pipeline.run(batch)
    path = report.streams["top"].outputs["parquet"]["path"]
    assert pq.read_table(path)["v"].to_pylist() == [9, 7]
    bad = write_spec(spec.read_text().replace("n: 2", "n: 0"), name="bad.yaml")
    assert problems(bad)[-1].endswith(
        "streams.top.processors[0].tests.spec.plugin:Top.n: Input should be greater than 0; got 0"
    )
