"""The strategy contract: a cluster model in, a new placement out.

A strategy returns where every container should be (``host_of``); the moves are the
containers whose host changed. Strategies are deterministic for a given model: ties go to
the lowest index and any randomness is seeded from the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headwater.component import Component
from headwater.config import ComponentConfig
from headwater.placement.model import ClusterModel


@dataclass
class Plan:
    host_of: np.ndarray
    #: True when overloads remain that the strategy could not remove (budget or capacity).
    best_effort: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


class Strategy(Component):
    Config = ComponentConfig

    def decide(self, model: ClusterModel) -> Plan:
        raise NotImplementedError


class MoveBudget:
    """Counts containers away from their original host: moving one twice costs one move,
    moving it back home gives the move back."""

    def __init__(self, original: np.ndarray, limit: int):
        self.original = original
        self.limit = limit

    def used(self, host_of: np.ndarray) -> int:
        return int((host_of != self.original).sum())

    def cost(self, host_of: np.ndarray, containers: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Extra moves each (container, target) candidate would use; broadcasts."""
        away_now = host_of[containers] != self.original[containers]
        away_after = targets != self.original[containers]
        return away_after.astype(int) - away_now.astype(int)
