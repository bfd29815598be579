"""The sensor-launched way of running: the real Dagster daemon ticks the batch sensor, which
cuts batches and launches one run per batch; the runs land every stream in the lake.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from headwater.resources.project import get_pipeline
from tests.conftest import stop_group
from tests.test_webui import project  # noqa: F401  (the copied-project fixture)


@pytest.fixture
def daemon(project):  # noqa: F811
    spec = project / "pipelines" / "ztf.yaml"
    text = spec.read_text()
    for old, new in [
        ("max_records_per_batch: 5000", "max_records_per_batch: 12"),
        ("interval_seconds: 30", "interval_seconds: 1\n  running: true"),
    ]:
        assert old in text, f"pipelines/ztf.yaml no longer says {old!r}: update this test"
        text = text.replace(old, new)
    spec.write_text(text)
    env = {**os.environ, "DAGSTER_HOME": str(project)}  # dagster.yaml at the project root
    env.pop("HEADWATER_HOME", None)
    daemon_cli = Path(sys.executable).parent / "dagster-daemon"
    proc = subprocess.Popen(
        [str(daemon_cli), "run", "-w", "workspace.yaml"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    yield proc
    stop_group(proc, timeout=60)  # the daemon's code server and run workers too


def test_the_daemon_runs_every_batch_the_sensor_cuts(project, daemon, ztf_manifest):  # noqa: F811
    pipeline = get_pipeline(str(project / "pipelines" / "ztf.yaml"), root=str(project))
    deadline = time.monotonic() + 240
    while True:
        entries = list(pipeline.ledger.entries())
        if len(entries) == 3 and all(e.status == "done" for e in entries):
            break
        if daemon.poll() is not None:
            raise AssertionError(daemon.stderr.read().decode()[-3000:])
        if time.monotonic() > deadline:
            raise AssertionError(f"batches not done in time: {[e.status for e in entries]}")
        time.sleep(1)
    assert sorted(e.batch.records for e in entries) == [6, 12, 12]
    files = sorted(pipeline.lake.stream_dir("ztf", "solar_system").rglob("*.parquet"))
    assert len(files) == 3
    got = sorted(
        r for f in files for r in pq.read_table(f, columns=["candid"])["candid"].to_pylist()
    )
    want = sorted(int(r["candid"]) for r in ztf_manifest if r["ssnamenr"] not in ("null", ""))
    assert got == want
