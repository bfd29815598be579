"""The crossmatch processor and catalogs: real alerts on real GCVS stars, bad input, specs."""

import csv
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headwater.crossmatch.catalog import CatalogError, CatalogSpec, CatalogStore
from headwater.crossmatch.zones import ZoneIndex
from headwater.errors import ProcessorError, SpecError
from headwater.pipeline import Pipeline
from headwater.processors.crossmatch import Crossmatch, CrossmatchConfig
from headwater.spec import load_spec
from tests.conftest import SAMPLES

CATALOGS = SAMPLES / "catalogs"
ORACLE = list(
    csv.DictReader((CATALOGS / "oracle_alerts_x_gcvs_5arcsec.csv").read_text().splitlines())
)

SPEC = """\
name: xm
lake: {lake}
catalogs:
  gcvs: {{path: {gcvs}, columns: [VarType]}}
source: {{files: {{path: {alerts}, pattern: "**/*.avro"}}}}
decode: {{avro: {{cutouts: drop}}}}
streams:
  raw: {{sinks: []}}
  variable_stars:
    from: raw
    processors: [{{crossmatch: {{catalog: gcvs, radius_arcsec: 5{extra}}}}}]
    sinks: [parquet]
"""


def test_the_oracle_pairs_are_found_from_their_positions():
    gcvs = pq.read_table(CATALOGS / "gcvs.parquet")
    index = ZoneIndex.build(gcvs["ra"].to_numpy(), gcvs["dec"].to_numpy(), 5 / 3600)
    ra = np.array([float(r["alert_ra"]) for r in ORACLE])
    dec = np.array([float(r["alert_dec"]) for r in ORACLE])
    pairs = index.match(ra, dec, 5 / 3600)
    assert pairs.query.tolist() == [0, 1, 2]
    assert pairs.catalog.tolist() == [int(r["gcvs_row"]) for r in ORACLE]
    assert pairs.arcsec == pytest.approx([float(r["sep_arcsec"]) for r in ORACLE], abs=1e-4)


@pytest.fixture
def alerts(tmp_path):
    """The repo's ZTF sample plus the oracle's kowalski alert."""
    folder = tmp_path / "alerts"
    shutil.copytree(SAMPLES / "ztf" / "alerts", folder)
    shutil.copy(CATALOGS / "alerts" / "2475433850315015009.avro", folder)
    return folder


def pipeline(tmp_path, alerts, extra="") -> Pipeline:
    spec = tmp_path / "xm.yaml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    text = SPEC.format(
        lake=tmp_path / "lake", gcvs=CATALOGS / "gcvs.parquet", alerts=alerts, extra=extra
    )
    spec.write_text(text)
    return Pipeline(load_spec(spec))


def run(p: Pipeline, stream: str) -> list[dict]:
    p.plan()
    for batch in p.pending():
        p.run(batch)
    files = sorted(p.lake.stream_dir(p.name, stream).rglob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_real_alerts_on_gcvs_stars_are_annotated_with_their_matches(tmp_path, alerts):
    rows = run(pipeline(tmp_path, alerts), "variable_stars")
    found = {r["candid"]: r["gcvs_matches"] for r in rows}
    expected = {int(r["alert_id"]): r for r in ORACLE if r["alert_file"].startswith("alerts/k")}
    expected |= {int(r["alert_id"]): r for r in ORACLE if "ztf-avro-alert" in r["alert_file"]}
    assert set(found) == set(expected)
    for candid, [match] in found.items():
        want = expected[candid]
        assert match["catalog"] == "gcvs" and match["alert_id"] == candid
        assert match["source_id"] == int(want["gcvs_row"])
        assert match["VarType"].strip() == want["gcvs_VarType"]
        assert match["distance_arcsec"] == pytest.approx(float(want["sep_arcsec"]), abs=1e-4)
        assert match["source_ra"] == pytest.approx(float(want["gcvs_ra"]))
        assert match["alert_dec"] == pytest.approx(float(want["alert_dec"]))


def test_flat_matches_and_the_unmatched_rest(tmp_path, alerts):
    flat = run(pipeline(tmp_path / "a", alerts, ", output: matches"), "variable_stars")
    assert sorted(r["alert_id"] for r in flat) == sorted([2475433850315015009, 472263571115115000])
    assert {"source_id", "distance_arcsec", "VarType", "_source", "_offset"} <= set(flat[0])
    rest = run(pipeline(tmp_path / "b", alerts, ", keep: unmatched"), "variable_stars")
    assert len(rest) == 31 - 2 and all(r["gcvs_matches"] == [] for r in rest)


def small_catalog(tmp_path, rows, name="cat.csv", header="id,ra,dec,radius"):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def processor(tmp_path, catalog_spec: dict, **config) -> Crossmatch:
    from headwater.component import Context
    from headwater.lake import Lake

    store = CatalogStore({"c": CatalogSpec(**catalog_spec)}, tmp_path)
    ctx = Context("t", "t", tmp_path, Lake(tmp_path / "lake"), catalogs=store)
    return Crossmatch(CrossmatchConfig(catalog="c", **config), ctx)


def alerts_table(ra, dec):
    return pa.table(
        {
            "candid": pa.array(range(len(ra)), pa.int64()),
            "candidate": pa.StructArray.from_arrays(
                [pa.array(ra, pa.float64()), pa.array(dec, pa.float64())], ["ra", "dec"]
            ),
            "_source": pa.array(["s"] * len(ra)),
            "_offset": pa.array(range(len(ra)), pa.int64()),
        }
    )


def test_nearest_or_all_and_a_watchlist_s_own_radii(tmp_path):
    path = small_catalog(
        tmp_path, [("near", 10.0, 0.0, 5), ("far", 10.0 + 3 / 3600, 0.0, 5), ("tight", 20, 0, 1)]
    )
    spec = {"path": str(path), "id": "id", "radius": "radius"}
    table = alerts_table([10.0 + 1 / 3600, 20 + 2 / 3600], [0.0, 0.0])
    nearest = processor(tmp_path, spec, radius_arcsec=5)(table).table
    assert [[m["source_id"] for m in r] for r in nearest["c_matches"].to_pylist()] == [["near"]]
    every = processor(tmp_path, spec, radius_arcsec=5, mode="all")(table).table
    got = [[m["source_id"] for m in r] for r in every["c_matches"].to_pylist()]
    assert got == [["near", "far"]]  # 'tight' is 2" away with its own 1" radius: no match


def test_a_watchlist_entry_without_a_radius_uses_the_crossmatch_s(tmp_path):
    path = small_catalog(tmp_path, [("wide", 10.0, 0.0, 8), ("default", 20.0, 0.0, "")])
    xm = processor(tmp_path, {"path": str(path), "id": "id", "radius": "radius"}, radius_arcsec=3)
    table = alerts_table([10.0 + 6 / 3600, 20.0 + 2 / 3600, 20.0 + 4 / 3600], [0.0] * 3)
    got = xm(table).table
    assert got["candid"].to_pylist() == [0, 1]  # 6" from 'wide' (8"), 2" from 'default' (3")


def test_an_edited_watchlist_takes_effect_on_the_next_batch(tmp_path):
    path = small_catalog(tmp_path, [("a", 10.0, 0.0, 5)])
    xm = processor(tmp_path, {"path": str(path), "id": "id", "radius": "radius"}, radius_arcsec=5)
    table = alerts_table([10.0, 50.0], [0.0, 0.0])
    assert xm(table).table["candid"].to_pylist() == [0]
    small_catalog(tmp_path, [("a", 10.0, 0.0, 5), ("b", 50.0, 0.0, 5)])
    assert xm(table).table["candid"].to_pylist() == [0, 1]


def test_alerts_without_a_usable_position_are_quarantined_with_the_reason(tmp_path):
    path = small_catalog(tmp_path, [(1, 10.0, 0.0, 5)])
    xm = processor(tmp_path, {"path": str(path)}, radius_arcsec=5, keep="all")
    table = alerts_table([10.0, None, 400.0, 10.0], [0.0, 0.0, 0.0, -91.0])
    result = xm(table)
    assert result.table["candid"].to_pylist() == [0]
    assert result.rejects["_offset"].to_pylist() == [1, 2, 3]
    errors = result.rejects["error"].to_pylist()
    assert "ra is missing" in errors[0] and "outside [0, 360)" in errors[1]
    assert "dec is outside [-90, 90]" in errors[2]


def test_alerts_all_at_usable_positions_keep_their_columns_uncopied(tmp_path):
    """A batch of alerts is hundreds of MB: with every position usable and keep: all, the
    alerts' own columns go on as they came (the matches column is added)."""
    path = small_catalog(tmp_path, [(1, 10.0, 0.0, 5)])
    xm = processor(tmp_path, {"path": str(path)}, radius_arcsec=5, keep="all")
    table = alerts_table([10.0, 50.0], [0.0, 0.0])
    out = xm(table).table
    assert out["c_matches"].to_pylist()[1] == [] and len(out["c_matches"].to_pylist()[0]) == 1
    for name in table.column_names:
        assert (
            out[name].chunks[0].buffers()[-1].address == table[name].chunks[0].buffers()[-1].address
        )


def test_a_catalog_with_bad_rows_is_refused_with_a_report(tmp_path):
    path = small_catalog(
        tmp_path,
        [(1, 10.0, 0.0), (2, 360.0, 0.0), (3, 10.0, 95.0), (1, 5.0, 5.0), (4, -1, 0)],
        header="id,ra,dec",
    )
    store = CatalogStore({"c": CatalogSpec(path=str(path), id="id")}, tmp_path)
    with pytest.raises(CatalogError) as exc:
        store.get("c")
    message = str(exc.value)
    assert "2 with ra missing or outside [0, 360)" in message
    assert "1 with dec missing or outside [-90, 90]" in message
    assert "1 ids used more than once (e.g. 1)" in message and "cat.csv" in message
    assert "3: id=1 ra=5.0" not in message and "1: id=2 ra=360.0" in message
    with pytest.raises(CatalogError, match="no column 'mag'"):
        CatalogStore({"c": CatalogSpec(path=str(path), columns=["mag"])}, tmp_path).get("c")


def test_a_missing_catalog_file_fails_at_load_naming_the_key(tmp_path, alerts):
    spec = tmp_path / "xm.yaml"
    spec.write_text(
        SPEC.format(lake=tmp_path / "lake", gcvs="nowhere/gcvs.parquet", alerts=alerts, extra="")
    )
    with pytest.raises(SpecError) as exc:
        load_spec(spec, base_dir=tmp_path)
    assert f"xm.yaml:4: catalogs.gcvs.path: no such file {tmp_path}/nowhere/gcvs.parquet" in str(
        exc.value
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (", catalog: nope", "unknown catalog 'nope'"),
        (", radius_arcsec: 0", "greater than 0"),
        (", radius_arcsec: 7200", "less than or equal to 3600"),
        (", output: matches, keep: all", "keep must be 'matched'"),
    ],
)
def test_bad_crossmatch_settings_fail_at_load(tmp_path, alerts, extra, expected):
    with pytest.raises(SpecError, match=expected):
        pipeline(tmp_path, alerts, extra)


@pytest.mark.parametrize(("suffix", "fmt"), [(".fits", "fits"), (".xml", "votable")])
def test_fits_and_votable_catalogs_are_read_through_astropy(tmp_path, suffix, fmt):
    table_mod = pytest.importorskip("astropy.table")
    stars = table_mod.Table(
        {"name": ["a", "b"], "RAJ2000": [10.0, 350.5], "DEJ2000": [1.0, -5.0], "V": [9.5, 11.0]}
    )
    path = tmp_path / f"stars{suffix}"
    stars.write(path, format=fmt)
    spec = CatalogSpec(path=str(path), id="name", ra="RAJ2000", dec="DEJ2000", columns=["V"])
    catalog = CatalogStore({"s": spec}, tmp_path).get("s")
    assert catalog.table["id"].to_pylist() == ["a", "b"]
    assert catalog.table["ra"].to_pylist() == [10.0, 350.5]
    assert catalog.table["V"].to_pylist() == [9.5, 11.0]


def test_a_masked_position_in_a_votable_is_reported_as_missing(tmp_path):
    table_mod = pytest.importorskip("astropy.table")
    ra = table_mod.MaskedColumn([10.0, 20.0], name="ra", mask=[False, True])
    stars = table_mod.Table(
        [table_mod.Column(["a", "b"], name="id"), ra, table_mod.Column([1.0, 2.0], name="dec")]
    )
    path = tmp_path / "stars.xml"
    stars.write(path, format="votable")
    store = CatalogStore({"s": CatalogSpec(path=str(path), id="id")}, tmp_path)
    with pytest.raises(CatalogError, match=r"1 with ra missing .* id='b'"):
        store.get("s")


def test_a_materialized_catalog_is_used_while_its_file_and_spec_are_unchanged(tmp_path):
    path = small_catalog(tmp_path, [(1, 10.0, 0.0), (2, 350.0, -5.0)], header="id,ra,dec")
    spec = CatalogSpec(path=str(path), id="id")
    store = CatalogStore({"c": spec}, tmp_path, tmp_path / "stored")
    meta = store.materialize("c")
    assert meta["rows"] == 2 and meta["source"] == str(path)
    fresh = CatalogStore({"c": spec}, tmp_path, tmp_path / "stored")  # another process
    assert fresh.get("c").source == tmp_path / "stored" / "c.parquet"
    assert sorted(fresh.get("c").table["id"].to_pylist()) == [1, 2]
    other = CatalogStore({"c": CatalogSpec(path=str(path))}, tmp_path, tmp_path / "stored")
    assert other.get("c").source == path  # another spec: the copy does not apply
    small_catalog(tmp_path, [(1, 10.0, 0.0), (2, 350.0, -5.0), (3, 1.0, 1.0)], header="id,ra,dec")
    again = CatalogStore({"c": spec}, tmp_path, tmp_path / "stored")
    assert again.get("c").source == path and len(again.get("c")) == 3  # the file changed


def test_rubin_alerts_are_matched_on_dia_source_by_default(tmp_path):
    from headwater.decoders.avro import AvroConfig, AvroDecoder
    from tests.conftest import raw_from_files

    files = sorted((SAMPLES / "lsst" / "wire").rglob("*.avro"))
    schemas = {
        "path": str(SAMPLES / "lsst" / "schema"),
        "pattern": "{major}/{minor}/lsst.v{major}_{minor}.alert.avsc",
    }
    xm = processor(tmp_path, {"path": str(tmp_path / "cat.csv"), "id": "id"}, radius_arcsec=1)
    decoder = AvroDecoder(AvroConfig(framing="confluent", schemas=schemas), xm.ctx)
    alerts = decoder.decode(raw_from_files(files)).table
    ra = alerts["diaSource"].combine_chunks().field("ra").to_pylist()
    dec = alerts["diaSource"].combine_chunks().field("dec").to_pylist()
    # a catalog with a star 0.5" north of the first alert's source, and one far away
    small_catalog(
        tmp_path, [("star", ra[0], dec[0] + 0.5 / 3600), ("far", 1.0, 1.0)], "cat.csv", "id,ra,dec"
    )
    out = xm(alerts).table
    [match] = out["c_matches"].to_pylist()[0]
    assert match["source_id"] == "star"
    assert match["alert_ra"] == pytest.approx(ra[0]) and match["alert_dec"] == pytest.approx(dec[0])
    assert match["distance_arcsec"] == pytest.approx(0.5, abs=1e-6)
    id_path = "diaSourceId" if "diaSourceId" in alerts.column_names else "alertId"
    assert match["alert_id"] == alerts[id_path][0].as_py()


def test_alerts_without_a_known_position_column_name_the_setting_to_fix(tmp_path):
    path = small_catalog(tmp_path, [(1, 10.0, 0.0, 5)])
    xm = processor(tmp_path, {"path": str(path)}, radius_arcsec=5)
    with pytest.raises(ProcessorError, match=r"none of candidate\.ra, diaSource\.ra; set ra:"):
        xm(pa.table({"x": [1.0]}))
