"""``placement``: a cluster model in (a ``cluster_model`` stream), the batch's moves out.

Each output row is a move in HOTS's format — ``container_name, old_host, new_host, time``,
where ``time`` is the window's last tick: the move applies from the next one. The
strategy (``headwater.strategies``) sees the window's usage series; the figures go to the
stream's metadata: the window as it ran (``before_*``), the same window replayed with the
moves in place (``after_*``, the strategy's prediction for a window like it), the rows the
model ignored, whether the strategy could only do its best, and a heatmap PNG of host load.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from headwater.arrow import dictionary_codes
from headwater.config import ComponentConfig
from headwater.placement import plugins
from headwater.placement.evaluate import (
    Move,
    loads_over_time,
    moves_to,
    placements_over_time,
    score,
)
from headwater.placement.model import (
    DECISION_TICK_KEY,
    NO_DECISION,
    REFUSED_KEY,
    ClusterModel,
    utilisation,
)
from headwater.processors.base import Processed, Processor
from headwater.quarantine import no_rejects

#: Figures that only make sense after moves (the window as it ran has none).
MOVE_FIGURES = {
    "before_moves",
    "before_moves_per_container",
    "before_moved_containers",
    "before_solve_seconds",
}
MOVES_SCHEMA = pa.schema(
    [
        pa.field("container_name", pa.string()),
        pa.field("old_host", pa.string()),
        pa.field("new_host", pa.string()),
        pa.field("time", pa.int64()),
    ]
)


class PlacementConfig(ComponentConfig):
    strategy: plugins.reference("strategies") = Field(  # type: ignore[valid-type]
        description="A strategy (headwater.strategies): balance, workload_balance, "
        "consolidate, or {name: {settings}}."
    )
    metrics: list[str] = Field(default=["cpu"], min_length=1, description="Metric columns.")
    heatmap: bool = Field(default=True, description="Draw host load before/after as a PNG.")


class Placement(Processor):
    Config = PlacementConfig

    def __init__(self, config: PlacementConfig, ctx):
        super().__init__(config, ctx)
        self.strategy = plugins.build("strategies", *config.strategy, ctx)

    def process(self, table: pa.Table) -> Processed:
        model = model_from_table(table, self.config.metrics)
        if not len(model.ticks):  # every row refused, or held back for the next batch
            return self._no_decision(table)
        started = time.perf_counter()
        plan = self.strategy.decide(model)
        seconds = time.perf_counter() - started
        moved = np.flatnonzero(plan.host_of != model.host_of)
        model = window_of(model, table)  # history informs the strategy; the window is scored
        at = int(model.ticks[-1]) if len(model.ticks) else 0
        replay = moves_to(model, plan.host_of)
        before, after = score(model), score(model, replay, seconds)
        meta: dict[str, Any] = {
            "strategy": self.config.strategy[0],
            "best_effort": bool(plan.best_effort),
            "rows_ignored": int((table.schema.metadata or {}).get(REFUSED_KEY, b"0")),
            "window": [int(model.ticks[0]), at] if len(model.ticks) else [],
            **{k: v for k, v in before.as_dict("before_").items() if k not in MOVE_FIGURES},
            **after.as_dict("after_"),
            **{f"strategy_{k}": v for k, v in plan.notes.items()},
        }
        if self.config.heatmap and len(model.ticks) and len(model.hosts):
            meta["heatmap"] = str(self._heatmap(model, replay, meta["window"]))
        moves = pa.table(
            {
                "container_name": pa.array([model.containers[c] for c in moved], pa.string()),
                "old_host": pa.array([model.hosts[model.host_of[c]] for c in moved], pa.string()),
                "new_host": pa.array([model.hosts[plan.host_of[c]] for c in moved], pa.string()),
                "time": pa.array(np.full(len(moved), at), pa.int64()),
            },
            schema=MOVES_SCHEMA,
        )
        moves = moves.replace_schema_metadata({DECISION_TICK_KEY: str(at).encode()})
        return Processed(moves, no_rejects(), meta)

    def _no_decision(self, table: pa.Table) -> Processed:
        """A window that modelled no tick decides nothing: its moves sink leaves what was
        applied as it is (a decision at tick 0 used to replace the moves logged there)."""
        meta = {
            "strategy": self.config.strategy[0],
            "decision": "none: the window modelled no tick",
            "rows_ignored": int((table.schema.metadata or {}).get(REFUSED_KEY, b"0")),
            "window": [],
        }
        moves = MOVES_SCHEMA.empty_table().replace_schema_metadata({DECISION_TICK_KEY: NO_DECISION})
        return Processed(moves, no_rejects(), meta)

    def _heatmap(self, model: ClusterModel, moves: list[Move], window: list[int]):
        from headwater.placement.heatmap import render

        path = self.ctx.lake.component_dir(self.ctx.pipeline, "_placement", self.ctx.where)
        util = [
            utilisation(loads_over_time(model, placements_over_time(model, m)), model.capacity)
            for m in ((), moves)
        ]
        return render(
            path / f"heatmap-{window[0]}-{window[1]}.png",
            util[0].max(axis=2),
            util[1].max(axis=2),
            model.hosts,
            model.ticks,
        )


def model_from_table(table: pa.Table, metrics: list[str]) -> ClusterModel:
    """The arrays of a ``cluster_model`` table: running containers, every host."""
    caps = [f"capacity_{m}" for m in metrics]
    missing = [
        c
        for c in ("tick", "container_id", "host_id", *metrics, *caps, "running")
        if c not in table.column_names
    ]
    if missing:
        from headwater.errors import ProcessorError

        raise ProcessorError(
            f"placement: input has no column(s) {missing}; expected a cluster_model stream's "
            "output (set this stream's from: to the cluster_model stream)"
        )
    # numpy over whole columns, then a row selection: filtering the table copied every
    # column, a third of a small window's decision time
    hosts, host_code = _codes(table["host_id"])
    first = np.full(len(hosts), len(host_code))
    np.minimum.at(first, host_code, np.arange(len(host_code)))  # each host's first row
    capacity = np.column_stack([table[c].to_numpy(zero_copy_only=False)[first] for c in caps])
    tick_all, valid = _ticks(table)
    running = table["running"].fill_null(False).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(valid & running)
    tick = tick_all[rows].astype(np.int64)
    containers, ci = _codes(table["container_id"].take(pa.array(rows)))
    ticks = np.unique(tick_all[valid]).astype(np.int64)
    ti = np.searchsorted(ticks, tick)
    usage = np.zeros((len(containers), len(ticks), len(metrics)))
    for k, m in enumerate(metrics):
        usage[ci, ti, k] = table[m].to_numpy(zero_copy_only=False)[rows]
    last = np.lexsort((tick, ci))
    ends = np.r_[np.flatnonzero(np.diff(ci[last])), len(last) - 1] if len(last) else last
    host_of = host_code[rows][last[ends]]
    return ClusterModel(
        hosts=list(hosts),
        capacity=capacity,
        containers=list(containers),
        host_of=host_of.astype(np.int64),
        usage=usage,
        ticks=ticks.astype(np.int64),
        metrics=tuple(metrics),
    )


def window_of(model: ClusterModel, table: pa.Table) -> ClusterModel:
    """The model without the history ticks a cluster_model may carry."""
    if "history" not in table.column_names:
        return model
    ticks, valid = _ticks(table)
    now = valid & ~table["history"].fill_null(False).to_numpy(zero_copy_only=False)
    if not now.any():
        return model
    keep = model.ticks >= ticks[now].min()
    return dataclasses.replace(model, usage=model.usage[:, keep], ticks=model.ticks[keep])


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a string column, sorted, and each row's position among them:
    what ``np.unique(..., return_inverse=True)`` gives, but only the few distinct values
    are sorted."""
    values, codes = dictionary_codes(column)
    values = values.to_numpy(zero_copy_only=False).astype(str)
    order = np.argsort(values, kind="stable")
    rank = np.empty(len(values), np.int64)
    rank[order] = np.arange(len(values))
    return values[order], rank[codes]


def _ticks(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The tick column as numbers, and where it is not null."""
    column = table["tick"]
    ticks = column.to_numpy(zero_copy_only=False)  # floats, NaN for nulls, if it has any
    if not column.null_count:
        return ticks, np.ones(len(ticks), dtype=bool)
    return ticks, ~np.isnan(ticks)
