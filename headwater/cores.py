"""How many threads headwater's compiled helpers (decoding, batch file reads) may use."""

from __future__ import annotations

import os

#: Threads never exceed this, however many cores the machine has.
MAX_THREADS = 8


def threads() -> int:
    """The cores this process may run on (a pinned process gets what it is pinned to)."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_THREADS))
