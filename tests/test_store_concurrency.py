"""Soak test of the store: four `harness compare` processes started at once on one new store file,
with arms of their own and arms they share, on a tiny model. Every process must succeed, and the
store must end with one finished run per arm configuration holding exactly the eval set's examples,
and every comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from harness.store import Store
from tests.conftest import topic_rows

ROOT = Path(__file__).resolve().parent.parent

# Overlapping on purpose: zero_shot is run by three processes at once, few_shot by two.
ARM_SETS = ["zero_shot", "few_shot", "zero_shot,few_shot", "few_shot_2,zero_shot"]


def test_four_compares_at_once_on_one_new_store(make_task, tmp_path):
    # Six eval examples in batches of two: each run commits three times, interleaved with the others.
    eval_rows = topic_rows(2, offset=10)
    task = make_task(eval=eval_rows, limits={"batch_size": 2},
                     strategies={"zero_shot": {}, "few_shot": {"k": 3}, "few_shot_2": {"demos": {"k": 2}}})
    store = tmp_path / "store.sqlite"
    # One torch thread each: four processes already keep a small machine's cores busy, and more
    # threads than cores make each process wait on the others' spinning threads.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "harness", "compare", str(task), "--store", str(store),
                               "--no-progress", "--strategies", arms], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for arms in ARM_SETS]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors

    db = Store(store, readonly=True)
    try:
        runs = db.runs_with_counts()
        comparisons = db.comparisons()
        examples = {r["id"]: [e["example_id"] for e in db.examples(r["id"])] for r in runs}
    finally:
        db.close()
    # One run per arm configuration, however many processes ran it, finished, with each eval example once.
    assert Counter(r["strategy"] for r in runs) == {"zero_shot": 1, "few_shot": 1, "few_shot_2": 1}
    assert all(r["status"] == "finished" for r in runs)
    eval_ids = sorted(row["id"] for row in eval_rows)
    assert all(sorted(ids) == eval_ids for ids in examples.values())

    # Every comparison, each over its own arms, pointing at those runs.
    assert len(comparisons) == 4
    run_of = {r["strategy"]: r["id"] for r in runs}
    assert sorted(",".join(s["name"] for s in c["report"]["strategies"]) for c in comparisons) == sorted(ARM_SETS)
    for c in comparisons:
        assert c["report"]["n_examples"] == len(eval_ids)
        assert all(s["run_id"] == run_of[s["name"]] for s in c["report"]["strategies"])
