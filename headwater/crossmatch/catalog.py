"""Catalogs and watchlists: positions to match alerts against, loaded once and validated.

A catalog is a file (Parquet or CSV; FITS and VOTable through astropy when installed) with an
id, ra and dec (degrees) and any columns to carry into matches. Loading checks every row: ra
in [0, 360), dec in [-90, 90], both present, ids present and unique. Bad rows are reported
(how many of each fault, and the first few), never dropped silently: a catalog that fails is
not used. A watchlist is a catalog whose rows may carry their own match radius.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from pydantic import Field

from headwater.config import ComponentConfig
from headwater.crossmatch.zones import ZoneIndex
from headwater.errors import HeadwaterError
from headwater.sinks.parquet import write_atomically

#: The lake folder (beside the streams) holding a pipeline's validated catalogs.
CATALOGS = "_catalogs"
#: How many bad rows a validation report quotes.
EXAMPLES = 5
#: Schema metadata key of a stored catalog: what it was made from.
STAMP_KEY = "headwater.catalog.made_from"
#: Zone height of a stored catalog's order when its spec names none (the matcher's minimum).
STORED_ZONE_ARCSEC = 30.0


class CatalogError(HeadwaterError):
    """A catalog that cannot be used: unreadable, or rows that fail validation."""


class CatalogSpec(ComponentConfig):
    path: str = Field(description="The catalog file (relative to the project root).")
    format: Literal["auto", "parquet", "csv", "fits", "votable"] = Field(
        default="auto", description="auto: by the file's extension."
    )
    id: str | None = Field(
        default=None, description="Column of unique source ids; none: the row number."
    )
    ra: str = Field(default="ra", description="Right ascension column, degrees.")
    dec: str = Field(default="dec", description="Declination column, degrees.")
    radius: str | None = Field(
        default=None,
        description="Column of a per-entry match radius in arcsec (watchlists); an empty "
        "cell means the crossmatch's radius_arcsec.",
    )
    columns: list[str] = Field(
        default_factory=list, description="Catalog columns carried into every match."
    )
    zone_height_arcsec: float | None = Field(
        default=None,
        gt=0,
        description="Declination zone height; default 8 radii, at least 30.",
    )


@dataclass
class Catalog:
    """A validated catalog: ``table`` has ``id``, ``ra``, ``dec`` (and ``radius``) first,
    then the carried columns; indexes are built on demand, one per zone height."""

    name: str
    table: pa.Table
    source: Path
    zone_height_arcsec: float | None = None
    _indexes: dict[float, ZoneIndex] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def carried(self) -> list[str]:
        return [c for c in self.table.column_names if c not in ("id", "ra", "dec", "radius")]

    def radii_deg(self) -> np.ndarray | None:
        if "radius" not in self.table.column_names:
            return None
        radius = self.table["radius"].to_numpy(zero_copy_only=False).astype(np.float64)
        return radius / 3600.0  # NaN where the entry has none

    def index(self, zone_height_deg: float) -> ZoneIndex:
        found = self._indexes.get(zone_height_deg)
        if found is None:
            ra, dec = self.table["ra"].to_numpy(), self.table["dec"].to_numpy()
            found = self._indexes[zone_height_deg] = ZoneIndex.build(ra, dec, zone_height_deg)
        return found


def load_catalog(name: str, spec: CatalogSpec, path: Path) -> Catalog:
    """Read and validate a catalog; raise :class:`CatalogError` with a report if it fails."""
    raw = _read(path, spec.format)
    wanted = [c for c in (spec.id, spec.ra, spec.dec, spec.radius, *spec.columns) if c]
    missing = [c for c in wanted if c not in raw.column_names]
    if missing:
        raise CatalogError(
            f"catalog {name!r} ({path}): no column {', '.join(map(repr, missing))}; it has "
            f"{', '.join(raw.column_names)}. Fix catalogs.{name} (id, ra, dec, radius, columns)."
        )
    ids = raw[spec.id] if spec.id else pa.array(np.arange(raw.num_rows), pa.int64())
    columns = {"id": ids, "ra": _degrees(raw[spec.ra]), "dec": _degrees(raw[spec.dec])}
    if spec.radius:
        columns["radius"] = _degrees(raw[spec.radius])
    columns.update({c: raw[c] for c in spec.columns if c not in columns})
    table = pa.table(columns)
    report = _faults(table)
    if report:
        raise CatalogError(f"catalog {name!r} ({path}) has bad rows: {report}. Fix the file.")
    return Catalog(name, table, path, spec.zone_height_arcsec)


def _read(path: Path, fmt: str) -> pa.Table:
    kind = fmt if fmt != "auto" else _kind(path)
    try:
        if kind == "parquet":
            return pq.read_table(path)
        if kind == "csv":
            return pcsv.read_csv(path)
        return _read_astropy(path, kind)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc}") from exc


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    kinds = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".fits": "fits"}
    kinds |= {".fit": "fits", ".xml": "votable", ".vot": "votable"}
    if suffix not in kinds:
        raise CatalogError(
            f"catalog {path}: cannot tell its format from {suffix!r}; "
            "set format: parquet | csv | fits | votable"
        )
    return kinds[suffix]


def _read_astropy(path: Path, kind: str) -> pa.Table:
    try:
        from astropy.table import Table
    except ImportError as exc:
        raise CatalogError(
            f"catalog {path} is {kind.upper()}: reading it needs astropy "
            "(pip install 'headwater[fits]')"
        ) from exc
    data = Table.read(path, format="fits" if kind == "fits" else "votable")
    return pa.table({name: _arrow_column(data[name]) for name in data.colnames})


def _arrow_column(column) -> pa.Array:
    """An astropy column as Arrow: native byte order (FITS is big-endian), text as str,
    masked cells as nulls."""
    mask = np.asarray(column.mask) if getattr(column, "mask", None) is not None else None
    values = np.asarray(column)
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8")
    if values.dtype.kind == "U":
        return pa.array(values.tolist(), pa.string(), mask=mask)
    if values.dtype.byteorder not in ("=", "|"):
        values = values.astype(values.dtype.newbyteorder("="))
    return pa.array(values, mask=mask)


def _degrees(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise CatalogError(f"expected numbers in degrees, got a {column.type} column")
    return column.cast(pa.float64())


def position_faults(ra: pa.ChunkedArray, dec: pa.ChunkedArray) -> dict[str, np.ndarray]:
    """Rows whose position cannot be matched, by fault (boolean masks; NaN is outside):
    the same rules for catalog entries and for alerts."""
    ra_n = ra.to_numpy(zero_copy_only=False).astype(np.float64)
    dec_n = dec.to_numpy(zero_copy_only=False).astype(np.float64)
    ra_null = pc.is_null(ra).to_numpy(zero_copy_only=False)
    dec_null = pc.is_null(dec).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        return {
            "ra is missing": ra_null,
            "dec is missing": dec_null,
            "ra is outside [0, 360)": ~ra_null & ~((ra_n >= 0.0) & (ra_n < 360.0)),
            "dec is outside [-90, 90]": ~dec_null & ~((dec_n >= -90.0) & (dec_n <= 90.0)),
        }


def _faults(table: pa.Table) -> str:
    """'' if every row is good, else what is wrong: counts and the first examples."""
    ids = table["id"]
    where = position_faults(table["ra"], table["dec"])
    checks = {
        "ra missing or outside [0, 360)": where["ra is missing"] | where["ra is outside [0, 360)"],
        "dec missing or outside [-90, 90]": where["dec is missing"]
        | where["dec is outside [-90, 90]"],
        "id missing": pc.is_null(ids).to_numpy(zero_copy_only=False),
    }
    if "radius" in table.column_names:
        checks["radius not above 0"] = pc.invert(
            pc.fill_null(pc.greater(table["radius"], 0.0), True)  # empty: the default radius
        ).to_numpy(zero_copy_only=False)
    parts = []
    for what, bad in checks.items():
        rows = np.flatnonzero(bad)
        if len(rows):
            parts.append(f"{len(rows)} with {what} (rows {_examples(rows, table)})")
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts, pc.greater(counts.field("counts"), 1)).field("values")
    if len(repeated):
        shown = ", ".join(repr(v) for v in repeated[:EXAMPLES].to_pylist())
        parts.append(f"{len(repeated)} ids used more than once (e.g. {shown})")
    return "; ".join(parts)


def _examples(rows: np.ndarray, table: pa.Table) -> str:
    quoted = []
    for r in rows[:EXAMPLES]:
        row = table.slice(int(r), 1).to_pylist()[0]
        quoted.append(f"{r}: id={row['id']!r} ra={row['ra']} dec={row['dec']}")
    return "; ".join(quoted) + (", …" if len(rows) > EXAMPLES else "")


class CatalogStore:
    """A pipeline's catalogs, loaded on first use and reloaded when their file changes, so an
    edited watchlist takes effect on the next batch."""

    def __init__(self, specs: dict[str, CatalogSpec], base_dir: Path, store: Path | None = None):
        self.specs = specs
        self.base_dir = base_dir
        self.store = store  # where materialize writes validated copies
        self._loaded: dict[str, tuple[tuple[int, int], Catalog]] = {}

    def materialize(self, name: str) -> dict[str, Any]:
        """Validate the catalog and store its validated table (id, ra, dec, [radius], carried
        columns) as Parquet, sorted by declination zone then ra, the matcher's order; return
        what was done, for the asset's metadata. Raises :class:`CatalogError` if invalid."""
        if self.store is None:
            raise CatalogError(f"catalog {name!r}: this pipeline has nowhere to store catalogs")
        started = time.perf_counter()
        catalog = self.get(name)
        height = catalog.zone_height_arcsec or STORED_ZONE_ARCSEC
        index = catalog.index(height / 3600.0)
        path = self.store / f"{name}.parquet"
        ordered = catalog.table.take(pa.array(index.rows))
        # stamped with what was validated, not with the file as it may be by now
        made_from = self._made_from(name, self._loaded[name][0])
        ordered = ordered.replace_schema_metadata({STAMP_KEY: made_from})
        size = write_atomically(path, ordered, compression="zstd")
        return {
            "rows": len(catalog),
            "columns": catalog.table.column_names,
            "source": str(self.path(name)),
            "path": str(path),
            "bytes": size,
            "zone_height_arcsec": height,
            "seconds": round(time.perf_counter() - started, 3),
        }

    def path(self, name: str) -> Path:
        p = Path(self.specs[name].path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def get(self, name: str) -> Catalog:
        if name not in self.specs:
            known = ", ".join(self.specs) or "none"
            raise CatalogError(f"no catalog {name!r} in the spec's catalogs (it has: {known})")
        path = self.path(name)
        try:
            st = path.stat()
        except OSError as exc:
            raise CatalogError(f"catalog {name!r}: cannot read {path}: {exc.strerror}") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._loaded.get(name)
        if cached is None or cached[0] != stamp:
            catalog = self._stored(name, stamp) or load_catalog(name, self.specs[name], path)
            cached = self._loaded[name] = (stamp, catalog)
        return cached[1]

    def _made_from(self, name: str, stamp: tuple[int, int]) -> str:
        """What a stored copy was made from: the source file's mtime and size, and the spec."""
        return f"{stamp[0]}:{stamp[1]}:{self.specs[name].model_dump_json()}"

    def _stored(self, name: str, stamp: tuple[int, int]) -> Catalog | None:
        """The materialized copy, if it was made from the file and spec as they are now: it
        is validated already, and in zone order (indexing it is a linear pass)."""
        copy = self.store / f"{name}.parquet" if self.store is not None else None
        if copy is None or not copy.is_file():
            return None
        try:
            meta = pq.read_schema(copy).metadata or {}
            if meta.get(STAMP_KEY.encode()) != self._made_from(name, stamp).encode():
                return None
            table = pq.read_table(copy).replace_schema_metadata(None)
        except (OSError, pa.ArrowInvalid):
            return None  # unreadable copy: the source file is the truth
        return Catalog(name, table, copy, self.specs[name].zone_height_arcsec)
