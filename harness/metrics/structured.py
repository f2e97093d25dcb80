"""Metrics of a structured task, whose answers are JSON objects under the task's JSON Schema.

- `json_valid`: the answer parses as JSON (a surrounding code fence is stripped, nothing else: text
  before or after the object makes it invalid);
- `schema_valid`: it validates against the schema: the content-free measure of format;
- `field_accuracy`: the share of the schema's top-level fields whose value equals the target's,
  strings after SQuAD normalisation and numbers by value (a number written as a string, "74" for 74,
  holds the right content in the wrong form: it counts here and fails `schema_valid`);
- `exact_match`: the whole object equal to the target, by the same comparison, no field more or less.

Plain functions, not `evaluate` modules like the other metrics: they need the task's schema beside
the answers. jsonschema is imported inside, so importing this stays cheap."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from harness.metrics._text import normalize_answer

NAMES = ("field_accuracy", "schema_valid", "json_valid", "exact_match")
# The content-free measure of a structured answer's form, as `contains` is a short answer's lenient one.
FORMAT = "schema_valid"

_FENCE = re.compile(r"\A```[A-Za-z0-9_-]*[ \t]*\n(.*)\n?```\Z", re.DOTALL)
_NOTHING = object()


def parse(answer: str) -> Any:
    """The JSON value of `answer`, or _NOTHING when it is not JSON."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    try:
        return json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return _NOTHING


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def same(answer: Any, target: Any) -> bool:
    """Whether a value holds the target's content."""
    if isinstance(target, bool) or target is None:
        return answer is target
    if isinstance(target, (int, float)):
        return _number(answer) == float(target)
    if isinstance(target, str):
        return isinstance(answer, str) and normalize_answer(answer) == normalize_answer(target)
    if isinstance(target, list):
        return isinstance(answer, list) and len(answer) == len(target) and all(map(same, answer, target))
    if isinstance(target, dict):
        return isinstance(answer, dict) and answer.keys() == target.keys() and all(
            same(answer[k], v) for k, v in target.items())
    return answer == target


@functools.cache
def _validator(schema_json: str):
    import jsonschema

    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


def _score(name: str, answer: Any, target: dict, schema: dict) -> float:
    if answer is _NOTHING:
        return 0.0
    if name == "json_valid":
        return 1.0
    if name == "schema_valid":
        return float(_validator(json.dumps(schema, sort_keys=True)).is_valid(answer))
    if name == "exact_match":
        return float(same(answer, target))
    fields = list(schema["properties"])
    got = answer if isinstance(answer, dict) else {}
    return sum(k in got and same(got[k], target.get(k)) for k in fields) / len(fields)


def valid(answer: str, schema: dict) -> bool:
    """Whether `answer` is a JSON value that validates against `schema`."""
    return _score("schema_valid", parse(answer), {}, schema) == 1.0


def score(name: str, predictions: list[str], references: list[str | list[str] | tuple[str, ...]],
          schema: dict) -> list[float]:
    """Per-example scores; a reference is the target object's JSON (or a list of accepted ones: the
    best counts)."""
    out = []
    for prediction, reference in zip(predictions, references):
        answer = parse(prediction)
        accepted = reference if isinstance(reference, (list, tuple)) else [reference]
        out.append(max(_score(name, answer, json.loads(r), schema) for r in accepted))
    return out
