"""What the benchmarks share: the ZTF sample as messages, and cases run in fresh processes."""

from __future__ import annotations

import multiprocessing as mp
import statistics
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZTF_SAMPLES = REPO / "samples" / "ztf" / "alerts"


def ztf_messages(n: int) -> list[bytes]:
    """The repo's ZTF sample (30 real alerts, one message per file) repeated to n messages."""
    data = [f.read_bytes() for f in sorted(ZTF_SAMPLES.rglob("*.avro"))]
    return [data[i % len(data)] for i in range(n)]


def in_fresh_processes(target: Callable, args: tuple, repeats: int) -> tuple[float, float]:
    """Run ``target(*args, queue)`` ``repeats`` times, each in a new spawned process that puts
    ``(rate, peak MB)`` on the queue; return the median rate and the largest peak."""
    ctx = mp.get_context("spawn")
    rates, peaks = [], []
    for _ in range(repeats):
        queue = ctx.Queue()
        process = ctx.Process(target=target, args=(*args, queue))
        process.start()
        rate, peak = queue.get()
        process.join()
        rates.append(rate)
        peaks.append(peak)
    return statistics.median(rates), max(peaks)
