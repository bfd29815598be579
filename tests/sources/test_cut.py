"""Cutting pending offset ranges into batches: in proportion over the partitions."""

from __future__ import annotations

import itertools
import random

import pytest

from headwater.sources.base import cut_across


def covered(batches) -> dict[tuple, list[tuple[int, int]]]:
    out: dict[tuple, list[tuple[int, int]]] = {}
    for ranges, _n in batches:
        for *ident, start, end in ranges:
            out.setdefault(tuple(ident), []).append((start, end))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_each_batch_takes_every_partition_in_proportion_to_its_backlog(seed):
    rng = random.Random(seed)
    pending = [["t", p, s, s + rng.randrange(0, 400)] for p, s in enumerate([0, 7, 1000, 3])]
    cap = rng.randrange(1, 150)
    batches = cut_across(pending, cap)
    total = sum(e - s for *_, s, e in pending)
    assert [n for _, n in batches] == [cap] * (total // cap) + (
        [total % cap] if total % cap else []
    )
    for ranges, n in batches:
        assert sum(e - s for *_, s, e in ranges) == n
    # every range read once, in order, with no gap
    spans = covered(batches)
    for _t, p, s, e in pending:
        if e > s:
            got = spans[("t", p)]
            assert got[0][0] == s and got[-1][1] == e
            assert all(a[1] == b[0] for a, b in itertools.pairwise(got))
    # a batch's share of a partition is its share of what was left, within one record
    left = {p: e - s for _t, p, s, e in pending}
    for ranges, n in batches:
        rest = sum(left.values())
        took = {p: e - s for _t, p, s, e in ranges}
        for p, size in left.items():
            assert abs(took.get(p, 0) - size * n / rest) < 1
        for p, k in took.items():
            left[p] -= k


def test_a_backlog_smaller_than_the_cap_is_one_batch():
    pending = [["t", 0, 5, 9], ["t", 1, 3, 3], ["t", 2, 0, 2]]
    assert cut_across(pending, 100) == [([["t", 0, 5, 9], ["t", 2, 0, 2]], 6)]
    assert cut_across([], 10) == []
