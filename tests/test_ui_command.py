"""`headwater ui` as a user starts it: the web UI on the project's own Dagster instance (the
runs `headwater run` made are there), with no temporary instance announced, and stopped by
SIGTERM even when started in the background (where a shell leaves SIGINT ignored).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from headwater.ports import free_port
from headwater.resources.project import get_pipeline
from headwater.runner import dagster_instance, run_batches
from tests.conftest import stop_group
from tests.test_webui import graphql, project, wait_serving  # noqa: F401  (the fixture)


def _background_job() -> None:
    """What `sh -c 'headwater ui &'` does to the job: SIGINT ignored (inherited over exec)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _group_gone(pgid: int, within: float) -> bool:
    """Whether every process of the group (the web server, the daemon, code servers) ended."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


def test_ui_serves_the_project_instance_and_stops_on_sigterm(project):  # noqa: F811
    spec = project / "pipelines" / "placement.yaml"
    pipeline = get_pipeline(str(spec), root=str(project))
    batches = pipeline.plan()[:1]
    [outcome] = run_batches(
        spec, pipeline, batches, [], project, instance=dagster_instance(project)
    )
    assert outcome.success, outcome.error

    port, log = free_port(), project / "ui.log"
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "HEADWATER_HOME")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "headwater"), "ui", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_background_job,
        )
    try:
        wait_serving(proc, port, log.read_text)
        runs = graphql(port, "{ runsOrError { ... on Runs { results { runId } } } }")
        assert outcome.run_id in {r["runId"] for r in runs["runsOrError"]["results"]}
        assert not list(project.glob(".tmp_dagster_home_*"))

        proc.send_signal(signal.SIGTERM)  # to `headwater ui` alone, as `kill PID` does
        proc.wait(timeout=90)
        assert _group_gone(proc.pid, within=30), "dagster dev left processes running"
        text = log.read_text()
        assert "Shutting down Dagster services" in text, text[-3000:]
        assert "temporary directory" not in text and "superseded" not in text, text[-3000:]
    finally:
        stop_group(proc)


def test_ui_refuses_a_port_in_use_before_starting_dagster(project):  # noqa: F811
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "HEADWATER_HOME")}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "headwater"), "ui", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:  # dagster dev, started, would not exit on its own: stopped by PID after 60 s
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            stop_group(proc)
    assert proc.returncode == 1, stdout + stderr
    assert f"cannot listen on 127.0.0.1:{port}" in stderr
    assert "--port" in stderr and "Launching Dagster" not in stdout + stderr
