"""harness/store.py: migrations, resumable runs, example round trips, comparisons and gates, and
the read-only mode the dashboard uses."""

from __future__ import annotations

import sqlite3
import types

import pytest

import harness.store as store_module
from harness.runner import ExampleResult
from harness.store import _MIGRATIONS, Store

RUN = dict(task="tiny_topics", strategy="zero_shot", model="tiny", config={"k": 3, "nested": {"a": [1, 2]}},
           provenance={"data_hash": "abc123", "packages": {"torch": "2.x"}})


def result(example_id: str, prediction: str = "sport", **extra) -> ExampleResult:
    return ExampleResult(example_id, f"prompt for {example_id}", prediction, "sport",
                         {"accuracy": float(prediction == "sport"), "token_f1": 0.5}, 17, 0, 12.5,
                         extra or {"logprobs": {"sport": -0.1, "tech": -2.3}})


def tables(path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def user_version(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.sqlite")
    yield s
    s.close()


def test_migrations_create_the_tables_and_set_user_version(tmp_path):
    path = tmp_path / "new.sqlite"
    Store(path).close()
    assert {"runs", "examples", "comparisons", "gates"} <= tables(path)
    assert user_version(path) == len(_MIGRATIONS)


def test_reopening_is_idempotent_and_keeps_the_data(tmp_path):
    path = tmp_path / "store.sqlite"
    first = Store(path)
    run_id = first.start_run("key-1", **RUN)
    first.add_examples(run_id, [result("a")])
    first.close()
    before = tables(path)
    second = Store(path)  # the migrations must not run again (CREATE TABLE would fail)
    assert tables(path) == before and user_version(path) == len(_MIGRATIONS)
    assert second.start_run("key-1", **RUN) == run_id
    assert second.done_ids(run_id) == {"a"}
    second.close()


def test_an_older_store_is_migrated_forward(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO comparisons (task, created_at, report) VALUES ('old', 1.0, '{\"kept\": true}')")
    db.commit()
    db.close()
    assert "gates" not in tables(path)
    s = Store(path)
    assert "gates" in tables(path) and user_version(path) == len(_MIGRATIONS)
    assert [c["report"] for c in s.comparisons()] == [{"kept": True}]
    s.close()


def test_start_run_resumes_the_same_key_and_separates_other_keys(store):
    a = store.start_run("key-a", **RUN)
    assert store.start_run("key-a", **RUN) == a
    b = store.start_run("key-b", **{**RUN, "strategy": "few_shot"})
    assert b != a
    assert store.run(a)["strategy"] == "zero_shot" and store.run(b)["strategy"] == "few_shot"


def test_forcing_a_run_starts_it_again_without_its_old_examples(store):
    old = store.start_run("key-a", **RUN)
    store.add_examples(old, [result("a"), result("b")])
    store.finish_run(old, {"accuracy": 1.0}, {})
    other = store.start_run("key-b", **RUN)
    store.add_examples(other, [result("a")])

    new = store.start_run("key-a", **RUN, force=True)
    assert new != old
    assert store.done_ids(new) == set() and store.examples(new) == []
    assert store.examples(old) == []  # deleted with their run, not left orphaned
    with pytest.raises(KeyError):
        store.run(old)
    assert store.run(new)["status"] == "running" and store.run(new)["summary"] is None
    # Only the forced key is touched.
    assert store.done_ids(other) == {"a"}


def test_examples_round_trip(store):
    run_id = store.start_run("key", **RUN)
    trace = {"logprobs": {"sport": -0.1, "tech": -2.3}, "chunks": ["c1", "c2"], "note": "ünïcode"}
    store.add_examples(run_id, [result("b", "tech", **trace), result("a")])
    store.add_examples(run_id, [result("c")])
    assert store.done_ids(run_id) == {"a", "b", "c"}
    rows = store.examples(run_id)
    assert [r["example_id"] for r in rows] == ["a", "b", "c"]
    b = rows[1]
    assert b["run_id"] == run_id and b["prompt"] == "prompt for b"
    assert (b["prediction"], b["target"]) == ("tech", "sport")
    assert b["scores"] == {"accuracy": 0.0, "token_f1": 0.5}
    assert (b["prompt_tokens"], b["output_tokens"], b["latency_ms"]) == (17, 0, 12.5)
    assert b["extra"] == trace


def test_adding_an_example_again_replaces_it(store):
    run_id = store.start_run("key", **RUN)
    store.add_examples(run_id, [result("a", "tech")])
    store.add_examples(run_id, [result("a", "sport")])
    (row,) = store.examples(run_id)
    assert row["prediction"] == "sport"


def test_a_batch_is_all_or_nothing(store):
    run_id = store.start_run("key", **RUN)
    bad = result("b")
    bad.prediction = None  # NOT NULL: fails in SQLite after "a" was inserted, so the batch rolls back
    with pytest.raises(sqlite3.IntegrityError):
        store.add_examples(run_id, [result("a"), bad])
    assert store.done_ids(run_id) == set()


def test_finish_run_and_run(store):
    run_id = store.start_run("key", **RUN)
    running = store.run(run_id)
    assert running["status"] == "running" and running["finished_at"] is None
    assert running["summary"] is None and running["strategy_record"] is None
    assert running["config"] == RUN["config"] and running["provenance"] == RUN["provenance"]
    assert (running["key"], running["task"], running["model"]) == ("key", "tiny_topics", "tiny")

    store.finish_run(run_id, {"accuracy": 0.75, "n": 12}, {"demo_ids": ["x", "y"]})
    done = store.run(run_id)
    assert done["status"] == "finished" and done["finished_at"] >= done["created_at"]
    assert done["summary"] == {"accuracy": 0.75, "n": 12}
    assert done["strategy_record"] == {"demo_ids": ["x", "y"]}
    # Resuming a finished key returns the finished run (the caller reuses it).
    assert store.start_run("key", **RUN) == run_id


def test_unknown_run(store):
    with pytest.raises(KeyError):
        store.run(999)
    assert store.examples(999) == [] and store.done_ids(999) == set()


def test_comparisons_newest_first(store):
    assert store.comparisons() == []
    ids = [store.save_comparison(task, {"i": i}) for i, task in enumerate(["t1", "t2", "t1"])]
    assert len(set(ids)) == 3
    saved = store.comparisons()
    assert [c["id"] for c in saved] == ids[::-1]
    assert [c["report"] for c in saved] == [{"i": 2}, {"i": 1}, {"i": 0}]
    assert [c["task"] for c in saved] == ["t1", "t2", "t1"]


def test_newest_first_does_not_depend_on_the_clock(store, monkeypatch):
    monkeypatch.setattr(store_module, "time", types.SimpleNamespace(time=lambda: 1_000.0))
    ids = [store.save_comparison("t", {"i": i}) for i in range(3)]
    assert [c["id"] for c in store.comparisons()] == ids[::-1]


def test_gates_round_trip_newest_first(store):
    cand = store.start_run("cand", **RUN)
    base = store.start_run("base", **RUN)
    first = store.save_gate("tiny_topics", "/ckpt/a", cand, base, True, {"rules": [{"name": "min_quality"}]})
    second = store.save_gate("tiny_topics", "/ckpt/b", None, None, False, {"rules": []})
    gates = store.gates()
    assert [g["id"] for g in gates] == [second, first]
    assert gates[0]["passed"] is False and gates[1]["passed"] is True
    assert gates[1]["result"] == {"rules": [{"name": "min_quality"}]}
    assert (gates[1]["checkpoint"], gates[1]["candidate_run_id"], gates[1]["baseline_run_id"]) == ("/ckpt/a", cand, base)
    assert gates[0]["candidate_run_id"] is None


def test_a_gate_outlives_the_run_it_pointed_to(store):
    cand = store.start_run("cand", **RUN)
    store.save_gate("tiny_topics", "/ckpt", cand, None, True, {})
    store.start_run("cand", **RUN, force=True)
    (gate,) = store.gates()
    assert gate["candidate_run_id"] is None and gate["passed"] is True


def test_readonly_on_a_missing_file_raises_and_creates_nothing(tmp_path):
    path = tmp_path / "missing.sqlite"
    with pytest.raises(sqlite3.OperationalError):
        Store(path, readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_readonly_store_reads_but_cannot_write(tmp_path):
    path = tmp_path / "store.sqlite"
    writer = Store(path)
    run_id = writer.start_run("key", **RUN)
    writer.add_examples(run_id, [result("a")])
    writer.save_comparison("tiny_topics", {"ok": True})

    reader = Store(path, readonly=True)
    assert [e["example_id"] for e in reader.examples(run_id)] == ["a"]
    assert reader.comparisons()[0]["report"] == {"ok": True}
    # A write through the writer meanwhile is visible to the reader.
    writer.save_comparison("tiny_topics", {"ok": "again"})
    assert len(reader.comparisons()) == 2
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.save_comparison("tiny_topics", {})
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.start_run("other", **RUN)
    assert len(writer.comparisons()) == 2 and writer.run_by_key("other") is None
    reader.close()
    writer.close()
