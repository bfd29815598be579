"""``balance``: no overloaded host, then a lower peak, with as few moves as possible.

HOTS's idea — containers whose usage rises and falls together belong on different hosts —
done as a local search on the real series rather than on cluster averages:

1. **Overloads.** The most overloaded host gives up the container whose move removes the
   most overload (host-ticks above capacity, every metric), to the host where it adds the
   least; when no single move helps, a swap with a container elsewhere is tried. Ties go
   to the host holding the fewest containers of the same profile cluster (k-means on the
   series' shapes), then to the lower resulting peak.
2. **Peak.** While moves are left in the budget, the busiest host sheds a container when that
   lowers its peak utilisation by at least ``peak_gain`` without overloading anyone. Of the
   moves that bring both hosts under ``peak_target``, the one leaving the busy host the most
   room wins (the margin for ticks not seen yet); if none does, the lowest resulting peak.

Every candidate move of a step is scored at once: (containers on the host) x (hosts) x
ticks x metrics, as one array expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from headwater.config import ComponentConfig
from headwater.placement.model import EPS, ClusterModel, host_loads
from headwater.placement.profiles import profile_clusters
from headwater.placement.strategies.base import MoveBudget, Plan, Strategy

#: At most this many containers of other hosts are tried as swap partners in one step.
MAX_SWAP_PARTNERS = 4096


class BalanceConfig(ComponentConfig):
    move_budget: int = Field(default=100, ge=0, description="Most containers moved per batch.")
    peak_gain: float = Field(
        default=0.05,
        ge=0,
        description="Once no host is overloaded, move a container off the busiest host only "
        "if that lowers its peak utilisation by at least this much (0.05: five points of "
        "capacity); a value above 1 skips this phase.",
    )
    peak_target: float = Field(
        default=0.9,
        gt=0,
        description="Lower peaks only on hosts whose peak utilisation is above this: below it "
        "there is headroom enough, and a migration has a cost.",
    )
    target_utilisation: float = Field(
        default=1.0, gt=0, le=1.0, description="Treat this fraction of capacity as full."
    )
    clusters: int | None = Field(
        default=None, ge=1, description="Profile clusters (k-means); default √containers ≤ 16."
    )
    swaps: bool = Field(default=True, description="Try swaps when no single move helps.")
    seed: int = Field(default=0, description="Seed of the profile clustering.")


@dataclass
class _State:
    usage: np.ndarray  # (C, T, M)
    cap: np.ndarray  # (H, M)
    host_of: np.ndarray
    loads: np.ndarray  # (H, T, M)
    labels: np.ndarray
    budget: MoveBudget
    scale: float  # above any overload volume: the volume term stays below one host-tick

    def over(self, loads: np.ndarray, cap: np.ndarray) -> np.ndarray:
        """Overload of ``loads`` (..., T, M): overloaded ticks, then the volume over capacity
        as a fraction below one — fewer overloaded host-ticks first, then less overload."""
        excess = np.maximum(loads - cap[..., None, :], 0.0)
        ticks = (excess.max(axis=-1) > EPS).sum(axis=-1)
        return ticks + (excess / cap[..., None, :]).sum(axis=(-2, -1)) / self.scale

    def peak(self, loads: np.ndarray, cap: np.ndarray) -> np.ndarray:
        return (loads / cap[..., None, :]).max(axis=(-2, -1))

    def start(self) -> None:
        """Per-host overload and profile counts, kept up to date by :meth:`move`."""
        self.host_over = self.over(self.loads, self.cap)
        self.counts = np.zeros((len(self.cap), int(self.labels.max()) + 1))
        np.add.at(self.counts, (self.host_of, self.labels), 1)
        self.moved = self.budget.used(self.host_of)

    def move(self, c: int, g: int) -> None:
        h = self.host_of[c]
        self.moved += int(g != self.budget.original[c]) - int(h != self.budget.original[c])
        self.loads[h] -= self.usage[c]
        self.loads[g] += self.usage[c]
        self.host_of[c] = g
        self.counts[h, self.labels[c]] -= 1
        self.counts[g, self.labels[c]] += 1
        self.host_over[[h, g]] = self.over(self.loads[[h, g]], self.cap[[h, g]])


class Balance(Strategy):
    Config = BalanceConfig

    def decide(self, model: ClusterModel) -> Plan:
        cfg = self.config
        state = _State(
            usage=model.usage,
            cap=np.maximum(model.capacity * cfg.target_utilisation, EPS),
            host_of=model.host_of.copy(),
            loads=host_loads(model.host_of, model.usage, len(model.hosts)),
            labels=profile_clusters(model.usage, cfg.clusters, cfg.seed),
            budget=MoveBudget(model.host_of, cfg.move_budget),
            scale=1.0 + float(model.usage.sum() / max(model.capacity.min(), EPS)),
        )
        state.start()
        if not len(model.containers) or len(model.hosts) < 2:
            return Plan(state.host_of, bool(state.over(state.loads, state.cap).sum() > EPS))
        steps = self._remove_overloads(state)
        steps += self._lower_peaks(state)
        left = float(state.over(state.loads, state.cap).sum())
        return Plan(
            state.host_of, left > EPS, {"steps": steps, "clusters": int(state.labels.max()) + 1}
        )

    # -- phase 1 --------------------------------------------------------------------------

    def _remove_overloads(self, s: _State) -> int:
        stuck = np.zeros(len(s.cap), dtype=bool)
        steps = 0
        while True:
            over = s.host_over.copy()
            over[stuck] = 0.0
            h = int(over.argmax())
            if over[h] <= EPS:
                return steps
            if self._best_move(s, h, over) or (self.config.swaps and self._best_swap(s, h, over)):
                steps += 1
                stuck[:] = False  # the landscape changed: every host may move again
            else:
                stuck[h] = True

    def _best_move(self, s: _State, h: int, over: np.ndarray) -> bool:
        cs = np.flatnonzero(s.host_of == h)
        if not len(cs):
            return False
        u = s.usage[cs]  # (k, T, M)
        over_all = s.host_over
        h_after = s.over(s.loads[h] - u, s.cap[h])  # (k,)
        g_loads = s.loads[None] + u[:, None]  # (k, H, T, M)
        g_after = s.over(g_loads, s.cap[None])  # (k, H)
        gain = (over_all[h] - h_after)[:, None] + over_all[None, :] - g_after
        gain[:, h] = -np.inf
        hosts = np.arange(len(s.cap))[None, :]
        cost = s.budget.cost(s.host_of, cs[:, None], hosts)
        gain[s.moved + cost > s.budget.limit] = -np.inf
        best = gain.max()
        if not np.isfinite(best) or best <= EPS:
            return False
        ci, gi = np.nonzero(gain >= best - 1e-9)  # the best moves; ties broken below
        same = s.counts[gi, s.labels[cs[ci]]]  # containers of its profile already there
        peak = s.peak(g_loads[ci, gi], s.cap[gi])
        pick = np.lexsort((peak, same))[0]
        s.move(int(cs[ci[pick]]), int(gi[pick]))
        return True

    def _best_swap(self, s: _State, h: int, over: np.ndarray) -> bool:
        cs = np.flatnonzero(s.host_of == h)
        over_all = s.host_over
        ds = np.flatnonzero((s.host_of != h) & (over_all[s.host_of] <= EPS))
        if not len(cs) or not len(ds):
            return False
        ds = ds[np.argsort(s.usage[ds].max(axis=(1, 2)), kind="stable")][:MAX_SWAP_PARTNERS]
        if s.moved + 2 > s.budget.limit:
            return False
        uc, ud = s.usage[cs][:, None], s.usage[ds][None]  # (k,1,T,M), (1,D,T,M)
        gd = s.host_of[ds]
        h_after = s.over(s.loads[h] - uc + ud, s.cap[h])  # (k, D)
        g_after = s.over(s.loads[gd][None] + uc - ud, s.cap[gd][None])  # (k, D)
        gain = over_all[h] + over_all[gd][None] - h_after - g_after
        i = int(gain.argmax())
        if gain.flat[i] <= EPS:
            return False
        c, d = divmod(i, len(ds))
        g = int(gd[d])
        s.move(int(cs[c]), g)
        s.move(int(ds[d]), h)
        return True

    # -- phase 2 --------------------------------------------------------------------------

    def _lower_peaks(self, s: _State) -> int:
        """Lower the cluster's peak: only the busiest host sheds, so moves stop as soon as
        the peak cannot drop by ``peak_gain`` (a smaller gain is not worth a migration)."""
        steps = 0
        while s.moved < s.budget.limit:
            peaks = s.peak(s.loads, s.cap)
            h = int(peaks.argmax())
            if peaks[h] <= self.config.peak_target or not self._shed_peak(s, h, float(peaks[h])):
                return steps
            steps += 1
        return steps

    def _shed_peak(self, s: _State, h: int, peak_h: float) -> bool:
        cs = np.flatnonzero(s.host_of == h)
        if len(cs) < 2:
            return False
        u = s.usage[cs]
        h_peak = s.peak(s.loads[h] - u, s.cap[h])  # (k,)
        g_loads = s.loads[None] + u[:, None]
        g_peak = s.peak(g_loads, s.cap[None])  # (k, H)
        g_over = s.over(g_loads, s.cap[None])
        worst = np.maximum(h_peak[:, None], g_peak)
        worst[:, h] = np.inf
        worst[g_over > EPS] = np.inf
        cost = s.budget.cost(s.host_of, cs[:, None], np.arange(len(s.cap))[None, :])
        worst[s.moved + cost > s.budget.limit] = np.inf
        gain = max(self.config.peak_gain, EPS)
        best = float(worst.min())
        if peak_h - best < gain:
            return False
        # when several moves bring every host they touch under peak_target, the goal, take
        # the one that relieves the busy host most: the window's peak is what was seen, the
        # relief is the margin left for the ticks to come
        i = int(worst.argmin())
        if best <= self.config.peak_target:
            relief = np.where(worst <= self.config.peak_target, h_peak[:, None], np.inf)
            i = int(np.lexsort((worst.ravel(), relief.ravel()))[0])
        c, g = divmod(i, len(s.cap))
        s.move(int(cs[c]), g)
        return True
