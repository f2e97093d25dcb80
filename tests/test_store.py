"""harness/store.py: migrations (also by many processes at once), resumable runs and who runs
them, example round trips, comparisons and gates, and the read-only mode the dashboard and
`harness report` use (also on a read-only file or folder)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest

import harness.store as store_module
from harness.errors import HarnessError
from harness.runner import ExampleResult
from harness.store import _MIGRATIONS, Store
from tests.conftest import load_benchmark

ROOT = Path(__file__).resolve().parent.parent
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


def old_store(path: Path) -> None:
    """A store as the harness of migration 1 left it (WAL, no gates, runs without owners): a
    running run with two examples, and a comparison."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    for statement in _MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO runs (key, task, strategy, model, status, created_at, config, provenance) "
               "VALUES ('old-key', 'old_task', 'zero_shot', 'm', 'running', 1.0, '{}', '{}')")
    db.executemany("INSERT INTO examples VALUES (1, ?, 'p', 'sport', 'sport', '{}', 1, 0, 1.0, '{}')",
                   [("a",), ("b",)])
    db.execute("INSERT INTO comparisons (task, created_at, report) VALUES ('old', 1.0, '{\"kept\": true}')")
    db.commit()
    db.close()


def at_once(n: int, code: str, *args: str) -> list[subprocess.CompletedProcess]:
    """Runs `code` in n Python processes released together: each has started and imported the store
    before any of them goes on."""
    ready = "import sys\nfrom harness.store import Store\nprint('ready', flush=True)\nsys.stdin.readline()\n"
    procs = [subprocess.Popen([sys.executable, "-c", ready + code, *args], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(n)]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


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
    old_store(path)
    assert "gates" not in tables(path)
    s = Store(path)
    assert "gates" in tables(path) and user_version(path) == len(_MIGRATIONS)
    assert [c["report"] for c in s.comparisons()] == [{"kept": True}]
    assert s.done_ids(1) == {"a", "b"} and s.run(1)["owner_pid"] is None
    s.close()


def test_processes_opening_an_old_store_at_once_migrate_it_once_and_keep_its_data(tmp_path):
    path = tmp_path / "old.sqlite"
    old_store(path)
    done = at_once(6, "Store(sys.argv[1]).close()", str(path))
    assert [p.returncode for p in done] == [0] * 6, [p.stderr for p in done]
    s = Store(path)
    assert user_version(path) == len(_MIGRATIONS) and "gates" in tables(path)
    assert [c["report"] for c in s.comparisons()] == [{"kept": True}]
    assert [(r["id"], r["examples"]) for r in s.runs_with_counts()] == [(1, 2)]
    s.close()


def test_eight_processes_creating_one_new_store_at_once_all_succeed(tmp_path):
    path = tmp_path / "new.sqlite"
    # Each also writes at once, as the compares that open a store then start their runs.
    done = at_once(8, "s = Store(sys.argv[1])\ns.save_comparison('t', {})\ns.close()", str(path))
    assert [p.returncode for p in done] == [0] * 8, [p.stderr for p in done]
    assert user_version(path) == len(_MIGRATIONS)
    s = Store(path)
    assert len(s.comparisons()) == 8
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()


def test_a_store_in_rollback_mode_waits_for_another_writer_before_switching_to_wal(tmp_path):
    # SQLite fails this switch at once, without waiting, while another connection writes.
    path = tmp_path / "store.sqlite"
    Store(path).close()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA journal_mode=DELETE")
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, other.execute, ["COMMIT"])
    release.start()
    try:
        s = Store(path, timeout=10)
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        s.close()
    finally:
        release.join()
        other.close()


def test_a_failing_migration_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    monkeypatch.setattr(store_module, "_MIGRATIONS", [*_MIGRATIONS, ["CREATE TABLE half (x)", "CREATE TABLE runs (x)"]])
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        Store(path)
    assert user_version(path) == len(_MIGRATIONS) and "half" not in tables(path)


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
    second = gates[1]
    assert (second["checkpoint"], second["candidate_run_id"], second["baseline_run_id"]) == ("/ckpt/a", cand, base)
    assert gates[0]["candidate_run_id"] is None


def test_a_gate_outlives_the_run_it_pointed_to(store):
    cand = store.start_run("cand", **RUN)
    store.save_gate("tiny_topics", "/ckpt", cand, None, True, {})
    store.start_run("cand", **RUN, force=True)
    (gate,) = store.gates()
    assert gate["candidate_run_id"] is None and gate["passed"] is True


# --- who runs a run: running or interrupted ----------------------------------------------------------

def statuses(path) -> dict[int, str]:
    s = Store(path, readonly=True)
    try:
        return {r["id"]: r["status"] for r in s.runs_with_counts()}
    finally:
        s.close()


def run_in_child(path) -> tuple[subprocess.Popen, int]:
    """A process that starts a run in the store and then waits to be killed; and the run's id."""
    code = ("import sys, time\nfrom harness.store import Store\n"
            "print(Store(sys.argv[1]).start_run('child', task='t', strategy='zero_shot', model='m', config={}, "
            "provenance={}), flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, text=True, stdout=subprocess.PIPE)
    return proc, int(proc.stdout.readline())


def killed(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_a_run_whose_process_was_killed_is_interrupted_and_resuming_takes_it_over(store):
    proc, run_id = run_in_child(store.path)
    try:
        assert store.run(run_id)["owner_pid"] == proc.pid
        assert statuses(store.path) == {run_id: "running"}
    finally:
        killed(proc)
    assert statuses(store.path) == {run_id: "interrupted"}
    assert store.run(run_id)["status"] == "running"  # derived when read, never stored

    # A compare resuming it (the same key) takes it over: it runs again, in this live process.
    assert store.start_run("child", **RUN) == run_id
    run = store.run(run_id)
    assert (run["owner_host"], run["owner_pid"]) == (socket.gethostname(), os.getpid())
    assert statuses(store.path) == {run_id: "running"}
    store.finish_run(run_id, {}, {})
    assert statuses(store.path) == {run_id: "finished"}


def test_a_finished_run_keeps_its_owner(store):
    run_id = store.start_run("key", **RUN)
    store.db.execute("UPDATE runs SET owner_pid = -1 WHERE id = ?", (run_id,))
    store.finish_run(run_id, {}, {})
    assert store.start_run("key", **RUN) == run_id and store.run(run_id)["owner_pid"] == -1


def test_a_run_of_another_host_stays_running_and_one_without_owner_is_interrupted(store):
    proc, run_id = run_in_child(store.path)
    killed(proc)
    # The same dead pid, on a host whose processes this one cannot see.
    store.db.execute("UPDATE runs SET owner_host = 'elsewhere' WHERE id = ?", (run_id,))
    # A run started by a harness from before owners.
    store.db.execute("INSERT INTO runs (key, task, strategy, model, status, created_at, config, provenance) "
                     "VALUES ('old', 't', 'few_shot', 'm', 'running', 1.0, '{}', '{}')")
    store.db.commit()
    assert statuses(store.path) == {run_id: "running", run_id + 1: "interrupted"}


def test_a_store_older_than_owners_reads_without_them(tmp_path):
    path = tmp_path / "old.sqlite"
    old_store(path)
    s = Store(path, readonly=True)  # not migrated: the runs table has no owner columns
    assert [(r["id"], r["status"], r["examples"]) for r in s.runs_with_counts()] == [(1, "interrupted", 2)]
    assert [c["report"] for c in s.comparisons()] == [{"kept": True}]
    s.close()
    assert user_version(path) == 1


# --- read-only stores ----------------------------------------------------------------------------

# Root ignores file permissions through two capabilities. A child that drops them (and stays root)
# finds read-only files and folders read-only, as tests run as root (in CI) must; for any other user
# it drops nothing. Then the child checks that it really cannot write `argv[2]` before it reads.
UNPRIVILEGED = """
import ctypes, sys
class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Sets(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
libc = ctypes.CDLL(None, use_errno=True)
header, sets = Header(0x20080522, 0), (Sets * 2)()  # _LINUX_CAPABILITY_VERSION_3: caps 0-31, then 32-63
assert libc.capget(ctypes.byref(header), sets) == 0, ctypes.get_errno()
sets[0].effective &= ~0b110  # CAP_DAC_OVERRIDE (1), CAP_DAC_READ_SEARCH (2)
sets[0].permitted &= ~0b110
assert libc.capset(ctypes.byref(header), sets) == 0, ctypes.get_errno()
try:
    open(sys.argv[2], "ab").close()
except PermissionError:
    pass
else:
    sys.exit(f"{sys.argv[2]} is writable: the test cannot make it read-only")
"""

# The dashboard's loaders and `harness report` on the store at argv[1]: the report on stdout and
# stderr, then the loaders' findings as the last line of stdout.
READ_AS_THE_DASHBOARD_AND_THE_REPORT = """
import json
from dashboard import loaders
from harness.cli import main
rc = main(["report", "--store", sys.argv[1]])
try:
    found = {"runs": loaders.runs(sys.argv[1]), "comparisons": len(loaders.comparisons(sys.argv[1]))}
except loaders.StoreProblem as e:
    found = {"problem": str(e)}
print(json.dumps({"rc": rc, **found}))
"""


def read_unprivileged(store: Path, cannot_write: Path) -> tuple[dict, str, list[str]]:
    """What the dashboard and the report read of `store` in a process that cannot write `cannot_write`:
    the loaders' findings with the report's exit code, the report's stdout, and its stderr's lines."""
    proc = subprocess.run([sys.executable, "-c", UNPRIVILEGED + READ_AS_THE_DASHBOARD_AND_THE_REPORT, str(store),
                           str(cannot_write)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *report, found = proc.stdout.splitlines()
    return json.loads(found), "\n".join(report), proc.stderr.splitlines()


@pytest.fixture
def read_only(tmp_path):
    """Makes files or folders read-only, and writable again when the test ends (so they can be removed)."""
    changed = []

    def make(path: Path) -> Path:
        changed.append((path, path.stat().st_mode))
        path.chmod(0o555 if path.is_dir() else 0o444)
        return path

    yield make
    for path, mode in reversed(changed):
        path.chmod(mode)


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Path:
    """A store with one comparison (the speed benchmark's synthetic writer) and a run interrupted by
    a kill, closed, so that no -wal file is left."""
    path = tmp_path_factory.mktemp("filled") / "store.sqlite"
    load_benchmark("speed_dashboard").fill_store(path, comparisons=1, examples=5)
    killed(run_in_child(path)[0])
    Store(path).close()  # the last connection to close merges the -wal into the file and removes it
    assert not Path(f"{path}-wal").exists()
    return path


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_store_opens_for_the_dashboard_and_the_report(filled, tmp_path, read_only, what):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "store.sqlite"
    path.write_bytes(filled.read_bytes())
    read_only(path)
    if what == "folder":
        read_only(folder)
    found, report, err = read_unprivileged(path, path if what == "file" else folder / "new-file")
    assert found["rc"] == 0 and found["comparisons"] == 1 and report.startswith("# ")
    statuses = [r["status"] for r in found["runs"]]
    assert statuses.count("finished") == 4 and statuses.count("interrupted") == 1
    (line,) = err
    assert line.startswith(f"interrupted runs in {path}: 5 (t zero_shot, 0 examples stored)")
    assert line.endswith("run `harness compare` on their task again to resume them")
    assert path.read_bytes() == filled.read_bytes()


def test_an_old_read_only_store_is_read_without_migrating_it(tmp_path, read_only):
    path = tmp_path / "old.sqlite"
    old_store(path)
    found, report, err = read_unprivileged(read_only(path), path)
    # What the report says of its comparison shows it read the store (a migration would have failed).
    assert found["rc"] == 2 and report == "" and err == [f"error: {path}: comparison 1 was stored before "
                                                         f"verdicts existed; run `harness compare` on its task again"]
    assert [(r["status"], r["examples"]) for r in found["runs"]] == [("interrupted", 2)]
    assert user_version(path) == 1


def test_a_read_only_folder_hiding_the_latest_writes_is_one_clear_error(tmp_path, read_only):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "store.sqlite"
    # A writer that died with its writes still in the -wal file, whose -shm was not copied along.
    code = "import os, sys\nfrom harness.store import Store\nStore(sys.argv[1]).save_comparison('t', {})\nos._exit(0)"
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, check=True, timeout=60)
    Path(f"{path}-shm").unlink()
    assert Path(f"{path}-wal").stat().st_size > 0
    read_only(folder)
    found, report, err = read_unprivileged(path, folder / "new-file")
    says = "cannot be read from here: its latest writes are still in store.sqlite-wal"
    assert found["rc"] == 2 and report == "" and says in found["problem"]
    (line,) = err
    assert line.startswith(f"error: {path}: {says}") and "copy the folder somewhere writable" in line


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


def test_a_writer_killed_mid_transaction_is_one_clear_error_for_readers_until_a_writer_repairs_it(tmp_path):
    path = tmp_path / "s.sqlite"
    # A writer in rollback mode (as every new store starts) whose changes spilled to the file before
    # it was killed: the hot journal it leaves can only be rolled back by a writer.
    child = textwrap.dedent("""
        import os, signal, sqlite3, sys
        db = sqlite3.connect(sys.argv[1], isolation_level=None)
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("CREATE TABLE scratch (x TEXT)")
        db.execute("PRAGMA cache_size=1")
        db.execute("BEGIN")
        for _ in range(2000):
            db.execute("INSERT INTO scratch VALUES (?)", ("x" * 500,))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", child, str(path)])
    assert Path(f"{path}-journal").exists()
    with pytest.raises(HarnessError, match="was interrupted before it finished"):
        Store(path, readonly=True)
    Store(path).close()  # a writer rolls the journal back
    reader = Store(path, readonly=True)
    assert reader.runs_with_counts() == [] and "runs" in reader.tables()
    reader.close()
