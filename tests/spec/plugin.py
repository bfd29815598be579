"""A third-party-style processor, found by import path from a spec."""

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from headwater.config import ComponentConfig
from headwater.processors.base import Processor


class TopConfig(ComponentConfig):
    column: str = Field(description="Column to rank by.")
    n: int = Field(gt=0, description="Rows kept.")


class Top(Processor):
    """Keep the ``n`` rows with the largest ``column``."""

    Config = TopConfig

    def process(self, table: pa.Table) -> pa.Table:
        order = pc.sort_indices(table, sort_keys=[(self.config.column, "descending")])
        return table.take(order[: self.config.n])
