"""The moves a connector has applied, and which of them bear on a window.

A placement loop that runs for weeks logs 10^5 to 10^6 moves. Each batch's model used to
copy the whole log, filter it and resolve its rows against every move in it, so a batch's
cost grew with the history (100,000 logged moves made a 20-container window twenty times
slower). Here the log is kept as it grows (:class:`AppliedMoves`, extended in place while
the log is only appended to) and a window's look-up (:class:`MoveIndex`) costs what the
window and the moves logged since the last look-up hold.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any, overload

Move = dict[str, Any]  # HOTS's record: container_name, old_host, new_host, time (int)


class AppliedMoves(Sequence[Move]):
    """Moves in the order the connector logged them, indexed by decision tick.

    A connector extends the same object while its log only grows, and starts a new one
    when the log was replaced (a rerun rewrote a tick's moves): a reader that keeps what it
    derived from the first ``n`` moves of this object may go on from ``n``.
    """

    def __init__(self, moves: Iterable[Move] = ()):
        self._moves: list[Move] = []
        self._by_time: dict[int, list[Move]] = {}
        self.last_time: int | None = None  # the latest decision tick logged
        self.extend(moves)

    def extend(self, moves: Iterable[Move]) -> None:
        start = len(self._moves)
        self._moves.extend(moves)
        by_time = self._by_time
        added = self._moves[start:]
        for move in added:
            by_time.setdefault(move["time"], []).append(move)
        if added:
            last = max(map(itemgetter("time"), added))
            self.last_time = last if self.last_time is None else max(self.last_time, last)

    def at(self, time: int) -> list[Move]:
        """The moves decided at tick ``time``, in log order."""
        return list(self._by_time.get(time, ()))

    def __len__(self) -> int:
        return len(self._moves)

    @overload
    def __getitem__(self, index: int) -> Move: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Move]: ...

    def __getitem__(self, index):
        return self._moves[index]

    def __iter__(self) -> Iterator[Move]:
        return iter(self._moves)


#: A change of host: (tick from which it applies, its place in the log, container, host).
Change = tuple[int, int, str, str]


class MoveIndex:
    """The moves that decide where containers are during a window ``[start, end)``.

    A move logged at ``time`` applies from ``time + 1``. For rows from ``start`` on, only
    each container's latest move applied at or before ``start`` matters (later in the log
    wins a tie), plus every move applied after ``start`` and before ``end``. Moves applied by
    ``start`` are folded into one per container as windows advance; a window before the
    last one looked up (a rerun), or a log that was replaced, starts the fold again.
    """

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, log: Sequence[Move] | None) -> None:
        self._log = log
        self._read = 0  # moves of the log taken in
        self._upto: int | None = None  # moves applied at or before it are folded
        self._latest: dict[str, Change] = {}  # container -> its latest folded move
        self._later: list[Change] = []  # moves applied after _upto, in order

    def changes(self, log: Sequence[Move], start: int, end: int) -> list[Change]:
        """The folded moves (one per container, any order), then the moves applied in
        ``(start, end)`` in tick and log order."""
        if log is not self._log or (self._upto is not None and start < self._upto):
            self._reset(log)
        new = [
            (move["time"] + 1, seq, move["container_name"], move["new_host"])
            for seq, move in enumerate(log[self._read :], self._read)
        ]
        self._read = len(log)
        if self._upto is not None:  # moves logged late, for ticks already folded
            for change in (c for c in new if c[0] <= self._upto):
                self._fold(change)
            new = [c for c in new if c[0] > self._upto]
        self._later = sorted(self._later + new)  # runs already in order: linear
        k = bisect.bisect_right(self._later, (start, len(log)))
        # each is later than any folded before (those were applied by the last start)
        self._latest.update((change[2], change) for change in self._later[:k])
        del self._later[:k]
        self._upto = start
        k = bisect.bisect_left(self._later, (end, -1))
        return [*self._latest.values(), *self._later[:k]]

    def _fold(self, change: Change) -> None:
        held = self._latest.get(change[2])
        if held is None or change[:2] > held[:2]:
            self._latest[change[2]] = change
