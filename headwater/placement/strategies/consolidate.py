"""``consolidate``: run the same containers on as few hosts as capacity allows.

The host with the fewest containers (then the least load) is emptied when every container
on it fits elsewhere at every tick and metric, each to the fullest host it fits on (best
fit); hosts are emptied one after the other until none can be or the move budget is spent.
It never creates an overload; overloads already there are ``balance``'s work.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from headwater.config import ComponentConfig
from headwater.placement.model import EPS, ClusterModel, host_loads
from headwater.placement.strategies.base import Plan, Strategy


class ConsolidateConfig(ComponentConfig):
    move_budget: int = Field(default=100, ge=0, description="Most containers moved per batch.")
    target_utilisation: float = Field(
        default=1.0, gt=0, le=1.0, description="Fill receiving hosts up to this fraction."
    )


class Consolidate(Strategy):
    Config = ConsolidateConfig

    def decide(self, model: ClusterModel) -> Plan:
        cap = model.capacity * self.config.target_utilisation
        host_of = model.host_of.copy()
        loads = host_loads(host_of, model.usage, len(model.hosts))
        moved, freed = 0, []
        while True:
            per_host = np.bincount(host_of, minlength=len(model.hosts))
            active = np.flatnonzero(per_host > 0)
            count = per_host[active]
            order = active[np.lexsort((loads[active].sum(axis=(1, 2)), count))]
            for h in order:
                plan = self._empty(int(h), host_of, loads, model.usage, cap, active)
                if plan is not None and moved + len(plan) <= self.config.move_budget:
                    for c, g in plan:
                        loads[host_of[c]] -= model.usage[c]
                        loads[g] += model.usage[c]
                        host_of[c] = g
                    moved += len(plan)
                    freed.append(model.hosts[int(h)])
                    break
            else:
                over = np.maximum(loads - model.capacity[:, None, :], 0).sum()
                return Plan(host_of, bool(over > EPS), {"hosts_freed": freed})

    def _empty(
        self,
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
