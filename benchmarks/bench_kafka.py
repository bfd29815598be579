"""Kafka → decode → filters → Parquet alerts/s with the real broker: one process, and two
processes in parallel over disjoint partition groups.

Distinct real ZTF alerts (the sample repeated with new candids, cutouts kept: real message
sizes) are produced once to a 4-partition topic on a local broker (or $KAFKA_BOOTSTRAP_SERVERS).
Each repeat reads the whole topic with a fresh consumer group and lake, through the bundled
ZTF pipeline's core (no Dagster runs: that cost is in bench_latency.py). The baseline, measured
in the same run, is fastavro's per-message reader over the same messages consumed from Kafka.

    .venv/bin/python benchmarks/bench_kafka.py --alerts 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SPEC = """\
name: bench
lake: {lake}
kafka: {{bootstrap_servers: "{servers}"}}
source:
  kafka: {{topics: [{topic}], group: {group}, max_records_per_batch: {batch},
          partition_groups: {groups}}}
decode: {{avro: {{framing: container, cutouts: drop, required: [objectId, candid, candidate]}}}}
streams:
  raw: {{sinks: [parquet]}}
  solar_system:
    from: raw
    processors: [{{solar_system: {{action: include}}}}]
    sinks: [parquet]
  extragalactic:
    from: raw
    processors:
      - solar_system: {{action: exclude}}
      - sql: "select * from batch where candidate.rb > 0.65 and candidate.magpsf < 19"
    sinks: [parquet]
"""


def worker(spec: str, group: int | None, out: mp.Queue) -> None:
    from headwater.pipeline import Pipeline
    from headwater.spec import load_spec, parse_overrides

    overrides = [] if group is None else [f"source.kafka.only_group={group}"]
    pipeline = Pipeline(load_spec(spec, parse_overrides(overrides)))
    t0 = time.perf_counter()
    _new, pending = pipeline.cut()
    rows = sum(pipeline.run(b).decoded for b in pending)
    t1 = time.perf_counter()
    pipeline.close()
    out.put((t0, t1, rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run_case(servers: str, topic: str, procs: int, batch: int) -> tuple[float, float]:
    """Alerts/s from the first worker's start to the last one's end; peak RSS per process."""
    tmp = Path(tempfile.mkdtemp(prefix="hw-bench-kafka-"))
    spec = tmp / "bench.yaml"
    spec.write_text(
        SPEC.format(
            lake=tmp / "lake",
            servers=servers,
            topic=topic,
            group=f"bench-{uuid.uuid4().hex[:8]}",
            batch=batch,
            groups=procs,
        )
    )
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    groups = [None] if procs == 1 else list(range(procs))
    ps = [ctx.Process(target=worker, args=(str(spec), g, out)) for g in groups]
    for p in ps:
        p.start()
    results = [out.get() for _ in ps]
    for p in ps:
        p.join()
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    rows = sum(r[2] for r in results)
    return rows / (end - start), max(r[3] for r in results)


def baseline(servers: str, topic: str, n: int) -> float:
    """fastavro per message over the same messages, consumed from the topic."""
    import fastavro
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"base-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    t0 = time.perf_counter()
    while seen < n:
        for m in consumer.consume(min(1000, n - seen), timeout=5):
            if m.error():
                continue
            list(fastavro.reader(io.BytesIO(m.value())))
            seen += 1
    seconds = time.perf_counter() - t0
    consumer.close()
    return n / seconds


def produce(servers: str, n: int) -> str:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from headwater.testing.alerts import distinct_alerts

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": servers})
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 20, "acks": "all"})
    files = sorted((REPO / "samples" / "ztf" / "alerts").rglob("*.avro"))
    for i, value in enumerate(distinct_alerts(files, n)):
        while True:
            try:
                producer.produce(topic, value, key=str(i).encode())
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(120) == 0
    return topic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=2500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    broker = None
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        from headwater.testing.broker import LocalBroker

        broker = LocalBroker().start()
        servers = broker.bootstrap_servers
    try:
        topic = produce(servers, args.alerts)
        print(
            f"{args.alerts} distinct ZTF alerts (cutouts kept) in {topic} on {servers}, "
            f"batches of {args.batch}, median of {args.repeats}"
        )
        base = statistics.median(baseline(servers, topic, args.alerts) for _ in range(args.repeats))
        print(f"{'case':<48} {'alerts/s':>10} {'x baseline':>11} {'peak MB/proc':>13}")
        print(f"{'fastavro per message from Kafka (baseline)':<48} {base:>10,.0f} {1:>11.2f}")
        for procs in (1, 2):
            runs = [run_case(servers, topic, procs, args.batch) for _ in range(args.repeats)]
            rate = statistics.median(r[0] for r in runs)
            peak = max(r[1] for r in runs)
            name = f"Kafka→decode→filters→Parquet, {procs} process(es)"
            print(f"{name:<48} {rate:>10,.0f} {rate / base:>11.2f} {peak:>13,.0f}")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
