"""The Dagster web UI on a fresh project sees the pipeline's assets and the CLI's batches.

Starts the real webserver (``dagster-webserver -w workspace.yaml``) in a copy of the project,
asks its GraphQL API what a person would look for, and stops it by PID.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import pytest

from headwater.ports import free_port
from headwater.resources.project import get_pipeline
from headwater.runner import dagster_instance, run_batches
from tests.conftest import REPO, stop_group


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["data"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    for name in ("pipelines", "dagster.yaml", "workspace.yaml"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    for sample in ("ztf", "catalogs", "watchlists", "placement"):  # every bundled spec's data
        shutil.copytree(REPO / "samples" / sample, tmp_path / "samples" / sample)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def wait_serving(proc: subprocess.Popen, port: int, output: Callable[[], str]) -> None:
    """Until the web server on ``port`` answers; its output in the failure if it exits."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(output()[-3000:]) from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def webserver(project):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "HEADWATER_HOME")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_serving(proc, port, lambda: proc.stderr.read().decode())
        yield port
    finally:
        stop_group(proc)


def test_the_ui_lists_the_streams_and_the_batches_run_from_the_cli(project, webserver):
    spec = project / "pipelines" / "ztf.yaml"
    pipeline = get_pipeline(str(spec), root=str(project))
    [batch] = pipeline.plan()
    [outcome] = run_batches(
        spec, pipeline, [batch], [], project, instance=dagster_instance(project)
    )
    assert outcome.success, outcome.error

    nodes = graphql(webserver, "{ assetNodes { assetKey { path } } }")["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    assert {"ztf/raw", "ztf/solar_system", "ztf/extragalactic", "ztf/_quarantine"} <= keys

    data = graphql(
        webserver,
        """{ assetOrError(assetKey: {path: ["ztf", "solar_system"]}) {
        ... on Asset { assetMaterializations(limit: 1) { partition runId
            metadataEntries { label ... on IntMetadataEntry { intValue }
                              ... on TextMetadataEntry { text } } } } } }""",
    )
    [mat] = data["assetOrError"]["assetMaterializations"]
    assert mat["partition"] == batch.window and mat["runId"] == outcome.run_id
    meta = {e["label"]: e.get("intValue", e.get("text")) for e in mat["metadataEntries"]}
    assert meta["batch_id"] == batch.id
    assert meta["rows_out"] == outcome.summary["streams"]["solar_system"]["rows_out"] == 11
