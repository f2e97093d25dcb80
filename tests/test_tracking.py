"""MLflow tracking against a real `mlflow server` (SQLite backend, temp folder) on 127.0.0.1, read
back through MLflow's own client: a comparison is a parent run with the verdict as tags and the
report as artifacts, each arm a nested run with its metrics, a LoRA arm's loss curve logged step by
step by the Trainer; runs reused from the store are not logged twice; a server that is down is one
line, exit 2, and the comparison is stored all the same. The MLflow UI is checked in chromium."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.store import Store
from tests.conftest import topic_rows
from tests.servers import free_port, serve_mlflow

pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LORA = {"max_steps": 12, "eval_steps": 4, "learning_rate": 0.01, "batch_size": 4}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    served = serve_mlflow(folder, folder / "server.log")
    try:
        yield served.url
    finally:
        served.stop()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def lora_task(make_task, name: str):
    return make_task(name=name, train=topic_rows(12), eval=topic_rows(4, offset=20),
                     strategies={"zero_shot": {}, "few_shot": {"k": 2}, "lora": LORA})


def children(client: MlflowClient, experiment_id: str, parent: str) -> dict:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    return {r.data.tags["harness.arm"]: r for r in runs}


def parents(client: MlflowClient, experiment_id: str) -> list:
    return client.search_runs([experiment_id], filter_string="tags.`harness.kind` = 'comparison'",
                              order_by=["attributes.start_time ASC"])


def test_a_comparison_is_a_parent_run_with_one_nested_run_per_arm(server, make_task, tmp_path, capsys):
    path = lora_task(make_task, "tracked_topics")
    store = tmp_path / "s.sqlite"
    assert main(["compare", str(path), "--store", str(store), "--no-progress", "--mlflow", server,
                 "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert f"logged to MLflow: {server}/#/experiments/" in out
    assert "MLFLOW_TRACKING_URI" not in os.environ  # MLflow sets it; the command puts it back
    report = json.loads((tmp_path / "r.json").read_text())
    arms = [r["name"] for r in report["strategies"]]
    assert {"zero_shot", "few_shot", "lora"} <= set(arms)  # and the fair baselines the harness added

    client = MlflowClient(server)
    experiment = client.get_experiment_by_name("tracked_topics")  # default experiment: the task's name
    (parent,) = parents(client, experiment.experiment_id)
    tags = parent.data.tags
    rec = report["recommendation"]
    assert tags["harness.task"] == "tracked_topics" and tags["harness.data_hash"] == report["data_hash"]
    assert tags["harness.model"] == report["model"] and tags["harness.comparison_id"] == "1"
    assert tags["harness.verdict.kind"] == rec["kind"] and tags["harness.verdict"] == rec["verdict"]
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert artifacts == {"report.json", "report.html"}
    logged = json.loads(Path(client.download_artifacts(parent.info.run_id, "report.json", str(tmp_path))).read_text())
    assert logged["recommendation"]["kind"] == rec["kind"]

    kids = children(client, experiment.experiment_id, parent.info.run_id)
    assert sorted(kids) == sorted(arms)
    for row in report["strategies"]:
        run = kids[row["name"]]
        m = run.data.metrics
        assert m["quality"] == pytest.approx(row["quality"]["value"])
        assert m["quality_ci_low"] == pytest.approx(row["quality"]["ci_low"])
        assert m["accuracy"] == pytest.approx(row["metrics"]["accuracy"]["value"])
        assert m["latency_p95_ms"] == pytest.approx(row["latency_ms"]["p95"])
        assert m["cost_per_request_usd"] == pytest.approx(row["cost"]["per_request_usd"])
        assert run.data.tags["harness.store_run_id"] == str(row["run_id"])
        assert run.info.status == "FINISHED"
    assert kids["few_shot"].data.params["axes.demos.k"] == "2"
    assert kids["lora"].data.params["axes.weights.lora.max_steps"] == "12"
    assert kids["lora"].data.metrics["forgetting_delta_loss"] == pytest.approx(
        report["strategies"][arms.index("lora")]["forgetting"]["delta_loss"])
    # The loss curve, logged by the Trainer's own MLflow callback into the arm's run, step by step.
    curve = client.get_metric_history(kids["lora"].info.run_id, "loss")
    assert len(curve) >= 3 and len({p.step for p in curve}) == len(curve)
    assert [p.value for p in curve] == pytest.approx(
        report["strategies"][arms.index("lora")]["training"]["loss_history"])

    # Again: every arm is reused from the store, and none is logged a second time. The new
    # comparison's parent names the runs that hold them.
    assert main(["compare", str(path), "--store", str(store), "--no-progress", "--mlflow", server]) == 0
    first, second = parents(client, experiment.experiment_id)
    assert first.info.run_id == parent.info.run_id
    assert not children(client, experiment.experiment_id, second.info.run_id)
    assert {k.removeprefix("harness.reused."): v for k, v in second.data.tags.items()
            if k.startswith("harness.reused.")} == {name: run.info.run_id for name, run in kids.items()}
    assert second.data.tags["harness.comparison_id"] == "2"


def test_tracking_from_the_task_file_and_a_gate_result(server, make_task, tmp_path, capsys):
    path = make_task(name="gated_topics", train=topic_rows(12), eval=topic_rows(4, offset=20),
                     strategies={"zero_shot": {}, "lora": LORA},
                     tracking={"mlflow": {"tracking_uri": server, "experiment": "team"}},
                     gate={"min_quality": 0.0, "max_drop": None, "max_forgetting": None})
    store = tmp_path / "s.sqlite"
    assert main(["train", str(path), "--output", str(tmp_path / "adapter"), "--no-progress"]) == 0
    rc = main(["gate", str(path), str(tmp_path / "adapter"), "--store", str(store), "--no-progress"])
    out = capsys.readouterr().out
    assert rc in (0, 3) and f"logged to MLflow: {server}" in out
    client = MlflowClient(server)
    experiment = client.get_experiment_by_name("team")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.`harness.kind` = 'gate'")
    gate = Store(store, readonly=True).gates()[0]
    assert run.data.tags["harness.gate.outcome"] == gate["result"]["outcome"]
    assert run.data.tags["harness.rule.min_quality"] == "pass"
    assert run.data.metrics["candidate_quality"] == pytest.approx(gate["result"]["candidate"]["quality"]["value"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"gate.json"}


def test_an_unreachable_server_is_one_line_and_exit_2_and_the_comparison_is_stored(make_task, tmp_path, capsys):
    path = make_task()
    store = tmp_path / "s.sqlite"
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    rc = main(["compare", str(path), "--store", str(store), "--no-progress", "--mlflow", uri])
    out = capsys.readouterr()
    assert rc == 2
    assert len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    assert f"--mlflow: MLflow server {uri} is not reachable" in out.err
    assert "the comparison is stored as comparison 1" in out.err
    assert "stored as comparison 1" in out.out  # the table and the verdict were printed as usual
    assert [c["id"] for c in Store(store, readonly=True).comparisons()] == [1]
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_without_the_extra_one_line_names_it_and_nothing_is_stored(make_task, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    store = tmp_path / "s.sqlite"
    rc = main(["compare", str(make_task()), "--store", str(store), "--no-progress", "--mlflow", "http://x"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "error: --mlflow: MLflow tracking needs mlflow: pip install 'ft-harness[mlflow]'"
    assert not store.exists()


def test_tracking_is_not_in_the_run_key(make_task, tmp_path):
    from harness.compare import compare

    store = tmp_path / "s.sqlite"
    compare(make_task(), store_path=store, progress=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracked = make_task(tracking={"mlflow": {"tracking_uri": uri, "experiment": "x"}})
    report = compare(tracked, store_path=store, progress=False)
    assert all(r.reused for r in report.strategies)
    # A local database works without a server; the reused runs, never logged before, are logged now.
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("x").experiment_id])
    assert len(runs) == 1 + len(report.strategies)


def test_the_mlflow_ui_shows_the_comparison_and_its_arms(server, make_task, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM} (`make test` installs it)")
    from playwright.sync_api import sync_playwright

    path = make_task(name="ui_topics")
    tracked: dict = {}
    from harness.compare import compare

    report = compare(path, store_path=tmp_path / "s.sqlite", progress=False, mlflow=server, tracked=tracked)
    arms = [r.name for r in report.strategies]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(tracked["parent"])  # the parent run's page
            page.get_by_text("ui_topics", exact=True).first.wait_for(timeout=60_000)
            page.get_by_text(report.recommendation.kind).first.wait_for()  # the verdict tag
            # The experiment's runs: the comparison, and under it, once expanded, one child run per arm.
            experiment = tracked["parent"].split("/runs/")[0]
            page.goto(f"{experiment}/runs")
            parent_link = page.locator(f"a[href$='/runs/{tracked['parent'].rsplit('/', 1)[1]}']")
            parent_link.get_by_text("ui_topics", exact=True).wait_for(timeout=60_000)
            for run_id in tracked["arms"].values():
                assert not page.locator(f"a[href$='/runs/{run_id}']").count()  # nested: hidden until expanded
            page.locator("button[data-component-id*='runnamecellrenderer']").first.click()
            for name, run_id in tracked["arms"].items():
                page.locator(f"a[href$='/runs/{run_id}']").get_by_text(name, exact=True).wait_for(timeout=30_000)
            assert sorted(tracked["arms"]) == sorted(arms)
            shot = Path(__file__).resolve().parent.parent / "test-artifacts" / "mlflow.png"
            shot.parent.mkdir(exist_ok=True)
            page.screenshot(path=shot)
        finally:
            browser.close()
