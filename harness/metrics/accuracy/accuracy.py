"""Accuracy as exact string equality of prediction and reference."""

import datasets
import evaluate

_DESCRIPTION = """\
Fraction of predictions that are exactly equal to their reference string (no normalisation:
the runner is expected to have mapped model output to a label already)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): predicted labels.
    references (list of str): gold labels.
    per_example (bool): also return "per_example", the 0/1 score of every pair.
Returns:
    accuracy (float): mean of the per-example scores, in [0, 1].
Example:
    >>> evaluate.load("harness/metrics/accuracy").compute(predictions=["a", "b"], references=["a", "c"])
    {'accuracy': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, per_example=False):
        scores = [float(p == r) for p, r in zip(predictions, references)]
        out = {"accuracy": sum(scores) / len(scores) if scores else 0.0}
        return {**out, "per_example": scores} if per_example else out
