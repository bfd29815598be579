"""A placement loop fed by batches that end part-way through ticks: held back or not.

    python benchmarks/bench_hold_back.py [--sizes 20x4,1000x50] [--repeats 5]

A topic's batches end wherever the input stops. Each case replays a generated cluster (the
series of bench_placement.py: four daily cycles, an overloaded start) through the files
source, one record a CSV line, cut every 1.1 windows of rows so that most batches end
inside a tick. The same loop runs with ``hold_partial_tick`` on (ticks modelled through the
last one every running container reported; the default for such a source) and off (each
batch decides on what it has). Printed: the loop's median seconds and per batch, the ratio
of held to not held measured in the same run, and both moves logs replayed over the whole
series by the evaluator (overloaded host-ticks, moves), beside the initial placement's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_placement import PERIOD, STREAMS, TICKS, WINDOW, project, series_model, write_case

from headwater.pipeline import Pipeline
from headwater.placement.evaluate import moves_from_names, score
from headwater.placement.generate import generate
from headwater.spec.load import load_spec

FILES = (
    """
name: bench
lake: lake
source:
  files: {{path: data, pattern: container_usage.csv, format: csv, max_records_per_batch: {n}}}
decode:
  csv: {{types: {{timestamp: int64, container_id: string, machine_id: string, cpu: double}}}}
"""
    + STREAMS
)


def run(folder: Path, n: int, hold: bool, containers: int) -> tuple[float, int, list[dict]]:
    """(loop seconds, batches, moves logged)."""
    model = f", hold_partial_tick: {str(hold).lower()}"
    text = FILES.format(n=n, history=PERIOD, model=model, budget=containers)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = project(root, folder, text)
        started = time.perf_counter()
        pipeline = Pipeline(load_spec(spec, base_dir=root))
        reports = [pipeline.run(b) for b in pipeline.plan()]
        pipeline.close()
        seconds = time.perf_counter() - started
        log = root / "lake" / "bench" / "moves.jsonl"
        moves = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return seconds, len(reports), moves


def case(size: str, repeats: int) -> None:
    c, h = (int(x) for x in size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / size
        write_case(folder, generate(c, h, ticks=TICKS, period=PERIOD, seed=c))
        model = series_model(folder)
        n = int(len(model.containers) * WINDOW * 1.1)
        initial = score(model)
        print(
            f"{size}: {n} records a batch; initial placement {initial.overloaded_host_ticks} "
            "overloaded host-ticks"
        )
        times: dict[bool, list[float]] = {True: [], False: []}
        last: dict[bool, tuple[int, list[dict]]] = {}
        for _ in range(repeats):
            for hold in (False, True):  # alternated: drift in the machine's load hits both
                seconds, batches, moves = run(folder, n, hold, c)
                times[hold].append(seconds)
                last[hold] = (batches, moves)
        for hold in (False, True):
            batches, moves = last[hold]
            m = score(model, moves_from_names(model, moves, 0))
            median = statistics.median(times[hold])
            print(
                f"  {'held back' if hold else 'not held':10} {median:.4f} s, "
                f"{median / batches * 1000:.1f} ms a batch ({batches} batches); "
                f"{m.overloaded_host_ticks} overloaded host-ticks, {m.moves} moves"
            )
        ratio = statistics.median(times[True]) / statistics.median(times[False])
        print(f"  held / not held: {ratio:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20x4,1000x50")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    for size in args.sizes.split(","):
        case(size, args.repeats)


if __name__ == "__main__":
    main()
