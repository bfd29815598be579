"""Placement strategies, found by name in the entry-point group ``headwater.strategies``."""
