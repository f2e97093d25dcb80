import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.metrics import DEFAULT_METRICS, LENIENT, SHIPPED, MetricError, load_metric, score, structured
from harness.metrics._text import contains

ROOT = Path(__file__).resolve().parents[1]

# (prediction, reference, expected score)
CASES = {
    "accuracy": [
        ("positive", "positive", 1.0),
        ("positive", "negative", 0.0),
        ("Positive", "positive", 0.0),  # plain string equality: no normalisation
        ("positive ", "positive", 0.0),
        ("", "", 1.0),
        ("café", "café", 1.0),
    ],
    "exact_match": [
        ("The Cat!", "cat", 1.0),
        ("  an   apple ", "Apple.", 1.0),
        ("U.S.A.", "usa", 1.0),
        ("1,000", "1000", 1.0),
        ("theater", "the ater", 0.0),  # articles are dropped only as whole words
        ("cat", "dog", 0.0),
        ("", "", 1.0),
        ("the", "", 1.0),  # normalises to empty
        ("", "cat", 0.0),
        ("ÉCOLE", "école", 1.0),
        ("東京", "東京", 1.0),
        ("東京。", "東京", 0.0),  # like SQuAD, only ASCII punctuation is stripped
    ],
    "token_f1": [
        ("the big cat", "cat", 2 / 3),
        ("cat dog", "dog cat", 1.0),
        ("cat cat", "cat", 2 / 3),  # token counts are clipped
        ("x", "y", 0.0),
        ("a", "the", 1.0),  # both empty after normalisation
        ("", "", 1.0),
        ("", "cat", 0.0),
        ("cat", "", 0.0),
        ("Zürich ist schön", "zürich, schön", 0.8),
    ],
    "contains": [
        ("6", "6", 1.0),
        ("16", "6", 0.0),  # whole words only
        ("6 protons", "6", 1.0),
        ("The chemical symbol of Gold is Au.", "Au", 1.0),  # punctuation is stripped
        ("the Au", "Au", 1.0),  # and articles
        ("AU", "au", 1.0),
        ("It is New York City", "new york", 1.0),
        ("York New", "new york", 0.0),  # in order
        ("New Yorker", "new york", 0.0),
        ("", "", 1.0),
        ("the", "", 1.0),  # normalises to empty
        ("cat", "", 0.0),  # an empty reference is not found in every answer
        ("", "cat", 0.0),
    ],
    "rouge_l": [
        ("the cats sat", "the cat sat", 1.0),  # stemming
        ("the cat sat on the mat", "the cat sat", 2 * 0.5 * 1 / 1.5),
        ("dog", "cat", 0.0),
        ("", "", 0.0),
        ("", "cat", 0.0),
    ],
}


def test_shipped_and_defaults():
    assert SHIPPED == tuple(CASES)
    # A structured task's metrics are the harness's own functions (tests/test_structured.py).
    assert {m for ms in DEFAULT_METRICS.values() for m in ms} <= set(SHIPPED) | set(structured.NAMES)
    assert DEFAULT_METRICS["short_answer"] == ("exact_match", "token_f1", LENIENT)


def test_contains_predicate_matches_the_module():
    assert [contains(p, r) for p, r, _ in CASES["contains"]] == [bool(s) for _, _, s in CASES["contains"]]


@pytest.mark.parametrize("name", SHIPPED)
def test_known_cases(name):
    preds, refs, expected = zip(*CASES[name])
    assert score(name, list(preds), list(refs)) == pytest.approx(list(expected))


@pytest.mark.parametrize("name", SHIPPED)
def test_aggregate_is_mean_of_per_example(name):
    preds, refs, _ = zip(*CASES[name])
    per_example = score(name, list(preds), list(refs))
    assert all(0.0 <= s <= 1.0 for s in per_example)
    aggregate = load_metric(name).compute(predictions=list(preds), references=list(refs))
    assert aggregate == {name: pytest.approx(sum(per_example) / len(per_example))}


@pytest.mark.parametrize("name", SHIPPED)
def test_batched_per_example_equals_one_compute_per_example(name):
    preds, refs, _ = zip(*CASES[name])
    module = load_metric(name)
    one_by_one = [module.compute(predictions=[p], references=[r])[name] for p, r in zip(preds, refs)]
    assert score(name, list(preds), list(refs)) == one_by_one


def test_rouge_l_matches_rouge_score():
    from rouge_score import rouge_scorer

    pairs = [
        ("The quick brown foxes jumped over the lazy dog.", "A quick brown fox jumps over the dog"),
        ("summaries are running", "the summary runs"),
        ("naïve café résumé", "naive cafe resume"),
        ("完全に日本語", "完全に日本語"),  # no ASCII tokens: rouge_score gives 0
        ("", "something"),
    ]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in pairs]
    assert score("rouge_l", [p for p, _ in pairs], [r for _, r in pairs]) == pytest.approx(expected)


def test_modules_load_through_evaluate_and_are_cached():
    module = load_metric("exact_match")
    assert module is load_metric("exact_match")
    assert type(module).__module__.startswith("evaluate_modules.")  # evaluate's copied script
    assert module.citation and "Rajpurkar" in module.citation
    assert set(module.features) == {"predictions", "references"}


def test_non_shipped_module_scores_one_call_per_example():
    # A local folder passed by path takes the generic evaluate.load route.
    path = str(ROOT / "harness" / "metrics" / "token_f1")
    preds, refs, expected = zip(*CASES["token_f1"])
    assert score(path, list(preds), list(refs)) == pytest.approx(list(expected))


@pytest.mark.parametrize(("name", "expected"), [
    ("exact_match", [1.0, 0.0, 0.0]),
    ("token_f1", [1.0, 4 / 7, 2 / 3]),  # "Humphry Davy" beats "Davy" (1/3) in a five-word answer
    ("contains", [1.0, 1.0, 0.0]),
])
def test_score_is_best_over_an_examples_references(name, expected):
    predictions = ["Davy", "It was Sir Humphry Davy.", "Humphry"]
    references = [["Sir Humphry Davy", "Davy"], ("Davy", "Humphry Davy"), ["Humphry Davy", "Sir Davy", "Davy"]]
    assert score(name, predictions, references) == pytest.approx(expected)


def test_single_and_multiple_references_mix():
    assert score("exact_match", ["Davy", "Davy", "Davy"], ["Davy", ["Faraday"], ["Faraday", "Davy"]]) == [1.0, 0.0, 1.0]


def test_non_shipped_module_takes_best_reference():
    path = str(ROOT / "harness" / "metrics" / "token_f1")
    assert score(path, ["Davy", "Humphry"], [["Sir Humphry Davy", "Davy"], ["Humphry Davy", "Davy"]]) == pytest.approx(
        [1.0, 2 / 3])


def test_example_without_references_is_an_error():
    with pytest.raises(ValueError, match="example 1 has no references"):
        score("exact_match", ["a", "b"], [["a"], []])


def test_empty_and_mismatched_inputs():
    assert score("exact_match", [], []) == []
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        score("exact_match", ["a", "b"], ["a"])


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # evaluate 0.4.6 ignores HF_HUB_OFFLINE and reads its own flag once, at import time.
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    import evaluate.config

    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)


def test_unknown_metric_raises_helpful_error(offline):
    with pytest.raises(MetricError) as info:
        load_metric("no_such_metric_xyz")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message
    assert "'no_such_metric_xyz'" in message
    assert all(name in message for name in SHIPPED)
    with pytest.raises(MetricError):
        score("no_such_metric_xyz", ["a"], ["a"])


def test_import_is_lazy():
    code = ("import sys, harness.metrics; "
            "print(sorted({'evaluate', 'torch', 'datasets', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
