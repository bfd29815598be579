"""The zones matcher against an independent implementation: astropy's search_around_sky."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from headwater.crossmatch.zones import ZoneIndex
from tests.conftest import SAMPLES

astropy = pytest.importorskip("astropy")  # a test-only dependency (with scipy)
u = pytest.importorskip("astropy.units")
coords = pytest.importorskip("astropy.coordinates")

RADII_ARCSEC = [0.1, 0.5, 2.0, 10.0, 60.0]


def uniform_sky(rng, n):
    return rng.uniform(0.0, 360.0, n), np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))


def around(rng, ra, dec, n, within_arcsec):
    """n points at random position angles and separations up to ``within_arcsec``."""
    centre = coords.SkyCoord(np.repeat(ra, n) * u.deg, np.repeat(dec, n) * u.deg)
    moved = centre.directional_offset_by(
        rng.uniform(0, 360, centre.size) * u.deg,
        rng.uniform(0, within_arcsec, centre.size) * u.arcsec,
    )
    return moved.ra.deg % 360.0, moved.dec.deg


#: Where matchers go wrong: on and within an arcsecond of both poles, across ra = 0/360.
HARD = [
    (0.0, 90.0),
    (123.0, 89.99975),
    (300.0, -89.9998),
    (0.0, -90.0),
    (0.0, 12.5),
    (359.99999, -3.0),
    (0.00001, 45.0),
    (180.0, 0.0),
]


def hard_case(rng, radius_arcsec):
    anchors_ra, anchors_dec = np.array(HARD).T
    cat_ra, cat_dec = around(rng, anchors_ra, anchors_dec, 6, 2.0 * radius_arcsec)
    q_ra, q_dec = around(rng, anchors_ra, anchors_dec, 6, 2.0 * radius_arcsec)
    bg_ra, bg_dec = uniform_sky(rng, 3000)
    return (
        np.concatenate([cat_ra, bg_ra, anchors_ra]),
        np.concatenate([cat_dec, bg_dec, anchors_dec]),
        np.concatenate([q_ra, anchors_ra]),
        np.concatenate([q_dec, anchors_dec]),
    )


def astropy_pairs(q_ra, q_dec, c_ra, c_dec, radius_arcsec):
    q = coords.SkyCoord(q_ra * u.deg, q_dec * u.deg)
    c = coords.SkyCoord(c_ra * u.deg, c_dec * u.deg)
    i, j, sep, _ = coords.search_around_sky(q, c, radius_arcsec * u.arcsec)
    return dict(zip(zip(i.tolist(), j.tolist(), strict=True), sep.arcsec, strict=True))


def assert_same(pairs, expected):
    keys = zip(pairs.query.tolist(), pairs.catalog.tolist(), strict=True)
    got = dict(zip(keys, pairs.arcsec, strict=True))
    assert len(got) == len(pairs)  # no pair found twice (overlapping windows)
    assert set(got) == set(expected)
    for key, arcsec in expected.items():
        assert abs(got[key] - arcsec) < 1e-6, key


@pytest.mark.parametrize("radius", RADII_ARCSEC)
def test_random_catalogs_poles_and_ra_wrap_match_astropy(radius):
    rng = np.random.default_rng(int(radius * 1000))
    c_ra, c_dec, q_ra, q_dec = hard_case(rng, radius)
    expected = astropy_pairs(q_ra, q_dec, c_ra, c_dec, radius)
    assert len(expected) > 20  # the planted neighbours are there to be found
    for height in (radius, 4 * radius, 1.0 * 3600):  # any zone height gives the same answer
        index = ZoneIndex.build(c_ra, c_dec, height / 3600.0)
        assert_same(index.match(q_ra, q_dec, radius / 3600.0), expected)


def test_the_real_gcvs_catalog_matches_astropy():
    gcvs = pq.read_table(SAMPLES / "catalogs" / "gcvs.parquet")
    c_ra, c_dec = gcvs["ra"].to_numpy(), gcvs["dec"].to_numpy()
    rng = np.random.default_rng(7)
    stars = rng.choice(len(c_ra), 2000, replace=False)
    bg_ra, bg_dec = uniform_sky(rng, 5000)
    index = ZoneIndex.build(c_ra, c_dec, 10.0 / 3600.0)
    for radius in (1.0, 5.0, 30.0):  # about half the planted neighbours inside the radius
        near_ra, near_dec = around(rng, c_ra[stars], c_dec[stars], 1, 2 * radius)
        q_ra, q_dec = np.concatenate([near_ra, bg_ra]), np.concatenate([near_dec, bg_dec])
        expected = astropy_pairs(q_ra, q_dec, c_ra, c_dec, radius)
        assert len(expected) > 100
        assert_same(index.match(q_ra, q_dec, radius / 3600.0), expected)


def test_pairs_come_by_query_nearest_first():
    c_ra = np.array([10.0, 10.0 + 3 / 3600, 10.0 + 1 / 3600, 50.0])
    c_dec = np.zeros(4)
    pairs = ZoneIndex.build(c_ra, c_dec, 2 / 3600).match(
        np.array([50.0, 10.0]), np.zeros(2), 5 / 3600
    )
    assert pairs.query.tolist() == [0, 1, 1, 1]
    assert pairs.catalog.tolist() == [3, 0, 2, 1]
    assert pairs.arcsec[1:] == pytest.approx([0.0, 1.0, 3.0], abs=1e-6)


def test_each_catalog_entry_can_have_its_own_radius():
    c_ra, c_dec = np.array([10.0, 20.0]), np.array([0.0, 0.0])
    q_ra = np.array([10.0 + 4 / 3600, 20.0 + 4 / 3600])
    radii = np.array([5.0, 3.0]) / 3600  # a watchlist: the second entry is tighter
    pairs = ZoneIndex.build(c_ra, c_dec, 5 / 3600).match(q_ra, np.zeros(2), 5 / 3600, radii)
    assert pairs.catalog.tolist() == [0]


def test_no_queries_and_an_empty_catalog_give_no_pairs():
    index = ZoneIndex.build(np.array([1.0]), np.array([1.0]), 1 / 3600)
    assert len(index.match(np.array([]), np.array([]), 1 / 3600)) == 0
    empty = ZoneIndex.build(np.array([]), np.array([]), 1 / 3600)
    assert len(empty.match(np.array([1.0]), np.array([1.0]), 1 / 3600)) == 0
