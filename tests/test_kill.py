"""Kill tests: SIGKILL `harness compare` and `harness train` at random points, rerun, and check that
nothing is lost, duplicated or recomputed. Every run ends with its eval examples stored once and
the predictions of an uninterrupted run; training resumes from its last complete checkpoint.

Kill points come from a seeded generator, so a failure replays (KILL_SEED=n tries other points);
`pytest -s` prints the points tried and what each kill left behind."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.arm import build
from harness.checkpoints import inspect
from harness.compare import compare
from harness.data import load_data
from harness.errors import HarnessError
from harness.store import Store
from harness.task import load_task
from tests.conftest import build_tiny_model, topic_rows
from tests.test_lora import lora_task

SEED = int(os.environ.get("KILL_SEED", 0))
REPO = Path(__file__).resolve().parent.parent

# Runs `harness ARGS` in a child that kills itself at one exact moment no timer hits reliably: right
# after the nth write of a file, left half-written, or the nth file removed by training's final
# clean-up of its checkpoints. Each is a state a kill can leave and a rerun must survive.
SELF_KILL = r"""
import os, shutil, signal, sys
from pathlib import Path

point, nth, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls = 0


def nth_call():
    global calls
    calls += 1
    return calls == nth


def die_half_written(path):
    os.truncate(path, os.path.getsize(path) // 2)
    os.kill(os.getpid(), signal.SIGKILL)


if point == "trainer_state.json":
    from transformers import TrainerState

    save = TrainerState.save_to_json

    def save_to_json(self, path):
        save(self, path)
        if nth_call():
            die_half_written(path)

    TrainerState.save_to_json = save_to_json
elif point == "training_config.json":
    write_text = Path.write_text

    def patched_write_text(self, text, *a, **k):
        written = write_text(self, text, *a, **k)
        if "training_config.json" in self.name and nth_call():
            die_half_written(self)
        return written

    Path.write_text = patched_write_text
elif point == "checkpoint clean-up":
    rmtree, unlink = shutil.rmtree, os.unlink

    def unlink_then_die(*a, **k):
        unlink(*a, **k)
        if nth_call():
            os.kill(os.getpid(), signal.SIGKILL)

    def patched_rmtree(path, *a, **k):
        # The final clean-up of the checkpoints folder, not the Trainer's rotation of one checkpoint-N.
        if "checkpoints" in os.path.basename(path):
            os.unlink = unlink_then_die
        return rmtree(path, *a, **k)

    shutil.rmtree = patched_rmtree

from harness.cli import main

sys.exit(main(args))
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The children's environment; the test process shares their cache to find the adapter folder."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    # One thread each: the children share the cores with this polling test (and whatever else runs),
    # and oversubscribed threads make a tiny model several times slower.
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def start(args: list[str], env: dict, log: Path, self_kill: tuple[str, int] | None = None) -> subprocess.Popen:
    cmd = ["-c", SELF_KILL, *map(str, self_kill), *args] if self_kill else ["-m", "harness", *args]
    # A file, not a pipe: nobody reads while the child runs, and a full pipe would stall it.
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, *cmd], env=env, stdout=out, stderr=subprocess.STDOUT)


def kill_when(proc: subprocess.Popen, condition, delay: float = 0.0, timeout: float = 300) -> int:
    """SIGKILL `proc` `delay` seconds after `condition()` first holds; its exit code (-9 if the kill landed)."""
    deadline, since = time.monotonic() + timeout, None
    while proc.poll() is None:
        now = time.monotonic()
        if since is None and condition():
            since = now
        if since is not None and now - since >= delay:
            proc.kill()
            break
        assert now < deadline, "the child neither finished nor reached the kill point"
        time.sleep(0.005)
    return proc.wait()


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


# --- compare -------------------------------------------------------------------------------------

def snapshot(db: Path) -> tuple[dict[tuple[str, str], dict], list[dict]]:
    """Every stored example by (arm, example id), and the stored comparisons, read-only as the
    dashboard reads: nothing before the compare has created the store's tables."""
    if not db.exists():
        return {}, []
    try:
        store = Store(db, readonly=True)
    except HarnessError as e:
        # A kill while a new store switches to WAL leaves a hot rollback journal that only a writer
        # may roll back (a read-only Store refuses it, saying so): nothing was committed yet.
        assert "was interrupted before it finished" in str(e), e
        return {}, []
    try:
        if "examples" not in store.tables():
            return {}, []
        runs = store.runs_with_counts()
        arms = [run["strategy"] for run in runs]
        assert len(arms) == len(set(arms)), f"an arm with two runs: {arms}"
        # One run per arm, and the examples table's key (run, example id): each example at most once.
        rows = {(run["strategy"], e["example_id"]): e for run in runs for e in store.examples(run["id"])}
        return rows, store.comparisons()
    finally:
        store.close()


def stored_count(db: Path) -> int:
    try:
        store = Store(db, readonly=True)
        try:
            return sum(r["examples"] for r in store.runs_with_counts())
        finally:
            store.close()
    except sqlite3.Error:  # no store yet, or its tables are being created this instant
        return 0
    except HarnessError:  # a killed writer's hot journal, which the running compare repairs first
        return 0


def test_compare_killed_at_random_points_stores_each_example_once(make_task, tmp_path, env):
    rng = random.Random(SEED)
    # A sharper random model than the shared one: its predictions differ between examples, so
    # equal predictions say something.
    model = build_tiny_model(tmp_path / "sharp", initializer_range=0.5)
    path = make_task(model=str(model), eval=topic_rows(10, offset=20), limits={"batch_size": 2})
    eval_ids = sorted(e.id for e in load_data(load_task(path)).eval)
    arms = ["zero_shot", "few_shot"]
    total = len(arms) * len(eval_ids)
    db = tmp_path / "killed.sqlite"
    args = ["compare", str(path), "--store", str(db), "--no-progress"]

    # (what, condition, delay): during start-up (model loading, before the store exists), as the
    # store file appears, after a random number of stored examples, and once all are stored (the
    # summaries, the forgetting probe, the comparison).
    d = rng.uniform(0.1, 3.0)
    plan = [(f"start-up +{d:.1f}s", lambda: True, d), ("store file appears", db.exists, 0.0)]
    plan += [(f"{n}/{total} examples stored", lambda n=n: stored_count(db) >= n, 0.0)
             for n in (rng.randrange(1, total), total)]

    seen: dict[tuple[str, str], dict] = {}  # each example as first seen after a kill
    lost, recomputed, left = set(), set(), []

    def compare_with_seen(rows):
        """A stored example survives every later kill and rerun unchanged (its latency too): never
        dropped, never recomputed."""
        lost.update(key for key in seen if key not in rows)
        recomputed.update(key for key, row in seen.items() if key in rows and rows[key] != row)

    for i, (what, condition, delay) in enumerate(plan):
        log = tmp_path / f"compare-{i}.log"
        rc = kill_when(start(args, env, log), condition, delay)
        assert rc == -signal.SIGKILL, f"kill at {what}: the compare ended first ({rc}):\n{tail(log)}"
        rows, done = snapshot(db)
        assert {a for a, _ in rows} <= set(arms) and {e for _, e in rows} <= set(eval_ids)
        compare_with_seen(rows)
        seen = {**rows, **seen}
        assert not done or len(rows) == total, f"kill at {what}: a comparison stored with examples missing"
        left.append(f"{what}: {len(rows)} stored, {len(done)} comparison(s)")

    before = len(snapshot(db)[1])
    log = tmp_path / "compare-final.log"
    proc = start(args, env, log)
    assert proc.wait(timeout=300) == 0, tail(log)

    final, done = snapshot(db)
    for arm in arms:
        assert sorted(e for a, e in final if a == arm) == eval_ids, arm
    compare_with_seen(final)
    assert len(done) == before + 1, "the completed compare stores its comparison once"
    for c in done:
        assert c["report"]["n_examples"] == len(eval_ids)
        assert [s["n_examples"] for s in c["report"]["strategies"]] == [len(eval_ids)] * len(arms)

    # The same examples as an uninterrupted run would give: resuming changes no prompt, prediction
    # or score (log-probabilities up to float noise: resumed batches pad differently).
    compare(path, store_path=tmp_path / "uninterrupted.sqlite", progress=False)
    reference, _ = snapshot(tmp_path / "uninterrupted.sqlite")
    assert reference.keys() == final.keys()
    same = ("prompt", "prediction", "scores")
    for key, ref in reference.items():
        assert [final[key][c] for c in same] == [ref[c] for c in same], key
        assert final[key]["extra"]["logprobs"] == pytest.approx(ref["extra"]["logprobs"], abs=1e-4), key
    assert len({r["prediction"] for r in final.values()}) > 1, "a model that always answers the same proves little"

    print(f"\ncompare (seed {SEED}): {len(plan)} kill points, examples lost: {len(lost)}, "
          f"recomputed: {len(recomputed)}")
    print("\n".join(f"  killed at {line}" for line in left))
    assert not lost and not recomputed, (sorted(lost), sorted(recomputed))


# --- training ------------------------------------------------------------------------------------

EVAL_STEPS, MAX_STEPS = 5, 50


def checkpoint_steps(checkpoints: Path) -> dict[int, bool]:
    """Each checkpoint-N folder's step, and whether it is complete: its trainer_state.json, written
    last by the Trainer, is whole and says step N."""
    steps = {}
    for folder in checkpoints.glob("checkpoint-*"):
        step = int(folder.name.rsplit("-", 1)[1])
        try:
            steps[step] = json.loads((folder / "trainer_state.json").read_text())["global_step"] == step
        except (OSError, ValueError):
            steps[step] = False
    return steps


def test_training_killed_at_random_points_resumes_from_its_last_complete_checkpoint(make_task, tmp_path, env):
    rng = random.Random(SEED)
    # A checkpoint every few steps and no early stop: every kill point below is reached.
    path = lora_task(make_task, max_steps=MAX_STEPS, eval_steps=EVAL_STEPS, early_stopping_patience=100)
    task = load_task(path)
    folder = build(task.arms["lora"], task).output_dir(load_data(task))
    checkpoints = folder / "checkpoints"
    args = ["train", str(path), "--no-progress"]

    def ahead() -> int:
        """A checkpoint step beyond every checkpoint folder so far: one this run has yet to write."""
        return max(checkpoint_steps(checkpoints), default=0) + EVAL_STEPS * rng.randint(1, 2)

    # Each point: (what, how to kill); a point is drawn when its run starts, from what earlier runs left.
    def startup():
        d = rng.uniform(0.1, 3.0)
        return f"start-up +{d:.1f}s", {"condition": lambda: True, "delay": d}

    def folder_appears():
        n = ahead()
        return f"checkpoint-{n} folder appears", {"condition": (checkpoints / f"checkpoint-{n}").exists}

    def between():
        n, d = ahead(), rng.uniform(0.0, 0.1)
        return (f"checkpoint-{n} complete +{d * 1000:.0f}ms",
                {"condition": (checkpoints / f"checkpoint-{n}" / "trainer_state.json").exists, "delay": d})

    def config_written():
        return "training_config.json half-written", {"self_kill": ("training_config.json", 1)}

    def state_written():
        k = rng.randint(1, 3)
        return (f"trainer_state.json of this run's checkpoint #{k} half-written",
                {"self_kill": ("trainer_state.json", k)})

    plan = [startup, folder_appears, config_written, state_written, between]
    left, mid_write = [], 0
    for i, point in enumerate(plan):
        what, how = point()
        log = tmp_path / f"train-{i}.log"
        started = time.time()
        proc = start(args, env, log, how.get("self_kill"))
        rc = kill_when(proc, how["condition"], how.get("delay", 0.0)) if "condition" in how else proc.wait(300)
        assert rc == -signal.SIGKILL, f"kill at {what}: training ended first ({rc}):\n{tail(log)}"
        assert not (folder / "manifest.json").exists()
        steps = checkpoint_steps(checkpoints)
        incomplete = sorted(s for s, complete in steps.items() if not complete)
        # This run's doing, not an earlier run's leftover: the folder changed since it started.
        mid_write += any((checkpoints / f"checkpoint-{s}").stat().st_mtime >= started for s in incomplete)
        left.append(f"{what}: checkpoints {sorted(steps)}, incomplete {incomplete}")

    last = max((s for s, complete in checkpoint_steps(checkpoints).items() if complete), default=0)
    assert last > 0, "the kills above leave complete checkpoints to resume from"
    log = tmp_path / "train-final.log"
    proc = start(args, env, log)
    assert proc.wait(timeout=300) == 0, tail(log)
    training = json.loads((folder / "manifest.json").read_text())["training"]
    # Resumed, not restarted: from the newest complete checkpoint, on to the end.
    assert training["resumed_from_step"] == last
    assert training["steps"] == MAX_STEPS
    assert not checkpoints.exists()

    report = compare(path, store_path=tmp_path / "s.sqlite", strategies=["lora"], progress=False)
    row, *added = report.strategies  # and the fair baselines the harness adds beside lora
    assert all(r.added_by_harness for r in added)
    assert row.training.reused_adapter and row.training.resumed_from_step == last
    assert row.n_examples == len(load_data(task).eval)

    # A kill after the manifest, while the finished run removes its checkpoints: the rerun must not
    # take the half-removed leftovers for a checkpoint to resume from.
    k = rng.randint(1, 20)
    log = tmp_path / "train-cleanup.log"
    rc = start(args, env, log, ("checkpoint clean-up", k)).wait(timeout=300)
    assert rc == -signal.SIGKILL, tail(log)
    assert (folder / "manifest.json").exists()
    left.append(f"checkpoint clean-up after {k} file(s) removed: checkpoints {sorted(checkpoint_steps(checkpoints))}")
    log = tmp_path / "train-after-cleanup.log"
    assert start(args, env, log).wait(timeout=300) == 0, tail(log)
    assert not checkpoints.exists()
    inspect(folder, task)  # the adapter and its manifest agree

    print(f"\ntraining (seed {SEED}): {len(plan) + 1} kill points, {mid_write} left a checkpoint half-written, "
          f"final run resumed from step {last}")
    print("\n".join(f"  killed at {line}" for line in left))
