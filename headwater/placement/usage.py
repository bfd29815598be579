"""Usage rows and host capacities in HOTS's format, checked column by column.

``container_usage.csv``: ``timestamp,container_id,machine_id,cpu`` (integer ticks; more
metric columns, e.g. ``memory``, may follow). ``node_meta.csv``: ``machine_id,cpu`` capacity
per metric. A row that cannot be modelled is refused with the first reason that applies:
a missing field, a negative usage, a host the cluster does not have, a host without
capacity, or a tick out of its container's order (earlier than, or the same as, a row of
that container before it, in this batch or a window already modelled).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from pydantic import Field

from headwater.arrow import dictionary_codes
from headwater.config import ComponentConfig
from headwater.errors import HeadwaterError


class UsageColumns(ComponentConfig):
    tick: str = Field(default="timestamp", description="Integer tick column.")
    container: str = Field(default="container_id", description="Container id column.")
    host: str = Field(default="machine_id", description="Host id column.")
    metrics: list[str] = Field(
        default=["cpu"], min_length=1, description="Usage columns, each a metric with a capacity."
    )


@dataclass
class Hosts:
    names: list[str]
    capacity: np.ndarray  # (H, M); hosts without a usable capacity are left out
    without_capacity: dict[str, str]  # host → why it has none

    def positions(self, values: np.ndarray) -> np.ndarray:
        """Positions of ``values`` (all known hosts) in ``names``, by one sorted search."""
        order, ordered = self._sorted
        return order[np.searchsorted(ordered, values.astype(str))].astype(np.int64)

    @functools.cached_property
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        names = np.array(self.names, dtype=str)
        order = np.argsort(names)
        return order, names[order]

    @functools.cached_property
    def known(self) -> pa.Array:
        """The names as an Arrow array, for :func:`member`."""
        return pa.array(self.names, pa.string())


def load_hosts(path: Path, columns: UsageColumns) -> Hosts:
    """Capacities from ``node_meta.csv``; hosts with a missing or non-positive capacity are
    kept aside so that their rows are refused with the reason."""
    try:
        table = pcsv.read_csv(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise HeadwaterError(
            f"cluster hosts {path}: cannot read it as CSV ({exc}); expected columns "
            f"{columns.host},{','.join(columns.metrics)} as HOTS's node_meta.csv"
        ) from exc
    missing = [c for c in (columns.host, *columns.metrics) if c not in table.column_names]
    if missing:
        raise HeadwaterError(
            f"cluster hosts {path}: no column(s) {missing}; has {table.column_names}. "
            "Fix the file or the processor's columns setting."
        )
    names = [str(h) for h in table[columns.host].to_pylist()]
    caps = np.column_stack(
        [
            pc.cast(table[m], pa.float64(), safe=False).to_numpy(zero_copy_only=False)
            for m in columns.metrics
        ]
    )
    bad = ~np.isfinite(caps).all(axis=1) | (np.nan_to_num(caps, nan=0.0) <= 0).any(axis=1)
    without = {
        names[i]: f"host {names[i]} has no usable capacity in {path.name} (row {i + 2})"
        for i in np.flatnonzero(bad)
    }
    keep = [i for i in range(len(names)) if not bad[i] and names[i] not in names[:i]]
    return Hosts([names[i] for i in keep], caps[keep], without)


@dataclass(frozen=True)
class Modelled:
    """How far earlier windows modelled the containers: a row at or before its container's
    last modelled tick is late. ``ticks`` is None for a state that did not record them
    (an earlier version's, or a third-party collector's): then every row before ``end``,
    the first tick after the last window, is late."""

    end: int
    ticks: dict[str, int] | None = None

    def last(self, containers: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Each row's container's last modelled tick; -inf for one never modelled."""
        if self.ticks is None:
            return np.full(len(containers), self.end - 1, dtype=float)
        known = pa.array(list(self.ticks), pa.string())
        at = pc.index_in(pc.cast(containers, pa.string()), value_set=known)
        values = np.append(np.fromiter(self.ticks.values(), float, len(self.ticks)), -np.inf)
        return values[pc.fill_null(at, len(self.ticks)).to_numpy(zero_copy_only=False)]


def refusals(
    table: pa.Table, hosts: Hosts, columns: UsageColumns, modelled: Modelled | None
) -> np.ndarray:
    """The reason each row cannot be modelled ('' for good rows), first reason first."""
    n = table.num_rows
    reasons = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, why: str | Callable[[np.ndarray], list[str]]) -> None:
        """Give rows in ``mask`` not refused yet the reason ``why`` (or ``why(rows)``: one
        message per row, made for the refused rows only)."""
        hit = np.flatnonzero(mask & (reasons == ""))
        if len(hit):
            reasons[hit] = why if isinstance(why, str) else why(hit)

    for name in (columns.tick, columns.container, columns.host, *columns.metrics):
        if name not in table.column_names:
            flag(np.ones(n, dtype=bool), f"usage: no column {name!r}")
            return reasons
        if table[name].null_count:
            flag(_null(table[name]), f"usage: {name} is missing")
    for name in columns.metrics:
        values = _floats(table[name])
        flag(~np.isfinite(values), f"usage: {name} is not a number")
        flag(values < 0, functools.partial(_negative, name, values))
    host = pc.cast(table[columns.host], pa.string())

    def names(rows: np.ndarray) -> list[str]:
        return [str(h) for h in host.take(pa.array(rows)).to_pylist()]

    if hosts.without_capacity:
        nocap = member(host, list(hosts.without_capacity))
        flag(nocap, lambda rows: [hosts.without_capacity[h] for h in names(rows)])
    flag(~member(host, hosts.known), lambda rows: [f"usage: unknown host {h}" for h in names(rows)])
    flag_ticks(table, columns, modelled, flag, reasons)
    return reasons


def _negative(name: str, values: np.ndarray, rows: np.ndarray) -> list[str]:
    return [f"usage: {name} is negative: {values[r]}" for r in rows]


def flag_ticks(
    table: pa.Table, columns: UsageColumns, modelled: Modelled | None, flag, reasons: np.ndarray
) -> None:
    """Ticks: integers, each container's in order. Order is a container's own: rows of
    different containers may interleave (a topic's partitions, producers on many hosts),
    and a batch may end part-way through a tick (its other rows come with the next)."""
    ticks = _floats(table[columns.tick])
    flag(~np.isfinite(ticks) | (ticks != np.round(ticks)), "usage: tick is not an integer")
    safe = np.where(np.isnan(ticks), -np.inf, ticks)
    container = table[columns.container]
    # every tick a state recorded is before its end: rows all at or after it cannot be late
    if modelled is not None and len(safe) and safe.min() < modelled.end:
        last = modelled.last(container)

        def late(rows: np.ndarray) -> list[str]:
            names = pc.cast(container, pa.string()).take(pa.array(rows)).to_pylist()
            return [
                f"usage: tick {int(safe[r])} of {c}, modelled up to tick {int(last[r])} (late row)"
                for r, c in zip(rows, names, strict=True)
            ]

        flag(safe <= last, late)
    # each container's rows in the order they arrived (per file or partition: _source)
    group = dictionary_codes(container)[1]
    if "_source" in table.column_names:  # rows of several files or partitions: per source
        source = dictionary_codes(table["_source"])[1]
        if len(source) and (sources := int(source.max()) + 1) > 1:
            group = group * sources + source
    order = np.lexsort((_offsets(table), group))
    good = np.where(reasons[order] == "", safe[order], -np.inf)  # refused rows do not count
    before = _grouped_running_max(good, group[order])
    tick = safe[order]
    late, same = np.zeros(len(ticks), bool), np.zeros(len(ticks), bool)
    late[order] = tick < before
    same[order] = tick == before
    flag(late, "usage: tick out of order (earlier than a row of its container before it)")
    flag(same, "usage: a second row of its container for this tick (duplicate)")


def _grouped_running_max(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """For rows sorted by group: the greatest value of the rows before each in its group
    (-inf for a group's first). Groups are lifted apart by more than the values' span, so
    one running maximum serves them all."""
    n = len(values)
    if not n:
        return values
    finite = values[np.isfinite(values)]
    low = finite.min() if len(finite) else 0.0
    span = (finite.max() - low + 1.0) if len(finite) else 1.0
    starts = np.ones(n, bool)
    np.not_equal(group[1:], group[:-1], out=starts[1:])
    rank = np.cumsum(starts) - 1  # the group's place among the groups, from 0
    lifted = np.where(np.isfinite(values), values - low + 1.0, 0.0) + rank * (span + 1.0)
    running = np.maximum.accumulate(lifted)
    previous = np.empty(n)
    previous[0], previous[1:] = 0.0, running[:-1]
    out = previous - rank * (span + 1.0) + low - 1.0
    out[starts] = -np.inf  # nothing before a group's first row
    out[previous - rank * (span + 1.0) <= 0.0] = -np.inf  # only refused rows before it
    return out


def member(
    values: pa.Array | pa.ChunkedArray | np.ndarray, known: list[str] | pa.Array
) -> np.ndarray:
    """Whether each value is one of ``known`` (Arrow's hash lookup: numpy's isin sorts
    object arrays, seconds at 10^5 rows)."""
    array = values
    if not isinstance(values, pa.ChunkedArray | pa.Array):
        array = pa.array(values, pa.string())
    if not isinstance(known, pa.Array):
        known = pa.array(known, pa.string())
    found = pc.is_in(pc.cast(array, pa.string()), known)
    return pc.fill_null(found, False).to_numpy(zero_copy_only=False)


def _offsets(table: pa.Table) -> np.ndarray:
    if "_offset" in table.column_names:
        return table["_offset"].to_numpy()
    return np.arange(table.num_rows)


def _null(column: pa.ChunkedArray) -> np.ndarray:
    return column.is_null().to_numpy(zero_copy_only=False)


NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """Values as floats, NaN where missing or not a number (text columns are parsed whole)."""
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        text = pc.cast(column, pa.string())
        column = pc.if_else(pc.match_substring_regex(text, NUMBER), text, None)
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
