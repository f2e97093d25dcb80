"""harness/data.py: splits read from JSONL and CSV into examples, the seeded eval sample, the data
hash that decides whether results are comparable, and config fingerprints for store keys. Row
errors (missing field, label set, duplicates, leakage, encoding) are in test_bad_input.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness.data import config_fingerprint, load_data
from harness.errors import HarnessError
from harness.task import load_task
from tests.conftest import topic_rows, write_jsonl


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_jsonl_examples_take_ids_from_the_id_field(make_task):
    data = load_data(load_task(make_task()))
    rows = topic_rows(4, offset=10)
    assert [e.id for e in data.eval] == [r["id"] for r in rows]
    assert [(e.input, e.target) for e in data.eval] == [(r["text"], r["label"]) for r in rows]
    assert data.eval[0].row == rows[0]  # every column, for the template
    assert len(data.train) == 12 and data.validation is None
    assert len(data.hash) == 16 and int(data.hash, 16) >= 0


def test_csv_without_an_id_column_numbers_the_rows(make_task, tmp_path):
    train = [{"text": r["text"], "label": r["label"], "source": "wire"} for r in topic_rows(2)]
    evaluation = [{"text": r["text"], "label": r["label"], "source": "wire"} for r in topic_rows(2, offset=10)]
    write_csv(tmp_path / "csv" / "train.csv", train)
    write_csv(tmp_path / "csv" / "eval.csv", evaluation)
    path = make_task(data={"train": "csv/train.csv", "eval": "csv/eval.csv"},
                     fields={"input": "text", "target": "label"})
    data = load_data(load_task(path))
    assert [e.id for e in data.train] == [f"train-{i}" for i in range(1, 7)]
    assert [e.id for e in data.eval] == [f"eval-{i}" for i in range(1, 7)]
    assert [e.input for e in data.eval] == [r["text"] for r in evaluation]
    assert data.eval[2].target == evaluation[2]["label"] and data.eval[2].row["source"] == "wire"


def test_non_string_values_become_strings(make_task):
    train = [{"id": i, "text": f"the match {w}", "label": lab}
             for i, (w, lab) in enumerate([("one", "sport"), ("two", "tech"), ("three", "business")])]
    evaluation = [{"id": 10 + i, "text": t, "label": lab}
                  for i, (t, lab) in enumerate([("market rose", "business"), ("phone", "tech")])]
    data = load_data(load_task(make_task(train=train, eval=evaluation)))
    assert [e.id for e in data.eval] == ["10", "11"] and [e.id for e in data.train] == ["0", "1", "2"]


def test_targets_are_stripped(make_task):
    evaluation = topic_rows(1, offset=10)
    evaluation[0]["label"] = "  sport \n"
    data = load_data(load_task(make_task(eval=evaluation)))
    assert data.eval[0].target == "sport"


def test_eval_sample_is_seeded_stable_and_in_file_order(make_task):
    path = make_task()
    full = [e.id for e in load_data(load_task(path)).eval]
    a = [e.id for e in load_data(load_task(path, limit=5)).eval]
    b = [e.id for e in load_data(load_task(path, limit=5)).eval]
    assert a == b and len(a) == 5 and len(set(a)) == 5
    assert a == [i for i in full if i in a]  # a subset, in file order
    assert a != full[:5]  # a sample across the file, not its head
    # Another seed draws another sample.
    other = [e.id for e in load_data(load_task(make_task(seed=99), limit=5)).eval]
    assert other != a and other == [i for i in full if i in other]


def test_limit_at_or_above_the_eval_size_keeps_everything(make_task):
    path = make_task()
    full = [e.id for e in load_data(load_task(path)).eval]
    assert [e.id for e in load_data(load_task(path, limit=12)).eval] == full
    assert [e.id for e in load_data(load_task(path, limit=500)).eval] == full


def test_the_sample_leaves_train_untouched(make_task):
    path = make_task()
    assert [e.id for e in load_data(load_task(path, limit=2)).train] == [e.id for e in load_data(load_task(path)).train]


def test_data_hash_follows_the_data_not_the_yaml(make_task, tmp_path):
    path = make_task()
    base = load_data(load_task(path)).hash
    assert load_data(load_task(path)).hash == base

    # The YAML changes (name, prompt, strategies, seed, limit): same data, same hash.
    make_task(name="renamed", prompt={"template": "{{ text }} ?"}, strategies={"zero_shot": {}}, seed=7)
    assert load_data(load_task(path)).hash == base
    assert load_data(load_task(path, limit=3)).hash == base

    # One eval row changes: a different hash.
    rows = topic_rows(4, offset=10)
    rows[5]["text"] += " again"
    make_task(eval=rows)
    changed = load_data(load_task(path)).hash
    assert changed != base

    # Swapping train and eval contents is a change too, even though the bytes are the same overall.
    make_task(train=topic_rows(4, offset=10), eval=topic_rows(4))
    assert load_data(load_task(path)).hash not in (base, changed)


def test_a_file_rewritten_with_the_same_mtime_is_read_again(make_task, tmp_path):
    import os

    path = make_task()
    data_file = tmp_path / "data" / "eval.jsonl"
    stamp = data_file.stat().st_mtime_ns
    before = load_data(load_task(path))
    rows = topic_rows(4, offset=10)
    rows[0]["text"] = "the election vote"
    write_jsonl(data_file, rows)
    os.utime(data_file, ns=(stamp, stamp))
    after = load_data(load_task(path))
    assert after.hash != before.hash
    assert after.eval[0].input == "the election vote"


def test_data_hash_does_not_depend_on_where_the_task_lives(make_task, tmp_path):
    path = make_task()
    base = load_data(load_task(path)).hash
    moved = tmp_path / "sub" / "copy.yaml"
    moved.parent.mkdir()
    moved.write_text(path.read_text().replace("data/", "../data/"))
    assert load_data(load_task(moved)).hash == base


def test_validation_split_is_optional_and_loaded_when_given(make_task, tmp_path):
    write_jsonl(tmp_path / "data" / "val.jsonl", topic_rows(1, offset=20))
    path = make_task(data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "validation": "data/val.jsonl"})
    data = load_data(load_task(path))
    assert [e.id for e in data.validation] == [r["id"] for r in topic_rows(1, offset=20)]
    without = load_data(load_task(make_task()))
    assert without.validation is None
    # The validation split is part of the data: adding it changes the hash.
    assert without.hash != data.hash


def test_validation_rows_are_validated_too(make_task, tmp_path):
    rows = topic_rows(1, offset=20)
    rows[1]["label"] = "weather"
    write_jsonl(tmp_path / "data" / "val.jsonl", rows)
    path = make_task(data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "validation": "data/val.jsonl"})
    with pytest.raises(HarnessError) as info:
        load_data(load_task(path))
    assert info.value.where.endswith("val.jsonl: row 2") and "'weather'" in info.value.message


def test_a_json_array_file(make_task, tmp_path):
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "eval.json").write_text(json.dumps(topic_rows(1, offset=10)), encoding="utf-8")
    path = make_task(data={"train": "data/train.jsonl", "eval": "data/eval.json"})
    assert [e.id for e in load_data(load_task(path)).eval] == [r["id"] for r in topic_rows(1, offset=10)]


def test_unparseable_file_names_the_file(make_task, tmp_path):
    path = make_task()
    (tmp_path / "data" / "eval.jsonl").write_text('{"id": "a", "text": "x", "label": "sport"}\n{not json\n')
    with pytest.raises(HarnessError) as info:
        load_data(load_task(path))
    assert info.value.where.endswith("eval.jsonl") and "could not be parsed as jsonl" in info.value.message


def test_missing_data_file_shows_the_build_command(make_task):
    path = make_task(data={"train": "data/train.jsonl", "eval": "data/nope.jsonl", "build": "make data"})
    with pytest.raises(HarnessError) as info:
        load_data(load_task(path))
    assert info.value.where == f"{path}: data.eval"
    assert "nope.jsonl" in info.value.message and "create it with: make data" in info.value.message


def test_config_fingerprint_ignores_key_order():
    a = {"k": 3, "nested": {"x": 1, "y": [1, 2]}, "name": "few_shot"}
    b = {"name": "few_shot", "nested": {"y": [1, 2], "x": 1}, "k": 3}
    assert config_fingerprint(a) == config_fingerprint(b)
    assert len(config_fingerprint(a)) == 16


def test_config_fingerprint_sees_every_value():
    a = {"k": 3, "nested": {"x": 1, "y": [1, 2]}}
    assert config_fingerprint(a) != config_fingerprint({**a, "k": 4})
    assert config_fingerprint(a) != config_fingerprint({**a, "nested": {"x": 1, "y": [2, 1]}})  # list order counts
    assert config_fingerprint(a) != config_fingerprint({**a, "extra": None})
    # Values JSON cannot hold are hashed by their str() instead of failing.
    assert config_fingerprint({"p": Path("/a")}) == config_fingerprint({"p": "/a"})


def test_references_are_the_target_and_the_listed_aliases(make_task):
    rows = [{"id": "q1", "text": "who discovered barium ?", "label": "Humphry Davy",
             "aka": ["Davy", " Sir Humphry Davy "]},
            {"id": "q2", "text": "capital of france ?", "label": "paris", "aka": []},
            {"id": "q3", "text": "capital of italy ?", "label": "rome", "aka": None}]
    path = make_task(type="short_answer", labels=None, eval=rows, train=[{**rows[0], "id": "t1", "text": "x"}],
                     fields={"id": "id", "input": "text", "target": "label", "references": "aka"})
    by_id = {ex.id: ex for ex in load_data(load_task(path)).eval}
    assert by_id["q1"].references == ("Humphry Davy", "Davy", "Sir Humphry Davy")
    assert by_id["q2"].references == by_id["q2"].references[:1] == ("paris",)
    assert by_id["q3"].references == ("rome",)


def test_references_must_be_a_list_of_answers(make_task):
    rows = [{"id": "q1", "text": "capital of france ?", "label": "paris", "aka": "Paris, France"}]
    path = make_task(type="short_answer", labels=None, eval=rows, train=[{**rows[0], "id": "t1", "text": "x"}],
                     fields={"id": "id", "input": "text", "target": "label", "references": "aka"})
    with pytest.raises(HarnessError) as e:
        load_data(load_task(path))
    assert "row 1" in e.value.where and "fields.references" in e.value.message
