"""Collectors build the cluster model's placement, as Watcher's cluster data model collectors do:
a full rebuild every ``period`` batches, incremental updates from event notifications in
between. Found by name in the entry-point group ``headwater.collectors``.

The built-in ``usage`` collector:

- **rebuild**: a container is where its usage rows say, unless the connector's log says it
  was moved there since (a move logged at tick ``t`` applies from ``t + 1``);
- **incremental**: a container is where the previous batch left it, then moved by the log;
  usage rows only bring numbers (a container seen for the first time is placed where its
  row says, and counted as discovered);
- **events** (both modes): rows whose event type matches a pattern start a container on a
  host, stop it, or move it, from the event's tick on. Events matching no pattern are
  ignored and counted.

The state a batch leaves (where every container is at its last tick) is stored per window
end in the lake, so a rerun of a batch starts from the same state as its first run.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from headwater.atomic import replace_file
from headwater.component import Component
from headwater.config import ComponentConfig
from headwater.placement.applied import MoveIndex

STOPPED = ""  # the host of a stopped container


class EventPatterns(ComponentConfig):
    started: list[str] = Field(default=["container.started", "*.create.end"])
    stopped: list[str] = Field(default=["container.stopped", "*.delete.end"])
    moved: list[str] = Field(default=["container.moved", "*.migration.end"])


class UsageCollectorConfig(ComponentConfig):
    period: int = Field(
        default=1, ge=1, description="Full rebuild every this many batches; incremental between."
    )
    event_column: str = Field(default="event_type", description="Column naming an event's type.")
    events: EventPatterns = Field(
        default_factory=EventPatterns, description="Event types (glob patterns) per kind."
    )


@dataclass
class State:
    end: int  # first tick after the window this state closes
    since_rebuild: int = 0
    placement: dict[str, str] = field(default_factory=dict)
    #: Each running container's last modelled tick (the model fills it): a later row of
    #: the container at or before it is late. None: every row before ``end`` is.
    ticks: dict[str, int] | None = None


@dataclass
class Collected:
    row_host: np.ndarray  # (rows,) host per usage row, STOPPED where the container had stopped
    placement: dict[str, str]  # running containers at the window's end
    state: State
    notes: dict[str, Any]


@dataclass
class Changes:
    """Host changes: container, tick from which it applies, new host (STOPPED: stopped)."""

    container: list[np.ndarray] = field(default_factory=list)
    tick: list[np.ndarray] = field(default_factory=list)
    host: list[np.ndarray] = field(default_factory=list)

    def add(self, container: Any, tick: Any, host: Any) -> None:
        self.container.append(np.asarray(container, dtype=object))
        self.tick.append(np.asarray(tick, dtype=np.int64))
        self.host.append(np.asarray(host, dtype=object))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.container:
            empty = np.array([], dtype=object)
            return empty, np.array([], dtype=np.int64), empty
        return (
            np.concatenate(self.container),
            np.concatenate(self.tick),
            np.concatenate(self.host),
        )


class Collector(Component):
    Config = UsageCollectorConfig

    def collect(
        self,
        rows: dict[str, np.ndarray],
        events: dict[str, np.ndarray],
        previous: State | None,
        applied: Sequence[dict[str, Any]],
    ) -> Collected:
        raise NotImplementedError


class UsageCollector(Collector):
    def __init__(self, config: UsageCollectorConfig, ctx: Any):
        super().__init__(config, ctx)
        self._moves = MoveIndex()

    def collect(self, rows, events, previous, applied) -> Collected:
        ticks = rows["tick"]
        end = int(ticks.max()) + 1 if len(ticks) else (previous.end if previous else 0)
        # nothing placed yet (a state that holds back a first partial tick): nothing to update
        rebuild = (
            previous is None
            or not previous.placement
            or previous.since_rebuild + 1 >= self.config.period
        )
        changes = Changes()
        if not rebuild:
            base = previous.placement
            changes.add(list(base), np.full(len(base), np.iinfo(np.int64).min), list(base.values()))
        # the moves that decide where this window's rows are: not the whole log
        moves = self._moves.changes(applied, int(ticks.min()) if len(ticks) else end, end)
        if moves:
            tick, _, container, host = zip(*moves, strict=True)
            changes.add(container, tick, host)
        counts = self._events(events, changes, end)
        row_host, last = resolve(rows, changes)
        placement = {c: h for c, h in last.items() if h != STOPPED}
        discovered = 0 if rebuild else len(set(rows["container"]) - set(previous.placement))
        state = State(end, 0 if rebuild else previous.since_rebuild + 1, placement)
        notes = {
            "mode": "rebuild" if rebuild else "incremental",
            "discovered": discovered,
            **counts,
        }
        return Collected(row_host, placement, state, notes)

    def _events(self, events: dict[str, np.ndarray], changes: Changes, end: int) -> dict[str, int]:
        types, which = np.unique(events["type"].astype(str), return_inverse=True)
        kind = np.array([self._kind(t) for t in types] or [""], dtype=object)[which]
        use = (kind != "") & (events["tick"] < end)
        host = np.where(kind == "stopped", STOPPED, events["host"])
        if use.any():
            changes.add(events["container"][use], events["tick"][use], host[use])
        return {
            "events_applied": int(use.sum()),
            "events_ignored": int((kind == "").sum()),
        }

    def _kind(self, event_type: str) -> str:
        for kind in ("started", "stopped", "moved"):
            if any(fnmatch.fnmatchcase(event_type, p) for p in getattr(self.config.events, kind)):
                return kind
        return ""


def resolve(rows: dict[str, np.ndarray], changes: Changes) -> tuple[np.ndarray, dict[str, str]]:
    """Each row's host (the last change at or before its tick, else the row's own host) and
    each container's host at its last entry. One sort over changes and rows together."""
    cc, ct, ch = changes.arrays()
    n_changes = len(cc)
    if n_changes + len(rows["container"]) == 0:  # nothing placed, nothing to place
        return np.empty(0, dtype=object), {}
    container = np.concatenate([cc, rows["container"]]).astype(str)
    tick = np.concatenate([ct, rows["tick"].astype(np.int64)])
    host = np.concatenate([ch, rows["host"]]).astype(object)
    is_row = np.r_[np.zeros(n_changes, dtype=bool), np.ones(len(rows["container"]), dtype=bool)]
    order = np.lexsort((np.arange(len(tick)), is_row, tick, container))  # changes first at a tick
    c_sorted, change_at = container[order], np.where(~is_row[order], np.arange(len(order)), -1)
    last_change = np.maximum.accumulate(change_at)
    starts = np.r_[0, np.flatnonzero(c_sorted[1:] != c_sorted[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    effective = np.where(last_change >= group_start, host[order][last_change], host[order])
    row_host = np.empty(len(rows["container"]), dtype=object)
    rows_sorted = is_row[order]
    row_host[order[rows_sorted] - n_changes] = effective[rows_sorted]
    ends = np.r_[starts[1:], len(order)] - 1
    return row_host, dict(zip(c_sorted[ends], effective[ends], strict=True))


#: Schema metadata key of a state kept with its history (``state-<end>.arrow``).
STATE_KEY = b"headwater.state"


class StateStore:
    """Collector states of one stream, the newest ``keep``: one file per window end, the
    state as JSON (``state-<end>.json``), or with the usage rows kept for ``history_ticks``
    as an Arrow IPC file whose schema metadata holds the state (``state-<end>.arrow``). What
    this process wrote last is also kept in memory: the next batch reads it without going
    back to the disk."""

    def __init__(self, folder: Path, keep: int = 1000):
        self.folder = folder
        self.keep = keep
        self._states: dict[int, State] = {}
        self._history: dict[int, pa.Table] = {}
        self._held: dict[int, pa.Table] = {}
        # states counted by the last listing, and saved since: old ones are pruned once
        # a tenth more than ``keep`` are there, not with every save
        self._listed: int | None = None
        self._saved = 0

    def _files(self) -> dict[int, list[str]]:
        """Window end → its files, by one directory read (a pathlib glob cost more than the
        rest of a small batch's model)."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return {}
        out: dict[int, list[str]] = {}
        for name in names:
            kind, _, rest = name.partition("-")
            number, _, suffix = rest.partition(".")
            if f"{kind}.{suffix}" in KNOWN and number.isdigit():
                out.setdefault(int(number), []).append(name)
        return out

    def latest(self, at_most: int) -> State | None:
        """The state of the last window ending at or before ``at_most``. State names are of
        fixed width: that is the greatest name up to ``state-<at_most>.~``, found by string
        comparisons (parsing every name cost 1.5 ms a batch once a loop kept 1,000)."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            names = []
        states = [n for n in names if n.startswith("state-")]
        self._listed, self._saved = len(states), 0
        key = f"state-{at_most:020d}.~"
        candidates = [n for n in states if n <= key]
        name = None
        while candidates and name is None:
            best = max(candidates)
            if best[6:26].isdigit() and best[26:] in (".json", ".arrow"):
                name = best
            else:  # not a state file of this store's (someone else's file): passed over
                candidates.remove(best)
        if name is None:
            return None
        end = int(name[6:26])
        if name.endswith(".json") and name[:26] + ".arrow" in candidates:
            name = name[:26] + ".arrow"  # both, from a rerun cut short: the Arrow one
        if end in self._states:
            return self._states[end]
        if name.endswith(".arrow"):
            with pa.memory_map(str(self.folder / name)) as f:
                data = json.loads(pa.ipc.open_file(f).schema.metadata[STATE_KEY])
        else:
            data = json.loads((self.folder / name).read_text())
        return State(data["end"], data["since_rebuild"], data["placement"], data.get("ticks"))

    def history(self, end: int) -> pa.Table | None:
        """The usage rows kept by the window ending at ``end`` (see ``history_ticks``)."""
        if end in self._history:
            return self._history[end]
        for name, read in (
            (f"state-{end:020d}.arrow", _read_ipc),
            (f"usage-{end:020d}.parquet", pq.read_table),
        ):
            if (self.folder / name).exists():
                return read(self.folder / name)
        return None

    def held(self, end: int) -> pa.Table | None:
        """The rows held back by the window ending at ``end``: its next tick, which not
        every container had reported (see ``hold_partial_tick``), and events from it on."""
        if end in self._held:
            return self._held[end]
        path = self.folder / f"held-{end:020d}.arrow"
        return _read_ipc(path) if path.exists() else None

    def save_held(self, end: int, rows: pa.Table) -> None:
        """Keep ``rows`` as held back at ``end`` (pruned with the state ending there)."""
        replace_file(self.folder / f"held-{end:020d}.arrow", _ipc_bytes(rows))
        self._held = {end: rows}

    def save(self, state: State, history: pa.Table | None = None) -> None:
        """Keep ``state``, with ``history`` (the rows the next window looks back over) in
        the same file: one write a batch. Arrow IPC, not Parquet: a few hundred rows a
        window, read back once; Parquet's encoding took 0.6 ms of a 20-container window's
        6. Read back only by another process (a rerun, the next Dagster run)."""
        text = json.dumps(state.__dict__, sort_keys=True)
        if history is None:
            replace_file(self.folder / f"state-{state.end:020d}.json", text.encode())
        else:
            table = history.replace_schema_metadata({STATE_KEY: text.encode()})
            replace_file(self.folder / f"state-{state.end:020d}.arrow", _ipc_bytes(table))
            self._history = {state.end: history}
        other = "json" if history is not None else "arrow"  # a rerun kept it the other way
        (self.folder / f"state-{state.end:020d}.{other}").unlink(missing_ok=True)
        self._states = {state.end: state}
        self._saved += 1
        if self._listed is None or self._listed + self._saved > self.keep + self.keep // 10:
            self._prune()

    def _prune(self) -> None:
        files = self._files()
        old = sorted(files)[: max(0, len(files) - self.keep)]
        for end in old:
            for name in files[end]:
                (self.folder / name).unlink(missing_ok=True)
        self._listed, self._saved = len(files) - len(old), 0


#: The files of a state store: states (JSON, or Arrow IPC with the history), the rows
#: held back at a window's end, and the history earlier versions kept beside a JSON state
#: as Parquet.
KNOWN = {"state.json", "state.arrow", "usage.parquet", "held.arrow"}


def _ipc_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    # a large cluster's history is compressed: 10,000 containers' day is 18 MB, and writing
    # that cost 50 ms a window; LZ4 makes it 8 MB in 8 ms (small ones stay plain:
    # compressing a few kB costs more than it saves)
    options = pa.ipc.IpcWriteOptions(compression="lz4") if table.nbytes > 1 << 20 else None
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _read_ipc(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as f:
        table = pa.ipc.open_file(f).read_all()
    return table.replace_schema_metadata(None)
