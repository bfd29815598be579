"""Dagster resources: thin wrappers that hand plain core objects to assets and sensors."""

from headwater.resources.kafka import KafkaResource
from headwater.resources.project import HeadwaterProject

__all__ = ["HeadwaterProject", "KafkaResource"]
