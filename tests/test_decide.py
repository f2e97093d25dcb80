"""The recommender's rules on constructed results where the right verdict is known.

Rows are built by hand, but their costs and paired statistics come from the real cost model and
statistics, so each case exercises the path a real comparison takes."""

from __future__ import annotations

import math
import re

import pytest

from harness.cost import add_costs
from harness.decide import recommend
from harness.results import Comparisons, Curve
from harness.stats import min_detectable_effect, paired_comparisons
from harness.task import CostConfig, DecisionConfig
from tests.conftest import arm

PRICES = CostConfig(hardware_usd_per_hour=1.0)


def paired(n: int, both: int, only_a: int, only_b: int) -> tuple[list[float], list[float]]:
    """0/1 scores of two strategies on n examples: both right on `both`, only one right on the others."""
    neither = n - both - only_a - only_b
    a = [1.0] * both + [1.0] * only_a + [0.0] * only_b + [0.0] * neither
    b = [1.0] * both + [0.0] * only_a + [1.0] * only_b + [0.0] * neither
    return a, b


def strategy(name, scores, *, latency=200.0, p95=None, prompt=100, training=False, forgetting=0.0,
             retrieval=False, train_examples=500):
    row = arm(name, value=sum(scores) / len(scores), n=len(scores), latency_mean_ms=latency, p95=p95, prompt=prompt,
              training={"train_examples": train_examples} if training else None,
              forgetting=None if forgetting is None else (forgetting if training else 0.0),
              retrieval={"recall_at_k": 0.9} if retrieval else None)
    return row, scores


def decide(*strategies, decision=None, curves=()):
    decision = decision or DecisionConfig()
    rows = add_costs([r for r, _ in strategies], PRICES, 100_000_000, decision.monthly_requests)
    scores = {r.name: {f"ex{i}": s for i, s in enumerate(sc)} for r, sc in strategies}
    comparisons = Comparisons(metric="accuracy", alpha=decision.alpha, power=decision.power, confidence=0.95,
                              pairs=paired_comparisons(scores, seed=0, alpha=decision.alpha, power=decision.power))
    rec = recommend(rows, comparisons, [Curve.model_validate(c) for c in curves], decision)
    for reason in rec.reasons:
        assert re.search(r"\d", reason), f"a reason without a number: {reason}"
    return rec


def test_fine_tune_wins():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few, latency=900, prompt=450), strategy("lora", lora, training=True))
    assert rec.verdict == "fine-tune" and rec.best_strategy == "lora"
    text = "\n".join(rec.reasons)
    assert "lora vs few_shot: +15.0 points" in text and "exact McNemar" in text
    assert "paid back after" in text and "forgetting: lora" in text
    assert rec.missing == ["retrieval: no strategy with a retrieval index (e.g. rag)"]


def test_dont_fine_tune_use_rag():
    rag, lora = paired(300, both=200, only_a=40, only_b=5)
    zero, _ = paired(300, both=150, only_a=0, only_b=0)
    rec = decide(strategy("zero_shot", zero), strategy("rag", rag, latency=600, prompt=700, retrieval=True),
                 strategy("lora", lora, training=True))
    assert rec.verdict == "don't fine-tune: use rag" and rec.best_strategy == "rag"
    assert any("significantly worse by 11.7 points" in r for r in rec.reasons)
    assert rec.missing == []


def test_no_worthwhile_difference_and_no_saving_means_few_shot():
    few, lora = paired(2000, both=1000, only_a=20, only_b=20)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True))
    assert rec.verdict == "don't fine-tune: use few_shot"
    assert any(r.startswith("no worthwhile difference") for r in rec.reasons)
    assert any("never paid back" in r for r in rec.reasons)


def test_no_worthwhile_difference_but_cheaper_requests_pay_back():
    few, lora = paired(2000, both=1000, only_a=20, only_b=20)
    rec = decide(strategy("few_shot", few, latency=1200, prompt=450),
                 strategy("lora", lora, latency=200, training=True))
    # $1/h: 600 s of training = $0.167, saved at (1.2 - 0.2) s x $1/h = $0.000278 per request:
    # paid back after 600 requests, well within 12 months at 100,000 a month.
    assert rec.verdict == "fine-tune"
    assert any("paid back after 600 requests" in r for r in rec.reasons)


def test_real_but_small_gain_lets_cost_decide():
    few, lora = paired(4000, both=2000, only_a=20, only_b=60)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True))
    assert rec.verdict == "don't fine-tune: use few_shot"
    assert any("+1.0 points is real but below the 2.0-point minimum" in r for r in rec.reasons)
    bigger = DecisionConfig(min_gain=0.005)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True), decision=bigger)
    assert rec.verdict == "fine-tune"


def test_not_enough_evidence_says_how_many_more_examples():
    few, lora = paired(40, both=20, only_a=2, only_b=4)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True))
    mde = min_detectable_effect(few, lora, alpha=0.05, power=0.8)
    more = math.ceil(40 * (mde / 0.02) ** 2) - 40
    assert rec.verdict == f"not enough evidence: about {more:,} more eval examples needed"
    assert more > 1000
    assert rec.best_strategy == "few_shot"


def test_forgetting_over_budget():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True, forgetting=0.2))
    assert rec.verdict == "don't fine-tune: use few_shot"
    assert any("+0.200 nats/token (budget 0.050: over budget)" in r for r in rec.reasons)
    relaxed = DecisionConfig(forgetting_budget=0.25)
    assert decide(strategy("few_shot", few), strategy("lora", lora, training=True, forgetting=0.2),
                  decision=relaxed).verdict == "fine-tune"


def test_latency_slo_violated_by_the_fine_tuned_model():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few, p95=300), strategy("lora", lora, p95=800, training=True),
                 decision=DecisionConfig(latency_slo_ms=500))
    assert rec.verdict == "don't fine-tune: use few_shot"
    assert "latency: lora p95 800 ms is over the 500 ms SLO" in rec.reasons


def test_latency_slo_only_the_fine_tuned_model_meets():
    few, lora = paired(300, both=200, only_a=10, only_b=10)
    rec = decide(strategy("few_shot", few, p95=2000), strategy("lora", lora, p95=300, training=True),
                 decision=DecisionConfig(latency_slo_ms=500))
    assert rec.verdict == "fine-tune" and rec.best_strategy == "lora"


def test_latency_slo_no_strategy_meets():
    few, lora = paired(300, both=200, only_a=10, only_b=10)
    rec = decide(strategy("few_shot", few, p95=2000), strategy("lora", lora, p95=900, training=True),
                 decision=DecisionConfig(latency_slo_ms=500))
    assert rec.verdict == "cannot decide: no strategy meets the 500 ms latency SLO"
    assert rec.best_strategy is None


def test_fine_tuning_not_run_says_what_is_missing():
    # few_shot is 1 point better but not significantly, and costs 5x more per request.
    zero, few = paired(150, both=40, only_a=5, only_b=7)
    rec = decide(strategy("zero_shot", zero, latency=200), strategy("few_shot", few, latency=1000, prompt=450))
    assert rec.verdict == "cannot decide: no fine-tuning strategy was run (best without it: zero_shot)"
    assert rec.best_strategy == "zero_shot"
    assert rec.missing == ["fine-tuning: no strategy with a training run (e.g. lora)",
                              "retrieval: no strategy with a retrieval index (e.g. rag)"]
    assert any(r.startswith("zero_shot is not significantly worse than few_shot") for r in rec.reasons)
    assert rec.reasons[0].startswith("quality: zero_shot ")


def test_forgetting_not_measured():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True, forgetting=None))
    assert rec.verdict == "cannot decide: forgetting was not measured for lora"
    assert "forgetting of lora: not measured" in rec.missing


def test_only_fine_tuning_run():
    lora = [1.0] * 30 + [0.0] * 10
    rec = decide(strategy("lora", lora, training=True))
    assert rec.verdict == "cannot decide: no prompting or retrieval strategy was run to compare against"


@pytest.mark.parametrize("lora_quality, expected", [
    ((0.6, 0.8, 0.9), "lora beats the best in-context result (few_shot k=4: 71.0%) from 250 labelled examples (80.0%)"),
    ((0.5, 0.6, 0.7), "lora stays below the best in-context result (few_shot k=4: 71.0%) up to 1000 labelled "
                      "examples (70.0%)"),
])
def test_learning_curves_say_how_much_data_fine_tuning_needs(lora_quality, expected):
    def point(value, labelled, q):
        m = {"value": q, "ci_low": q - 0.05, "ci_high": q + 0.05}
        return {"value": value, "labelled_examples": labelled, "run_id": 1, "n_examples": 100,
                "quality": {"metric": "accuracy", **m}, "metrics": {"accuracy": m}}

    curves = [
        {"strategy": "few_shot", "param": "k", "fine_tuning": False,
         "points": [point(k, k, q) for k, q in [(0, 0.5), (1, 0.6), (4, 0.71), (8, 0.7)]]},
        {"strategy": "lora", "param": "train_fraction", "fine_tuning": True,
         "points": [point(f, round(f * 1000), q) for f, q in zip((0.125, 0.25, 1.0), lora_quality)]},
    ]
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True), curves=curves)
    assert f"learning curves: {expected}" in rec.reasons
