"""Answer normalisation and containment shared by the short-answer metrics and the forgetting probe.

Kept as a plain module inside ``harness.metrics`` (not next to each metric script) because
evaluate's loader copies a metric script into its cache and only carries along relative imports
from the script's *own* folder; an absolute ``harness.metrics._text`` import is treated as a
library import and resolves to this one file. Stdlib only, so it is cheap to import.
"""

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1/v2.0 normalisation: lowercase, drop ASCII punctuation and a/an/the, squeeze spaces.

    Deliberately identical to the official SQuAD script (ASCII punctuation only, no Unicode
    normal form) so scores stay comparable with published SQuAD-style numbers.
    """
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def contains(prediction: str, reference: str) -> bool:
    """Whether the normalised reference appears as whole words, in order, in the normalised prediction.

    Padding both sides with a space makes the substring test respect word boundaries, so "6"
    is not found in "16". An empty reference would otherwise be found in everything, so it only
    matches an empty prediction, as in token F1.
    """
    pred, ref = normalize_answer(prediction), normalize_answer(reference)
    if not ref:
        return not pred
    return f" {ref} " in f" {pred} "
