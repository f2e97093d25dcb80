"""The dashboard's page logic through Streamlit's AppTest: every view on stores filled by a tiny
real compare or by the speed benchmark's synthetic writer, and every kind of bad store (missing,
corrupt, empty, old, locked, being written) answered by a message in the page, never a traceback."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from harness.compare import compare
from harness.format import points_with_ci, table_cells, with_ci
from harness.results import ComparisonReport, Curve, GateResult
from harness.store import Store
from tests.conftest import load_benchmark

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"


# The speed benchmark's store writer, so these tests read the kind of store the speed figure is
# measured on.
fill_store = load_benchmark("speed_dashboard").fill_store


@pytest.fixture
def open_app(monkeypatch):
    """Run the page on a store, optionally on one view; fails on any exception in the page."""

    def run(store: Path, view: str | None = None) -> AppTest:
        monkeypatch.setattr(sys, "argv", ["app.py", "--store", str(store)])
        at = AppTest.from_file(str(APP), default_timeout=60)
        if view:
            at.session_state["view"] = view
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run


def text(at: AppTest) -> str:
    """Everything the page says in prose, with Markdown's bold and escapes removed."""
    kinds = ("title", "header", "subheader", "markdown", "caption", "success", "info", "warning", "error")
    prose = "\n".join(e.value for kind in kinds for e in at.get(kind)).replace("**", "")
    return re.sub(r"\\(.)", r"\1", prose)


def stored_report(path: Path, comparison_id: int) -> ComparisonReport:
    store = Store(path, readonly=True)
    try:
        stored = next(c for c in store.comparisons() if c["id"] == comparison_id)
    finally:
        store.close()
    return ComparisonReport.model_validate(stored["report"])


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, list[int]]:
    """Two comparisons of zero_shot, few_shot, rag and lora, 40 examples per run, and a gate result each."""
    path = tmp_path_factory.mktemp("dash") / "store.sqlite"
    return path, fill_store(path, comparisons=2, examples=40, seed=7)


# --- bad stores ------------------------------------------------------------------------------------

def test_missing_store_is_a_message_and_nothing_is_created(open_app, tmp_path):
    missing = tmp_path / "nowhere.sqlite"
    at = open_app(missing)
    (error,) = at.error
    assert f"No results store at {missing}" in error.value and "harness compare" in error.value
    assert not missing.exists()


@pytest.mark.parametrize("content, says", [
    (b"this is not a database, just bytes " * 200, "is not a results store: SQLite says 'file is not a database'"),
    (b"", "is not a results store yet: it has no runs, examples, comparisons table"),
])
def test_corrupt_or_foreign_file_is_a_message(open_app, tmp_path, content, says):
    path = tmp_path / "store.sqlite"
    path.write_bytes(content)
    at = open_app(path)
    (error,) = at.error
    assert says in error.value
    assert path.read_bytes() == content  # read-only: nothing repaired, created or migrated


@pytest.mark.parametrize("view, says", [
    ("Comparison", ["No comparison in this store yet"]),
    ("Runs", ["No comparison stored yet.", "No strategy runs in this store yet"]),
    ("Gates", ["No gate results yet"]),
])
def test_empty_store(open_app, tmp_path, view, says):
    Store(tmp_path / "store.sqlite").close()
    at = open_app(tmp_path / "store.sqlite", view)
    assert all(phrase in text(at) for phrase in says)
    assert not at.error and not at.dataframe


def test_comparison_stored_before_verdicts(open_app, tmp_path):
    store = Store(tmp_path / "store.sqlite")
    store.save_comparison("old_task", {"task": "old_task", "strategies": []})
    store.close()
    at = open_app(tmp_path / "store.sqlite")
    page = text(at)
    assert "Comparison 1 was stored by an older harness, whose report lacks or differs in task_file, model" in page
    assert "comparisons, assumptions; run `harness compare` on its task again to see it here." in page
    assert not at.dataframe
    at = open_app(tmp_path / "store.sqlite", "Runs")
    assert at.dataframe[0].value["verdict"].tolist() == ["(stored before verdicts)"]


def test_store_written_during_the_visit(open_app, tmp_path):
    """A compare holding a write transaction: the page shows what is committed, and a rerun after
    the commit shows the new run (cached reads are keyed on the file's signature)."""
    path = tmp_path / "store.sqlite"
    fill_store(path, comparisons=1, examples=10)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    # Owned by this (live) process, as a compare's run is.
    writer.execute("INSERT INTO runs (key, task, strategy, model, status, created_at, config, provenance, "
                   "owner_host, owner_pid) VALUES ('k', 'news', 'lora', 'm', 'running', 1e9, '{}', '{}', ?, ?)",
                   (socket.gethostname(), os.getpid()))
    writer.execute("INSERT INTO examples (run_id, example_id, prompt, prediction, target, scores, prompt_tokens, "
                   "output_tokens, latency_ms, extra) VALUES (last_insert_rowid(), 'ex-1', 'p', 'sport', 'sport', "
                   "'{\"accuracy\": 1.0}', 3, 1, 5.0, '{}')")
    try:
        at = open_app(path, "Runs")
        assert "Running:" not in text(at) and len(at.dataframe[1].value) == 4
        assert "Verdict:" in text(open_app(path))
        writer.execute("COMMIT")
        at.run()
        assert not at.exception
        assert "Running: run 5 (news lora, 1 examples so far)" in text(at) and "Interrupted" not in text(at)
        assert len(at.dataframe[1].value) == 5
    finally:
        writer.close()


def test_store_locked_by_another_program_is_a_message(open_app, tmp_path):
    # WAL readers are never blocked; a store switched to a rollback journal by some other tool is,
    # while that tool holds an exclusive lock.
    path = tmp_path / "store.sqlite"
    Store(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode=DELETE")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("INSERT INTO comparisons (task, created_at, report) VALUES ('t', 1, '{}')")
    try:
        at = open_app(path)
        (error,) = at.error
        assert "stayed locked for 3 s" in error.value and "Reload in a moment" in error.value
    finally:
        other.close()


# --- the views -------------------------------------------------------------------------------------

def test_real_compare_shows_verdict_table_and_charts(open_app, make_task, tmp_path):
    path = tmp_path / "store.sqlite"
    report = compare(make_task(), store_path=path, progress=False)
    at = open_app(path)
    page = text(at)
    rec = report.recommendation
    assert f"Verdict: {rec.verdict}" in page
    assert all(reason in page for reason in rec.reasons)
    assert f"{report.task} · {report.model} · 12 eval examples" in page

    # The strategy table is the column spec the terminal and the report render, cell for cell; so a
    # tiny compare's costs read as money ('< $0.0001'), never as 3.783e-11.
    table = at.dataframe[0].value
    columns, cells = table_cells(report.strategies, report.comparisons.metric)
    assert list(table.columns) == [c.header for c in columns] + ["from store"]
    assert table[[c.header for c in columns]].values.tolist() == cells
    assert table["strategy"].tolist() == ["zero_shot", "few_shot"]
    assert all(cell.startswith(("$", "< $")) for cell in [*table["one-time $"], *table["$ / month"]])
    cost, latency = charts(at)
    assert (cost["title"], latency["title"]) == ("quality vs cost", "quality vs latency")
    points = cost["layer"][1]["data"]["values"]
    assert [p["x"] for p in points] == [1000 * s.cost.per_request_usd for s in report.strategies]
    assert [d.label for d in at.get("download_button")] == ["Download report (HTML, with plots)",
                                                            "Download report (Markdown)"]
    # No fine-tuning ran: the training view says so instead of an empty table.
    assert "No fine-tuning strategy in this comparison" in page


def test_pareto_front_holds_exactly_the_undominated_strategies(open_app, synthetic):
    at = open_app(synthetic[0])
    for spec in charts(at):
        front_layer, points_layer = spec["layer"]
        front = {(p["x"], p["quality"]) for p in front_layer["data"]["values"]}
        points = {(p["x"], p["quality"]) for p in points_layer["data"]["values"]}
        assert front and front <= points
        for x, q in points:
            dominated = any(x2 <= x and q2 >= q and (x2, q2) != (x, q) for x2, q2 in points)
            assert ((x, q) in front) != dominated, spec["title"]


def test_forgetting_training_and_an_older_comparison(open_app, synthetic):
    path, (older, newer) = synthetic
    at = open_app(path)
    assert f"Comparison {newer}," in text(at)
    forgetting = at.dataframe[2].value
    assert forgetting["strategy"].tolist() == ["zero_shot", "few_shot", "rag", "lora"]
    assert forgetting["weights_changed"].tolist() == [False, False, False, True]
    assert forgetting["delta_loss"].tolist() == pytest.approx([0, 0, 0, 0.04])
    training = at.dataframe[3].value
    assert training["strategy"].tolist() == ["lora"] and training["wall_s"].tolist() == [410.0]

    at.selectbox(key="comparison_id").set_value(older).run()
    assert not at.exception and f"Comparison {older}," in text(at)
    assert f"Verdict: {stored_report(path, older).recommendation.verdict}" in text(at)


def learning_curve(strategy: str, param: str, fine_tuning: bool, points: list[tuple]) -> Curve:
    """A curve of (parameter value, labelled examples, accuracy) points, each interval ±5 points."""
    def point(value, labelled, q):
        m = {"value": q, "ci_low": q - 0.05, "ci_high": q + 0.05}
        return {"value": value, "labelled_examples": labelled, "run_id": 1, "n_examples": 20,
                "quality": {"metric": "accuracy", **m}, "metrics": {"accuracy": m}}

    return Curve(strategy=strategy, param=param, fine_tuning=fine_tuning, points=[point(*p) for p in points])


# The best in-context point is k=4: 52% [47%, 57%]; lora's interval clears it at 500 examples.
FEW_SHOT_CURVE = learning_curve("few_shot", "demos.k", False, [(0, 0, 0.40), (1, 1, 0.45), (4, 4, 0.52), (8, 8, 0.50)])
LORA_CURVE = learning_curve("lora", "weights.lora.train_fraction", True,
                            [(0.125, 250, 0.48), (0.25, 500, 0.70), (1.0, 2000, 0.80)])


def store_with_curves(path: Path, curves: list[Curve]) -> tuple[Path, ComparisonReport]:
    """A synthetic store whose newest comparison has `curves` as its learning curves."""
    (cid,) = fill_store(path, comparisons=1, examples=20)
    report = stored_report(path, cid).model_copy(update={"learning_curves": curves})
    store = Store(path)
    try:
        store.save_comparison(report.task, report.model_dump(mode="json", exclude={"comparison_id"}))
    finally:
        store.close()
    return path, report


def test_learning_curves_show_where_fine_tuning_overtakes(open_app, tmp_path):
    rank = learning_curve("lora", "weights.lora.rank", True, [(4, None, 0.61), (16, None, 0.66)])
    path, report = store_with_curves(tmp_path / "store.sqlite", [FEW_SHOT_CURVE, LORA_CURVE, rank])
    at = open_app(path)
    assert "Learning curves" in [h.value for h in at.subheader]
    (spec,) = [c for c in charts(at) if c["title"] == "quality vs labelled train examples"]
    layers = {layer["name"]: layer for layer in spec["layer"]}
    runs = layers["compared_runs"]["data"]["values"]
    assert [r["line"] for r in runs] == [f"{s.name} (compared run)" for s in report.strategies]
    assert [r["quality"] for r in runs] == pytest.approx([100 * s.value("accuracy") for s in report.strategies])
    points = layers["curves"]["data"]["values"]
    assert [(p["line"], p["labelled_examples"]) for p in points] == [
        ("few_shot (demos.k)", n) for n in (0, 1, 4, 8)] + [
        ("lora (weights.lora.train_fraction)", n) for n in (250, 500, 2000)]
    assert [(p["quality"], p["ci_low"], p["ci_high"]) for p in points][5] == pytest.approx((70, 65, 75))
    assert layers["overtake"]["data"]["values"] == [{"labelled_examples": 500,
                                                     "label": "lora overtakes in-context learning at 500"}]
    assert ("lora overtakes the best in-context result (few_shot demos.k=4: 52.0% accuracy [95% CI 47.0%, 57.0%]) "
            "at 500 labelled examples (weights.lora.train_fraction=0.25: 70.0% accuracy [95% CI 65.0%, 75.0%]), "
            "its 95% interval entirely above.") in text(at)
    # The rank sweep has no number of labelled examples: a table, not a line.
    (table,) = [d.value for d in at.dataframe if "line" in d.value]
    assert table["point"].tolist() == ["weights.lora.rank=4", "weights.lora.rank=16"]
    assert table["quality"].tolist() == pytest.approx([61, 66])


def test_learning_curves_without_fine_tuning_say_so_without_a_marker(open_app, tmp_path):
    path, _ = store_with_curves(tmp_path / "store.sqlite", [FEW_SHOT_CURVE])
    at = open_app(path)
    (spec,) = [c for c in charts(at) if c["title"] == "quality vs labelled train examples"]
    assert [layer["name"] for layer in spec["layer"]] == ["compared_runs", "curves"]
    assert ("No fine-tuning learning curve, so nothing shows where fine-tuning overtakes in-context learning."
            in text(at))


def test_no_learning_curves_section_without_curves(open_app, synthetic):
    at = open_app(synthetic[0])
    assert "Learning curves" not in [h.value for h in at.subheader]
    assert [c["title"] for c in charts(at)] == ["quality vs cost", "quality vs latency"]
    assert "overtakes" not in text(at)


def test_explorer_filters_examples_where_strategies_disagree(open_app, synthetic):
    path, (_, newer) = synthetic
    runs = {s.name: s.run_id for s in stored_report(path, newer).strategies}
    store = Store(path, readonly=True)
    answers: dict[str, set] = {}
    try:
        for run_id in runs.values():
            for e in store.examples(run_id):
                answers.setdefault(e["example_id"], set()).add((e["prediction"], e["scores"]["accuracy"]))
    finally:
        store.close()
    differ = {i for i, a in answers.items() if len(a) > 1}
    assert 0 < len(differ) < len(answers) == 40  # the filter has something to keep and to drop

    at = open_app(path, "Examples")
    shown = at.dataframe[0].value
    assert set(shown["example"]) == differ
    assert f"{len(differ)} of 40 examples on which the strategies' predictions or scores differ" in text(at)
    for _, row in shown.iterrows():
        assert len({row[name] for name in runs}) > 1 or len({row[f"{name} accuracy"] for name in runs}) > 1

    at.radio(key="example_filter").set_value("All examples").run()
    assert not at.exception and set(at.dataframe[0].value["example"]) == set(answers)

    chosen = min(differ)
    at.radio(key="example_filter").set_value("Strategies disagree").run()
    at.selectbox(key="example_id").set_value(chosen).run()
    assert not at.exception
    store = Store(path, readonly=True)
    try:
        stored = {name: next(e for e in store.examples(run_id) if e["example_id"] == chosen)
                  for name, run_id in runs.items()}
    finally:
        store.close()
    assert [c.value for c in at.code] == [stored[name]["prompt"] for name in runs]
    page = text(at)
    assert f"Gold answer: {stored['rag']['target']}" in page
    assert all(f"{name}: {stored[name]['prediction']}" in page for name in runs)
    (retrieved,) = [d.value for d in at.dataframe[1:] if "chunk_id" in d.value]
    hits = stored["rag"]["extra"]["retrieved"]
    assert retrieved["chunk_id"].tolist() == [h["chunk_id"] for h in hits]
    assert retrieved["in_prompt"].tolist() == [i < stored["rag"]["extra"]["n_shown"] for i in range(len(hits))]


def test_gate_history_with_rules(open_app, tmp_path):
    # The synthetic store's gates: comparison 1's lora run fails strict rules, comparison 0's passes.
    path = tmp_path / "store.sqlite"
    # 40 examples: on fewer the passing gate's drop rule could not be decided (inconclusive).
    fill_store(path, comparisons=2, examples=40)
    store = Store(path)
    gates = store.gates()
    failing, passing = (GateResult.model_validate(g["result"]) for g in gates)
    # A result an older harness stored in another shape: the store's own columns must still show.
    older = store.save_gate("legal", "step-1", None, None, False, {"passed": False})
    store.close()

    at = open_app(path, "Gates")
    assert "3 gate results, newest first: 1 passed, 2 failed, 0 inconclusive." in text(at)
    history = at.dataframe[0].value
    assert history["checkpoint"].tolist() == ["step-1", "/synthetic/checkpoint-1", "/synthetic/checkpoint-0"]
    assert history["outcome"].tolist() == ["❌ FAILED", "❌ FAILED", "✅ passed"]
    assert history["failed"].tolist()[1:] == ["min_quality, max_forgetting", ""]
    assert history["candidate"].tolist()[1:] == [with_ci(g.candidate.quality) for g in (failing, passing)]
    assert history["difference"].tolist()[1:] == [points_with_ci(g.difference) for g in (failing, passing)]
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", history["candidate"][1])
    assert re.fullmatch(r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\], p=\S+", history["difference"][1])
    assert history[["baseline", "difference", "failed"]].iloc[0].isna().all()
    assert history["baseline"].tolist()[1:] == [f"run {g.baseline.run_id} (zero_shot)" for g in (failing, passing)]
    assert f"Gate {older} was stored by an older harness" in text(at)

    at.selectbox(key="gate_id").set_value(gates[0]["id"]).run()
    assert not at.exception
    rules = at.dataframe[1].value
    assert rules["name"].tolist() == ["min_quality", "max_drop", "max_forgetting", "max_latency_p95_ms"]
    assert rules["outcome"].tolist() == ["fail", "pass", "fail", "skipped"]
    assert rules["threshold"].tolist() == ["0.9", "0.05", "0.02", ""]


def test_store_older_than_gate_results(open_app, tmp_path):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE gates; PRAGMA user_version = 1;")
    db.close()
    at = open_app(path, "Gates")
    assert "No gate results: this store was created before gate results existed." in text(at)


def test_runs_view_lists_comparisons_and_strategy_runs(open_app, synthetic):
    path, ids = synthetic
    at = open_app(path, "Runs")
    comparisons, runs = (d.value for d in at.dataframe)
    assert comparisons["id"].tolist() == ids[::-1]
    assert set(comparisons["strategies"]) == {"zero_shot, few_shot, rag, lora"}
    assert comparisons["verdict"].tolist() == [stored_report(path, i).recommendation.verdict for i in ids[::-1]]
    assert len(runs) == 8 and set(runs["status"]) == {"finished"} and set(runs["examples"]) == {40}


def test_page_imports_neither_strategies_nor_torch(synthetic):
    # In a fresh interpreter: this one has torch loaded by the tiny-model fixtures. Every view is
    # opened. matplotlib only draws the downloaded report's plots, so the first render skips it.
    code = f"""
import sys
from streamlit.testing.v1 import AppTest
sys.argv = ["app.py", "--store", {str(synthetic[0])!r}]
at = AppTest.from_file({str(APP)!r}, default_timeout=60)
for view in ("Comparison", "Examples", "Runs", "Gates"):
    at.session_state["view"] = view
    at.run()
    assert not at.exception, at.exception
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("strategies", "torch", "transformers", "matplotlib"))
assert not heavy, heavy
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
