"""Every kind of bad input: one clear line naming file and field, exit code 2, no traceback,
and nothing written to the store; `harness validate` says the same line."""

from __future__ import annotations

from harness.cli import main
from tests.conftest import topic_rows


def run_cli(capsys, tmp_path, task_path, *extra):
    store = tmp_path / "store.sqlite"
    rc = main(["compare", str(task_path), "--store", str(store), "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    return rc, err, store


def expect_error(capsys, tmp_path, task_path, *fragments, extra=()):
    rc, err, store = run_cli(capsys, tmp_path, task_path, *extra)
    assert rc == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert not store.exists(), "a failed validation must not create the store"
    # `harness validate` runs compare's checks: the same exit code and the same line.
    assert main(["validate", str(task_path), "--store", str(store), *extra]) == 2
    assert capsys.readouterr().err.strip() == err
    assert not store.exists()


def test_malformed_yaml(make_task, capsys, tmp_path):
    path = make_task(raw="name: x\ntype: [classification\n")
    expect_error(capsys, tmp_path, path, "task.yaml", "malformed YAML", "line")


def test_unknown_field(make_task, capsys, tmp_path):
    path = make_task(promt={"template": "x"})
    expect_error(capsys, tmp_path, path, "task.yaml: promt", "unknown field")


def test_wrong_type_names_nested_field(make_task, capsys, tmp_path):
    path = make_task(limits={"batch_size": 0})
    expect_error(capsys, tmp_path, path, "task.yaml: limits.batch_size", "greater than 0")


def test_bad_strategy_parameter(make_task, capsys, tmp_path):
    path = make_task(strategies={"few_shot": {"k": -1}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.few_shot.k")


def test_unknown_axis(make_task, capsys, tmp_path):
    # Any name is an arm; what it is made of must be one of the axes.
    path = make_task(strategies={"zero_shot": {}, "telepathy": {"mind": {"reading": True}}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.telepathy.mind", "unknown axis", "demos")


def test_unknown_strategy_on_command_line(make_task, capsys, tmp_path):
    expect_error(capsys, tmp_path, make_task(), "--strategies", "telepathy", extra=("--strategies", "telepathy"))


def test_missing_labels_for_classification(make_task, capsys, tmp_path):
    path = make_task(labels=None)
    expect_error(capsys, tmp_path, path, "task.yaml: labels", "at least two labels")


def test_template_syntax_error(make_task, capsys, tmp_path):
    path = make_task(prompt={"template": "article {{ text "})
    expect_error(capsys, tmp_path, path, "task.yaml: prompt", "Jinja2")


def test_template_naming_a_column_the_data_lacks(make_task, capsys, tmp_path):
    path = make_task(prompt={"template": "article : {{ nosuchcol }} topic ?"})
    expect_error(capsys, tmp_path, path, "task.yaml: prompt.template", "'nosuchcol' is undefined", "example 'sport-0'",
                 "columns: id, text, label")


def test_arm_template_naming_a_column_the_data_lacks(make_task, capsys, tmp_path):
    path = make_task(strategies={"zero_shot": {}, "other": {"prompt": {"template": "{{ text }} {{ title }}"}}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.other.prompt.template", "'title' is undefined")


def test_input_longer_than_the_context_when_overflow_is_an_error(make_task, capsys, tmp_path):
    long = topic_rows(4, offset=10)
    long[5]["text"] = "the " * 5000
    path = make_task(eval=long, prompt={"template": "article : {{ text }} topic ?", "overflow": "error"})
    expect_error(capsys, tmp_path, path, "task.yaml: prompt.overflow", f"example '{long[5]['id']}'",
                 "512-token context", "truncate_input")


def test_answer_budget_larger_than_the_context(make_task, capsys, tmp_path):
    path = make_task(type="short_answer", labels=None, limits={"max_new_tokens": 100000})
    expect_error(capsys, tmp_path, path, "task.yaml: limits.max_new_tokens", "100000", "512-token context")


def test_store_that_is_not_a_results_store(make_task, capsys, tmp_path):
    store = tmp_path / "notes.sqlite"
    store.write_text("my notes, not a database\n" * 100, encoding="utf-8")
    rc, err, _ = run_cli(capsys, tmp_path, make_task(), "--store", str(store))
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "notes.sqlite: cannot be used as a results store (file is not a database)" in err
    assert store.read_text(encoding="utf-8").startswith("my notes"), "the file is left as it was"


def test_missing_task_file(capsys, tmp_path):
    expect_error(capsys, tmp_path, tmp_path / "nope.yaml", "nope.yaml", "not found")


def test_missing_data_file(make_task, capsys, tmp_path):
    path = make_task(data={"train": "data/train.jsonl", "eval": "data/missing.jsonl"})
    expect_error(capsys, tmp_path, path, "task.yaml: data.eval", "data file not found", "missing.jsonl")


def test_empty_split(make_task, capsys, tmp_path):
    path = make_task(eval=[])
    (tmp_path / "data" / "eval.jsonl").write_text("", encoding="utf-8")
    expect_error(capsys, tmp_path, path, "eval.jsonl", "empty")


def test_example_missing_field(make_task, capsys, tmp_path):
    rows = topic_rows(2, offset=10)
    del rows[3]["label"]
    expect_error(capsys, tmp_path, make_task(eval=rows), "eval.jsonl: row 4", "missing or empty field 'label'")


def test_label_outside_label_set(make_task, capsys, tmp_path):
    rows = topic_rows(2)
    rows[1]["label"] = "weather"
    expect_error(capsys, tmp_path, make_task(train=rows), "train.jsonl: row 2", "'weather'", "label set")


def test_non_utf8_data(make_task, capsys, tmp_path):
    path = make_task()
    data = tmp_path / "data" / "eval.jsonl"
    data.write_bytes(data.read_bytes().replace(b"article", b"articl\xe9", 1))
    expect_error(capsys, tmp_path, path, "eval.jsonl", "line 1", "not UTF-8")


def test_non_utf8_task_file(make_task, capsys, tmp_path):
    path = make_task()
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")
    expect_error(capsys, tmp_path, path, "task.yaml", "not UTF-8")


def test_leakage_between_train_and_eval(make_task, capsys, tmp_path):
    train = topic_rows(4)
    leaked = dict(train[2], id="eval-copy", text="  " + train[2]["text"].upper())
    path = make_task(train=train, eval=topic_rows(2, offset=10) + [leaked])
    expect_error(capsys, tmp_path, path, "data.eval", "1 eval example(s) also appear in the train split", "eval-copy")


def test_model_not_found(make_task, capsys, tmp_path):
    expect_error(capsys, tmp_path, make_task(model="no-such-org/no-such-model-xyz"), "model 'no-such-org",
                 "cannot be found")


def test_model_name_longer_than_any_file_name(make_task, capsys, tmp_path):
    # Found by tests/test_fuzz_task.py: checking for a local folder of that name raised OSError.
    expect_error(capsys, tmp_path, make_task(model="x" * 20_000), "model 'xxx", "cannot be found")


def test_unknown_metric(make_task, capsys, tmp_path):
    expect_error(capsys, tmp_path, make_task(metrics=["no_such_metric_xyz"]), "no_such_metric_xyz")


def test_bad_limit(make_task, capsys, tmp_path):
    rc, err, store = run_cli(capsys, tmp_path, make_task(), "--limit", "0")
    assert rc == 2 and "--limit" in err and not store.exists()


def test_duplicate_ids(make_task, capsys, tmp_path):
    rows = topic_rows(2, offset=10)
    rows[1]["id"] = rows[0]["id"]
    expect_error(capsys, tmp_path, make_task(eval=rows), "eval.jsonl: row 2", "duplicate id")


def test_negative_price(make_task, capsys, tmp_path):
    path = make_task(cost={"hardware_usd_per_hour": -0.5})
    expect_error(capsys, tmp_path, path, "task.yaml: cost.hardware_usd_per_hour", "greater than or equal to 0")


def test_missing_api_price(make_task, capsys, tmp_path):
    path = make_task(cost={"serving": "api", "api_usd_per_mtok_input": 0.15})
    expect_error(capsys, tmp_path, path, "task.yaml: cost.api_usd_per_mtok_output",
                 "required when cost.serving is 'api'")


def test_price_left_empty(make_task, capsys, tmp_path):
    path = make_task(cost={"storage_usd_per_gb_month": None})
    expect_error(capsys, tmp_path, path, "task.yaml: cost.storage_usd_per_gb_month", "valid number")


def test_decision_metric_the_task_does_not_have(make_task, capsys, tmp_path):
    path = make_task(decision={"metric": "rouge_l"})
    expect_error(capsys, tmp_path, path, "task.yaml: decision.metric", "'rouge_l' is not one of the task's metrics",
                 "accuracy")


def test_bad_decision_threshold(make_task, capsys, tmp_path):
    path = make_task(decision={"min_gain": 0})
    expect_error(capsys, tmp_path, path, "task.yaml: decision.min_gain", "greater than 0")


def test_learning_curve_of_unknown_strategy(make_task, capsys, tmp_path):
    path = make_task(learning_curves=[{"strategy": "telepathy", "param": "k", "values": [1]}])
    expect_error(capsys, tmp_path, path, "task.yaml: learning_curves.0.strategy", "unknown arm 'telepathy'")


def test_learning_curve_of_unknown_parameter(make_task, capsys, tmp_path):
    path = make_task(learning_curves=[{"strategy": "few_shot", "param": "shots", "values": [1]}])
    expect_error(capsys, tmp_path, path, "task.yaml: learning_curves.0.param", "no parameter 'shots'", "k")


def test_learning_curve_value_out_of_range(make_task, capsys, tmp_path):
    path = make_task(learning_curves=[{"strategy": "few_shot", "param": "k", "values": [1, -2]}])
    expect_error(capsys, tmp_path, path, "task.yaml: learning_curves.0.values.1", "greater than or equal to 0")
