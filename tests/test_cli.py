"""The CLI as a user runs it: run, query, validate, batches."""

import json
import re
import shutil
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from headwater.cli import app
from headwater.resources.project import close_pipelines, get_pipeline, release_pipeline
from tests.conftest import REPO, headwater_process, stop_group


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh project: the bundled pipelines and samples, run from its root."""
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    for sample in ("ztf", "catalogs", "watchlists", "placement"):  # every bundled spec's data
        shutil.copytree(REPO / "samples" / sample, tmp_path / "samples" / sample)
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("HEADWATER_HOME", raising=False)
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_run_then_query_answers_the_sso_count(project, ztf_manifest):
    result = invoke("run", "ztf")
    assert result.exit_code == 0, result.output
    assert "solar_system" in result.output and "DuckDB:" in result.output
    sso = sum(1 for r in ztf_manifest if r["ssnamenr"] not in ("null", ""))
    q = invoke("query", "select count(*) as n from solar_system", "--format", "json")
    assert json.loads(q.output) == {"n": sso}
    assert (project / ".dagster" / "storage").is_dir()  # runs are in the project's instance
    again = invoke("run", "ztf")
    assert "nothing to do" in again.output


def test_cutouts_are_kept_in_raw_only_and_joined_back_by_candid(project, ztf_manifest):
    assert invoke("run", "ztf").exit_code == 0
    columns = invoke("query", "describe solar_system", "--format", "json").output
    assert "candidate" in columns and "cutout" not in columns
    # the join the spec's header shows: every solar-system alert gets its science stamp
    joined = invoke(
        "query",
        "select s.candid, octet_length(r.cutoutScience.stampData) as n "
        "from solar_system s join raw r using (candid)",
        "--format",
        "json",
    )
    rows = [json.loads(line) for line in joined.output.splitlines()]
    sso = {int(r["candid"]) for r in ztf_manifest if r["ssnamenr"] not in ("null", "")}
    assert {r["candid"] for r in rows} == sso and all(r["n"] > 1000 for r in rows)


def test_run_with_set_reads_another_folder(project, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    alerts = sorted((project / "samples" / "ztf" / "alerts").rglob("*.avro"))[:4]
    for a in alerts:
        shutil.copy(a, other / a.name)
    result = invoke(
        "run", "pipelines/ztf.yaml", "--set", f"source.files.path={other}", "--set", "lake=lake2"
    )
    assert result.exit_code == 0, result.output
    q = invoke("query", "select count(*) as n from raw", "--lake", "lake2", "--format", "csv")
    assert q.output.splitlines() == ["n", "4"]
    batches = invoke("batches", "ztf", "--set", "lake=lake2", "--format", "json")
    [entry] = [json.loads(line) for line in batches.output.splitlines()]
    assert entry["status"] == "done" and entry["coordinates"]["root"] == str(other)
    assert entry["summary"]["streams"]["raw"]["rows_out"] == 4


def test_validate_reports_the_problem_and_fails(project):
    spec = project / "pipelines" / "ztf.yaml"
    spec.write_text(spec.read_text().replace("action: include", "action: sometimes"))
    result = CliRunner().invoke(app, ["validate", "ztf"])
    assert result.exit_code == 1
    assert (
        "streams.solar_system.processors[1].solar_system.action: Input should be "
        "'include' or 'exclude'; got 'sometimes'" in result.output
    )


def test_query_without_outputs_says_what_to_do(project):
    result = CliRunner().invoke(app, ["query", "select 1"])
    assert result.exit_code == 1
    assert "no pipeline outputs in" in result.output and "headwater run" in result.output


def test_a_broken_spec_beside_does_not_stop_running_another(project):

    broken = (project / "pipelines" / "ztf.yaml").read_text().replace("include", "sometimes", 1)
    (project / "pipelines" / "broken.yaml").write_text(broken.replace("name: ztf", "name: broken"))
    env = {k: v for k, v in __import__("os").environ.items() if k != "DAGSTER_HOME"}
    done = subprocess.run(
        [sys.executable, "-m", "headwater", "run", "placement"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "placement_decisions" in done.stdout
    bad = invoke("validate", "pipelines/broken.yaml")
    assert bad.exit_code != 0 and "sometimes" in bad.output


def test_stream_runs_the_placement_loop_as_run_does(project):
    """The worker overlaps a backlog's batches; a closed loop's must not be (each window's
    model reads the moves the one before applied): both commands log the same moves."""
    streamed = invoke("stream", "placement", "--idle-exit", "1", "--set", "lake=lake_stream")
    assert streamed.exit_code == 0, streamed.output
    assert "(batches as it cuts them, once input waited" in streamed.output
    assert invoke("run", "placement").exit_code == 0
    logs = [
        [json.loads(line) for line in (project / lake / "placement" / "moves.jsonl").open()]
        for lake in ("lake_stream", "lake")
    ]
    assert logs[0] and logs[0] == logs[1]


def test_produce_csv_rows_names_the_key_column_it_lacks(project):
    """No broker needed: the rows are read, and the key checked, before anything is sent."""
    usage = "samples/placement/hots_examples/thesis_ex_10/container_usage.csv"
    result = CliRunner().invoke(app, ["produce", usage, "t", "--csv-rows", "container"])
    assert result.exit_code == 1
    assert "no column 'container'" in result.output
    assert "timestamp, container_id, machine_id, cpu" in result.output
    assert "Pass --csv-rows with one of them" in result.output  # the option that fixes it


def test_a_second_stream_worker_or_a_run_of_a_pipeline_is_refused(project):
    """A worker left running (another terminal, a unit started twice) and a new one would
    cut and run the same batches: the second says who holds the pipeline and exits."""
    first = headwater_process(project, "stream", "placement")
    try:
        line = first.stdout.readline()  # said once it holds the pipeline and is ready
        assert "streaming from its usage source" in line, line + first.stdout.read()
        second = invoke("stream", "placement", "--idle-exit", "1")
        assert second.exit_code == 1
        said = " ".join(second.output.split())  # the message wraps on the terminal's width
        assert f"another process (headwater stream, PID {first.pid}) is cutting" in said
        ran = invoke("run", "placement")  # a one-off run beside the worker: refused as well
        assert ran.exit_code == 1 and "headwater run: another process" in ran.output
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
    finally:
        stop_group(first)
    assert invoke("stream", "placement", "--idle-exit", "1").exit_code == 0  # free again


def test_a_pipeline_a_command_closed_is_not_handed_to_the_next(project):
    """Commands in one process (tests, a notebook) share pipelines; one closed by a command
    that ended (its moves connector closed with it) failed every batch of the next one."""
    spec = str(project / "pipelines" / "placement.yaml")
    first = get_pipeline(spec)
    assert get_pipeline(spec) is first  # shared while open
    release_pipeline(first)
    again = get_pipeline(spec)
    assert again is not first
    release_pipeline(again)


def test_batches_names_an_unreadable_ledger_entry_without_a_traceback(project):
    assert invoke("run", "placement").exit_code == 0
    entry = next((project / "lake" / "placement" / "_batches").rglob("*.json"))
    entry.write_text('{"broken')
    close_pipelines()  # a new command is a new process: nothing of the run's read kept
    listed = invoke("batches", "placement")
    assert listed.exit_code == 1
    said = " ".join(listed.output.split())
    assert f"{entry.name} is unreadable" in said and "Restore it from a copy" in said


def test_batches_of_a_pipeline_never_run_says_so_and_how_to_cut_them(project):
    listed = invoke("batches", "placement")
    assert listed.exit_code == 0
    said = " ".join(listed.output.split())  # the line wraps on the terminal's width
    assert "placement: no batches recorded yet. headwater run placement (or a stream" in said
    assert invoke("run", "placement").exit_code == 0
    listed = invoke("batches", "placement")
    assert "no batches recorded" not in listed.output and listed.output.count("done") == 3


def test_data_and_errors_print_as_they_are_never_as_markup(project):
    """Rich reads [tags] in what it prints: a value "[/x]" was a crash, "[bold]" vanished."""
    assert invoke("run", "placement").exit_code == 0
    result = invoke("query", "select '[/x] and [bold]y' as \"[b]c\", 1 as n")
    assert result.exit_code == 0
    assert "[/x] and [bold]y" in result.output and "[b]c" in result.output
    missing = invoke("run", "no[/such]")
    assert missing.exit_code == 1
    assert "no pipeline 'no[/such]'" in missing.output


def test_the_kafka_clients_lines_print_once_timed_and_as_they_are(capsys):
    import logging

    from headwater.cli.common import show_client_lines
    from headwater.kafka.client_log import LOGGER_NAME, Repeats

    logger = logging.getLogger(LOGGER_NAME)
    kept_filters, kept_handlers = list(logger.filters), list(logger.handlers)
    for f in kept_filters:
        logger.removeFilter(f)
    logger.addFilter(Repeats())
    try:
        show_client_lines()
        show_client_lines()  # main() and a test both call it: one handler
        line = "FAIL [rdkafka#consumer-1] [thrd:127.0.0.1:1/bootstrap]: Connection refused"
        for _ in range(3):
            logger.error(line)
        logger.info("only warnings and up are shown")
        printed = capsys.readouterr().err.splitlines()
    finally:
        logger.filters[:] = kept_filters
        logger.handlers[:] = kept_handlers
    assert len(printed) == 1
    assert re.fullmatch(r"\d\d:\d\d:\d\d kafka client: " + re.escape(line), printed[0])


def test_run_and_stream_leave_batches_that_dagster_runs_hold(project):
    """The sensor launched a run for a batch, still queued, before someone typed headwater
    run: running it here too would apply its moves twice, and skipping it would take the
    closed loop's windows out of order. Both commands refuse and name the run; a run this
    command left behind (killed mid-batch: "started" for ever) holds nothing."""
    from dagster import DagsterRun, DagsterRunStatus

    from headwater.runner import IN_PROCESS_TAG, dagster_instance
    from headwater.sensors.batches import batch_tags

    pipeline = get_pipeline(str(project / "pipelines" / "placement.yaml"))
    _new, [first, *_] = pipeline.cut()
    release_pipeline(pipeline)
    instance = dagster_instance(project)
    left = DagsterRun(
        job_name="placement_job",
        status=DagsterRunStatus.STARTED,
        tags={**batch_tags(first, "a killed run"), IN_PROCESS_TAG: "true"},
    )
    queued = DagsterRun(  # as the sensor's run request leaves it before the queue takes it
        job_name="placement_job", status=DagsterRunStatus.NOT_STARTED, tags=batch_tags(first, "x")
    )
    instance.add_run(left)
    instance.add_run(queued)
    for command in ("run", "stream"):
        refused = invoke(command, "placement", *(["--idle-exit", "1"] * (command == "stream")))
        said = " ".join(refused.output.split())
        assert refused.exit_code == 1, said
        assert f"headwater {command}: 1 pending batch(es) of pipeline placement" in said
        assert f"{first.id} (run {queued.run_id[:8]})" in said
    assert not (project / "lake" / "placement" / "moves.jsonl").exists()  # nothing ran

    instance.report_run_canceled(queued)
    instance.dispose()
    assert invoke("run", "placement").exit_code == 0
    assert (project / "lake" / "placement" / "moves.jsonl").read_text()


def test_a_kafka_client_line_in_a_run_of_this_process_prints_once(project, capfd):
    """In headwater run the run's console logger prints the client's line (python_logs in
    dagster.yaml) with its run and step; the command's own printer stays quiet then."""
    import logging

    from dagster import job, op

    from headwater.cli.common import show_client_lines
    from headwater.kafka.client_log import LOGGER_NAME, Repeats
    from headwater.runner import dagster_instance

    logger = logging.getLogger(LOGGER_NAME)
    kept_filters, kept_handlers = list(logger.filters), list(logger.handlers)
    logger.filters[:] = [Repeats()]
    line = "FAIL [rdkafka#consumer-1] [thrd:127.0.0.1:1/bootstrap]: Connection refused"

    @op
    def lose_the_broker() -> None:
        logger.error(line)

    @job
    def client_line() -> None:
        lose_the_broker()

    try:
        show_client_lines()
        instance = dagster_instance(project, capture_logs=False)
        client_line.execute_in_process(
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        instance.dispose()
        logger.error(line.replace("bootstrap", "other"))  # outside a run: ours prints
        printed = [x for x in capfd.readouterr().err.splitlines() if "Connection refused" in x]
    finally:
        logger.filters[:] = kept_filters
        logger.handlers[:] = kept_handlers
    assert len(printed) == 2, printed
    assert " - dagster - ERROR - client_line - " in printed[0] and printed[0].endswith(line)
    assert " kafka client: " in printed[1]
