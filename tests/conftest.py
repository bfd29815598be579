"""Shared fixtures: the repo's samples, and a scratch project with a spec of your own."""

from __future__ import annotations

import csv
import gc
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from headwater.batch import RawBatch, raw_table
from headwater.component import Context
from headwater.lake import Lake

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """A real Kafka broker: $KAFKA_BOOTSTRAP_SERVERS if set, else one started for the session.

    In CI (CI=true) a broker that cannot be started fails the tests; elsewhere a missing Java
    or Maven skips them with one loud line saying what is missing.
    """
    from headwater.testing.broker import LocalBroker, missing_tools

    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    lacking = missing_tools()
    if lacking:
        message = f"Kafka tests need {' and '.join(lacking)} on PATH to start a local broker"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI runs them, never skips)")
        print(f"\n!!! SKIPPING KAFKA TESTS: {message} !!!", file=sys.stderr)
        pytest.skip(message)
    broker = LocalBroker().start()
    try:
        yield broker.bootstrap_servers
    finally:
        from headwater.resources.project import close_pipelines

        close_pipelines()
        gc.collect()  # destroy the tests' Kafka clients first: no reconnect noise after the stop
        broker.stop()


@pytest.fixture
def ztf_alerts() -> Path:
    return SAMPLES / "ztf" / "alerts"


@pytest.fixture
def ztf_manifest() -> list[dict[str, str]]:
    with open(SAMPLES / "ztf" / "MANIFEST.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return Context("test", "test", REPO, Lake(tmp_path / "lake"))


def headwater_process(root: Path, *args: str) -> subprocess.Popen:
    """``headwater ARGS`` in the project ``root`` (its own instance), in a session of its own
    so that :func:`stop_group` can stop it and all it starts; stdout and stderr piped."""
    env = {**os.environ, "HEADWATER_HOME": str(root), "PYTHONPATH": str(REPO)}
    env.pop("DAGSTER_HOME", None)
    return subprocess.Popen(
        [sys.executable, "-m", "headwater", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a process started with ``start_new_session`` and everything it spawned, by PID."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def raw_from_files(files: list[Path]) -> RawBatch:
    return RawBatch(
        raw_table([f.name for f in files], [0] * len(files), [f.read_bytes() for f in files])
    )


def ztf_files() -> list[Path]:
    return sorted((SAMPLES / "ztf" / "alerts").rglob("*.avro"))


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a spec file (dedented YAML) into a scratch project; return its path."""

    def write(text: str, name: str = "p.yaml") -> Path:
        path = tmp_path / "pipelines" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def alerts_copy(tmp_path: Path) -> Path:
    """A writable copy of the ZTF sample alerts."""
    dst = tmp_path / "alerts"
    shutil.copytree(SAMPLES / "ztf" / "alerts", dst)
    return dst


ZTF_SPEC = """\
name: ztf
lake: {lake}
source:
  files: {{path: {alerts}, pattern: "**/*.avro", max_records_per_batch: {batch}}}
decode:
  avro: {{framing: container, cutouts: {cutouts}, required: [objectId, candid, candidate]}}
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


@pytest.fixture
def ztf_spec(tmp_path: Path, alerts_copy: Path):
    """A ZTF spec over a copy of the sample, lake in the scratch folder."""

    def make(batch: int = 1000, cutouts: str = "keep", alerts: Path | None = None) -> Path:
        path = tmp_path / "pipelines" / "ztf.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            ZTF_SPEC.format(
                lake=tmp_path / "lake", alerts=alerts or alerts_copy, batch=batch, cutouts=cutouts
            )
        )
        return path

    return make
