"""ROUGE-L F-measure via Google's rouge_score package."""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = """\
ROUGE-L F-measure (longest common subsequence) between prediction and reference, computed by the
`rouge_score` package with Porter stemming. Its default tokenizer lowercases and keeps only
[a-z0-9] runs, so text without ASCII letters or digits has no tokens and scores 0."""

_CITATION = """\
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    publisher = "Association for Computational Linguistics",
    pages = "74--81",
    url = "https://aclanthology.org/W04-1013",
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated texts.
    references (list of str): reference texts.
    per_example (bool): also return "per_example", the ROUGE-L F-measure of every pair.
Returns:
    rouge_l (float): mean of the per-example scores, in [0, 1].
Example:
    >>> evaluate.load("harness/metrics/rouge_l").compute(predictions=["the cats sat"], references=["the cat sat"])
    {'rouge_l': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(self, predictions, references, per_example=False):
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        # rouge_score takes (target, prediction); F-measure is symmetric but precision/recall are not.
        scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
        out = {"rouge_l": sum(scores) / len(scores) if scores else 0.0}
        return {**out, "per_example": scores} if per_example else out
