"""``cluster_model``: usage rows in, the cluster model of the batch's window out.

The output has a row per usage row — ``tick, container_id, host_id`` (where the container
really was at that tick: moves applied through the connector and events included), the
metrics, each host's capacity (``capacity_<metric>``), and ``running`` (whether the
container still runs at the window's end) — and a row per idle host (no container, no
tick), so every host and its capacity is in the table. Query it with DuckDB like any
stream; ``placement`` processors take it as their input.

Rows that cannot be modelled (see :mod:`headwater.placement.usage`) are quarantined with the
reason; event rows (a non-null ``event_type``) update the placement (see
:mod:`headwater.placement.collectors`). A batch that ends part-way through a tick holds that
tick back for the next batch (``hold_partial_tick``; docs/placement.md).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from headwater.arrow import dictionary_codes
from headwater.config import ComponentConfig
from headwater.placement import plugins
from headwater.placement.collectors import STOPPED, Collected, State, StateStore
from headwater.placement.connectors import ConnectorConfig, connector_for
from headwater.placement.model import REFUSED_KEY
from headwater.placement.usage import (
    Hosts,
    Modelled,
    UsageColumns,
    load_hosts,
    member,
    refusals,
)
from headwater.processors.base import Processed, Processor
from headwater.quarantine import rejects, rows_refused


class ClusterModelConfig(ComponentConfig):
    hosts: str = Field(description="Host capacities, HOTS's node_meta.csv (machine_id,cpu,…).")
    columns: UsageColumns = Field(default_factory=UsageColumns)
    collector: plugins.reference("collectors") = Field(  # type: ignore[valid-type]
        default="usage",
        validate_default=True,
        description="Collector plugin (headwater.collectors): a name or {name: {settings}}.",
    )
    history_ticks: int = Field(
        default=0,
        ge=0,
        description="Ticks of earlier windows the model carries (rows with history true), so "
        "strategies plan for a whole cycle of usage (a day), not only the last window.",
    )
    connector: ConnectorConfig = Field(
        default_factory=ConnectorConfig,
        description="Where applied moves are read back (the moves sink's connector).",
    )
    hold_partial_tick: bool | None = Field(
        default=None,
        description="Hold a batch's last tick back until a later tick comes when not every "
        "container has reported it, and model it with the next batch: a batch cut from a "
        "topic may end part-way through a tick, and a decision on part of a tick sees hosts "
        "less loaded than they are. Default: on, unless the source cuts its batches on tick "
        "boundaries (the usage source).",
    )
    max_lag_ticks: int = Field(
        default=3,
        ge=0,
        description="With hold_partial_tick: a container more than this many ticks behind the "
        "newest no longer holds ticks back (it stopped reporting, or its partition lags); "
        "its rows for ticks modelled meanwhile are refused as late.",
    )


class ClusterModel(Processor):
    Config = ClusterModelConfig
    closed_loop = True  # the model reads back the moves the last batch applied

    def __init__(self, config: ClusterModelConfig, ctx):
        super().__init__(config, ctx)
        self.collector = plugins.build("collectors", *config.collector, ctx)
        self.connector = connector_for(config.connector, ctx)
        self.states = StateStore(ctx.lake.component_dir(ctx.pipeline, "_cluster", ctx.where))
        self._hosts: Hosts | None = None
        self._hosts_seen: tuple[int, int, int] | None = None  # the file's identity when read
        hold = config.hold_partial_tick
        self.hold = not ctx.whole_ticks if hold is None else hold

    def close(self) -> None:
        self.connector.close()

    @classmethod
    def input_files(cls, config: ClusterModelConfig) -> dict[str, str]:
        return {"hosts": config.hosts}

    def hosts(self) -> Hosts:
        """The hosts file, read again when it changed: a worker runs for weeks, and a host
        added to the cluster (or a capacity changed) counts from the next batch on."""
        path = self.ctx.path(self.config.hosts)
        try:
            st = os.stat(path)
            seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            seen = None  # load_hosts says why it cannot be read
        if self._hosts is None or seen is None or seen != self._hosts_seen:
            self._hosts = load_hosts(path, self.config.columns)
            self._hosts_seen = seen
        return self._hosts

    def process(self, table: pa.Table) -> Processed:
        cols, hosts = self.config.columns, self.hosts()
        column = self.collector.config.event_column
        events, usage = _split(table, column)
        ticks = pc.cast(usage[cols.tick], pa.float64(), safe=False) if usage.num_rows else None
        top = pc.max(ticks).as_py() if ticks is not None else None
        if self.hold:
            previous, reasons, table = self._previous_held(table, usage, hosts, top)
            events, usage = _split(table, column)
        else:
            previous, reasons = self._previous(usage, hosts, top)
        good, held = _select(usage, reasons == ""), None
        if self.hold:
            lag = self.config.max_lag_ticks
            good, events, held = _hold_back(good, events, previous, cols, lag)
        event_reasons = _event_refusals(events, cols)
        collected = self.collector.collect(
            _rows(good, cols),
            _events(events.filter(pa.array(event_reasons == "")), cols, column),
            previous,
            self.connector.applied(),
        )
        bad_host = ~member(collected.row_host, hosts.known)
        late = _late(collected.row_host, bad_host)
        refused = _refused(usage, reasons)
        refused_events = _refused(events, event_reasons)
        keep = ~bad_host
        out = _model(_select(good, keep), collected, hosts, cols, collected.row_host[keep])
        moved_off = _refused(good, late)
        window_ticks = len(np.unique(out["tick"].drop_null().to_numpy()))
        out, kept = self._with_history(out, previous, collected, window_ticks > 0)
        self._save(good, keep, collected, previous, kept, held)
        why = (
            Counter(reasons[reasons != ""])
            + Counter(late[bad_host])
            + Counter(event_reasons[event_reasons != ""])
        )
        meta = {
            **collected.notes,
            "containers": len(collected.placement),
            "hosts": len(hosts.names),
            "ticks": window_ticks,
            "rows_refused": int(sum(why.values())),
            "refused_by_reason": _bucket(why),
        }
        if self.hold:
            meta["rows_held"] = held.num_rows if held is not None else 0
        parts = [t for t in (refused, moved_off, refused_events) if t.num_rows]
        all_refused = pa.concat_tables(parts) if parts else rejects([], [], [], [])
        out = out.replace_schema_metadata({REFUSED_KEY: str(meta["rows_refused"]).encode()})
        return Processed(out, all_refused, meta)

    def _save(
        self,
        good: pa.Table,
        keep: np.ndarray,
        collected: Collected,
        previous: State | None,
        kept: pa.Table | None,
        held: pa.Table | None,
    ) -> None:
        """Keep the state the window closes with, and the rows it holds back. A window that
        modelled nothing leaves the last state as it was, but what it holds back is kept
        with that state (or, before any, a state that has placed nothing yet). Rows held
        back at a state add to those held there before: a rerun of the window keeps a
        later batch's rows of the tick (that batch reruns from them)."""
        cols = self.config.columns
        if good.num_rows:
            state = _with_ticks(collected.state, previous, _select(good, keep), cols)
            self.states.save(state, kept)
        elif held is not None and previous is None:
            state = State(_first_tick(held, cols), 0, {}, {})
            self.states.save(state)
        else:
            state = previous
        if held is None or state is None:
            return
        before = self.states.held(state.end)
        held = _with_held(before, held, cols, self.collector.config.event_column)[0]
        self.states.save_held(state.end, held)

    def _previous(
        self, usage: pa.Table, hosts: Hosts, top: float | None
    ) -> tuple[State | None, np.ndarray]:
        """The state this batch starts from, and why each of its rows is refused.

        A window starts from the last state before its ticks: a rerun starts where its first
        run did. But a batch cut from a topic may end part-way through a tick, and the next
        batch may hold only that tick's other rows: its ticks are then those of the window
        before, yet it brings what that window did not have. Such a batch starts from that
        window's state instead (and its state, the tick completed, replaces that one); a
        rerun brings nothing new, most of its rows being the window's own (late for it)."""
        cols = self.config.columns
        if top is None:
            return None, refusals(usage, hosts, cols, None)
        covering = self.states.latest(int(top) + 1)
        if covering is None or covering.end != int(top) + 1:
            # no window modelled this batch's last tick (a first run): the state found is
            # also the last before its ticks, so one look-up serves
            return covering, refusals(usage, hosts, cols, _modelled(covering))
        before = self.states.latest(int(top))  # a rerun, or the rest of a tick
        reasons = refusals(usage, hosts, cols, _modelled(before))
        if covering.ticks is None:
            return before, reasons
        against = refusals(usage, hosts, cols, _modelled(covering))
        if (against == "").sum() > _count_late(against):  # mostly new rows: the tick's rest
            return covering, against
        return before, reasons

    def _previous_held(
        self, table: pa.Table, usage: pa.Table, hosts: Hosts, top: float | None
    ) -> tuple[State | None, np.ndarray, pa.Table]:
        """With ticks held back: the state this batch starts from, why each usage row of the
        batch with the rows that state held back is refused, and that table.

        The newest state is where a batch goes on from; but a state that has modelled more
        of the batch's rows (late for it) than the batch brings anew is the batch's own or a
        later one's: a rerun, which starts from the state before it. Rows held back at a
        state are not new to it: a batch of a tick's rest alone left its rows there."""
        cols, event = self.config.columns, self.collector.config.event_column
        state = self.states.latest(int(top) + 1 if top is not None else LAST_TICK)
        while True:
            held = self.states.held(state.end) if state is not None else None
            merged, again = _with_held(held, table, cols, event)
            rows = _split(merged, event)[1]
            reasons = refusals(rows, hosts, cols, _modelled(state))
            if state is None or top is None:
                return state, reasons, merged
            mine = reasons[rows.num_rows - usage.num_rows :]  # the batch's rows come last
            if _count_late(mine) <= (mine == "").sum() - again:
                return state, reasons, merged
            state = self.states.latest(state.end - 1)

    def _with_history(
        self, out: pa.Table, previous: State | None, collected: Collected, modelled: bool
    ) -> tuple[pa.Table, pa.Table | None]:
        """Prepend the last ``history_ticks`` ticks of earlier windows (``history`` true), and
        give the rows the next window will look back over (None without history):
        strategies then see a whole cycle of usage. A window that modelled no tick has no
        history either: a decision on the history alone would redo the last window's."""
        n = self.config.history_ticks
        out = out.append_column("history", pa.array(np.zeros(out.num_rows, bool)))
        if n == 0 or not modelled:
            return out, None
        earlier = self.states.history(previous.end) if previous is not None else None
        if earlier is not None:  # the n ticks before this window
            earlier = _from_tick(earlier, previous.end - n)
            running = member(earlier["container_id"], list(collected.placement))
            earlier = earlier.set_column(
                earlier.schema.get_field_index("running"), "running", pa.array(running)
            )
            out = pa.concat_tables([earlier.select(out.column_names), out])
        start = collected.state.end - n  # what the next window will look back over
        keep = _from_tick(out, start)
        flags = pa.array(np.ones(keep.num_rows, bool))
        keep = keep.set_column(keep.schema.get_field_index("history"), "history", flags)
        return out, keep


#: A tick after any (a batch of events alone starts from the newest state).
LAST_TICK = 10**19


def _hold_back(
    good: pa.Table, events: pa.Table, previous: State | None, cols: UsageColumns, lag: int
) -> tuple[pa.Table, pa.Table, pa.Table | None]:
    """The usage rows and events to model now, and those held back (None: nothing).

    Ticks are modelled through the last one every running container has reported: a
    container reports its ticks in order, so one that reported tick t has sent all it will
    for the ticks before. Running are the containers of the state before and of the batch;
    one more than ``lag`` ticks behind the newest has stopped reporting (or its partition
    lags) and holds nothing back. A first tick alone waits too (who else runs is not known
    yet). Events after the ticks modelled wait with their rows; when nothing is left to
    model, every event waits (events count from the next window that keeps a state)."""
    held, now, through = good, good, None
    if good.num_rows:
        tick = pc.cast(good[cols.tick], pa.int64(), safe=False).to_numpy()
        newest = int(tick.max())
        last = _latest_ticks(good, cols)
        placed = previous.placement if previous is not None else {}
        known = (previous.ticks or {}) if previous is not None else {}
        last.update((c, known[c]) for c in placed if c not in last and c in known)
        through = min(t for t in last.values() if t >= newest - lag)
        if not placed and int(tick.min()) == newest:
            through = newest - 1
        if through >= newest:
            return good, events, None
        keep = pa.array(tick <= through)
        held, now = good.filter(pc.invert(keep)), good.filter(keep)
    if events.num_rows:
        tick = pc.cast(events[cols.tick], pa.int64(), safe=False)
        wait = pc.is_valid(tick) if not now.num_rows else pc.greater(tick, through)
        wait = pc.fill_null(wait, False)
        held = pa.concat_tables([held, events.filter(wait)], promote_options="permissive")
        events = events.filter(pc.invert(wait))
    return now, events, held if held.num_rows else None


def _with_held(
    held: pa.Table | None, table: pa.Table, cols: UsageColumns, event: str
) -> tuple[pa.Table, int]:
    """The rows held back, then the batch's; and how many held rows the batch brings
    again (a rerun reads its rows again, and they are the batch's alone)."""
    if held is None:
        return table, 0
    again = _found_in(held, table, cols, event)
    kept = held.filter(pc.invert(pa.array(again)))
    return pa.concat_tables([kept, table], promote_options="permissive"), int(again.sum())


def _found_in(table: pa.Table, other: pa.Table, cols: UsageColumns, event: str) -> np.ndarray:
    """Whether each row of ``table`` is in ``other``: the same tick, container and event
    (a row read again, by a rerun or from the rows held back)."""

    def keys(t: pa.Table) -> pa.Table:
        kind = t[event].cast(pa.string()) if event in t.column_names else pa.nulls(t.num_rows)
        return pa.table(
            {
                "k_tick": pc.cast(t[cols.tick], pa.int64(), safe=False),
                "k_container": t[cols.container].cast(pa.string()),
                "k_event": pc.fill_null(kind.cast(pa.string()), ""),
            }
        )

    found = np.zeros(table.num_rows, bool)
    if any(c not in t.column_names for c in (cols.tick, cols.container) for t in (table, other)):
        return found  # rows without them are refused; none is read again
    mine = keys(table).append_column("k_row", pa.array(np.arange(table.num_rows)))
    both = mine.join(keys(other), keys=["k_tick", "k_container", "k_event"], join_type="left semi")
    found[both["k_row"].to_numpy()] = True
    return found


def _count_late(reasons: np.ndarray) -> int:
    """How many rows are refused as late (already modelled)."""
    return sum(r.endswith("(late row)") for r in reasons[reasons != ""])


def _first_tick(held: pa.Table, cols: UsageColumns) -> int:
    return int(pc.min(pc.cast(held[cols.tick], pa.int64(), safe=False)).as_py())


def _modelled(state: State | None) -> Modelled | None:
    return Modelled(state.end, state.ticks) if state is not None else None


def _with_ticks(state: State, previous: State | None, rows: pa.Table, cols: UsageColumns) -> State:
    """``state`` with each running container's last modelled tick: the latest of the rows
    modelled here and of what the previous state recorded."""
    ticks = dict(previous.ticks or {}) if previous is not None else {}
    for c, t in _latest_ticks(rows, cols).items():
        ticks[c] = max(t, ticks.get(c, t))
    return dataclasses.replace(state, ticks={c: ticks[c] for c in state.placement if c in ticks})


def _latest_ticks(rows: pa.Table, cols: UsageColumns) -> dict[str, int]:
    """Each container's latest tick among ``rows``."""
    if not rows.num_rows:
        return {}
    # numpy over dictionary codes: Arrow's group_by cost a small window 0.2 ms
    containers, codes = dictionary_codes(rows[cols.container])
    tick = pc.cast(rows[cols.tick], pa.int64(), safe=False).to_numpy()
    latest = np.full(len(containers), np.iinfo(np.int64).min)
    np.maximum.at(latest, codes, tick)
    return dict(zip(containers.to_pylist(), latest.tolist(), strict=True))


def _from_tick(table: pa.Table, first: int) -> pa.Table:
    """The rows whose tick is ``first`` or later. A model's rows come in tick order (rows
    out of order are refused), idle hosts' rows (no tick) last: then that is a slice, not
    a filter copying every column (a tenth of a small window's model time)."""
    ticks = table["tick"].to_numpy(zero_copy_only=False).astype(np.float64)
    valid = len(ticks) - table["tick"].null_count
    head = ticks[:valid]
    if not np.isnan(head).any() and (valid < 2 or (np.diff(head) >= 0).all()):
        start = int(np.searchsorted(head, first, side="left"))
        return table.slice(start, valid - start)
    return table.filter(pc.fill_null(pc.greater_equal(table["tick"], first), False))


#: What the refusal counts are grouped by (a reason names its row's detail too).
KINDS = (
    "is missing",
    "not a number",
    "negative",
    "no usable capacity",
    "moved to unknown host",
    "unknown host",
    "not an integer",
    "late row",
    "out of order",
    "duplicate",
    "stopped",
)


def _bucket(why: Counter) -> dict[str, int]:
    out: Counter = Counter()
    for reason, n in why.items():
        out[next((k for k in KINDS if k in reason), reason)] += n
    return dict(out)


def _split(table: pa.Table, event_column: str) -> tuple[pa.Table, pa.Table]:
    if event_column not in table.column_names:
        return table.slice(0, 0), table
    kind = pc.cast(table[event_column], pa.string())
    is_event = pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(kind), ""), False)
    return table.filter(is_event), table.filter(pc.invert(is_event))


def _rows(table: pa.Table, cols: UsageColumns) -> dict[str, np.ndarray]:
    return {
        "tick": pc.cast(table[cols.tick], pa.int64(), safe=False).to_numpy(),
        "container": table[cols.container].cast(pa.string()).to_numpy(zero_copy_only=False),
        "host": table[cols.host].cast(pa.string()).to_numpy(zero_copy_only=False),
    }


def _events(table: pa.Table, cols: UsageColumns, column: str) -> dict[str, np.ndarray]:
    if not table.num_rows:
        empty = np.array([], dtype=object)
        return {"tick": np.array([], np.int64), "container": empty, "host": empty, "type": empty}
    types = table[column].cast(pa.string()).to_numpy(zero_copy_only=False)
    return {**_rows(table, cols), "type": types}


def _event_refusals(table: pa.Table, cols: UsageColumns) -> np.ndarray:
    reasons = np.full(table.num_rows, "", dtype=object)
    if not table.num_rows:
        return reasons
    for name in (cols.tick, cols.container):
        missing = (
            table[name].is_null().to_numpy(zero_copy_only=False)
            if name in table.column_names
            else np.ones(table.num_rows, bool)
        )
        reasons[missing & (reasons == "")] = f"event: {name} is missing"
    return reasons


def _select(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """The rows of ``table`` where ``keep``; the table itself when that is every row (the
    usual case: a filter copies every column)."""
    return table if keep.all() else table.filter(pa.array(keep))


def _late(row_host: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Why each row in ``bad`` is refused ('' elsewhere): its container had stopped, or was
    moved to a host the cluster does not have."""
    reasons = np.full(len(row_host), "", dtype=object)
    rows = np.flatnonzero(bad)
    reasons[rows] = [
        "usage: the container had stopped (a stop event at this tick or before)"
        if host == STOPPED
        else f"usage: moved to unknown host {host}"
        for host in row_host[rows]
    ]
    return reasons


def _refused(table: pa.Table, reasons: np.ndarray) -> pa.Table:
    rows = np.flatnonzero(reasons != "")
    return rows_refused(table, rows, list(reasons[rows]))


def _model(
    rows: pa.Table, collected: Collected, hosts: Hosts, cols: UsageColumns, host: np.ndarray
) -> pa.Table:
    """The model table: usage rows with their effective host, then one row per idle host."""
    h = hosts.positions(host)
    idle = sorted(set(hosts.names) - set(collected.placement.values()))
    idle_i = hosts.positions(np.array(idle, dtype=object))
    k = len(idle)
    running = member(rows[cols.container], list(collected.placement))
    columns: dict[str, pa.Array] = {
        "tick": pa.concat_arrays([_array(rows, cols.tick, pa.int64()), pa.nulls(k, pa.int64())]),
        "container_id": pa.concat_arrays(
            [_array(rows, cols.container, pa.string()), pa.nulls(k, pa.string())]
        ),
        "host_id": pa.array(list(host) + idle, pa.string()),
    }
    for m_i, metric in enumerate(cols.metrics):
        columns[metric] = pa.concat_arrays(
            [_array(rows, metric, pa.float64()), pa.nulls(k, pa.float64())]
        )
        columns[f"capacity_{metric}"] = pa.array(hosts.capacity[np.r_[h, idle_i], m_i])
    columns["running"] = pa.array(np.r_[running, np.zeros(k, bool)]).cast(pa.bool_())
    for lineage, typ in (("_source", pa.string()), ("_offset", pa.int64())):
        if lineage in rows.column_names:
            columns[lineage] = pa.concat_arrays([_array(rows, lineage, typ), pa.nulls(k, typ)])
    return pa.table(columns)


def _array(table: pa.Table, name: str, typ: pa.DataType) -> pa.Array:
    return pc.cast(table[name], typ, safe=False).combine_chunks()
