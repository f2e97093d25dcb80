"""harness/task.py: a task YAML becomes a validated, typed config with defaults filled, or one
HarnessError naming file and field. The CLI-level error cases live in test_bad_input.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import DEFAULT_MODEL, HubSplit
from harness.errors import HarnessError
from harness.task import load_task

QA = [{"id": "q1", "text": "what is the capital of france ?", "label": "paris"},
      {"id": "q2", "text": "what is the capital of spain ?", "label": "madrid"}]


def expect_error(path: Path, field: str, fragment: str, **kwargs) -> HarnessError:
    with pytest.raises(HarnessError) as info:
        load_task(path, **kwargs)
    err = info.value
    assert err.where == f"{path}: {field}", err
    assert fragment in err.message, err
    return err


def test_defaults_are_filled(make_task):
    path = make_task()
    task = load_task(path)
    cfg = task.config
    assert cfg.name == "tiny_topics" and cfg.type == "classification" and cfg.labels == ["sport", "business", "tech"]
    assert cfg.seed == 1234 and cfg.description == ""
    # Set in the YAML: batch_size; left out: the other limits keep their defaults.
    assert (cfg.limits.batch_size, cfg.limits.max_new_tokens, cfg.limits.eval_examples) == (4, 32, None)
    assert cfg.cost.serving == "self_hosted" and cfg.cost.api_usd_per_mtok_input is None
    assert cfg.decision.min_gain == 0.02 and cfg.decision.forgetting_budget == 0.05
    assert cfg.forgetting.text is None and cfg.forgetting.max_tokens == 128
    assert cfg.learning_curves == [] and task.curves == []
    assert cfg.data.validation is None and cfg.fields.id == "id"
    assert task.path == path
    # Every arm's parameters are validated, defaults filled; a shorthand becomes its axes.
    assert list(task.arms) == ["zero_shot", "few_shot"]
    assert task.arms["few_shot"].params == {"k": 3, "balanced": True}
    assert task.arms["few_shot"].demos.config.k == 3 and task.arms["few_shot"].demos.config.select == "balanced"
    assert task.arms["zero_shot"].components() == []


def test_model_defaults_to_the_builtin_alias(make_task):
    import yaml

    path = make_task()
    raw = yaml.safe_load(path.read_text())
    del raw["model"]
    path.write_text(yaml.safe_dump(raw))
    assert load_task(path).config.model == DEFAULT_MODEL


@pytest.mark.parametrize("task_type, expected", [("classification", ("accuracy",)),
                                                 ("short_answer", ("exact_match", "token_f1", "contains")),
                                                 ("generation", ("rouge_l",))])
def test_metric_names_default_per_task_type(make_task, task_type, expected):
    labels = ["sport", "business", "tech"] if task_type == "classification" else None
    kwargs = {} if task_type == "classification" else {"train": QA[:1], "eval": QA[1:]}
    assert load_task(make_task(type=task_type, labels=labels, **kwargs)).config.metric_names == expected


def test_explicit_metrics_keep_their_order(make_task):
    path = make_task(type="short_answer", labels=None, metrics=["token_f1", "exact_match"],
                     decision={"metric": "exact_match"})
    cfg = load_task(path).config
    assert cfg.metric_names == ("token_f1", "exact_match", "contains")  # the lenient metric is always added
    assert cfg.decision.metric == "exact_match"


@pytest.mark.parametrize("decision, gate, expected", [
    (None, None, 0.05),  # the default budget
    ({"forgetting_budget": 0.2}, None, 0.2),  # inherited
    ({"forgetting_budget": 0.2}, {"max_drop": 0.01}, 0.2),  # inherited next to other gate rules
    ({"forgetting_budget": 0.2}, {"max_forgetting": 0.5}, 0.5),  # the gate's own value wins
    ({"forgetting_budget": 0.2}, {"max_forgetting": None}, None),  # an explicit null skips the rule
])
def test_gate_inherits_the_forgetting_budget(make_task, decision, gate, expected):
    overrides = {k: v for k, v in (("decision", decision), ("gate", gate)) if v is not None}
    cfg = load_task(make_task(**overrides)).config
    assert cfg.gate.max_forgetting == expected
    if gate and "max_drop" in gate:
        assert cfg.gate.max_drop == 0.01


def test_limit_overrides_eval_examples(make_task):
    path = make_task(limits={"batch_size": 4, "eval_examples": 10})
    assert load_task(path).config.limits.eval_examples == 10
    limited = load_task(path, limit=3).config.limits
    assert limited.eval_examples == 3 and limited.batch_size == 4
    # The override does not stick: the next load without it reads the file again.
    assert load_task(path).config.limits.eval_examples == 10


def test_limit_without_a_limits_section(make_task):
    import yaml

    path = make_task()
    raw = yaml.safe_load(path.read_text())
    del raw["limits"]
    path.write_text(yaml.safe_dump(raw))
    limits = load_task(path, limit=7).config.limits
    assert limits.eval_examples == 7 and limits.batch_size == 8


def test_limit_is_validated_like_the_yaml_field(make_task):
    expect_error(make_task(), "limits.eval_examples", "greater than 0", limit=0)


def test_learning_curve_points_are_validated_per_value(make_task):
    path = make_task(strategies={"zero_shot": {}, "few_shot": {"k": 3, "balanced": False}},
                     learning_curves=[{"strategy": "few_shot", "param": "k", "values": [0, 1, 5]}])
    task = load_task(path)
    ((curve, points),) = task.curves
    assert curve.strategy == "few_shot" and curve.param == "k"
    assert [p.params["k"] for p in points] == [0, 1, 5]
    # The other parameters come from the task's own entry for the arm; k=0 is the zero-shot prompt.
    assert all(p.params["balanced"] is False for p in points)
    assert [p.demos.config.select if p.demos else None for p in points] == [None, "random", "random"]
    assert points[0].axes() == task.arms["zero_shot"].axes()


def test_learning_curve_of_a_strategy_not_in_the_comparison_uses_its_defaults(make_task):
    path = make_task(strategies={"zero_shot": {}},
                     learning_curves=[{"strategy": "few_shot", "param": "k", "values": [2]}])
    ((_, (point,)),) = load_task(path).curves
    assert point.params == {"k": 2, "balanced": True}


def test_learning_curve_value_of_the_wrong_type(make_task):
    path = make_task(learning_curves=[{"strategy": "few_shot", "param": "k", "values": [1, 2, "many"]}])
    expect_error(path, "learning_curves.0.values.2", "integer")


def test_learning_curve_needs_values(make_task):
    path = make_task(learning_curves=[{"strategy": "few_shot", "param": "k", "values": []}])
    expect_error(path, "learning_curves.0.values", "at least 1")


def test_paths_resolve_relative_to_the_yaml(make_task, tmp_path, monkeypatch):
    path = make_task(data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "validation": "../v.jsonl"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    task = load_task(path)
    assert task.resolve(task.config.data.eval) == str((tmp_path / "data" / "eval.jsonl").resolve())
    assert task.resolve(task.config.data.validation) == str((tmp_path.parent / "v.jsonl").resolve())
    absolute = str(tmp_path / "x" / "train.jsonl")
    assert task.resolve(absolute) == absolute


def test_a_hub_split_is_typed_and_not_resolved(make_task):
    path = make_task(data={"train": {"hub": "org/set", "split": "train", "config": "en"}, "eval": "data/eval.jsonl"})
    task = load_task(path)
    hub = task.config.data.train
    assert isinstance(hub, HubSplit) and (hub.hub, hub.split, hub.config) == ("org/set", "train", "en")
    assert task.resolve(hub) is hub


def test_config_is_frozen(make_task):
    import pydantic

    cfg = load_task(make_task()).config
    with pytest.raises(pydantic.ValidationError):
        cfg.limits.batch_size = 1


# Errors not covered by test_bad_input.py; each names the file and the field.

def test_labels_on_a_non_classification_task(make_task):
    path = make_task(type="short_answer", train=QA[:1], eval=QA[1:])  # keeps the classification labels
    expect_error(path, "labels", "only classification tasks take labels, this task is 'short_answer'")


def test_duplicate_labels(make_task):
    expect_error(make_task(labels=["sport", "tech", "sport"]), "labels", "unique")


def test_a_single_label(make_task):
    expect_error(make_task(labels=["sport"]), "labels", "at least two labels")


@pytest.mark.parametrize("name", ["tiny topics", "-leading-dash", "../escape", "café", ""])
def test_bad_name_characters(make_task, name):
    expect_error(make_task(name=name), "name", "use letters, digits")


@pytest.mark.parametrize("name", ["a", "tiny_topics-v1.2", "0start"])
def test_good_names(make_task, name):
    assert load_task(make_task(name=name)).config.name == name


def test_no_strategies(make_task):
    expect_error(make_task(strategies={}), "strategies", "at least one strategy")


def test_missing_required_field(make_task):
    import yaml

    path = make_task()
    raw = yaml.safe_load(path.read_text())
    del raw["fields"]
    path.write_text(yaml.safe_dump(raw))
    expect_error(path, "fields", "required field is missing")


def test_unknown_task_type(make_task):
    expect_error(make_task(type="regression"), "type", "classification")


def test_data_file_with_an_unknown_suffix(make_task):
    path = make_task(data={"train": "data/train.txt", "eval": "data/eval.jsonl"})
    expect_error(path, "data.train", ".jsonl")


def test_unknown_field_in_a_nested_section(make_task):
    expect_error(make_task(limits={"batch_sise": 2}), "limits.batch_sise", "unknown field")


def test_gate_metric_the_task_does_not_have(make_task):
    expect_error(make_task(gate={"metric": "rouge_l"}), "gate.metric", "'rouge_l' is not one of the task's metrics")


def test_gate_alpha_out_of_range(make_task):
    expect_error(make_task(gate={"alpha": 0.5}), "gate.alpha", "less than 0.5")


def test_api_serving_with_both_prices_loads(make_task):
    path = make_task(cost={"serving": "api", "api_usd_per_mtok_input": 0.15, "api_usd_per_mtok_output": 0.6})
    cost = load_task(path).config.cost
    assert (cost.serving, cost.api_usd_per_mtok_input, cost.api_usd_per_mtok_output) == ("api", 0.15, 0.6)


def test_top_level_must_be_a_mapping(make_task):
    path = make_task(raw="- name\n- type\n")
    with pytest.raises(HarnessError) as info:
        load_task(path)
    assert info.value.where == str(path) and "mapping" in info.value.message


def test_empty_task_file(make_task):
    path = make_task(raw="")
    with pytest.raises(HarnessError) as info:
        load_task(path)
    assert info.value.where == str(path) and "mapping" in info.value.message
