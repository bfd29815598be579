"""Throughput of the ZTF pipeline's core: decode, decode+filter, decode+filter+Parquet.

The repo's ZTF sample is repeated to --alerts messages and cut into batches of --batch.
Every case runs --repeats times in a fresh process; the median alerts/s and the process's
peak RSS are printed, with the ratio to a baseline measured in the same run: fastavro's
reader per message into Python dicts (what a per-record broker does).

    .venv/bin/python benchmarks/bench_pipeline.py --alerts 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

from common import REPO, in_fresh_processes, ztf_messages

QUERY = "select * from batch where candidate.rb > 0.65 and candidate.magpsf < 19"


def case(name: str, cutouts: str, n: int, batch: int, out: mp.Queue) -> None:
    import fastavro

    from headwater.batch import Batch, RawBatch, raw_table
    from headwater.component import Context
    from headwater.decoders.avro import AvroConfig, AvroDecoder
    from headwater.lake import Lake
    from headwater.processors.solar_system import SolarSystem, SolarSystemConfig
    from headwater.processors.sql import Sql, SqlConfig
    from headwater.sinks.base import Target
    from headwater.sinks.parquet import ParquetConfig, ParquetSink

    msgs = ztf_messages(n)
    tmp = Path(tempfile.mkdtemp(prefix="hw-bench-"))
    ctx = Context("bench", "bench", REPO, Lake(tmp))
    decoder = AvroDecoder(AvroConfig(cutouts=cutouts), ctx)
    sso = SolarSystem(SolarSystemConfig(action="include"), ctx)
    nosso = SolarSystem(SolarSystemConfig(action="exclude"), ctx)
    sql = Sql(SqlConfig(query=QUERY), ctx)
    sink = ParquetSink(ParquetConfig(), ctx)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        chunk = msgs[start : start + batch]
        if name == "fastavro per message (baseline)":
            for m in chunk:
                list(fastavro.reader(io.BytesIO(m)))
            continue
        raw = RawBatch(raw_table(["m"] * len(chunk), list(range(len(chunk))), chunk))
        table = decoder.decode(raw).table
        if name == "decode":
            continue
        outputs = {
            "raw": table,
            "solar_system": sso(table).table,
            "extragalactic": sql(nosso(table).table).table,
        }
        if name == "decode+filter":
            continue
        b = Batch("bench", f"b{start}", "w", "files", {}, "", len(chunk))
        for stream, t in outputs.items():
            sink.write(Target("bench", stream, b), t)
    seconds = time.perf_counter() - t0
    out.put((n / seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(name: str, cutouts: str, n: int, batch: int, repeats: int) -> tuple[float, float]:
    return in_fresh_processes(case, (name, cutouts, n, batch), repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(
        f"ZTF sample repeated to {args.alerts} alerts, batches of {args.batch}, "
        f"median of {args.repeats} runs, one process each"
    )
    base, base_mem = measure(
        "fastavro per message (baseline)", "keep", args.alerts, args.batch, args.repeats
    )
    print(f"{'case':<40} {'cutouts':<8} {'alerts/s':>10} {'x base':>7} {'peak MB':>8}")
    print(
        f"{'fastavro per message (baseline)':<40} {'keep':<8} {base:>10,.0f} {1:>7.2f} "
        f"{base_mem:>8,.0f}"
    )
    for name in ("decode", "decode+filter", "decode+filter+parquet"):
        for cutouts in ("keep", "drop"):
            rate, mem = measure(name, cutouts, args.alerts, args.batch, args.repeats)
            print(
                f"{name:<40} {cutouts:<8} {rate:>10,.0f} {rate / base:>7.2f} {mem:>8,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
