"""The Dagster shell: definitions from specs, in-process materializations, the batch sensor."""

import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    SensorResult,
    SkipReason,
    build_sensor_context,
    materialize,
)

from headwater.definitions import build_definitions, job_name
from headwater.resources import HeadwaterProject, KafkaResource
from headwater.resources.project import get_pipeline
from headwater.runner import run_batches
from headwater.worker_lock import WorkerLock
from tests.conftest import REPO


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def test_bundled_specs_become_assets_job_and_sensor():
    defs = build_definitions(root=str(REPO))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"ztf/raw", "ztf/solar_system", "ztf/extragalactic", "ztf/_quarantine"} <= keys
    assert defs.resolve_job_def("ztf_job") is not None
    assert defs.resolve_sensor_def("ztf_batches") is not None


def test_a_batch_is_one_materialization_per_stream_with_its_metadata(ztf_spec, tmp_path, instance):
    spec_file = ztf_spec(batch=20)
    pipeline = get_pipeline(str(spec_file), root=str(tmp_path))
    pipeline.plan()
    [first, second] = pipeline.pending()
    outcomes = run_batches(spec_file, pipeline, [first], [], tmp_path, instance=instance)
    assert outcomes[0].success, outcomes[0].error
    event = instance.get_latest_materialization_event(AssetKey(["ztf", "solar_system"]))
    mat = event.asset_materialization
    assert mat.partition == first.window
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["batch_id"] == first.id
    assert (
        meta["rows_in"] == 20
        and meta["rows_out"] == outcomes[0].summary["streams"]["solar_system"]["rows_out"]
    )
    assert meta["path"].endswith(f"window={first.window}/{first.id}.parquet")
    assert meta["coordinates"]["ranges"] == first.coordinates["ranges"]
    run = instance.get_run_by_id(outcomes[0].run_id)
    assert run.tags["headwater/batch_id"] == first.id
    assert run.tags["dagster/partition"] == first.window
    assert pipeline.ledger.get(second.window, second.id).status == "pending"


def test_runs_in_this_process_read_the_next_batch_ahead_in_the_op_s_pipeline(
    ztf_spec, tmp_path, instance
):
    spec_file = ztf_spec(batch=10)
    pipeline = get_pipeline(str(spec_file), root=str(tmp_path))
    pipeline.plan()
    batches = pipeline.pending()
    decoded: list[int] = []
    decode = pipeline.decoder.decode
    pipeline.decoder.decode = lambda raw: decoded.append(raw.messages.num_rows) or decode(raw)
    outcomes = run_batches(spec_file, pipeline, batches, [], tmp_path, instance=instance)
    assert all(o.success for o in outcomes)
    # the op ran on this very pipeline (its decoder), reading each batch once, ahead of time
    assert decoded == [b.records for b in batches]
    assert pipeline._reader is not None and pipeline._ahead is None
    assert [o.summary["decoded"] for o in outcomes] == [b.records for b in batches]


def test_materializing_a_window_without_batch_ids_replays_its_recorded_batches(
    ztf_spec, tmp_path, instance
):
    spec_file = ztf_spec(batch=12)
    pipeline = get_pipeline(str(spec_file), root=str(tmp_path))
    batches = pipeline.plan()
    defs = build_definitions([spec_file], root=str(tmp_path))
    job = defs.resolve_job_def(job_name(pipeline.spec))
    result = job.execute_in_process(instance=instance, partition_key=batches[0].window)
    assert result.success
    mat = instance.get_latest_materialization_event(AssetKey(["ztf", "raw"])).asset_materialization
    assert mat.metadata["rows_out"].value == 30
    assert mat.metadata["batch_ids"].value == [b.id for b in batches]
    assert pipeline.pending() == []


def test_sensor_requests_one_run_per_recorded_batch_then_skips(ztf_spec, tmp_path, instance):
    spec_file = ztf_spec(batch=16)
    defs = build_definitions([spec_file], root=str(tmp_path))
    sensor = defs.resolve_sensor_def("ztf_batches")
    resources = {"headwater": HeadwaterProject(root=str(tmp_path), kafka=KafkaResource())}
    with build_sensor_context(instance=instance, resources=resources) as context:
        result = sensor(context)
    assert isinstance(result, SensorResult)
    pipeline = get_pipeline(str(spec_file), root=str(tmp_path))
    recorded = pipeline.pending()
    assert [r.run_key for r in result.run_requests] == [b.id for b in recorded]
    assert [r.partition_key for r in result.run_requests] == [b.window for b in recorded]
    assert result.run_requests[0].run_config["ops"]["ztf__streams"]["config"]["batch_ids"] == [
        recorded[0].id
    ]
    assert '"v": 1' in result.cursor
    run_batches(spec_file, pipeline, recorded, [], tmp_path, instance=instance)
    with build_sensor_context(instance=instance, resources=resources) as context:
        again = sensor(context)
    assert isinstance(again, SkipReason)
    assert "no new input" in again.skip_message


FLAKY_SPEC = """\
name: flaky
lake: {lake}
retries: {{max_retries: 2, delay_seconds: 0}}
source: {{files: {{path: {alerts}, pattern: "**/*.avro"}}}}
decode: {{avro: {{framing: container, cutouts: drop}}}}
streams:
  raw:
    processors: [{{"tests.flaky:Flaky": {{counter: "{counter}", transient: {transient}}}}}]
    sinks: [parquet]
"""


@pytest.mark.parametrize("transient", [True, False])
def test_transient_failures_are_retried_permanent_ones_fail_at_once(
    transient, alerts_copy, tmp_path, write_spec, instance
):
    counter = tmp_path / "attempts"
    spec_file = write_spec(
        FLAKY_SPEC.format(
            lake=tmp_path / "lake", alerts=alerts_copy, counter=counter, transient=transient
        )
    )
    pipeline = get_pipeline(str(spec_file), root=str(tmp_path))
    [batch] = pipeline.plan()
    [outcome] = run_batches(spec_file, pipeline, [batch], [], tmp_path, instance=instance)
    assert outcome.success is transient
    assert counter.read_text() == ("2" if transient else "1")  # one retry, or none
    status = pipeline.ledger.get(batch.window, batch.id).status
    assert status == ("done" if transient else "pending")
    if not transient:
        assert "attempt 1 failed" in outcome.error


def test_the_run_config_alone_replays_a_batch_the_ledger_lost(ztf_spec, tmp_path, instance):
    spec_file = ztf_spec(batch=30)
    pipeline = get_pipeline(str(spec_file), root=str(tmp_path))
    [batch] = pipeline.plan()
    [first] = run_batches(spec_file, pipeline, [batch], [], tmp_path, instance=instance)
    output = pipeline.lake.batch_file("ztf", "raw", batch.window, batch.id)
    before = output.read_bytes()
    for f in pipeline.ledger.root.rglob("*.json"):
        f.unlink()
    output.unlink()
    run = instance.get_run_by_id(first.run_id)
    defs = build_definitions([spec_file], root=str(tmp_path))
    result = defs.resolve_job_def("ztf_job").execute_in_process(
        run_config=run.run_config, instance=instance, partition_key=batch.window
    )
    assert result.success
    assert output.read_bytes() == before
    assert pipeline.ledger.get(batch.window, batch.id).status == "done"


CATALOG_SPEC = """\
name: cats
lake: {lake}
catalogs:
  stars: {{path: {catalog}, id: id, columns: [kind]}}
source: {{files: {{path: {alerts}, pattern: "**/*.avro"}}}}
decode: {{avro: {{cutouts: drop}}}}
streams:
  raw: {{sinks: []}}
  near_stars:
    from: raw
    processors: [{{crossmatch: {{catalog: stars, radius_arcsec: 5}}}}]
    sinks: [parquet]
"""


def catalog_project(tmp_path, alerts_copy, rows: str):
    catalog = tmp_path / "stars.csv"
    catalog.write_text("id,ra,dec,kind\n" + rows)
    spec_file = tmp_path / "pipelines" / "cats.yaml"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(
        CATALOG_SPEC.format(lake=tmp_path / "lake", catalog=catalog, alerts=alerts_copy)
    )
    defs = build_definitions([spec_file], root=str(tmp_path))
    return defs, defs.resolve_assets_def(AssetKey(["cats", "catalogs", "stars"]))


def test_a_catalog_is_an_asset_validated_and_stored_and_its_streams_depend_on_it(
    tmp_path, alerts_copy, instance
):
    defs, stars = catalog_project(tmp_path, alerts_copy, "a,10.0,1.0,RRAB\nb,350.0,-5.0,M\n")
    graph = defs.resolve_asset_graph()
    assert (
        AssetKey(["cats", "catalogs", "stars"])
        in graph.get(AssetKey(["cats", "near_stars"])).parent_keys
    )
    result = materialize([stars], instance=instance)  # the definitions' project resource
    assert result.success
    [mat] = result.asset_materializations_for_node(stars.node_def.name)
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["rows"] == 2 and meta["columns"] == ["id", "ra", "dec", "kind"]
    stored = pq.read_table(meta["path"])
    assert sorted(stored["id"].to_pylist()) == ["a", "b"]


def test_a_catalog_with_bad_rows_fails_its_asset_with_the_report(tmp_path, alerts_copy, instance):
    _, stars = catalog_project(tmp_path, alerts_copy, "a,10.0,1.0,RRAB\nb,361.0,-5.0,M\n")
    result = materialize([stars], instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert "1 with ra missing or outside [0, 360)" in message and "id='b'" in message


def test_placement_decisions_show_their_metrics_and_heatmap(tmp_path, instance):
    import shutil

    shutil.copytree(REPO / "samples" / "placement", tmp_path / "samples" / "placement")
    spec_file = tmp_path / "pipelines" / "placement.yaml"
    spec_file.parent.mkdir()
    shutil.copy(REPO / "pipelines" / "placement.yaml", spec_file)
    pipeline = get_pipeline(str(spec_file), root=str(tmp_path))
    pipeline.plan()
    first = pipeline.pending()[0]
    outcomes = run_batches(spec_file, pipeline, [first], [], tmp_path, instance=instance)
    assert outcomes[0].success, outcomes[0].error
    event = instance.get_latest_materialization_event(
        AssetKey(["placement", "placement_decisions"])
    )
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert meta["strategy"] == "balance" and meta["window"] == [0, 3]
    assert meta["after_overloaded_host_ticks"] == 0
    assert meta["after_peak_utilisation"] < meta["before_peak_utilisation"]
    assert meta["heatmap"].endswith(".png")
    assert meta["heatmap_image"].startswith("![host load")
    model = instance.get_latest_materialization_event(AssetKey(["placement", "cluster_model"]))
    model_meta = {k: v.value for k, v in model.asset_materialization.metadata.items()}
    assert model_meta["containers"] == 10 and model_meta["hosts"] == 2


def test_a_large_batch_s_coordinates_are_summarised_in_its_metadata(ztf_spec, tmp_path):
    from headwater.assets.streams import COORDINATES_SHOWN, asset_metadata
    from headwater.batch import Batch
    from headwater.pipeline import BatchReport, StreamReport

    pipeline = get_pipeline(str(ztf_spec(batch=10)), root=str(tmp_path))
    ranges = [[f"{k:04d}/{k:07d}.avro", 0, 1] for k in range(5000)]
    batch = Batch("ztf", "b1", "2026-11-24", "files", {"root": "/in", "ranges": ranges}, "t", 5000)
    streams = {s.name: StreamReport(s.name, 5000, 5000, 0, 0.1) for s in pipeline.spec.streams}
    metas = dict(asset_metadata(pipeline.spec, [BatchReport(batch, 5000, streams=streams)]))
    for meta in metas.values():
        text = meta["coordinates"].value
        assert text.startswith('{"root": "/in", "ranges": [["0000/0000000.avro", 0, 1]')
        assert len(text) < COORDINATES_SHOWN + 200  # not the ~150,000 characters of them all
        assert "headwater batches ztf --format json" in text


def test_the_sensor_skips_while_a_stream_worker_holds_the_pipeline(ztf_spec, tmp_path, instance):
    """A worker records its batches before it runs them: a sensor cutting beside it would
    launch runs of the very batches the worker has in hand."""
    spec_file = ztf_spec(batch=16)
    defs = build_definitions([spec_file], root=str(tmp_path))
    sensor = defs.resolve_sensor_def("ztf_batches")
    resources = {"headwater": HeadwaterProject(root=str(tmp_path), kafka=KafkaResource())}
    pipeline = get_pipeline(str(spec_file), root=str(tmp_path))
    held = WorkerLock.of(pipeline, None, "headwater stream")
    with held, build_sensor_context(instance=instance, resources=resources) as context:
        skipped = sensor(context)
    assert isinstance(skipped, SkipReason)
    assert "another process (headwater stream, PID" in skipped.skip_message
    assert pipeline.pending() == []  # nothing cut
    with build_sensor_context(instance=instance, resources=resources) as context:
        assert isinstance(sensor(context), SensorResult)  # the worker gone, it cuts


def test_batches_claimed_are_those_of_runs_yet_to_end_but_not_the_cli_s_own(instance):
    from dagster._core.storage.tags import PARENT_RUN_ID_TAG

    from headwater.runner import IN_PROCESS_TAG, claimed_batches

    def tags(batch: str, pipeline: str = "p", **more) -> dict[str, str]:
        return {"headwater/pipeline": pipeline, "headwater/batch_id": batch, **more}

    started, waiting = DagsterRunStatus.STARTED, DagsterRunStatus.NOT_STARTED
    runs = {
        "sensor": (started, tags("b1")),
        "requested": (waiting, tags("b2")),
        "finished": (DagsterRunStatus.SUCCESS, tags("b3")),
        "cli": (started, tags("b4", **{IN_PROCESS_TAG: "true"})),  # killed, or this very run
        "ui re-execution of a cli run": (
            waiting,
            tags("b5", **{IN_PROCESS_TAG: "true", PARENT_RUN_ID_TAG: "x"}),
        ),
        "other pipeline": (started, tags("b6", "q")),
    }
    ids = {}
    for name, (status, run_tags) in runs.items():
        run = DagsterRun(job_name="p_job", status=status, tags=run_tags)
        instance.add_run(run)
        ids[name] = run.run_id
    assert claimed_batches(instance, "p") == {
        "b1": ids["sensor"],
        "b2": ids["requested"],
        "b5": ids["ui re-execution of a cli run"],
    }
