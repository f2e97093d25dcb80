"""Every shipped task file loads, its data validates, and it runs on the real default model."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.compare import compare
from harness.data import load_data
from harness.task import load_task

TASKS = sorted((Path(__file__).parent.parent / "benchmarks" / "tasks").glob("*.yaml"))


def test_there_are_shipped_tasks():
    assert {p.stem for p in TASKS} >= {"bbc_news", "countries"}


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.stem)
def test_loads_and_validates(path):
    task = load_task(path)
    data = load_data(task)
    assert data.train and data.eval and data.hash
    assert task.config.data.source, "a shipped task says where its data comes from"


@pytest.mark.integration
@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.stem)
def test_runs_every_strategy_on_the_real_model(path, tmp_path):
    # Arms that train are exercised on the real model in test_real_model.py with a smaller
    # budget; here every arm of every shipped task that keeps the base weights runs as configured.
    names = [n for n, arm in load_task(path).arms.items() if arm.weights is None]
    report = compare(path, strategies=names, limit=4, store_path=tmp_path / "store.sqlite", progress=False)
    assert report.n_examples == 4
    assert [s.name for s in report.strategies] == names
    assert all(s.n_examples == 4 for s in report.strategies)
