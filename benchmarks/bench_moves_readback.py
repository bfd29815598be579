"""How long a new process takes to read a placement loop's move history back, per connector.

    python benchmarks/bench_moves_readback.py [--moves 100000] [--repeats 3]

Every Dagster run is a new process: its cluster model reads the moves applied so far before
its first window (the closed loop). The same ``N`` moves (100 a decision tick) are written
through each connector — a moves log (JSON lines) and a Kafka topic on a local broker
started here (``headwater.testing.broker``, stopped by PID) — then read back cold by a new
connector, ``--repeats`` times. Printed: the median cold read, and a read of nothing new
after it. The moves log is the baseline the topic is measured against, in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from headwater.placement.connectors import FileConnector, KafkaConnector

PER_TICK = 100


def decisions(n: int):
    """(tick, moves) of ``n`` moves, ``PER_TICK`` a tick."""
    for tick in range(n // PER_TICK):
        moves = [
            {"container_name": f"c_{i}", "old_host": "n_0", "new_host": f"n_{tick % 4}"}
            for i in range(PER_TICK)
        ]
        yield tick, [{**m, "time": tick} for m in moves]


def read_back(make, repeats: int) -> tuple[float, float, int]:
    """(median cold read seconds, median warm read seconds, moves read)."""
    cold, warm, count = [], [], 0
    for _ in range(repeats):
        connector = make()
        try:
            started = time.perf_counter()
            count = len(connector.applied())
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            connector.applied()
            warm.append(time.perf_counter() - started)
        finally:
            connector.close()
    return statistics.median(cold), statistics.median(warm), count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--moves", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from confluent_kafka.admin import AdminClient, NewTopic

    from headwater.kafka.connection import KafkaConnection
    from headwater.testing.broker import LocalBroker

    rows = []
    with tempfile.TemporaryDirectory() as tmp, LocalBroker() as broker:
        log = Path(tmp) / "moves.jsonl"
        writer = FileConnector(log)
        for tick, moves in decisions(args.moves):
            writer.apply(moves, tick)
        rows.append(("moves log", *read_back(lambda: FileConnector(log), args.repeats)))

        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        for future in admin.create_topics([NewTopic("moves", 1, 1)]).values():
            future.result()
        time.sleep(1)  # a topic just created has no leader for a moment
        kafka = KafkaConnection(bootstrap_servers=broker.bootstrap_servers)
        writer = KafkaConnector("moves", kafka)
        try:
            for tick, moves in decisions(args.moves):
                writer.apply(moves, tick)
        finally:
            writer.close()
        rows.append(
            ("Kafka topic", *read_back(lambda: KafkaConnector("moves", kafka), args.repeats))
        )
    base = rows[0][1]
    print(f"{args.moves} moves, {PER_TICK} a tick; median of {args.repeats} new connectors")
    print(f"{'connector':12} {'cold s':>8} {'warm ms':>8} {'moves':>8} {'cold/log':>9}")
    for name, cold, warm, count in rows:
        print(f"{name:12} {cold:>8.3f} {warm * 1000:>8.1f} {count:>8} {cold / base:>8.1f}x")


if __name__ == "__main__":
    main()
