"""Every shipped task file loads, its data validates, and it runs on the real default model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.compare import compare
from harness.data import load_data
from harness.task import load_task
from tests.servers import serve_transformers

TASKS = sorted((Path(__file__).parent.parent / "benchmarks" / "tasks").glob("*.yaml"))


def test_there_are_shipped_tasks():
    assert {p.stem for p in TASKS} >= {"bbc_news", "countries"}


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.stem)
def test_loads_and_validates(path):
    task = load_task(path)
    data = load_data(task)
    assert data.train and data.eval and data.hash
    assert task.config.data.source, "a shipped task says where its data comes from"


def hosted_models(raw: dict) -> list[dict]:
    """The hosted `model:` mappings of a task file, the task's and its arms'."""
    models = [raw.get("model")] + [arm.get("model") for arm in raw["strategies"].values() if isinstance(arm, dict)]
    return [m for m in models if isinstance(m, dict)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The built-in model behind `transformers serve` (what `make serve` runs), started for the first
    task with hosted arms."""
    from harness.backends.local import resolve_model

    started = []

    def start():
        if not started:
            started.append(serve_transformers(Path(resolve_model("smollm2-135m-instruct")),
                                              tmp_path_factory.mktemp("serve") / "serve.log"))
        return started[0]

    yield start
    for server in started:
        server.stop()


def pointed_at(path: Path, base_url: str, folder: Path) -> Path:
    """A copy of the task file whose hosted models are at `base_url` (its data where the original's is)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for split in ("train", "eval", "validation"):
        if isinstance(raw["data"].get(split), str):
            raw["data"][split] = str((path.parent / raw["data"][split]).resolve())
    for model in hosted_models(raw):
        model["base_url"] = base_url
    copy = folder / path.name
    copy.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return copy


@pytest.mark.integration
@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.stem)
def test_runs_every_strategy_on_the_real_model(path, tmp_path, served):
    # Arms that train are exercised on the real model in test_real_model.py with a smaller
    # budget; here every arm of every shipped task that keeps the base weights runs as configured,
    # a hosted arm against the built-in model served as `make serve` serves it.
    names = [n for n, arm in load_task(path).arms.items() if arm.weights is None]
    if hosted_models(yaml.safe_load(path.read_text(encoding="utf-8"))):
        path = pointed_at(path, served().base_url, tmp_path)
    report = compare(path, strategies=names, limit=4, store_path=tmp_path / "store.sqlite", progress=False)
    assert report.n_examples == 4
    assert [s.name for s in report.strategies if not s.added_by_harness] == names
    assert all(s.n_examples == 4 for s in report.strategies)
