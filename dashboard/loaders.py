"""What the dashboard reads from the results store: store rows as plain data, reports and gate results
as typed results. No Streamlit and no SQL here (the store holds every statement): the page caches
these calls, and tests and the benchmark can call them directly.

Each call opens its own read-only connection, so a compare can keep writing (WAL) and nothing is
ever created or migrated. Only the examples of the runs being looked at are read: a store can hold
hundreds of thousands of them."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.errors import HarnessError
from harness.results import ComparisonReport, GateResult
from harness.store import Store

TABLES = ("runs", "examples", "comparisons")
# A compare commits a batch in milliseconds; waiting longer than this means something else holds
# the file, and the page should say so rather than hang for Store's 30 s.
BUSY_TIMEOUT_S = 3


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
        store = Store(path, readonly=True, timeout=BUSY_TIMEOUT_S)
    except HarnessError as e:  # a read-only folder that keeps SQLite from the latest writes
        raise StoreProblem(f"The store {path} {e.message}.") from None
    except sqlite3.DatabaseError as e:  # opening reads the file's header: a foreign or locked file fails here
        raise StoreProblem(_explain(path, e)) from None
    try:
        tables = store.tables()
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
        return (f"The store {path} stayed locked for {BUSY_TIMEOUT_S:g} s: another program is holding "
                f"it. Reload in a moment.")
    if "not a database" in said:
        return f"{path} is not a results store: SQLite says '{said}'. Is it the right file?"
    return f"Cannot read the store {path}: SQLite says '{said}'."


Result = TypeVar("Result", bound=BaseModel)


def _typed(kind: type[Result], stored: dict[str, Any]) -> tuple[Result | None, list[str]]:
    """The stored JSON as `kind`, or None and the top-level fields an older harness stored
    differently or not at all."""
    try:
        return kind.model_validate(stored), []
    except ValidationError as e:
        return None, list(dict.fromkeys(str(err["loc"][0]) for err in e.errors() if err["loc"]))


def comparisons(path: str) -> list[dict]:
    """Every stored comparison, newest first. `report` is the typed report carrying its
    `comparison_id` (as the CLI's `harness report` does), or None with the fields it lacks in
    `unreadable`; a report stored before verdicts lacks its `recommendation`."""
    with reading(path) as store:
        out = []
        for c in store.comparisons():
            report, unreadable = _typed(ComparisonReport, {**c["report"], "comparison_id": c["id"]})
            if report is not None and report.recommendation is None:
                report, unreadable = None, ["recommendation"]
            out.append({**c, "report": report, "unreadable": unreadable})
        return out


def runs(path: str) -> list[dict]:
    """Every strategy run, newest first, with how many examples it has stored so far; `status` is
    running, finished or interrupted (see Store.runs_with_counts)."""
    with reading(path) as store:
        return store.runs_with_counts()


def gates(path: str) -> list[dict] | None:
    """Every gate result, newest first, `result` typed (None where an older harness stored another
    shape); None when the store predates gate results."""
    with reading(path) as store:
        if "gates" not in store.tables():
            return None
        # Results stored before gates could be inconclusive have no outcome: theirs was pass or fail.
        return [{**g, "result": _typed(GateResult, {"outcome": "pass" if g["passed"] else "fail", **g["result"]})[0]}
                for g in store.gates()]


def example_scores(path: str, run_ids: dict[str, int], metric: str) -> list[dict]:
    """One row per (strategy, example) of these runs: id, prediction, gold answer and the metric's
    score. Prompts and traces stay in the store until one example is opened (`example_detail`)."""
    names = {run_id: name for name, run_id in run_ids.items()}
    with reading(path) as store:
        return [{**r, "strategy": names[r["run_id"]]} for r in store.example_scores(list(names), metric)]


def example_detail(path: str, run_ids: dict[str, int], example_id: str) -> list[dict]:
    """Everything stored about one example under each strategy: prompt, prediction, gold answer,
    scores, tokens, latency and the strategy's trace (`extra`: a rag run's retrieved chunks)."""
    with reading(path) as store:
        found = {name: store.example(run_id, example_id) for name, run_id in run_ids.items()}
    return [{**ex, "strategy": name} for name, ex in found.items() if ex is not None]


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
