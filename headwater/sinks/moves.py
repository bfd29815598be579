"""``moves``: apply a ``placement`` stream's moves through the connector.

``connector: {file: path}`` appends them to a moves log in HOTS's format (default
``<lake>/<pipeline>/moves.jsonl``); ``connector: {kafka: topic}`` publishes them. The
``cluster_model`` processor reads the same connector back, so the next batch's model has
the moves applied (give both the same connector). A rerun replaces the moves of its
decision tick; applying the same moves again reports ``unchanged``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import Field

from headwater.config import ComponentConfig
from headwater.errors import SinkError
from headwater.placement.connectors import ConnectorConfig, connector_for
from headwater.placement.model import DECISION_TICK_KEY, NO_DECISION
from headwater.sinks.base import Sink, Target


class MovesSinkConfig(ComponentConfig):
    connector: ConnectorConfig = Field(default_factory=ConnectorConfig)


class MovesSink(Sink):
    Config = MovesSinkConfig

    def __init__(self, config: MovesSinkConfig, ctx):
        super().__init__(config, ctx)
        self.connector = connector_for(config.connector, ctx)

    def write(self, target: Target, table: pa.Table) -> dict[str, Any]:
        tick = (table.schema.metadata or {}).get(DECISION_TICK_KEY)
        if tick is None:
            raise SinkError(
                f"sink {self.ctx.where}: stream {target.stream} is not a placement stream's "
                "output (no decision tick); put the moves sink on a stream whose last "
                "processor is placement"
            )
        moves = table.select(["container_name", "old_host", "new_host", "time"]).to_pylist()
        # a window that modelled nothing decided nothing: the applied moves stand
        decided = tick != NO_DECISION
        status = self.connector.apply(moves, int(tick)) if decided else "no decision"
        return {
            "connector": self.config.connector.kind,
            "to": self.connector.target,
            "moves": len(moves),
            "status": status,
        }

    def close(self) -> None:
        self.connector.close()
