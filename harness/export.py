"""Per-example rows of a stored comparison, as lm-evaluation-harness's `--log_samples` writes them:
one row per example and arm, with its prompt, prediction, target, every score, tokens and latency.

`harness export` writes them as JSONL or CSV; `harness compare --log-samples DIR` writes the JSONL of
the comparison it just made. The store is read through harness/store.py only."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.store import Store

FORMATS = ("jsonl", "csv")
# The CSV's leading columns; each score follows as `score.<metric>`, and `extra` (what the arm was
# shown or computed beyond the answer: retrieved passages, label log-probabilities) as JSON.
COLUMNS = ("comparison_id", "task", "arm", "run_id", "example_id", "input", "prompt", "prediction", "target",
           "prompt_tokens", "output_tokens", "cached_tokens", "latency_ms")


def _inputs(report: dict) -> dict[str, str]:
    """Each eval example's input, by id, read from the task's data when its file is still there and its
    data unchanged (the store keeps the prompt, which contains the input, not the input alone)."""
    from harness.data import load_data
    from harness.task import load_task

    try:
        task = load_task(report["task_file"])
        data = load_data(task)
    except (HarnessError, OSError, KeyError):
        return {}
    if data.hash != report.get("data_hash"):
        return {}
    return {ex.id: ex.input for ex in data.eval}


def comparison_rows(store: Store, comparison_id: int | None = None) -> Iterator[dict[str, Any]]:
    """The rows of one comparison (default: the latest), arm by arm in the report's order."""
    stored = store.comparison(comparison_id)
    if stored is None:
        what = "no comparison stored yet" if comparison_id is None else f"no comparison {comparison_id}"
        raise HarnessError("--comparison" if comparison_id is not None else str(store.path),
                           f"{what} in {store.path}")
    report = stored["report"]
    inputs = _inputs(report)
    for arm in report["strategies"]:
        for e in store.examples(arm["run_id"]):
            yield {"comparison_id": stored["id"], "task": report["task"], "arm": arm["name"], "run_id": arm["run_id"],
                   "example_id": e["example_id"], "input": inputs.get(e["example_id"]), "prompt": e["prompt"],
                   "prediction": e["prediction"], "target": e["target"], "scores": e["scores"],
                   "prompt_tokens": e["prompt_tokens"], "output_tokens": e["output_tokens"],
                   "cached_tokens": e.get("cached_tokens", 0), "latency_ms": e["latency_ms"], "extra": e["extra"]}


def write(rows: Iterator[dict[str, Any]], fmt: str, out: io.TextIOBase) -> int:
    """Writes the rows as JSONL or CSV; returns how many."""
    if fmt == "jsonl":
        n = 0
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
        return n
    rows = list(rows)
    metrics = sorted({m for r in rows for m in r["scores"]})
    writer = csv.writer(out)
    writer.writerow([*COLUMNS, *(f"score.{m}" for m in metrics), "extra"])
    for row in rows:
        writer.writerow([*(row[c] for c in COLUMNS), *(row["scores"].get(m) for m in metrics),
                         json.dumps(row["extra"], ensure_ascii=False)])
    return len(rows)


def export(store_path: str | Path, *, comparison_id: int | None = None, fmt: str = "jsonl",
           out: str | Path | None = None, stdout=None) -> int:
    """Writes one comparison's rows to `out` (None: `stdout`); returns how many rows."""
    if not Path(store_path).is_file():
        raise HarnessError(str(store_path), "no results store here; run `harness compare` first or pass --store")
    store = Store(store_path, readonly=True)
    try:
        if out is None:
            return write(comparison_rows(store, comparison_id), fmt, stdout)
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as f:
            return write(comparison_rows(store, comparison_id), fmt, f)
    finally:
        store.close()


def log_samples(store_path: str | Path, comparison_id: int, task: str, folder: str | Path) -> tuple[Path, int]:
    """`compare --log-samples DIR`: the comparison's rows as DIR/samples_<task>_<id>.jsonl (named as
    lm-evaluation-harness names its samples files); the path and how many rows."""
    path = Path(folder) / f"samples_{task}_{comparison_id}.jsonl"
    return path, export(store_path, comparison_id=comparison_id, fmt="jsonl", out=path)
