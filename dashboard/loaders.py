"""What the dashboard reads from the results store, as plain data. No Streamlit here: the page caches
these calls, and tests and the benchmark can call them directly.

Each call opens its own read-only connection, so a compare can keep writing (WAL) and nothing is
ever created or migrated. Only the examples of the runs being looked at are read: a store can hold
hundreds of thousands of them."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.store import Store

TABLES = ("runs", "examples", "comparisons")
# A compare commits a batch in milliseconds; waiting longer than this means something else holds
# the file, and the page should say so rather than hang for Store's 30 s.
BUSY_TIMEOUT_MS = 3000


class StoreProblem(Exception):
    """Why the store cannot be shown, worded for the page."""


def signature(path: str) -> tuple:
    """Changes whenever the store's content can have changed: committed writes land in the -wal file
    first and reach the main file at a checkpoint. Cached reads are keyed on it."""
    out = []
    for p in (path, f"{path}-wal"):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size))
    return tuple(out)


@contextmanager
def reading(path: str) -> Iterator[Store]:
    """A read-only store, or StoreProblem saying why there is none."""
    if not Path(path).is_file():
        raise StoreProblem(f"No results store at {path}. `harness compare TASK.yaml --store {path}` creates "
                           f"one; or start the dashboard with `--store` pointing at an existing store.")
    try:
        store = Store(path, readonly=True)
    except sqlite3.Error as e:
        raise StoreProblem(f"Cannot open the store {path}: {e}.") from None
    try:
        store.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        lacking = [t for t in TABLES if t not in tables]
        if lacking:
            raise StoreProblem(f"{path} is not a results store yet: it has no {', '.join(lacking)} table. "
                               f"A compare creates them when it starts; reload in a moment if one just did.")
        yield store
    except sqlite3.DatabaseError as e:
        raise StoreProblem(_explain(path, e)) from None
    finally:
        store.close()


def _explain(path: str, error: sqlite3.DatabaseError) -> str:
    said = str(error)
    if "locked" in said or "busy" in said:
        return (f"The store {path} stayed locked for {BUSY_TIMEOUT_MS / 1000:g} s: another program is holding "
                f"it. Reload in a moment.")
    if "not a database" in said:
        return f"{path} is not a results store: SQLite says '{said}'. Is it the right file?"
    return f"Cannot read the store {path}: SQLite says '{said}'."


def comparisons(path: str) -> list[dict]:
    """Every stored comparison, newest first, each report carrying its `comparison_id` as the CLI's
    `harness report` does."""
    with reading(path) as store:
        return [{**c, "report": {**c["report"], "comparison_id": c["id"]}} for c in store.comparisons()]


def runs(path: str) -> list[dict]:
    """Every strategy run, newest first, with how many examples it has stored so far."""
    with reading(path) as store:
        rows = store.db.execute(
            "SELECT r.id, r.task, r.strategy, r.model, r.status, r.created_at, r.finished_at, "
            "(SELECT COUNT(*) FROM examples e WHERE e.run_id = r.id) AS examples "
            "FROM runs r ORDER BY r.created_at DESC, r.id DESC")
        return [dict(r) for r in rows]


def gates(path: str) -> list[dict] | None:
    """Every gate result, newest first; None when the store predates gate results."""
    with reading(path) as store:
        if not store.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gates'").fetchone():
            return None
        return store.gates()


def example_scores(path: str, run_ids: dict[str, int], metric: str) -> list[dict]:
    """One row per (strategy, example) of these runs: id, prediction, gold answer and the metric's
    score. Prompts and traces stay in the store until one example is opened (`example_detail`)."""
    names = {run_id: name for name, run_id in run_ids.items()}
    marks = ", ".join("?" * len(names))
    with reading(path) as store:
        rows = store.db.execute(
            f"SELECT run_id, example_id, prediction, target, json_extract(scores, ?) AS score "
            f"FROM examples WHERE run_id IN ({marks})", (f'$."{metric}"', *names))
        return [{"strategy": names[r["run_id"]], "example_id": r["example_id"], "prediction": r["prediction"],
                 "target": r["target"], "score": r["score"]} for r in rows]


def example_detail(path: str, run_ids: dict[str, int], example_id: str) -> list[dict]:
    """Everything stored about one example under each strategy: prompt, prediction, gold answer,
    scores, tokens, latency and the strategy's trace (`extra`: a rag run's retrieved chunks)."""
    out = []
    with reading(path) as store:
        for name, run_id in run_ids.items():
            row = store.db.execute("SELECT * FROM examples WHERE run_id = ? AND example_id = ?",
                                   (run_id, example_id)).fetchone()
            if row is not None:
                out.append({**dict(row), "strategy": name, "scores": json.loads(row["scores"]),
                            "extra": json.loads(row["extra"])})
    return out


def disagreeing(rows: list[dict]) -> set[str]:
    """The example ids on which the strategies do not all agree: different predictions (ignoring
    surrounding whitespace) or different scores."""
    predictions: dict[str, set[str]] = {}
    scores: dict[str, set[float]] = {}
    for r in rows:
        predictions.setdefault(r["example_id"], set()).add(r["prediction"].strip())
        if r["score"] is not None:
            scores.setdefault(r["example_id"], set()).add(r["score"])
    return {i for i, p in predictions.items() if len(p) > 1 or len(scores.get(i, ())) > 1}
