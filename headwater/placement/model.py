"""The cluster model: hosts with capacities, containers, the current placement, and each
container's usage series over the batch's window, as numpy arrays.

A container that reports nothing at a tick uses nothing there (zero), as in HOTS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

#: Tolerance on capacity: loads within this of capacity are not overloads (float sums).
EPS = 1e-9


@dataclass
class ClusterModel:
    hosts: list[str]
    capacity: np.ndarray  # (H, M) capacity per host and metric
    containers: list[str]
    host_of: np.ndarray  # (C,) index into hosts: the placement at the end of the window
    usage: np.ndarray  # (C, T, M) usage per container, tick and metric
    ticks: np.ndarray  # (T,) the window's ticks
    metrics: tuple[str, ...] = ("cpu",)
    ignored_rows: int = 0  # usage rows the collector refused (quarantined)
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(containers, hosts, ticks)."""
        return len(self.containers), len(self.hosts), len(self.ticks)

    def loads(self, host_of: np.ndarray | None = None) -> np.ndarray:
        """Host load (H, T, M) under a placement (default: the model's)."""
        return host_loads(self.host_of if host_of is None else host_of, self.usage, len(self.hosts))

    def placement_table(self, host_of: np.ndarray | None = None) -> pa.Table:
        placed = self.host_of if host_of is None else host_of
        return pa.table(
            {
                "container_id": pa.array(self.containers, pa.string()),
                "host_id": pa.array([self.hosts[h] for h in placed], pa.string()),
            }
        )


def host_loads(host_of: np.ndarray, usage: np.ndarray, n_hosts: int) -> np.ndarray:
    """Sum container usage per host: (C, T, M) → (H, T, M), one sorted reduce."""
    c, t, m = usage.shape
    out = np.zeros((n_hosts, t, m))
    if c == 0:
        return out
    order = np.argsort(host_of, kind="stable")
    hosts, starts = np.unique(host_of[order], return_index=True)
    out[hosts] = np.add.reduceat(usage[order], starts, axis=0)
    return out


def overload(loads: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Overload volume per host and tick (H, T): load above capacity, summed over metrics."""
    return np.maximum(loads - capacity[:, None, :], 0.0).sum(axis=2)


def utilisation(loads: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Load over capacity (H, T, M)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return loads / capacity[:, None, :]


#: Schema metadata a cluster_model table carries: how many input rows it refused.
REFUSED_KEY = b"headwater.rows_refused"
#: Schema metadata of a placement stream's moves: the tick the decision was taken at.
DECISION_TICK_KEY = b"headwater.decision_tick"
#: Its value when the window modelled no tick (every row refused or held back): no decision.
NO_DECISION = b"none"
