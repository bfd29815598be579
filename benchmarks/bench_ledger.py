"""Cutting batches against a long ledger: what a scan of every recorded batch costs.

    python benchmarks/bench_ledger.py [--batches 20000] [--repeats 5]

Each cut (a sensor tick, a stream worker's poll, ``headwater run``) scans the ledger for
the batches recorded and pending. The ledger is one file per batch in a folder per time
window; a pipeline that runs for months records 10^5 batches and more. Printed, medians:
a new process's first scan (every entry read), a later scan while the window is active
(its folder listed, pending entries and new names read), and a later scan once the window
has settled (its listing kept), with the last two as ratios to the first; then what a
stream worker spends scanning in the ``--after`` seconds after a batch completes, polling
every 50 ms (the CPU seconds, and the scans that listed the folder).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from headwater.batch import Batch
from headwater.ledger import Ledger
from headwater.settle import COARSE_NS


def fill(root: Path, n: int) -> None:
    ledger = Ledger(root)
    for i in range(n):
        batch = Batch(
            pipeline="bench",
            id=f"b{i:08d}",
            window="2026-11-24",
            source="usage",
            coordinates={"file": "/data/usage.csv", "lines": [i * 120, i * 120 + 120]},
            created_at="2026-11-24T00:00:00+00:00",
            records=120,
            seq=i,
        )
        ledger.record(batch)
        ledger.complete(batch, {"messages": 120, "seconds": 0.004})


def scan(ledger: Ledger, touch: Path | None = None) -> float:
    if touch is not None:  # a batch just completed there: the window is active
        os.utime(touch)
    started = time.perf_counter()
    list(ledger.entries())
    return time.perf_counter() - started


def after_change(ledger: Ledger, seconds: float) -> tuple[float, int]:
    """(CPU seconds, polls) of a worker scanning every 50 ms for ``seconds`` after the
    last batch was completed again (a rename into the window's folder, as a run does)."""
    last = ledger.window("2026-11-24")[-1].batch
    ledger.complete(last, {"messages": 120, "seconds": 0.004})
    polls = 0
    started, cpu = time.monotonic(), time.process_time()
    while time.monotonic() - started < seconds:
        list(ledger.entries())
        polls += 1
        time.sleep(0.05)
    return time.process_time() - cpu, polls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--after", type=float, default=3.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fill(root, args.batches)
        first = statistics.median(scan(Ledger(root)) for _ in range(args.repeats))
        ledger, folder = Ledger(root), root / "window=2026-11-24"
        scan(ledger)
        active = statistics.median(scan(ledger, folder) for _ in range(args.repeats))
        old = time.time_ns() - 5 * COARSE_NS
        os.utime(folder, ns=(old, old))
        scan(ledger)
        settled = statistics.median(scan(ledger) for _ in range(args.repeats))
        worker = [after_change(ledger, args.after) for _ in range(args.repeats)]
    cpu = statistics.median(w[0] for w in worker)
    polls = statistics.median(w[1] for w in worker)
    print(f"ledger of {args.batches} batches, median of {args.repeats} scans")
    print(f"first scan (new process)  {first * 1000:9.1f} ms")
    print(f"active window             {active * 1000:9.1f} ms  {active / first:.2f}x")
    print(f"settled window            {settled * 1000:9.2f} ms  {settled / first:.4f}x")
    print(
        f"a worker's scans in the {args.after:g} s after a batch completes: {cpu * 1000:.0f} ms "
        f"of CPU over {polls:.0f} polls ({cpu / args.after:.0%} of a core)"
    )


if __name__ == "__main__":
    main()
