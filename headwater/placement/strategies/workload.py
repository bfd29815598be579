"""``workload_balance``: OpenStack Watcher's threshold strategy.

A host whose mean utilisation over the window is above ``threshold`` sheds the container
that brings it closest to the cluster's mean utilisation, to the least loaded host that
stays under the threshold with it. Each round moves at most one container per host above
the threshold (Watcher's audit does the same); rounds repeat until no host is above it, no
move is possible, or the budget is spent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from headwater.config import ComponentConfig
from headwater.placement.model import EPS, ClusterModel, host_loads
from headwater.placement.strategies.base import Plan, Strategy


class WorkloadBalanceConfig(ComponentConfig):
    threshold: float = Field(
        default=0.8, gt=0, le=1.0, description="Mean utilisation above which a host sheds."
    )
    metric: str = Field(default="cpu", description="The metric the threshold applies to.")
    move_budget: int = Field(default=100, ge=0, description="Most containers moved per batch.")
    rounds: int | None = Field(
        default=None, ge=1, description="Rounds of one move per hot host; default until done."
    )
    respect_capacity: bool = Field(
        default=True,
        description="A host receives a container only where the two fit under its capacity "
        "at every tick and metric. false: the mean threshold alone decides, as in Watcher "
        "(a move may then overload the receiving host at its peak).",
    )


class WorkloadBalance(Strategy):
    Config = WorkloadBalanceConfig

    def validate_metric(self, model: ClusterModel) -> int:
        if self.config.metric not in model.metrics:
            raise ValueError(
                f"workload_balance: metric {self.config.metric!r} is not in the model's "
                f"metrics {list(model.metrics)}; set metric to one of them"
            )
        return model.metrics.index(self.config.metric)

    def decide(self, model: ClusterModel) -> Plan:
        m = self.validate_metric(model)
        cap = np.maximum(model.capacity[:, m], EPS)
        mean_use = model.usage[:, :, m].mean(axis=1)  # (C,) over the window
        host_of = model.host_of.copy()
        load = host_loads(host_of, model.usage[:, :, m : m + 1], len(model.hosts))
        util = load[:, :, 0].mean(axis=1) / cap
        # every metric's load per tick, kept up to date, when receiving hosts must not overload
        peaks = None
        if self.config.respect_capacity:
            peaks = _Peaks(host_loads(host_of, model.usage, len(model.hosts)), model)
        moved, rounds = 0, 0
        while moved < self.config.move_budget and (
            self.config.rounds is None or rounds < self.config.rounds
        ):
            rounds += 1
            hot = np.flatnonzero(util > self.config.threshold + EPS)
            hot = hot[np.argsort(-util[hot], kind="stable")]
            made = 0
            for h in hot:
                if moved >= self.config.move_budget:
                    break
                if self._shed(h, host_of, mean_use, cap, util, peaks):
                    made += 1
                    moved += 1
            if not made:
                break
        hot_left = int((util > self.config.threshold + EPS).sum())
        # the threshold is on the mean: a host under it may still be overloaded at its peak,
        # and best_effort says overloads remain, whatever the strategy aims at
        loads = (
            peaks.loads if peaks is not None else host_loads(host_of, model.usage, len(model.hosts))
        )
        over = bool((loads - model.capacity[:, None, :] > EPS).any())
        notes = {"rounds": rounds, "hosts_above_threshold": hot_left}
        return Plan(host_of, hot_left > 0 or over, notes)

    def _shed(
        self,
        h: int,
        host_of: np.ndarray,
        use: np.ndarray,
        cap: np.ndarray,
        util: np.ndarray,
        peaks: _Peaks | None,
    ) -> bool:
        cs = np.flatnonzero(host_of == h)
        if not len(cs):
            return False
        mean = util.mean()
        after = util[h] - use[cs] / cap[h]  # (k,) the host's utilisation without each one
        fits = util[None, :] + use[cs][:, None] / cap[None, :] <= self.config.threshold + EPS
        if peaks is not None:
            fits &= peaks.fits(cs)
        fits[:, h] = False
        usable = fits.any(axis=1)
        if not usable.any():
            return False
        closeness = np.where(usable, np.abs(after - mean), np.inf)
        k = int(closeness.argmin())
        c = int(cs[k])
        dest_util = np.where(fits[k], util, np.inf)
        g = int(dest_util.argmin())
        util[h] -= use[c] / cap[h]
        util[g] += use[c] / cap[g]
        host_of[c] = g
        if peaks is not None:
            peaks.move(c, h, g)
        return True


@dataclass
class _Peaks:
    """Each host's load per tick and metric, for receiving hosts that must not overload."""

    loads: np.ndarray  # (H, T, M)
    model: ClusterModel

    def fits(self, cs: np.ndarray) -> np.ndarray:
        """(containers, hosts): whether each container fits on each host at every tick."""
        after = self.loads[None] + self.model.usage[cs][:, None]  # (k, H, T, M)
        return (after <= self.model.capacity[None, :, None, :] + EPS).all(axis=(2, 3))

    def move(self, c: int, h: int, g: int) -> None:
        self.loads[h] -= self.model.usage[c]
        self.loads[g] += self.model.usage[c]
