"""Lenient short-answer match: the reference appears, as whole words, in the prediction."""

import datasets
import evaluate

# Absolute import on purpose: see harness/metrics/_text.py for why it survives evaluate.load.
from harness.metrics._text import contains

_DESCRIPTION = """\
Fraction of predictions that contain their reference after SQuAD normalisation (lowercase,
remove ASCII punctuation and a/an/the, collapse whitespace), as whole words in order: "Au" is
found in "The chemical symbol of Gold is Au.", "6" is not found in "16". Unlike exact match it
does not penalise an answer given as a sentence. An empty reference matches only an empty
prediction."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): predicted answers.
    references (list of str): gold answers.
    per_example (bool): also return "per_example", the 0/1 score of every pair.
Returns:
    contains (float): mean of the per-example scores, in [0, 1].
Example:
    >>> evaluate.load("harness/metrics/contains").compute(predictions=["It is New York City."], references=["new york"])
    {'contains': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Contains(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references, per_example=False):
        scores = [float(contains(p, r)) for p, r in zip(predictions, references)]
        out = {"contains": sum(scores) / len(scores) if scores else 0.0}
        return {**out, "per_example": scores} if per_example else out
