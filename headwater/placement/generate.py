"""Generated clusters with correlated usage and an overloaded starting placement.

Containers follow one of a few daily-like profiles (phase-shifted sine waves plus noise);
containers of a profile rise and fall together. A hidden placement spreads every profile
over all hosts, and capacities are set so that it fits with ``slack`` to spare: a feasible
placement exists. The starting placement packs containers of the same profile together, so
hosts overload at their profile's peak. ``slack < 0`` makes a cluster no placement can fit.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from headwater.placement.model import ClusterModel, host_loads


def generate(
    containers: int,
    hosts: int,
    ticks: int = 24,
    profiles: int = 4,
    slack: float = 0.15,
    seed: int = 0,
    period: int | None = None,
) -> ClusterModel:
    """``period``: ticks per cycle of the profiles (default: the whole series is one)."""
    rng = np.random.default_rng(seed)
    profile = rng.integers(profiles, size=containers)
    phase = profile * (2 * np.pi / profiles)
    t = np.arange(ticks)
    base = rng.uniform(0.2, 1.0, size=containers)
    swing = rng.uniform(0.5, 1.5, size=containers)
    wave = np.sin(2 * np.pi * t[None, :] / (period or ticks) + phase[:, None])
    noise = rng.normal(0, 0.05, size=(containers, ticks))
    usage = np.maximum(base[:, None] + swing[:, None] * (wave + 1) / 2 + noise, 0.01)
    usage = np.round(usage, 3)[:, :, None]
    hidden = _spread(profile, swing, hosts)
    peak = host_loads(hidden, usage, hosts)[:, :, 0].max()
    capacity = np.full((hosts, 1), round(peak * (1 + slack), 3))
    start = _packed(profile, hosts)
    return ClusterModel(
        hosts=[f"h{i}" for i in range(hosts)],
        capacity=capacity,
        containers=[f"c{i}" for i in range(containers)],
        host_of=start,
        usage=usage,
        ticks=t.astype(np.int64),
    )


def _spread(profile: np.ndarray, size: np.ndarray, hosts: int) -> np.ndarray:
    """Deal containers, profile by profile and largest first, round-robin over hosts."""
    order = np.lexsort((-size, profile))
    out = np.empty(len(profile), dtype=np.int64)
    out[order] = np.arange(len(profile)) % hosts
    return out


def _packed(profile: np.ndarray, hosts: int) -> np.ndarray:
    """Containers sorted by profile, cut into equal runs: same profile, same host."""
    order = np.argsort(profile, kind="stable")
    out = np.empty(len(profile), dtype=np.int64)
    out[order] = np.arange(len(profile)) * hosts // len(profile)
    return out


def usage_table(model: ClusterModel) -> pa.Table:
    """HOTS's ``container_usage.csv`` rows for the model (the starting placement)."""
    c, t, _ = model.usage.shape
    ci = np.repeat(np.arange(c), t)
    ti = np.tile(np.arange(t), c)
    order = np.lexsort((ci, model.ticks[ti]))
    return pa.table(
        {
            "timestamp": pa.array(model.ticks[ti][order]),
            "container_id": pa.array(np.array(model.containers)[ci[order]]),
            "machine_id": pa.array(np.array(model.hosts)[model.host_of[ci[order]]]),
            "cpu": pa.array(model.usage[ci[order], ti[order], 0]),
        }
    )


def hosts_table(model: ClusterModel) -> pa.Table:
    """HOTS's ``node_meta.csv`` rows."""
    return pa.table({"machine_id": model.hosts, "cpu": model.capacity[:, 0]})
