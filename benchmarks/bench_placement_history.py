"""A placement loop's batch time against the history it has kept: moves logged, states.

    python benchmarks/bench_placement_history.py [--size 20x4] [--logged 0,10000,100000]
    python benchmarks/bench_placement_history.py --soak 2000

A loop that has run for weeks has logged 10^5 to 10^6 moves. Each case runs the
benchmark's placement pipeline (usage windows → cluster model → balance → moves log) over
the same generated cluster, its moves log holding ``N`` earlier moves (each container
"moved" to where it already is, at ticks before the series, so the decisions are the same
in every case). Printed: the median batch time (the first batch, which reads the log once
in this process, apart), that first batch, and their ratios to the case with an empty log,
measured in the same run.

``--soak N``: a loop of N windows as the stream worker runs it: the usage file grows a
window at a time, and each time the pipeline cuts (scanning its ledger) and runs the new
batch. Printed: the median cut and batch time over the first and the last hundred windows.

Then the cluster model's state store, which keeps a state per window (the newest 1,000, for
reruns): a batch's look-up of the last state and save of its own, in a store holding 10
states and one holding 1,000.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_placement import PERIOD, SPEC, TICKS, WINDOW, project, write_case

from headwater.pipeline import Pipeline
from headwater.placement.collectors import State, StateStore
from headwater.placement.connectors import hots_json
from headwater.placement.generate import generate
from headwater.spec.load import load_spec


def prefill(log: Path, folder: Path, n: int) -> None:
    """``n`` moves before the series, each leaving its container where the data has it."""
    usage = pcsv.read_csv(folder / "container_usage.csv").to_pandas()
    first = usage.sort_values("timestamp").drop_duplicates("container_id")
    pairs = list(zip(first["container_id"], first["machine_id"], strict=True))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        for i in range(n):
            c, h = pairs[i % len(pairs)]
            move = {"container_name": c, "old_host": h, "new_host": h, "time": i - n}
            f.write(hots_json(move) + "\n")


def run(folder: Path, logged: int, containers: int) -> tuple[float, float, list[str]]:
    """(median batch seconds after the first, first batch seconds, the moves decided)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = project(root, folder, SPEC.format(w=WINDOW, budget=containers, history=PERIOD))
        log = root / "lake" / "bench" / "moves.jsonl"
        prefill(log, folder, logged)
        pipeline = Pipeline(load_spec(spec, base_dir=root))
        seconds = []
        for batch in pipeline.plan():
            started = time.perf_counter()
            pipeline.run(batch)
            seconds.append(time.perf_counter() - started)
        pipeline.close()
        decided = log.read_text().splitlines()[logged:]
    return statistics.median(seconds[1:]), seconds[0], decided


def state_store(kept: int, rounds: int = 300) -> float:
    """Median seconds of a batch's ``latest`` then ``save`` with ``kept`` states there."""
    history = pa.table({"tick": np.arange(120), "cpu": np.ones(120)})
    placement = {f"c{i}": f"h{i % 4}" for i in range(20)}
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(Path(tmp))
        for end in range(1, kept + 1):
            store.save(State(end * 6, 0, placement), history)
        seconds = []
        for end in range(kept + 1, kept + 1 + rounds):
            started = time.perf_counter()
            store.latest(end * 6 - 1)
            store.save(State(end * 6, 0, placement), history)
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def soak(windows: int, containers: int, hosts: int) -> None:
    """Cut and run one window at a time while the file grows; the first and last 100."""
    model = generate(containers, hosts, ticks=windows * WINDOW, period=PERIOD, seed=containers)
    with tempfile.TemporaryDirectory() as tmp:
        root, case = Path(tmp), Path(tmp) / "case"
        write_case(case, model)
        lines = (case / "container_usage.csv").read_bytes().splitlines(keepends=True)
        header, body = lines[0], lines[1:]
        per = containers * WINDOW
        (case / "container_usage.csv").write_bytes(header)
        spec = project(root, case, SPEC.format(w=WINDOW, budget=containers, history=PERIOD))
        data = root / "data" / "container_usage.csv"
        pipeline = Pipeline(load_spec(spec, base_dir=root))
        cuts, batches = [], []
        for k in range(windows + 1):  # a window is cut once the next one's first tick came
            with open(data, "ab") as f:
                f.write(b"".join(body[k * per : (k + 1) * per]))
            started = time.perf_counter()
            new = pipeline.plan()
            cuts.append(time.perf_counter() - started)
            for batch in new:
                started = time.perf_counter()
                pipeline.run(batch)
                batches.append(time.perf_counter() - started)
        pipeline.close()
    first, last = slice(1, 101), slice(-100, None)
    print(f"soak: {len(batches)} windows of generated {containers}x{hosts}, one cut each")
    for name, part in (("first 100", first), ("last 100", last)):
        print(
            f"  {name}: cut {statistics.median(cuts[part]) * 1000:.2f} ms, "
            f"batch {statistics.median(batches[part]) * 1000:.2f} ms"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--soak", type=int, default=0, help="windows of a growing file, one by one")
    ap.add_argument("--size", default="20x4", help="containers x hosts")
    ap.add_argument("--logged", default="0,10000,100000", help="moves already logged")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    c, h = (int(n) for n in args.size.split("x"))
    if args.soak:
        soak(args.soak, c, h)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "case"
        write_case(folder, generate(c, h, ticks=TICKS, period=PERIOD, seed=c))
        rows, base, decisions = [], None, None
        for n in (int(x) for x in args.logged.split(",")):
            runs = [run(folder, n, c) for _ in range(args.repeats)]
            batch = statistics.median(r[0] for r in runs)
            first = statistics.median(r[1] for r in runs)
            if decisions is None:
                decisions = runs[0][2]
            assert all(r[2] == decisions for r in runs), "the decisions must not depend on it"
            base = base or (batch, first)
            rows.append((n, batch, first, batch / base[0], first / base[1]))
    print(f"generated {args.size}, {TICKS // WINDOW} windows, median of {args.repeats} runs")
    print(f"{'logged':>8} {'batch ms':>9} {'first ms':>9} {'batch/0':>8} {'first/0':>8}")
    for n, batch, first, rb, rf in rows:
        print(f"{n:>8} {batch * 1000:>9.2f} {first * 1000:>9.1f} {rb:>7.2f}x {rf:>7.1f}x")
    few, many = state_store(10), state_store(1000)
    print(
        f"state store, a batch's look-up and save: {few * 1e6:.0f} us with 10 states kept, "
        f"{many * 1e6:.0f} us with 1,000 ({many / few:.2f}x)"
    )


if __name__ == "__main__":
    main()
