"""Latency from produce to queryable Parquet, with the real broker, in both ways of running.

A producer sends distinct real ZTF alerts (cutouts kept) at --rate alerts/s for --seconds to a
3-partition topic; a watcher polls the lake and notes when each alert's candid first appears
in a `raw` Parquet file (files appear by atomic rename: visible = complete = queryable). The
latency of an alert is that moment minus the moment it was handed to the producer.

- ``stream``: ``headwater stream`` (one process, ``--max-wait-ms``); each batch recorded in
  Dagster as asset events (``--record events``, the default) or as an in-process run
  (``--record runs``).
- ``sensor``: the Dagster daemon ticks the pipeline's sensor every second and launches one
  run per batch through the queued run coordinator (each run a new process).

    .venv/bin/python benchmarks/bench_latency.py --mode stream --rate 1000 --seconds 30
    .venv/bin/python benchmarks/bench_latency.py --mode stream --record runs
    .venv/bin/python benchmarks/bench_latency.py --mode sensor --rate 1000 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]

SPEC = """\
name: live
lake: lake
kafka: {{bootstrap_servers: "{servers}"}}
sensor: {{interval_seconds: 1, running: {running}, max_batches_per_tick: 50}}
worker: {{max_wait_ms: {max_wait_ms}, poll_ms: 20, record: {record}}}
source:
  kafka: {{topics: [{topic}], group: {group}, max_records_per_batch: {batch},
          partition_groups: {groups}}}
decode: {{avro: {{framing: container, cutouts: drop, required: [objectId, candid, candidate]}}}}
streams:
  raw: {{sinks: [parquet, duckdb]}}
  solar_system:
    from: raw
    processors: [{{solar_system: {{action: include}}}}]
    sinks: [parquet, duckdb]
  extragalactic:
    from: raw
    processors:
      - solar_system: {{action: exclude}}
      - sql: "select * from batch where candidate.rb > 0.65 and candidate.magpsf < 19"
    sinks: [parquet, duckdb]
"""


def project(servers: str, topic: str, args) -> Path:
    root = Path(tempfile.mkdtemp(prefix="hw-latency-"))
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, root / name)
    (root / "pipelines").mkdir()
    (root / "pipelines" / "live.yaml").write_text(
        SPEC.format(
            servers=servers,
            topic=topic,
            group=f"lat-{uuid.uuid4().hex[:6]}",
            batch=args.batch,
            groups=args.groups,
            max_wait_ms=args.max_wait_ms,
            record=args.record,
            running="true" if args.mode == "sensor" else "false",
        )
    )
    return root


def start(root: Path, mode: str, servers: str) -> subprocess.Popen:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": servers}
    if mode == "stream":
        env["HEADWATER_HOME"] = str(root)
        env.pop("DAGSTER_HOME", None)
        cmd = [sys.executable, "-m", "headwater", "stream", "live", "--quiet"]
    else:
        env["DAGSTER_HOME"] = str(root)
        env.pop("HEADWATER_HOME", None)
        cmd = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    return subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def sample(pid: int, seconds: float, out: str) -> subprocess.Popen:
    """py-spy sampling ``pid`` and its children for ``seconds`` (needs ptrace rights)."""
    spy = str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds))]
    return subprocess.Popen(
        [*command, "--format", "raw", "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def produce(servers: str, topic: str, rate: float, seconds: float, sent: dict[int, float]):
    from confluent_kafka import Producer

    from headwater.testing.alerts import distinct_alerts_with_candids

    producer = Producer({"bootstrap.servers": servers, "linger.ms": 5, "acks": "all"})
    files = sorted((REPO / "samples" / "ztf" / "alerts").rglob("*.avro"))
    n = int(rate * seconds)
    t0 = time.monotonic()
    for i, (candid, value) in enumerate(distinct_alerts_with_candids(files, n)):
        ahead = i / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
        sent[candid] = time.monotonic()
        while True:
            try:
                producer.produce(topic, value, key=str(candid).encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)


def watch(lake: Path, seen: dict[int, float], stop: threading.Event) -> None:
    known: set[Path] = set()
    while not stop.is_set():
        for f in lake.glob("live/raw/*/*.parquet"):
            if f in known:
                continue
            now = time.monotonic()
            known.add(f)
            for c in pq.read_table(f, columns=["candid"])["candid"].to_pylist():
                seen.setdefault(c, now)
        stop.wait(0.02)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the worker or daemon and everything it started (its session), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=60)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["stream", "sensor"], default="stream")
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--warmup",
        type=float,
        default=5,
        help="produce at the same rate for this long first; those alerts are reported apart "
        "(a worker's first batches pay for lazy imports and fresh memory)",
    )
    parser.add_argument("--batch", type=int, default=5000, help="max_records_per_batch")
    parser.add_argument("--max-wait-ms", type=int, default=250)
    parser.add_argument(
        "--groups",
        type=int,
        default=1,
        help="partition_groups: the stream worker runs a cut's batches in turn; the sensor's "
        "runs of different groups run side by side, each a new process "
        "(on this 2-core machine 2 groups were slower: 10.7 s against 7.0 s at 300/s)",
    )
    parser.add_argument("--record", choices=["events", "runs"], default="events")
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="sample the stream worker with py-spy while the "
        "producer runs, into FILE (collapsed stacks; see summarize_profile.py)",
    )
    args = parser.parse_args()

    from headwater.testing.broker import LocalBroker

    with LocalBroker() as broker:
        servers = broker.bootstrap_servers
        from confluent_kafka.admin import AdminClient, NewTopic

        topic = f"lat-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": servers})  # kept alive until created
        admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
        root = project(servers, topic, args)
        proc = start(root, args.mode, servers)
        try:
            if args.mode == "stream":
                line = proc.stdout.readline()
                assert "streaming" in line, line + proc.stdout.read()
            else:
                time.sleep(15)  # the daemon loads the code location and starts its loops
            sent: dict[int, float] = {}
            seen: dict[int, float] = {}
            stop = threading.Event()
            watcher = threading.Thread(target=watch, args=(root / "lake", seen, stop))
            watcher.start()
            spy = sample(proc.pid, args.seconds, args.py_spy) if args.py_spy else None
            t0 = time.monotonic()
            produce(servers, topic, args.rate, args.warmup + args.seconds, sent)
            produced = time.monotonic() - t0
            deadline = time.monotonic() + 120
            while len(seen) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.1)
            stop.set()
            watcher.join()
            if spy is not None:
                spy.wait()
        finally:
            stop_group(proc)
        if len(seen) < len(sent):  # say why: the worker's or the daemon's last words
            print("".join(proc.stdout.readlines()[-30:]), file=sys.stderr)
        report(args, sent, seen, produced, root, t0 + args.warmup)


def report(
    args,
    sent: dict[int, float],
    seen: dict[int, float],
    produced: float,
    root: Path,
    measured_from: float,
):
    files = len(list((root / "lake").glob("live/raw/*/*.parquet")))
    print(
        f"mode {args.mode}: {len(sent)} alerts at {len(sent) / produced:,.0f}/s over "
        f"{produced:.1f}s, max_records_per_batch {args.batch}"
        + (
            f", max_wait_ms {args.max_wait_ms}, record {args.record}"
            if args.mode == "stream"
            else ""
        )
        + f", partition_groups {args.groups}"
        + f"; queryable {len(seen)}/{len(sent)} in {files} batches"
    )
    phases = {
        f"first {args.warmup:g}s (warm-up)": {c: t for c, t in sent.items() if t < measured_from},
        f"next {args.seconds:g}s (sustained)": {
            c: t for c, t in sent.items() if t >= measured_from
        },
        "all": sent,
    }
    for name, part in phases.items():
        lat = sorted(seen[c] - t for c, t in part.items() if c in seen)
        if not lat:
            print(f"{name:>26}: no alert became queryable")
            continue
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        print(
            f"{name:>26}: {len(lat):>6}/{len(part)} queryable; latency median "
            f"{statistics.median(lat):.2f}s, p95 {p95:.2f}s, max {lat[-1]:.2f}s"
        )


if __name__ == "__main__":
    main()
