"""Avro decoding speed: fastavro per message against the compiled path, on one core and on all.

The repo's ZTF sample (30 real alerts, schema versions 3.2 to 4.02) is repeated to --alerts
messages and decoded in batches of --batch. Each case runs --repeats times, each in a fresh
process; the median alerts/s is printed with its ratio to the baseline measured in the same
run, and the peak resident memory of the case's process.

* fastavro per message: ``fastavro.reader`` on each message, records as Python dicts (what a
  per-record broker does); the baseline.
* headwater fastavro: the decoder's slow path (per message, into Arrow).
* compiled, 1 core: the decoder's compiled path (headwater._native, in this process), the
  process pinned to one CPU: one decoding thread.
* compiled, all cores: one decoding thread per CPU, no pinning.

Only decoding is timed: building each batch's raw table (the source's work) is not. Peak
memory is the case's process (children included, if any).

    .venv/bin/python benchmarks/bench_decode.py --alerts 50000 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import tempfile
import time
from pathlib import Path

from common import REPO, in_fresh_processes, ztf_messages

CASES = {
    "fastavro per message (baseline)": ("fastavro-dicts", None),
    "headwater, fastavro engine": ("fastavro", None),
    "headwater, compiled, 1 core": ("compiled", 1),
    "headwater, compiled, all cores": ("compiled", None),
}


def case(engine: str, cores: int | None, cutouts: str, n: int, batch: int, out) -> None:
    import fastavro

    from headwater.batch import RawBatch, raw_table
    from headwater.component import Context
    from headwater.decoders.avro import AvroConfig, AvroDecoder
    from headwater.lake import Lake

    if cores:  # the decoder runs as many threads as the process has CPUs
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    msgs = ztf_messages(n)
    ctx = Context("bench", "bench", REPO, Lake(Path(tempfile.mkdtemp(prefix="hw-bench-"))))
    config = AvroConfig(cutouts=cutouts, engine="fastavro" if engine != "compiled" else engine)
    decoder = AvroDecoder(config, ctx)
    rows, seconds = 0, 0.0
    if engine == "compiled":  # first-use costs (schemas parsed, threads) before the clock
        decoder.decode(RawBatch(raw_table(["m"] * 30, list(range(30)), msgs[:30])))
    for start in range(0, n, batch):
        chunk = msgs[start : start + batch]
        # the raw batch is the source's work (reading files or Kafka): not timed here
        raw = RawBatch(raw_table(["m"] * len(chunk), list(range(start, start + len(chunk))), chunk))
        t0 = time.perf_counter()
        if engine == "fastavro-dicts":
            rows += sum(len(list(fastavro.reader(io.BytesIO(m)))) for m in chunk)
        else:
            rows += decoder.decode(raw).table.num_rows
        seconds += time.perf_counter() - t0
        del raw
    assert rows == n, f"decoded {rows} rows from {n} alerts"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out.put((n / seconds, peak / 1024))


def measure(name: str, cutouts: str, args) -> tuple[float, float]:
    engine, cores = CASES[name]
    return in_fresh_processes(case, (engine, cores, cutouts, args.alerts, args.batch), args.repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cutouts", choices=["keep", "drop", "both"], default="both")
    args = ap.parse_args()
    print(
        f"ZTF sample repeated to {args.alerts:,} alerts, batches of {args.batch:,}, "
        f"median of {args.repeats} runs, a fresh process each, {os.cpu_count()} CPUs"
    )
    print(f"{'case':<34} {'cutouts':<8} {'alerts/s':>9} {'x base':>7} {'peak MB':>8}")
    base = None
    for name in CASES:
        for cutouts in ("keep", "drop") if args.cutouts == "both" else (args.cutouts,):
            if name.startswith("fastavro per message") and cutouts == "drop":
                continue  # fastavro reads every field whatever the spec keeps
            rate, peak = measure(name, cutouts, args)
            base = base or rate
            print(
                f"{name:<34} {cutouts:<8} {rate:>9,.0f} {rate / base:>7.2f} {peak:>8,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
