"""A processor that marks that a batch is in flight, then dawdles: lets tests kill mid-batch."""

import time
from pathlib import Path

import pyarrow as pa
from pydantic import Field

from headwater.config import ComponentConfig
from headwater.processors.base import Processor


class SlowConfig(ComponentConfig):
    marker: str = Field(description="File created when a batch reaches this processor.")
    seconds: float = Field(default=0.0, ge=0)


class Slow(Processor):
    Config = SlowConfig

    def process(self, table: pa.Table) -> pa.Table:
        Path(self.config.marker).write_text(str(table.num_rows))
        time.sleep(self.config.seconds)
        return table
