"""Results store: one SQLite file holding every run, every example, every comparison report and
every gate result.

A run is one (task, strategy, config) evaluation, identified by a key hashed from everything that
can change its results. Examples are committed batch by batch, so an interrupted run resumes
where it stopped, and a finished run is never recomputed unless forced. Any number of processes
may open one store at once, a new or an old one: migrations run under an exclusive lock.

Every SQL statement of the harness lives in this file, including BlobCache, the small key -> bytes
cache retrieval keeps its embeddings in."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

DEFAULT_PATH = "harness_results.sqlite"

# Append-only list of migrations, each a list of statements run one by one inside the migration's
# transaction (executescript would commit first and let another process in); PRAGMA user_version
# records how many have run.
_MIGRATIONS = [
    [
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
        )""",
        """
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
        )""",
        """
        CREATE TABLE comparisons (
            id INTEGER PRIMARY KEY,
            task TEXT NOT NULL,
            created_at REAL NOT NULL,
            report TEXT NOT NULL
        )""",
    ],
    [
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
        )""",
    ],
    # The process that runs a run, so that a reader can tell a live run from one whose process died.
    [
        "ALTER TABLE runs ADD COLUMN owner_host TEXT",
        "ALTER TABLE runs ADD COLUMN owner_pid INTEGER",
    ],
    # A hosted model's answers, by the hash of the full request (harness/backends/hosted.py).
    [
        """
        CREATE TABLE responses (
            key TEXT PRIMARY KEY,
            response TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
    ],
    # Of an example's prompt tokens, those served from a cache of the prompt's shared prefix.
    [
        "ALTER TABLE examples ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0",
    ],
]
# The user_version from which runs have owners: a read-only store older than that has no such columns.
_OWNERS_SINCE = 3


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (os.kill with signal 0 only checks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to another user
        return True
    return True


def _example(row: sqlite3.Row) -> dict[str, Any]:
    return {**dict(row), "scores": json.loads(row["scores"]), "extra": json.loads(row["extra"])}


class Store:
    def __init__(self, path: str | Path = DEFAULT_PATH, *, readonly: bool = False, timeout: float = 30):
        """readonly: for readers (the dashboard, `harness report`). Nothing is created or migrated, a
        missing file is an error rather than a new empty store, a compare can keep writing meanwhile
        (WAL), and a store in a folder this process cannot write still opens.
        timeout: seconds a statement waits for another connection's lock before failing."""
        self.path = Path(path)
        if readonly:
            self.db = self._connect_readonly(timeout)
        else:
            try:
                self.db = sqlite3.connect(self.path, timeout=timeout)
                self._use_wal(timeout)
                self.db.execute("PRAGMA foreign_keys=ON")
                self._migrate()
            except sqlite3.DatabaseError as e:
                # A file or folder the user cannot write, or a file that is not SQLite: theirs to fix.
                if (e.sqlite_errorcode & 0xFF) not in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN,
                                                       sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PERM):
                    raise
                raise HarnessError(str(self.path), f"cannot be used as a results store ({e}); pass --store "
                                                   f"with a writable path for a new or existing store") from None
        self.db.row_factory = sqlite3.Row

    def _connect_readonly(self, timeout: float) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout)
        try:
            # The first read opens the file, and fails on a WAL store whose folder this process
            # cannot write when SQLite finds no -shm file there to share.
            self.version = db.execute("PRAGMA user_version").fetchone()[0]
            return db
        except sqlite3.OperationalError as e:
            db.close()
            if e.sqlite_errorcode == sqlite3.SQLITE_READONLY_ROLLBACK:
                # A writer died mid-transaction in rollback mode (creating a new store): only a writer
                # may roll its journal back.
                raise HarnessError(str(self.path), "a process writing this store was interrupted before it "
                                                   "finished; run any harness command that writes it (harness "
                                                   "compare) to repair it, then read it again") from None
            if e.sqlite_errorcode not in (sqlite3.SQLITE_READONLY_DIRECTORY, sqlite3.SQLITE_CANTOPEN):
                raise
        wal = Path(f"{self.path}-wal")
        if wal.exists() and wal.stat().st_size:
            raise HarnessError(str(self.path), f"cannot be read from here: its latest writes are still in "
                                               f"{wal.name}, which SQLite reads only with write access to "
                                               f"the folder; open it once where the folder is writable (any "
                                               f"harness command does), or copy the folder somewhere writable")
        # Without a -wal file the main file is the whole store, and no writer can change it without
        # first creating a -wal beside it, so reading it as immutable (no locks, no -shm) is safe.
        db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout)
        self.version = db.execute("PRAGMA user_version").fetchone()[0]
        return db

    def _use_wal(self, timeout: float) -> None:
        """Switches the store to WAL, which lets the dashboard read while a compare writes (a no-op
        once done). Switching a store still in rollback mode (a new file, or one another tool switched
        back) while another process holds it fails at once instead of waiting: SQLite does not wait
        there, to avoid a deadlock. So this waits, up to the store's timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                # The low byte is the primary code: SQLITE_BUSY_RECOVERY is busy too.
                if (e.sqlite_errorcode & 0xFF) != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        """Runs the pending migrations and records them in one exclusive transaction, taken before
        user_version is read: of several processes opening a new or an old store at once, one
        migrates and the others find it done."""
        with self.db:  # commits, or rolls back on any error
            self.db.execute("BEGIN EXCLUSIVE")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for i, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {i}")
        self.version = max(version, len(_MIGRATIONS))

    def close(self) -> None:
        self.db.close()

    def run_by_key(self, key: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()

    def start_run(self, key: str, *, task: str, strategy: str, model: str, config: dict, provenance: dict,
                  force: bool = False) -> int:
        """The run's id: a new run, or the existing one with this key (to resume, or to redo when forced).
        This process becomes the owner of the run, also of a running one it resumes."""
        owner = (socket.gethostname(), os.getpid())
        with self.db:
            # Locked before the lookup: two processes starting the same run at once share one row.
            self.db.execute("BEGIN IMMEDIATE")
            row = self.run_by_key(key)
            if row is not None and force:
                self.db.execute("DELETE FROM runs WHERE id = ?", (row["id"],))
                row = None
            if row is not None:
                self.db.execute("UPDATE runs SET owner_host = ?, owner_pid = ? WHERE id = ? AND status = 'running'",
                                (*owner, row["id"]))
                return row["id"]
            cur = self.db.execute(
                "INSERT INTO runs (key, task, strategy, model, status, created_at, config, provenance, "
                "owner_host, owner_pid) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                (key, task, strategy, model, time.time(), json.dumps(config), json.dumps(provenance), *owner))
            return cur.lastrowid

    def done_ids(self, run_id: int) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT example_id FROM examples WHERE run_id = ?", (run_id,))}

    def add_examples(self, run_id: int, results) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r.example_id, r.prompt, r.prediction, r.target, json.dumps(r.scores),
                  r.prompt_tokens, r.output_tokens, r.latency_ms, json.dumps(r.extra), r.cached_tokens)
                 for r in results])

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
        """Every run, newest first, without its JSON columns, with how many examples it has stored so far.

        `status` is also `interrupted`, derived here and never stored: a run stored as running whose
        process is known to be gone. A run owned by a process of this host is interrupted once no
        process has its pid (a pid reused since by another process reads as alive). A run owned by
        another host stays `running`: whether its process lives cannot be known from here. A running
        run without an owner was started by a harness that recorded none (or is read from a store
        that predates owners): it is counted interrupted, since such a harness still writing to this
        store is unlikely, and if one is, rerunning compare only does the same examples again."""
        owner = ("r.owner_host, r.owner_pid" if self.version >= _OWNERS_SINCE
                 else "NULL AS owner_host, NULL AS owner_pid")
        rows = self.db.execute(
            f"SELECT r.id, r.task, r.strategy, r.model, r.status, r.created_at, r.finished_at, "
            f"(SELECT COUNT(*) FROM examples e WHERE e.run_id = r.id) AS examples, {owner} "
            f"FROM runs r ORDER BY r.created_at DESC, r.id DESC")
        here = socket.gethostname()
        out = []
        for r in rows:
            run = dict(r)
            host, pid = run.pop("owner_host"), run.pop("owner_pid")
            if run["status"] == "running" and (host is None or (host == here and not _alive(pid))):
                run["status"] = "interrupted"
            out.append(run)
        return out

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

    def responses(self, keys: list[str]) -> dict[str, dict]:
        """The cached answers to these requests (by request hash), where there are any."""
        found = {}
        for i in range(0, len(keys), 500):  # SQLite caps bound parameters; 500 is under every build's cap
            part = keys[i:i + 500]
            found.update((k, json.loads(v)) for k, v in self.db.execute(
                f"SELECT key, response FROM responses WHERE key IN ({','.join('?' * len(part))})", part))
        return found

    def add_response(self, key: str, response: dict) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                            (key, json.dumps(response), time.time()))

    def save_comparison(self, task: str, report: dict) -> int:
        with self.db:
            return self.db.execute("INSERT INTO comparisons (task, created_at, report) VALUES (?, ?, ?)",
                                   (task, time.time(), json.dumps(report))).lastrowid

    def comparison(self, comparison_id: int | None = None) -> dict[str, Any] | None:
        """One stored comparison (default: the latest), with its report; None when there is none."""
        if comparison_id is None:
            row = self.db.execute("SELECT * FROM comparisons ORDER BY created_at DESC, id DESC LIMIT 1").fetchone()
        else:
            row = self.db.execute("SELECT * FROM comparisons WHERE id = ?", (comparison_id,)).fetchone()
        return None if row is None else {**dict(row), "report": json.loads(row["report"])}

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
