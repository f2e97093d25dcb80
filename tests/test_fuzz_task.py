"""Mutated task files: whatever a user's typo or a bad merge does to a valid task YAML, `harness
compare` either runs it or refuses it with the bad-input exit code in one line, with no traceback,
and stores no run."""

from __future__ import annotations

import copy
import sqlite3
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.errors import EXIT_BAD_INPUT, EXIT_OK
from tests.conftest import TOPICS, topic_rows, write_jsonl

OUTCOMES: Counter = Counter()

# Values a field must survive: wrong types, empty, huge, a template naming no column, and a few
# that are valid in some fields (so that mutated tasks also run).
ODD_VALUES = [None, 0, -1, 1.5, True, "", "x" * 20_000, 10**12, -(10**12), [], {}, ["a"], {"k": "v"},
              "{{ nosuchcol }}", "{{ text | int + 1 }}", "\x00", "é" * 3, 1, 2, 0.5, "{{ text }}", "sport"]


def valid_task(folder: Path, model: Path) -> dict:
    rows = topic_rows(2)
    return {
        "name": "fuzzed",
        "type": "classification",
        "model": str(model),
        "data": {"train": str(write_jsonl(folder / "train.jsonl", rows)),
                 "eval": str(write_jsonl(folder / "eval.jsonl", topic_rows(2, offset=10)))},
        "fields": {"id": "id", "input": "text", "target": "label"},
        "prompt": {"system": "answer with one word", "template": "article : {{ text }} topic ?",
                   "max_input_tokens": 32},
        "labels": list(TOPICS),
        "strategies": {"zero_shot": {}, "few_shot": {"k": 2}},
        "limits": {"batch_size": 4},
        "decision": {"min_gain": 0.02},
    }


def paths(node, prefix=()):
    """Every key path of a nested mapping, parents before children."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from paths(value, prefix + (key,))


@st.composite
def mutations(draw):
    """A list of (kind, path index, value) edits, applied in order to the valid task."""
    kinds = st.sampled_from(["delete", "replace", "template", "rename"])
    edits = st.tuples(kinds, st.integers(0, 10**6), st.sampled_from(ODD_VALUES))
    return draw(st.lists(edits, min_size=1, max_size=3)), draw(st.one_of(st.none(), st.integers(0, 10**6)))


def mutate(task: dict, edits) -> dict:
    task = copy.deepcopy(task)
    for kind, index, value in edits:
        keys = list(paths(task))
        if not keys:
            break
        *parent_keys, key = keys[index % len(keys)]
        if kind == "delete" and not parent_keys and key == "model":
            # No `model` is the default model: a real compare, minutes here (tests/test_real_model.py).
            continue
        parent = task
        for k in parent_keys:
            parent = parent[k]
        if kind == "delete":
            del parent[key]
        elif kind == "replace":
            parent[key] = copy.deepcopy(value)
        elif kind == "rename":
            parent[f"{key}_typo"] = parent.pop(key)
        else:
            prompt = task.get("prompt")
            if isinstance(prompt, dict):
                prompt["template"] = f"{prompt.get('template')} {{{{ {key}_column }}}}"
    return task


def run_rows(store: Path) -> int:
    if not store.exists():
        return 0
    db = sqlite3.connect(store)
    try:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        db.close()


@pytest.fixture(scope="module", autouse=True)
def outcomes():
    yield OUTCOMES
    # The closing note quotes these (pytest -s shows them).
    print(f"\nfuzzed task files: {sum(OUTCOMES.values())} tried, {dict(OUTCOMES)}")


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=mutations())
def test_every_mutation_runs_or_is_refused_in_one_line(mutation, tiny_model_dir, capsys):
    edits, bad_byte_at = mutation
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        text = yaml.safe_dump(mutate(valid_task(folder, tiny_model_dir), edits), sort_keys=False).encode()
        if bad_byte_at is not None:  # a byte no UTF-8 text has
            at = bad_byte_at % (len(text) + 1)
            text = text[:at] + b"\xff" + text[at:]
        task = folder / "task.yaml"
        task.write_bytes(text)
        store = folder / "store.sqlite"
        capsys.readouterr()
        rc = main(["compare", str(task), "--store", str(store), "--no-progress"])
        err = capsys.readouterr().err.strip()
        outcome = {EXIT_OK: "ran", EXIT_BAD_INPUT: "refused"}.get(rc, f"exit {rc}")
        OUTCOMES[outcome] += 1
        event(outcome)
        assert rc in (EXIT_OK, EXIT_BAD_INPUT), err
        if rc == EXIT_BAD_INPUT:
            assert len(err.splitlines()) == 1 and "Traceback" not in err, err
            assert err.startswith("error: ") and ": " in err[len("error: "):], err  # where, then what
            assert run_rows(store) == 0, f"refused, but a run was stored: {err}"
