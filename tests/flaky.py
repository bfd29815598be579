"""Processors that fail on purpose, for the run-retry tests."""

from pathlib import Path

import pyarrow as pa
from pydantic import Field

from headwater.config import ComponentConfig
from headwater.errors import HeadwaterError
from headwater.processors.base import Processor


class FlakyConfig(ComponentConfig):
    counter: str = Field(description="File counting the attempts.")
    failures: int = Field(default=1, description="Attempts that fail before one succeeds.")
    transient: bool = True


class Flaky(Processor):
    """Fails the first ``failures`` attempts, as a broker that is briefly away would."""

    Config = FlakyConfig

    def process(self, table: pa.Table) -> pa.Table:
        path = Path(self.config.counter)
        attempt = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(attempt))
        if attempt <= self.config.failures:
            raise HeadwaterError(f"attempt {attempt} failed", transient=self.config.transient)
        return table
