"""``solar_system``: keep (or drop) alerts associated with a known solar-system object.

In real ZTF alerts an absent ``ssnamenr`` is the *string* ``"null"`` as well as a null, and
``ssdistnr`` is -999 when there is no object. Designations are compared in a normal form
(upper case, no spaces, ``2002MA06`` == ``2002MA6``), because the same asteroid shows up
under several spellings.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from headwater.arrow import column_path
from headwater.config import ComponentConfig
from headwater.processors.base import Processor

_PROVISIONAL = r"^(\d{4})([A-Z]{2})0*(\d+)$"


def normalise_designations(names: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Upper case, no whitespace, provisional-designation numbers without leading zeros."""
    names = pc.replace_substring_regex(pc.utf8_upper(names), r"\s+", "")
    return pc.replace_substring_regex(names, _PROVISIONAL, r"\1\2\3")


class SolarSystemConfig(ComponentConfig):
    action: Literal["include", "exclude"] = Field(
        default="include", description="include: keep SSO alerts only; exclude: drop them."
    )
    name_column: str = Field(
        default="candidate.ssnamenr", description="Path of the nearest known object's name."
    )
    distance_column: str = Field(
        default="candidate.ssdistnr", description="Path of its distance in arcsec."
    )
    targets: list[str] = Field(
        default_factory=list, description="Only these objects count (names or numbers)."
    )
    max_distance_arcsec: float | None = Field(
        default=None, gt=0, description="Only objects within this distance count."
    )


class SolarSystem(Processor):
    Config = SolarSystemConfig

    def process(self, table: pa.Table) -> pa.ChunkedArray:
        c: SolarSystemConfig = self.config
        names = pc.utf8_trim_whitespace(column_path(table, c.name_column).cast(pa.string()))
        known = pc.and_(pc.is_valid(names), pc.invert(pc.is_in(names, pa.array(["null", ""]))))
        if c.targets:
            wanted = normalise_designations(pa.array(c.targets, pa.string()))
            known = pc.and_(known, pc.is_in(normalise_designations(names), wanted))
        if c.max_distance_arcsec is not None:
            dist = column_path(table, c.distance_column)
            near = pc.and_(pc.greater_equal(dist, 0), pc.less_equal(dist, c.max_distance_arcsec))
            known = pc.and_(known, near)
        known = pc.fill_null(known, False)
        return known if c.action == "include" else pc.invert(known)
