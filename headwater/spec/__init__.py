"""Pipeline specs: YAML files validated on load, with errors that say file, line and key."""

from headwater.spec.load import load_spec, parse_overrides
from headwater.spec.model import ComponentSpec, PipelineSpec, StreamSpec

__all__ = ["ComponentSpec", "PipelineSpec", "StreamSpec", "load_spec", "parse_overrides"]
