"""Per-example export: one row per example and arm, the store's scores, as JSONL or CSV, to a file
or standard output; `compare --log-samples DIR` writes the same rows."""

from __future__ import annotations

import csv
import io
import json

import pytest

from harness.cli import main
from harness.store import Store


@pytest.fixture
def compared(make_task, tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    path = make_task()
    assert main(["compare", str(path), "--store", str(store), "--no-progress",
                 "--log-samples", str(tmp_path / "samples")]) == 0
    out = capsys.readouterr().out
    return store, tmp_path, out


def stored(store):
    s = Store(store, readonly=True)
    try:
        report = s.comparison()["report"]
        return report, {(arm["name"], e["example_id"]): e for arm in report["strategies"]
                        for e in s.examples(arm["run_id"])}
    finally:
        s.close()


def test_jsonl_to_stdout_round_trips_the_store(compared, capsys):
    store, _, _ = compared
    assert main(["export", "--store", str(store)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    report, examples = stored(store)
    assert len(rows) == report["n_examples"] * len(report["strategies"]) == len(examples)
    for row in rows:
        e = examples[(row["arm"], row["example_id"])]
        assert row["scores"] == e["scores"] and row["prediction"] == e["prediction"]
        assert (row["prompt"], row["target"], row["latency_ms"]) == (e["prompt"], e["target"], e["latency_ms"])
        assert row["prompt_tokens"] == e["prompt_tokens"] and row["comparison_id"] == 1
        assert row["input"] and row["input"] in row["prompt"]  # read back from the task's data


def test_csv_to_a_file_has_a_column_per_score(compared, capsys):
    store, tmp_path, _ = compared
    out = tmp_path / "rows.csv"
    assert main(["export", "--store", str(store), "--comparison", "1", "--format", "csv", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"24 rows written to {out}"
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    _, examples = stored(store)
    assert len(rows) == len(examples) == 24
    for row in rows:
        assert float(row["score.accuracy"]) == examples[(row["arm"], row["example_id"])]["scores"]["accuracy"]


def test_log_samples_writes_the_same_rows(compared, capsys):
    store, tmp_path, out = compared
    path = tmp_path / "samples" / "samples_tiny_topics_1.jsonl"
    assert f"24 per-example rows written to {path}" in out
    assert main(["export", "--store", str(store)]) == 0
    assert path.read_text(encoding="utf-8") == capsys.readouterr().out


def test_export_of_a_missing_comparison(compared, capsys):
    store, _, _ = compared
    assert main(["export", "--store", str(store), "--comparison", "9"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --comparison: no comparison 9 in {store}"


def test_compare_json_to_stdout_is_the_report_alone(make_task, tmp_path, capsys):
    assert main(["compare", str(make_task()), "--store", str(tmp_path / "s.sqlite"), "--no-progress",
                 "--json", "-"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["task"] == "tiny_topics"
    assert "stored as comparison 1" in out.err
