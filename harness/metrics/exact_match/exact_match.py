"""SQuAD-style exact match."""

import datasets
import evaluate

# Absolute import on purpose: see harness/metrics/_text.py for why it survives evaluate.load.
from harness.metrics._text import normalize_answer

_DESCRIPTION = """\
Fraction of predictions equal to their reference after SQuAD normalisation: lowercase,
remove ASCII punctuation and the articles a/an/the, collapse whitespace."""

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
    per_example (bool): also return "per_example", the 0/1 score of every pair.
Returns:
    exact_match (float): mean of the per-example scores, in [0, 1].
Example:
    >>> evaluate.load("harness/metrics/exact_match").compute(predictions=["The Cat!"], references=["cat"])
    {'exact_match': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
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
        scores = [float(normalize_answer(p) == normalize_answer(r)) for p, r in zip(predictions, references)]
        out = {"exact_match": sum(scores) / len(scores) if scores else 0.0}
        return {**out, "per_example": scores} if per_example else out
