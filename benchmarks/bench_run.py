"""End to end: the bundled ZTF pipeline (``pipelines/ztf.yaml``) on a folder of alert files.

The pipeline runs as a user runs it, in a project of its own: files read, decoded, both
filters, two cross-matches, Parquet and DuckDB sinks. ``headwater run`` makes each batch a
Dagster run; ``headwater stream`` (the long-lived worker, here exiting once the folder is
done and idle for 1 s) runs the batches itself and records each as asset events. The folder
holds the repo's ZTF sample repeated to --alerts files, each copy's cutouts made unique as
real alerts' are (see alert_folder). Each case runs --repeats times on a fresh lake and
instance; the median alerts/s (messages over the wall time of the whole command, start-up
included) is printed with its ratio to the baseline measured in the same run, the same
pipeline decoding with fastavro per message. "Sustained" is the rate past start-up: the
alerts of every batch but the first over the time from the first batch's end to the last
one's (the ends are when each batch's ledger entry was marked done).

    .venv/bin/python benchmarks/bench_run.py --alerts 50000 --repeats 3
    .venv/bin/python benchmarks/bench_run.py --alerts 20000 --py-spy run.spy
    .venv/bin/python benchmarks/summarize_profile.py run.spy

--py-spy samples one run of --case (default: compiled, cutouts kept) with py-spy instead.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "ztf" / "alerts"
#: case: (command, its options, spec overrides)
CASES = {
    "fastavro per message (baseline)": ("run", [], ["decode.avro.engine=fastavro"]),
    "compiled, cutouts kept": ("run", [], []),
    "compiled, cutouts dropped": ("run", [], ["decode.avro.cutouts=drop"]),
    "stream worker, cutouts kept": ("stream", ["--idle-exit", "1", "--quiet"], []),
    "stream worker, cutouts dropped": (
        "stream",
        ["--idle-exit", "1", "--quiet"],
        ["decode.avro.cutouts=drop"],
    ),
}


CUTOUTS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")


def stamp_spans(data: bytes) -> list[tuple[int, int]]:
    """Where each cutout's stamp lies in an alert file's bytes: (start, length)."""
    import fastavro

    record = next(iter(fastavro.reader(io.BytesIO(data))))
    stamps = [record[c]["stampData"] for c in CUTOUTS if record.get(c)]
    return [(data.index(stamp), len(stamp)) for stamp in stamps]


def alert_folder(where: Path, n: int, name: str = "alerts") -> Path:
    """The sample repeated to n files, each copy's stamps made its own: 8 bytes in the middle
    of each stamp hold the copy's number. Real alerts' stamps all differ (compressed FITS):
    copies of the same 110 would be dictionary-encoded by Parquet to nearly nothing, and
    the lake's writes be a hundredth of a real stream's."""
    folder = where / name
    samples = [(p.read_bytes(), p) for p in sorted(SAMPLES.rglob("*.avro"))]
    spans = [stamp_spans(data) for data, _ in samples]
    for i in range(n):
        data, _ = samples[i % len(samples)]
        copy = bytearray(data)
        for start, length in spans[i % len(samples)]:
            middle = start + length // 2
            copy[middle : middle + 8] = i.to_bytes(8, "little")
        sub = folder / f"{i // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:07d}.avro").write_bytes(copy)
    return folder


def steady_rate(project: Path, batch: int) -> float:
    """Alerts per second past the first batch: each batch's ledger entry is rewritten when the
    batch is done, so the entries' times are the batches' ends. The first batch carries the
    one-time work (imports, catalogs loaded, the process's memory first touched)."""
    done = sorted(p.stat().st_mtime for p in (project / "lake" / "ztf").rglob("_batches/*/*.json"))
    if len(done) < 3:
        return float("nan")
    return (len(done) - 1) * batch / (done[-1] - done[0])


def run_once(
    folder: Path, case: tuple[str, list[str], list[str]], batch: int, profile: str | None
) -> tuple[float, float]:
    """(seconds of the whole command, the steady rate past its first batch)."""
    verb, options, sets = case
    project = Path(tempfile.mkdtemp(prefix="hw-bench-run-"))
    try:
        (project / "pipelines").mkdir()
        shutil.copy(REPO / "pipelines" / "ztf.yaml", project / "pipelines" / "ztf.yaml")
        for sample in ("catalogs", "watchlists"):  # what the pipeline matches alerts with
            shutil.copytree(REPO / "samples" / sample, project / "samples" / sample)
        args = [f"source.files.path={folder}", f"source.files.max_records_per_batch={batch}"]
        command = [sys.executable, "-m", "headwater", verb, "ztf", *options]
        if profile:
            spy = str(Path(sys.executable).parent / "py-spy")
            command = [spy, "record", "--subprocesses", "-f", "raw", "-o", profile, "--", *command]
        for s in args + sets:
            command += ["--set", s]
        env = {**os.environ, "HEADWATER_HOME": str(project), "PYTHONPATH": str(REPO)}
        env.pop("DAGSTER_HOME", None)
        t0 = time.perf_counter()
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode:
            raise SystemExit(f"headwater {verb} failed:\n{done.stdout}\n{done.stderr}")
        return seconds, steady_rate(project, batch)
    finally:
        shutil.rmtree(project, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--py-spy", dest="profile", metavar="FILE", help="sample one run, and stop")
    ap.add_argument("--case", choices=list(CASES), default="compiled, cutouts kept")
    ap.add_argument("--only", metavar="TEXT", help="the baseline and the cases naming TEXT")
    args = ap.parse_args()
    where = Path(tempfile.mkdtemp(prefix="hw-bench-alerts-"))
    try:
        folder = alert_folder(where, args.alerts)
        # a backlog that landed earlier: its files are on disk, not still being written
        # back by the kernel while the pipeline's own fsyncs wait behind them
        os.sync()
        if args.profile:
            seconds, _ = run_once(folder, CASES[args.case], args.batch, args.profile)
            print(f"profiled run: {args.alerts / seconds:,.0f} alerts/s; {args.profile}")
            return
        print(
            f"the bundled ZTF pipeline on {args.alerts:,} alert files, batches of "
            f"{args.batch:,}, median of {args.repeats}, {os.cpu_count()} CPUs"
        )
        print(
            f"{'case':<34} {'alerts/s':>9} {'x base':>7} {'seconds':>8} {'sustained':>10}"
            "  (each run's sustained)"
        )
        base = None
        for name, case in CASES.items():
            if args.only and base and args.only not in name:
                continue
            runs = [run_once(folder, case, args.batch, None) for _ in range(args.repeats)]
            seconds = statistics.median(r[0] for r in runs)
            sustained = statistics.median(r[1] for r in runs)
            rate = args.alerts / seconds
            base = base or rate
            each = ", ".join(f"{r[1]:,.0f}" for r in runs)
            print(
                f"{name:<34} {rate:>9,.0f} {rate / base:>7.2f} {seconds:>8.1f} {sustained:>10,.0f}"
                f"  ({each})",
                flush=True,
            )
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
