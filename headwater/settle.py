"""When a folder's listing can be kept: no change to the folder may go unseen after it.

Creating, removing or renaming a file sets its folder's modification time, which is how a
poll that stats only the folder knows its last listing still stands. But the time has a
granularity: a change within the same tick of that clock as the listing leaves the time as
it was (git's "racily clean" entries). A listing is kept only once the folder's time is
older than any such tick.

File systems with nanosecond times (ext4, XFS, Btrfs, tmpfs) stamp them from the kernel's
coarse clock, a tick of 1 to 10 ms; those with whole seconds (ext3, HFS+) or two (FAT) have
times with no fraction of a second. A time with a fraction is taken as fine-grained, and
settles after a tenth of a second; one without waits two seconds (a fine-grained time that
happens to fall on a whole second only waits longer than it needs to).
"""

from __future__ import annotations

#: How long a folder with whole-second times must have stood still.
COARSE_NS = 2_000_000_000
#: The same for times with a fraction of a second (ten times the coarsest kernel tick).
FINE_NS = 100_000_000


def settled(mtime_ns: int, now_ns: int) -> bool:
    """Whether a listing made at ``now_ns`` of a folder last changed at ``mtime_ns`` can be
    kept while that time stands."""
    wait = COARSE_NS if mtime_ns % 1_000_000_000 == 0 else FINE_NS
    return now_ns - mtime_ns > wait
