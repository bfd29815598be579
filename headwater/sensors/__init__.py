"""Dagster sensors built from pipeline specs: cut batches and request one run per batch."""

from headwater.sensors.batches import build_batch_sensor

__all__ = ["build_batch_sensor"]
