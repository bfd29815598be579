"""Container placement: a cluster model per batch, strategies that decide moves, an evaluator
that scores them, and connectors that apply them. Plain Python and numpy (no dagster).

Arrays, not records: a model holds ``usage[c, t, m]`` (containers x ticks x metrics) and
``host_of[c]``; host loads are one scatter-add; strategies evaluate every candidate move of a
step as one array expression.
"""
