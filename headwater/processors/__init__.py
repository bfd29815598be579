"""Processors of headwater; each module holds one component and its config model."""
