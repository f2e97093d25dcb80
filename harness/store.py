"""Results store: one SQLite file holding every run, every example, every comparison report and
every gate result.

A run is one (task, strategy, config) evaluation, identified by a key hashed from everything that
can change its results. Examples are committed batch by batch, so an interrupted run resumes
where it stopped, and a finished run is never recomputed unless forced.

Every SQL statement of the harness lives in this file, including BlobCache, the small key -> bytes
cache retrieval keeps its embeddings in."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

DEFAULT_PATH = "harness_results.sqlite"

# Append-only list of migrations; PRAGMA user_version records how many have run.
_MIGRATIONS = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        task TEXT NOT NULL,
        strategy TEXT NOT NULL,
        model TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished')),
        created_at REAL NOT NULL,
        finished_at REAL,
        config TEXT NOT NULL,
        provenance TEXT NOT NULL,
        strategy_record TEXT,
        summary TEXT
    );
    CREATE TABLE examples (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        example_id TEXT NOT NULL,
        prompt TEXT NOT NULL,
        prediction TEXT NOT NULL,
        target TEXT NOT NULL,
        scores TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        extra TEXT NOT NULL,
        PRIMARY KEY (run_id, example_id)
    );
    CREATE TABLE comparisons (
        id INTEGER PRIMARY KEY,
        task TEXT NOT NULL,
        created_at REAL NOT NULL,
        report TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE gates (
        id INTEGER PRIMARY KEY,
        task TEXT NOT NULL,
        created_at REAL NOT NULL,
        checkpoint TEXT NOT NULL,
        candidate_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        baseline_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        passed INTEGER NOT NULL,
        result TEXT NOT NULL
    );
    """,
]


def _example(row: sqlite3.Row) -> dict[str, Any]:
    return {**dict(row), "scores": json.loads(row["scores"]), "extra": json.loads(row["extra"])}


class Store:
    def __init__(self, path: str | Path = DEFAULT_PATH, *, readonly: bool = False, timeout: float = 30):
        """readonly: for readers (the dashboard). Nothing is created or migrated, a missing file is
        an error rather than a new empty store, and a compare can keep writing meanwhile (WAL).
        timeout: seconds a statement waits for another connection's lock before failing."""
        self.path = Path(path)
        if readonly:
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
        else:
            self.db = sqlite3.connect(self.path, timeout=timeout)
        self.db.row_factory = sqlite3.Row
        if not readonly:
            # WAL lets the dashboard read while a compare writes.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for i, sql in enumerate(_MIGRATIONS[version:], start=version + 1):
            with self.db:
                self.db.executescript(sql)
                self.db.execute(f"PRAGMA user_version = {i}")

    def close(self) -> None:
        self.db.close()

    def run_by_key(self, key: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()

    def start_run(self, key: str, *, task: str, strategy: str, model: str, config: dict, provenance: dict,
                  force: bool = False) -> int:
        """The run's id: a new run, or the existing one with this key (to resume, or to redo when forced)."""
        with self.db:
            row = self.run_by_key(key)
            if row is not None and force:
                self.db.execute("DELETE FROM runs WHERE id = ?", (row["id"],))
                row = None
            if row is not None:
                return row["id"]
            cur = self.db.execute(
                "INSERT INTO runs (key, task, strategy, model, status, created_at, config, provenance) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                (key, task, strategy, model, time.time(), json.dumps(config), json.dumps(provenance)))
            return cur.lastrowid

    def done_ids(self, run_id: int) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT example_id FROM examples WHERE run_id = ?", (run_id,))}

    def add_examples(self, run_id: int, results) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r.example_id, r.prompt, r.prediction, r.target, json.dumps(r.scores),
                  r.prompt_tokens, r.output_tokens, r.latency_ms, json.dumps(r.extra)) for r in results])

    def finish_run(self, run_id: int, summary: dict, strategy_record: dict) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status = 'finished', finished_at = ?, summary = ?, strategy_record = ? "
                            "WHERE id = ?", (time.time(), json.dumps(summary), json.dumps(strategy_record), run_id))

    def run(self, run_id: int) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id}")
        out = dict(row)
        for col in ("config", "provenance", "strategy_record", "summary"):
            out[col] = json.loads(out[col]) if out[col] else None
        return out

    def tables(self) -> set[str]:
        """The tables this file holds: a reader's test for a store too old for a feature, or no store."""
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def runs_with_counts(self) -> list[dict[str, Any]]:
        """Every run, newest first, without its JSON columns, with how many examples it has stored so far."""
        rows = self.db.execute(
            "SELECT r.id, r.task, r.strategy, r.model, r.status, r.created_at, r.finished_at, "
            "(SELECT COUNT(*) FROM examples e WHERE e.run_id = r.id) AS examples "
            "FROM runs r ORDER BY r.created_at DESC, r.id DESC")
        return [dict(r) for r in rows]

    def examples(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM examples WHERE run_id = ? ORDER BY example_id", (run_id,))
        return [_example(r) for r in rows]

    def example(self, run_id: int, example_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM examples WHERE run_id = ? AND example_id = ?",
                              (run_id, example_id)).fetchone()
        return None if row is None else _example(row)

    def example_scores(self, run_ids: list[int], metric: str) -> list[dict[str, Any]]:
        """The examples of these runs with one metric's score each (None where it was not scored), and
        without prompts and traces: what a table of many runs' answers needs, read in one query."""
        marks = ", ".join("?" * len(run_ids))
        rows = self.db.execute(
            f"SELECT run_id, example_id, prediction, target, json_extract(scores, ?) AS score "
            f"FROM examples WHERE run_id IN ({marks})", (f'$."{metric}"', *run_ids))
        return [dict(r) for r in rows]

    def save_comparison(self, task: str, report: dict) -> int:
        with self.db:
            return self.db.execute("INSERT INTO comparisons (task, created_at, report) VALUES (?, ?, ?)",
                                   (task, time.time(), json.dumps(report))).lastrowid

    def comparisons(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM comparisons ORDER BY created_at DESC, id DESC")
        return [{**dict(r), "report": json.loads(r["report"])} for r in rows]

    def save_gate(self, task: str, checkpoint: str, candidate_run_id: int | None, baseline_run_id: int | None,
                  passed: bool, result: dict) -> int:
        with self.db:
            return self.db.execute(
                "INSERT INTO gates (task, created_at, checkpoint, candidate_run_id, baseline_run_id, passed, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (task, time.time(), checkpoint, candidate_run_id, baseline_run_id, int(passed),
                 json.dumps(result))).lastrowid

    def gates(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM gates ORDER BY created_at DESC, id DESC")
        return [{**dict(r), "passed": bool(r["passed"]), "result": json.loads(r["result"])} for r in rows]


class BlobCache:
    """A key -> bytes cache in its own SQLite file (retrieval's embeddings): each `put` commits
    atomically, so an interrupted fill keeps what it finished."""

    def __init__(self, path: Path, table: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.table = table
        self.db = sqlite3.connect(path, timeout=30)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {table} (hash TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    def get(self, keys: list[str]) -> dict[str, bytes]:
        found = {}
        # SQLite caps the number of bound parameters; 500 stays well under every build's limit.
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            found.update(self.db.execute(
                f"SELECT hash, vec FROM {self.table} WHERE hash IN ({','.join('?' * len(part))})", part))
        return found

    def put(self, items: list[tuple[str, bytes]]) -> None:
        with self.db:
            self.db.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?)", items)

    def close(self) -> None:
        self.db.close()
