"""Score a placement over a window: the indicators HOTS and Watcher report, from one replay.

The same evaluator scores headwater's decisions, HOTS's moves log and the initial placement,
so numbers are comparable. A move logged at tick ``time`` applies from the next tick on
(HOTS's file connector does the same: the decision is taken after ``time`` was observed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from headwater.placement.model import EPS, ClusterModel, overload, utilisation


@dataclass(frozen=True)
class Move:
    container: int
    old_host: int
    new_host: int
    time: int  # the tick after which the move applies


@dataclass
class Metrics:
    overloaded_host_ticks: int
    overload_volume: float
    peak_utilisation: float
    mean_utilisation: float
    load_stddev: float  # mean over ticks of the std of normalised host load (Watcher)
    moves: int
    moves_per_container: float
    moved_containers: int
    hosts_used: int
    solve_seconds: float = 0.0

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        # vars, not dataclasses.asdict: the fields are numbers, and asdict's deep copy cost
        # more than the rest of a small window's scoring
        return {f"{prefix}{k}": _round(v) for k, v in vars(self).items()}


def _round(v: float | int) -> float | int:
    return round(v, 6) if isinstance(v, float) else v


def placements_over_time(model: ClusterModel, moves: Iterable[Move]) -> np.ndarray:
    """(C, T) host index per container and tick, starting from ``model.host_of``."""
    per_tick = np.repeat(model.host_of[:, None], len(model.ticks), axis=1)
    for move in sorted(moves, key=lambda m: m.time):
        first = int(np.searchsorted(model.ticks, move.time, side="right"))
        per_tick[move.container, first:] = move.new_host
    return per_tick


def loads_over_time(model: ClusterModel, per_tick: np.ndarray) -> np.ndarray:
    """(H, T, M) host loads when each container's host may change from tick to tick."""
    _, t, m = model.usage.shape
    h = len(model.hosts)
    flat = (per_tick * t + np.arange(t)[None, :]).ravel()  # (host, tick) cell of each value
    out = np.zeros((h * t, m))
    for k in range(m):
        out[:, k] = np.bincount(flat, weights=model.usage[:, :, k].ravel(), minlength=h * t)
    return out.reshape(h, t, m)


def effective_moves(model: ClusterModel, moves: Iterable[Move]) -> list[Move]:
    """Moves that change a host: a logged move to the host a container is already on (HOTS
    logs some) is not a migration."""
    current = model.host_of.copy()
    out = []
    for move in sorted(moves, key=lambda m: m.time):
        if current[move.container] != move.new_host:
            out.append(Move(move.container, int(current[move.container]), move.new_host, move.time))
            current[move.container] = move.new_host
    return out


def score(model: ClusterModel, moves: Iterable[Move] = (), solve_seconds: float = 0.0) -> Metrics:
    """Replay the window with ``moves`` applied from their tick on, and score it."""
    real = effective_moves(model, moves)
    per_tick = placements_over_time(model, real)
    loads = loads_over_time(model, per_tick)
    over = overload(loads, model.capacity)
    util = utilisation(loads, model.capacity)
    busy = util.max(axis=2)  # a host is as loaded as its most used metric
    n_containers = max(len(model.containers), 1)
    return Metrics(
        overloaded_host_ticks=int((over > EPS).sum()),
        overload_volume=float(over.sum()),
        peak_utilisation=float(busy.max()) if busy.size else 0.0,
        mean_utilisation=float(busy.mean()) if busy.size else 0.0,
        load_stddev=float(busy.std(axis=0).mean()) if busy.size else 0.0,
        moves=len(real),
        moves_per_container=len(real) / n_containers,
        moved_containers=len({m.container for m in real}),
        hosts_used=len(np.unique(per_tick[:, -1])) if per_tick.size else 0,
        solve_seconds=solve_seconds,
    )


def moves_to(model: ClusterModel, host_of: np.ndarray) -> list[Move]:
    """The moves that put ``host_of`` in place from the window's first tick (a move at
    ``t`` applies from ``t + 1``): a strategy's plan replayed over the window it decided on."""
    first = int(model.ticks[0]) - 1 if len(model.ticks) else 0
    moved = np.flatnonzero(host_of != model.host_of)
    return [Move(int(c), int(model.host_of[c]), int(host_of[c]), first) for c in moved]


def moves_from_names(
    model: ClusterModel, records: Iterable[Mapping[str, object]], default_time: int
) -> list[Move]:
    """Moves given by name (a moves log, HOTS's or ours) as index moves on ``model``."""
    host_index = {h: i for i, h in enumerate(model.hosts)}
    container_index = {c: i for i, c in enumerate(model.containers)}
    out = []
    for r in records:
        c = container_index.get(str(r["container_name"]))
        new = host_index.get(str(r["new_host"]))
        old = host_index.get(str(r.get("old_host")), -1)
        if c is None or new is None:
            continue  # a container or host this window does not have
        out.append(Move(c, old, new, int(r.get("time", default_time))))  # type: ignore[arg-type]
    return out
