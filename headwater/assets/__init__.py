"""Dagster assets built from pipeline specs: every stream is an asset partitioned by window."""

from headwater.assets.streams import BatchRunConfig, build_stream_assets, partitions_for

__all__ = ["BatchRunConfig", "build_stream_assets", "partitions_for"]
