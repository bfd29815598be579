"""``consolidate``: run the same containers on as few hosts as capacity allows.

Two phases, as OpenStack Watcher's workload consolidation:

1. **Offload.** While a host is overloaded, the container whose leaving removes the most
   of its overload moves to the fullest running host it fits on at every tick and metric
   (best fit), or, when no running host has room, to an empty one. A host none of whose
   containers fits anywhere stays as it is (``balance`` trades overloads; this does not).
2. **Consolidate.** The host with the fewest containers (then the least load) is emptied
   when every container on it fits elsewhere at every tick and metric, each to the fullest
   host it fits on; hosts are emptied one after the other until none can be.

Both phases share ``move_budget``. No move creates an overload: a host receives a
container only where the two fit under ``target_utilisation`` at every tick and metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from headwater.config import ComponentConfig
from headwater.placement.model import EPS, ClusterModel, host_loads
from headwater.placement.strategies.base import MoveBudget, Plan, Strategy


class ConsolidateConfig(ComponentConfig):
    move_budget: int = Field(default=100, ge=0, description="Most containers moved per batch.")
    target_utilisation: float = Field(
        default=1.0, gt=0, le=1.0, description="Fill receiving hosts up to this fraction."
    )


class Consolidate(Strategy):
    Config = ConsolidateConfig

    def decide(self, model: ClusterModel) -> Plan:
        host_of = model.host_of.copy()
        work = _Work(
            model,
            host_of,
            host_loads(host_of, model.usage, len(model.hosts)),
            model.capacity * self.config.target_utilisation,
            MoveBudget(model.host_of, self.config.move_budget),
        )
        offloaded = 0
        while _offload(work):
            offloaded += 1
        freed = []
        while (h := _free_one(work)) is not None:
            freed.append(model.hosts[h])
        over = np.maximum(work.loads - model.capacity[:, None, :], 0).sum()
        notes = {"hosts_freed": freed, "moves_offloading": offloaded}
        return Plan(host_of, bool(over > EPS), notes)


@dataclass
class _Work:
    """The placement being built: each container's host, each host's load (H, T, M), the
    load a receiving host may reach, and the move budget."""

    model: ClusterModel
    host_of: np.ndarray
    loads: np.ndarray
    cap: np.ndarray
    budget: MoveBudget

    def move(self, c: int, h: int, g: int) -> None:
        self.loads[h] -= self.model.usage[c]
        self.loads[g] += self.model.usage[c]
        self.host_of[c] = g


def _offload(work: _Work) -> bool:
    """Make one move off an overloaded host (the most overloaded that can shed one); False
    when none can."""
    model, host_of, loads = work.model, work.host_of, work.loads
    volume = np.maximum(loads - model.capacity[:, None, :], 0).sum(axis=(1, 2))
    active = np.bincount(host_of, minlength=len(model.hosts)) > 0
    used, original = work.budget.used(host_of), work.budget.original
    for h in np.flatnonzero(volume > EPS)[np.argsort(-volume[volume > EPS], kind="stable")]:
        cs = np.flatnonzero(host_of == h)
        left = np.maximum(loads[h][None] - model.usage[cs] - model.capacity[h], 0)
        gain = volume[h] - left.sum(axis=(1, 2))  # the overload each one's leaving removes
        peak = model.usage[cs].max(axis=(1, 2))
        keep = gain > EPS
        cs = cs[keep][np.lexsort((peak[keep], -gain[keep]))]  # the most, then the smaller
        for c in cs:
            g = _best_fit(int(c), int(h), loads, model.usage, work.cap, active)
            if g is None:
                continue
            if used + int(g != original[c]) - int(h != original[c]) <= work.budget.limit:
                work.move(int(c), int(h), g)
                return True
    return False


def _free_one(work: _Work) -> int | None:
    """Empty the first host that can be (fewest containers, then least load); its index, or
    None when none can within the budget."""
    model, host_of, loads = work.model, work.host_of, work.loads
    per_host = np.bincount(host_of, minlength=len(model.hosts))
    active = np.flatnonzero(per_host > 0)
    order = active[np.lexsort((loads[active].sum(axis=(1, 2)), per_host[active]))]
    for h in order:
        plan = _empty(int(h), host_of, loads, model.usage, work.cap, active)
        if plan is None:
            continue
        trial = host_of.copy()
        for c, g in plan:
            trial[c] = g
        if work.budget.used(trial) > work.budget.limit:
            continue
        for c, g in plan:
            work.move(c, int(h), g)
        return int(h)
    return None


def _best_fit(
    c: int,
    h: int,
    loads: np.ndarray,
    usage: np.ndarray,
    cap: np.ndarray,
    active: np.ndarray,
) -> int | None:
    """The running host (else empty one) with the least room left where ``c`` fits at every
    tick and metric; None if it fits nowhere."""
    room = cap[:, None, :] - loads - usage[c][None]  # (H, T, M)
    fits = (room >= -EPS).all(axis=(1, 2))
    fits[h] = False
    slack = room.min(axis=(1, 2))
    for pool in (fits & active, fits & ~active):
        if pool.any():
            return int(np.flatnonzero(pool)[np.argmin(slack[pool])])
    return None


def _empty(
    h: int,
    host_of: np.ndarray,
    loads: np.ndarray,
    usage: np.ndarray,
    cap: np.ndarray,
    active: np.ndarray,
) -> list[tuple[int, int]] | None:
    """Where each container of ``h`` goes (largest first), or None if one fits nowhere."""
    targets = active[active != h]
    if not len(targets):
        return None
    trial = loads[targets].copy()  # (G, T, M)
    cs = np.flatnonzero(host_of == h)
    cs = cs[np.argsort(-usage[cs].max(axis=(1, 2)), kind="stable")]
    plan = []
    for c in cs:
        after = trial + usage[c][None]
        room = cap[targets][:, None, :] - after  # (G, T, M)
        fits = (room >= -EPS).all(axis=(1, 2))
        if not fits.any():
            return None
        slack = np.where(fits, room.min(axis=(1, 2)), np.inf)
        j = int(slack.argmin())
        trial[j] += usage[c]
        plan.append((int(c), int(targets[j])))
    return plan
