"""Metrics for the harness: our own `evaluate` modules, plus any name `evaluate.load` knows.

evaluate is imported only inside functions: `import evaluate` pulls in transformers and takes
seconds, and importing this package has to stay cheap for the CLI's --help.
"""

from __future__ import annotations

import functools
import itertools
import numbers
from pathlib import Path

SHIPPED: tuple[str, ...] = ("accuracy", "exact_match", "token_f1", "contains", "rouge_l")

# Chat models tend to answer in a sentence, which exact match scores 0 however right the answer.
LENIENT = "contains"

DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "short_answer": ("exact_match", "token_f1", LENIENT),
    "generation": ("rouge_l",),
    # The decision is made on the fields' content; schema_valid is the format (harness/metrics/structured.py).
    "structured": ("field_accuracy", "schema_valid", "json_valid", "exact_match"),
}

_HERE = Path(__file__).resolve().parent


class MetricError(ValueError):
    """A metric that neither ships with the harness nor loads through evaluate."""


@functools.cache
def load_metric(name: str):
    """Return the evaluate module for `name`; shipped names load from this package's folders."""
    import evaluate

    # keep_in_memory: nothing to gain from evaluate's on-disk Arrow cache for a single process,
    # and it avoids cache files and lock files when several runs score at once.
    if name in SHIPPED:
        return evaluate.load(str(_HERE / name), keep_in_memory=True)
    try:
        return evaluate.load(name, keep_in_memory=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MetricError(
            f"cannot load metric {name!r} (shipped metrics: {', '.join(SHIPPED)}): {reason}"
        ) from exc


def score(name: str, predictions: list[str], references: list[str | list[str] | tuple[str, ...]],
          schema: dict | None = None) -> list[float]:
    """Per-example scores of `predictions` against `references`, in order; `schema`: a structured
    task's, whose answers are scored as JSON objects (harness/metrics/structured.py).

    A reference is one answer or a list/tuple of an example's accepted answers; as in SQuAD, the
    example gets its best score over them, whatever the metric. Our metrics score in [0, 1] and
    their aggregate is the mean of these scores.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return []
    if schema is not None:
        from harness.metrics import structured

        return structured.score(name, predictions, references, schema)
    accepted = [_accepted_answers(i, r) for i, r in enumerate(references)]
    pairs = [(p, a) for p, answers in zip(predictions, accepted) for a in answers]
    module = load_metric(name)
    if name in SHIPPED:
        # One compute() call over every (prediction, answer) pair that also returns per-example
        # values. evaluate's compute() has a fixed cost of ~4 ms per call (Arrow write/read and
        # validation), hundreds of times the metric itself, so calling it once per example would
        # make scoring 10k examples take ~40 s. This keeps evaluate's input validation and the
        # module file as the single definition.
        result = module.compute(predictions=[p for p, _ in pairs], references=[a for _, a in pairs], per_example=True)
        flat = result["per_example"]
    else:
        # Other evaluate modules only return an aggregate, so pay the per-call cost.
        flat = [_single_value(name, module.compute(predictions=[p], references=[a])) for p, a in pairs]
    it = iter(flat)
    return [max(itertools.islice(it, len(answers))) for answers in accepted]


def _accepted_answers(index: int, reference) -> list:
    if not isinstance(reference, (list, tuple)):
        # Not necessarily a str: evaluate-loaded metrics validate their own reference types.
        return [reference]
    if not reference:
        raise ValueError(f"example {index} has no references")
    return list(reference)


def _single_value(name: str, result: dict) -> float:
    key = name.rstrip("/").split("/")[-1]
    if key in result:
        return float(result[key])
    values = [v for v in result.values() if isinstance(v, numbers.Real)]
    if len(values) == 1:
        return float(values[0])
    raise MetricError(f"metric {name!r} returns {sorted(result)}; cannot pick one score per example")
