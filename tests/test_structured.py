"""Structured tasks: the JSON metrics on hand-made answers, bad input refused in one line, and
constrained decoding on the real default model."""

from __future__ import annotations

import json

import pytest

from harness.metrics import score
from tests.test_bad_input import expect_error

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "number": {"type": "integer"}},
          "required": ["name", "number"], "additionalProperties": False}
TARGET = json.dumps({"name": "Tungsten", "number": 74})


def scores(answer: str) -> dict[str, float]:
    return {m: score(m, [answer], [TARGET], SCHEMA)[0]
            for m in ("json_valid", "schema_valid", "field_accuracy", "exact_match")}


@pytest.mark.parametrize("answer, expected", [
    ('{"name": "Tungsten", "number": 74}', (1, 1, 1, 1)),
    # A code fence is stripped; the content is compared after normalisation, numbers by value.
    ('```json\n{"name": "tungsten", "number": 74.0}\n```', (1, 1, 1, 1)),
    # Text after the object: not JSON at all.
    ('{"name": "Tungsten", "number": 74} That is all.', (0, 0, 0, 0)),
    # A wrong type: the right content in the wrong form counts on the fields, fails the schema.
    ('{"name": "Tungsten", "number": "74"}', (1, 0, 1, 1)),
    ('{"name": "Tungsten", "number": true}', (1, 0, 0.5, 0)),
    # A missing field.
    ('{"name": "Tungsten"}', (1, 0, 0.5, 0)),
    # An extra field: every schema field right, but neither the schema nor the whole object match.
    ('{"name": "Tungsten", "number": 74, "mass": 183.8}', (1, 0, 1, 0)),
    ('{"name": "Wolfram", "number": 75}', (1, 1, 0, 0)),
    ('[1, 2]', (1, 0, 0, 0)),
])
def test_metrics_on_hand_made_answers(answer, expected):
    assert tuple(scores(answer).values()) == expected


def structured_task(make_task, tmp_path, **overrides):
    rows = [{"id": f"e{i}", "text": f"the star {i}", "fields": {"name": f"star {i}", "number": i}} for i in range(6)]
    task = dict(type="structured", labels=None, output={"schema": SCHEMA},
                fields={"id": "id", "input": "text", "target": "fields"},
                train=rows[:3], eval=rows[3:], strategies={"zero_shot": {}})
    return make_task(**{**task, **overrides})


def test_missing_schema_is_refused(make_task, capsys, tmp_path):
    path = structured_task(make_task, tmp_path, output=None)
    expect_error(capsys, tmp_path, path, "task.yaml: output.schema", "JSON Schema")


def test_schema_that_is_not_json_schema(make_task, capsys, tmp_path):
    path = structured_task(make_task, tmp_path, output={"schema": {"type": "object", "properties": {"a": {"type": 5}}}})
    expect_error(capsys, tmp_path, path, "task.yaml: output.schema", "not a valid JSON Schema")


def test_target_that_is_not_an_object(make_task, capsys, tmp_path):
    rows = [{"id": f"e{i}", "text": f"the star {i}", "fields": [i]} for i in range(6)]
    path = structured_task(make_task, tmp_path, train=rows[:3], eval=rows[3:])
    expect_error(capsys, tmp_path, path, "row 1", "not a JSON object")


def test_decoding_axis_on_a_task_that_is_not_structured(make_task, capsys, tmp_path):
    path = make_task(type="short_answer", labels=None,
                     strategies={"zero_shot": {}, "constrained": {"decoding": {"json_schema": True}}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.constrained.decoding.json_schema",
                 "structured task")


def test_constrained_arm_on_the_real_model_is_always_schema_valid():
    """The shipped task's first eval documents: unconstrained, the default model wraps its JSON in
    prose or a fence and runs out of budget; under the schema every answer is valid."""
    from harness.arm import build
    from harness.data import load_data
    from harness.prompting import render
    from harness.registry import load_backend
    from harness.task import load_task

    task = load_task("benchmarks/tasks/elements_fields.yaml")
    backend = load_backend(task.config.model, task.path.parent)
    data = load_data(task)
    arm = build(task.arms["zero_shot"], task)
    arm.prepare(data, backend)
    examples = data.eval[:4]
    prompts = [render(task, backend, arm.messages(ex).messages) for ex in examples]
    schema = task.config.answer_schema

    def valid(constrained: bool) -> list[float]:
        answers = backend.generate(prompts, task.config.limits.max_new_tokens, schema=schema if constrained else None)
        return score("schema_valid", [a.text for a in answers], [ex.references for ex in examples], schema)

    assert valid(True) == [1.0] * 4
    assert valid(False) != [1.0] * 4


# --- the verdict's format gap, on constructed results ---------------------------------------------------

def structured_verdict(fields: dict[str, list[float]], schema_valid: dict[str, list[float]], constrained: set[str]):
    """The verdict on rows scored on field_accuracy, with their schema_valid pairs, as compare builds it."""
    from harness.config import DecisionConfig
    from harness.cost import add_costs
    from harness.verdict.decide import recommend
    from harness.verdict.text import explain
    from tests.test_decide import PRICES, _pairs, strategy

    decision = DecisionConfig()
    rows = [strategy(name, scores, training=name.startswith("lora"))[0] for name, scores in fields.items()]
    rows = add_costs(rows, PRICES, 100_000_000, decision.monthly_requests)
    # The rows are built on accuracy; here the same scores are the fields'.
    rows = [r.model_copy(update={"metrics": {"field_accuracy": r.metrics["accuracy"]},
                                 "axes": {"decoding": {"json_schema": True}} if r.name in constrained else {}})
            for r in rows]
    rec = recommend(rows, _pairs("field_accuracy", fields, decision), [], decision,
                    form=_pairs("schema_valid", schema_valid, decision))
    return rec, explain(rec)


def test_a_fine_tuned_lead_that_constrained_decoding_closes_is_format():
    """LoRA beats zero-shot on the fields (zero-shot's JSON is often broken), and the constrained arm
    is as good as LoRA: the gap was format, and the constrained arm is recommended."""
    from tests.test_decide import paired

    n = 200
    zero, lora = paired(n, 80, 0, 100)
    constrained = lora[:-2] + [1.0, 1.0]  # as good as LoRA, give or take an example
    rec, told = structured_verdict({"zero_shot": zero, "constrained": constrained, "lora": lora},
                                   {"zero_shot": [1.0] * 90 + [0.0] * 110, "constrained": [1.0] * n, "lora": [1.0] * n},
                                   {"constrained"})
    assert (rec.kind, rec.best) == ("dont_fine_tune", "constrained")
    gap = next(g for g in rec.findings if g.type == "format_gap")
    assert (gap.by, gap.arm, gap.instead, gap.strict.metric) == ("decoding", "lora", "constrained", "schema_valid")
    assert gap.instead_estimate.ci_low > -gap.margin
    assert "format" in rec.gaps and any(r.startswith("gap: format. lora") for r in told.reasons)


def test_fine_tuning_that_beats_constrained_decoding_on_the_fields_wins_on_content():
    from tests.test_decide import paired

    n = 200
    constrained, lora = paired(n, 60, 0, 80)
    rec, told = structured_verdict({"zero_shot": [0.0] * n, "constrained": constrained, "lora": lora},
                                   {"zero_shot": [0.0] * n, "constrained": [1.0] * n, "lora": [1.0] * n},
                                   {"constrained"})
    assert (rec.kind, rec.best) == ("fine_tune", "lora")
    lead = next(g for g in rec.findings if g.type == "fields_lead")
    assert (lead.arm, lead.against) == ("lora", "constrained") and lead.estimate.ci_low > 0
    assert "format" not in rec.gaps and any(r.startswith("fields: lora beats constrained") for r in told.reasons)


def test_no_constrained_arm_is_named_missing():
    from tests.test_decide import paired

    zero, lora = paired(200, 80, 0, 100)
    rec, _ = structured_verdict({"zero_shot": zero, "lora": lora}, {"zero_shot": zero, "lora": lora}, set())
    assert any(x.type == "missing" and x.what == "constrained_decoding" for x in rec.findings)
