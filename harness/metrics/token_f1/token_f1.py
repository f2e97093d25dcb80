"""SQuAD-style token-level F1."""

from collections import Counter

import datasets
import evaluate

# Absolute import on purpose: see harness/metrics/_text.py for why it survives evaluate.load.
from harness.metrics._text import normalize_answer

_DESCRIPTION = """\
Harmonic mean of token precision and recall between prediction and reference, after SQuAD
normalisation (lowercase, remove ASCII punctuation and a/an/the, split on whitespace). As in the
SQuAD v2.0 script, if either side has no tokens the score is 1 when both are empty, else 0."""

_CITATION = """\
@inproceedings{rajpurkar-etal-2016-squad,
    title = "{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text",
    author = "Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy",
    booktitle = "Proceedings of EMNLP 2016",
    year = "2016",
    pages = "2383--2392",
    url = "https://aclanthology.org/D16-1264",
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): predicted answers.
    references (list of str): gold answers.
    per_example (bool): also return "per_example", the F1 of every pair.
Returns:
    token_f1 (float): mean of the per-example scores, in [0, 1].
Example:
    >>> evaluate.load("harness/metrics/token_f1").compute(predictions=["the big cat"], references=["cat"])
    {'token_f1': 0.6666666666666666}
"""


def _f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TokenF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references, per_example=False):
        scores = [_f1(p, r) for p, r in zip(predictions, references)]
        out = {"token_f1": sum(scores) / len(scores) if scores else 0.0}
        return {**out, "per_example": scores} if per_example else out
