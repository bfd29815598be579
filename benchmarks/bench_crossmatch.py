"""Cross-match speed: headwater's declination zones against astropy's search_around_sky.

Uniform random catalogs of --catalogs sizes and random alert batches of --batches sizes
(seeded), radius --radius arcsec. Both indexes are built before the clock: the zone index
(headwater's default zone height) and astropy's KD-tree (``storekdtree``, reused by every
search). Each search runs --repeats times; the median alerts/s is printed with the ratio of
headwater to astropy on the same inputs, with the build times, and each catalog size runs in
a fresh process whose peak memory is printed. numpy and scipy's KD-tree query both use one
core here.

    .venv/bin/python benchmarks/bench_crossmatch.py
    .venv/bin/python benchmarks/bench_crossmatch.py --catalogs 1000000 --batches 100000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import numpy as np


def sky(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(0.0, 360.0, n), np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def one_catalog(size: int, batches: list[int], radius: float, repeats: int, out) -> None:
    import astropy.units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    from headwater.crossmatch.zones import ZoneIndex
    from headwater.processors.crossmatch import default_zone_height

    rng = np.random.default_rng(size)
    c_ra, c_dec = sky(rng, size)
    t0 = time.perf_counter()
    index = ZoneIndex.build(c_ra, c_dec, default_zone_height(radius) / 3600.0)
    zones_build = time.perf_counter() - t0
    catalog = SkyCoord(c_ra * u.deg, c_dec * u.deg)
    probe = SkyCoord([0.0] * u.deg, [0.0] * u.deg)
    t0 = time.perf_counter()
    search_around_sky(probe, catalog, radius * u.arcsec, storekdtree="bench_tree")
    tree_build = time.perf_counter() - t0
    rows = []
    limit = radius * u.arcsec
    for n in batches:
        q_ra, q_dec = sky(rng, n)
        queries = SkyCoord(q_ra * u.deg, q_dec * u.deg)

        def zones(q_ra=q_ra, q_dec=q_dec):
            return index.match(q_ra, q_dec, radius / 3600.0)

        def astropy(queries=queries):
            return search_around_sky(queries, catalog, limit, storekdtree="bench_tree")

        ours, theirs = timed(zones, repeats), timed(astropy, repeats)
        pairs = len(index.match(q_ra, q_dec, radius / 3600.0))
        rows.append((n, n / ours, n / theirs, pairs))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put((zones_build, tree_build, rows, peak))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalogs", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000])
    ap.add_argument("--batches", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--radius", type=float, default=2.0, help="arcsec")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(
        f'radius {args.radius}", uniform random sky, median of {args.repeats} searches, '
        "indexes built beforehand"
    )
    print(
        f"{'catalog':>11} {'build zones':>11} {'build kdtree':>12} {'batch':>8} "
        f"{'zones alerts/s':>15} {'astropy alerts/s':>17} {'x astropy':>9} {'pairs':>6} "
        f"{'peak MB':>8}"
    )
    ctx = mp.get_context("spawn")
    for size in args.catalogs:
        q = ctx.Queue()
        p = ctx.Process(target=one_catalog, args=(size, args.batches, args.radius, args.repeats, q))
        p.start()
        zones_build, tree_build, rows, peak = q.get()
        p.join()
        for n, ours, theirs, pairs in rows:
            print(
                f"{size:>11,} {zones_build:>10.2f}s {tree_build:>11.2f}s {n:>8,} "
                f"{ours:>15,.0f} {theirs:>17,.0f} {ours / theirs:>9.1f} {pairs:>6,} {peak:>8,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
