"""Positional cross-match by declination zones (Gray, Nieto-Santisteban & Szalay 2006).

The catalog is cut into zones of declination, ``zone_height`` high, and sorted by zone then
right ascension, so one key ``zone * 360 + ra`` orders it all. A query position of radius r
touches the zones its declination range [dec - r, dec + r] overlaps; in each it searches the
ra window [ra - alpha, ra + alpha], alpha = asin(sin r / cos dec) being the circle's widest
ra extent (the whole zone when the circle holds a pole), split in two where it crosses
ra = 0/360. Candidates are then kept by their exact great-circle distance (haversine).

Everything is vectorized over the whole batch of queries: no Python per position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARCSEC = 1.0 / 3600.0
#: Windows are widened by this much (degrees) so that rounding never loses a candidate; the
#: exact distance test decides.
SLACK = 1e-9


@dataclass(frozen=True)
class Pairs:
    """Matches: query row, catalog row (in the order given to ``build``), distance in arcsec."""

    query: np.ndarray
    catalog: np.ndarray
    arcsec: np.ndarray

    def __len__(self) -> int:
        return len(self.query)


@dataclass(frozen=True)
class ZoneIndex:
    """A catalog sorted by (zone, ra): positions in degrees and radians, and the sort order."""

    zone_height: float  # degrees
    keys: np.ndarray  # zone * 360 + ra, ascending
    rows: np.ndarray  # catalog row of each sorted position
    ra: np.ndarray  # radians, sorted
    dec: np.ndarray  # radians, sorted
    cos_dec: np.ndarray

    @property
    def zones(self) -> int:
        return int(np.ceil(180.0 / self.zone_height))

    @classmethod
    def build(cls, ra_deg: np.ndarray, dec_deg: np.ndarray, zone_height_deg: float) -> ZoneIndex:
        """Index positions (degrees; ra in [0, 360), dec in [-90, 90], checked by the caller)."""
        if not zone_height_deg > 0:
            raise ValueError(f"zone height must be positive, got {zone_height_deg}")
        ra = np.asarray(ra_deg, np.float64)
        dec = np.asarray(dec_deg, np.float64)
        nzones = int(np.ceil(180.0 / zone_height_deg))
        zone = np.clip(np.floor((dec + 90.0) / zone_height_deg), 0, nzones - 1)
        keys = zone * 360.0 + ra
        in_order = bool(np.all(keys[1:] >= keys[:-1]))  # a stored catalog is, already
        rows = np.arange(len(keys)) if in_order else np.argsort(keys)
        dec_r = np.radians(dec[rows])
        return cls(zone_height_deg, keys[rows], rows, np.radians(ra[rows]), dec_r, np.cos(dec_r))

    def match(
        self,
        ra_deg: np.ndarray,
        dec_deg: np.ndarray,
        radius_deg: float,
        radii_deg: np.ndarray | None = None,
    ) -> Pairs:
        """Every (query, catalog) pair within ``radius_deg``, or within the catalog entry's
        own radius when ``radii_deg`` (one per catalog row; NaN: ``radius_deg``) is given;
        the search reaches the largest of them."""
        ra = np.asarray(ra_deg, np.float64)
        dec = np.asarray(dec_deg, np.float64)
        reach = radius_deg
        if radii_deg is not None and len(radii_deg) and not np.all(np.isnan(radii_deg)):
            reach = max(radius_deg, float(np.nanmax(radii_deg)))
        query, lo, hi = self._windows(ra, dec, reach)
        q, s = _expand(query, lo, hi)
        arcsec = (
            np.degrees(_haversine(np.radians(ra[q]), np.radians(dec[q]), self.ra[s], self.dec[s]))
            * 3600.0
        )
        rows = self.rows[s]
        limit = radius_deg
        if radii_deg is not None:
            own = np.asarray(radii_deg)[rows]
            limit = np.where(np.isnan(own), radius_deg, own)
        keep = arcsec <= np.asarray(limit) * 3600.0
        q, rows, arcsec = q[keep], rows[keep], arcsec[keep]
        order = np.lexsort((rows, arcsec, q))  # by query, nearest first, then catalog row
        q, rows, arcsec = q[order], rows[order], arcsec[order]
        # a source at ra 0 is also at the end of the zone below's wrapped window (keys
        # zone * 360 + ra meet there): keep each pair once
        once = np.ones(len(q), dtype=bool)
        once[1:] = (q[1:] != q[:-1]) | (rows[1:] != rows[:-1])
        return Pairs(q[once], rows[once], arcsec[once])

    def _windows(
        self, ra: np.ndarray, dec: np.ndarray, r: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, first, end) ranges of sorted catalog positions to test."""
        h, nz = self.zone_height, self.zones
        z_lo = np.clip(np.floor((dec - r - SLACK + 90.0) / h), 0, nz - 1).astype(np.int64)
        z_hi = np.clip(np.floor((dec + r + SLACK + 90.0) / h), 0, nz - 1).astype(np.int64)
        alpha = _alpha(dec, r)
        if h > 2.0 * (r + SLACK):  # the usual case: a query touches one zone or two neighbours
            second = np.flatnonzero(z_hi != z_lo)
            query = np.concatenate([np.arange(len(ra)), second])
            zone = np.concatenate([z_lo, z_hi[second]])
        else:
            span = z_hi - z_lo + 1
            query = np.repeat(np.arange(len(ra)), span)
            first = np.repeat(np.cumsum(span) - span, span)
            zone = np.arange(span.sum()) - first + np.repeat(z_lo, span)
        center, width = ra[query], alpha[query]
        whole = np.flatnonzero(width >= 180.0)  # rare: circles holding a pole
        lo, hi = center - width, center + width
        # at most two ra windows per (query, zone): the part in [0, 360) and the wrapped part
        first_lo, first_hi = np.maximum(lo, 0.0), np.minimum(hi, 360.0)
        first_lo[whole], first_hi[whole] = 0.0, 360.0
        base = zone * 360.0
        crosses = (lo < 0.0) | (hi > 360.0)
        crosses[whole] = False  # its zone is searched whole already
        wraps = np.flatnonzero(crosses)  # rare: near ra 0/360
        w_lo, w_hi, w_base = lo[wraps], hi[wraps], base[wraps]
        queries = np.concatenate([query, query[wraps]])
        starts = np.concatenate([base + first_lo, w_base + np.where(w_lo < 0.0, w_lo + 360.0, 0.0)])
        ends = np.concatenate([base + first_hi, w_base + np.where(w_lo < 0.0, 360.0, w_hi - 360.0)])
        # binary searches for ascending keys walk the catalog once instead of jumping all
        # over it: 5x faster on 10^6 sources, 1.8x on 10^4 (measured), more than the sort costs
        order = np.argsort(starts)
        queries, starts, ends = queries[order], starts[order], ends[order]
        lo_i = np.searchsorted(self.keys, starts, "left")
        hi_i = np.searchsorted(self.keys, ends, "right")
        return queries, lo_i, np.maximum(hi_i, lo_i)


def _alpha(dec: np.ndarray, r: float) -> np.ndarray:
    """Half-width in ra (degrees) of a circle of radius r at declination dec; 180 when the
    circle reaches a pole."""
    r_eff = r + SLACK
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sin(np.radians(r_eff)) / np.cos(np.radians(dec))
        alpha = np.degrees(np.arcsin(np.clip(ratio, -1.0, 1.0))) + SLACK
    return np.where(ratio >= 1.0, 180.0, alpha)  # cos dec <= sin r: |dec| + r >= 90


def _expand(query: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (query, position) in the ranges [lo, hi)."""
    counts = hi - lo
    q = np.repeat(query, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return q, np.repeat(lo, counts) + offsets


def _haversine(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in radians; accurate at small separations."""
    s = (
        np.sin((dec2 - dec1) / 2.0) ** 2
        + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2.0) ** 2
    )
    return 2.0 * np.arcsin(np.sqrt(np.clip(s, 0.0, 1.0)))
