"""The recommender's rules on constructed results where the right verdict is known.

Rows are built by hand, but their costs and paired statistics come from the real cost model and
statistics, so each case exercises the path a real comparison takes. Every test asserts on the
verdict as data (its kind, cause, the arms it names, its typed findings and their numbers); the
English those render to is tested once, in test_verdict_text.py."""

from __future__ import annotations

import math
import re

import pytest

from harness.config import CostConfig, DecisionConfig
from harness.cost import add_costs
from harness.results import Comparisons, Curve, Interval, Recommendation
from harness.stats import MIN_EXAMPLES, paired_comparisons
from harness.verdict import judge
from harness.verdict.decide import FALLBACK_BASELINE, recommend
from harness.verdict.text import explain
from tests.conftest import arm

PRICES = CostConfig(hardware_usd_per_hour=1.0)


def paired(n: int, both: int, only_a: int, only_b: int) -> tuple[list[float], list[float]]:
    """0/1 scores of two strategies on n examples: both right on `both`, only one right on the others."""
    neither = n - both - only_a - only_b
    a = [1.0] * both + [1.0] * only_a + [0.0] * only_b + [0.0] * neither
    b = [1.0] * both + [0.0] * only_a + [1.0] * only_b + [0.0] * neither
    return a, b


def right_on(n: int, *spans: range) -> list[float]:
    """0/1 scores on n examples, right on those in `spans`."""
    right = {i for span in spans for i in span}
    return [1.0 if i in right else 0.0 for i in range(n)]


def strategy(name, scores, *, latency=200.0, p95=None, prompt=100, training=False, forgetting=0.0,
             retrieval=False, train_examples=500, answers=None, added_by_harness=False):
    """A row and its per-example scores. `answers`: (the answer given most often, how many examples
    got it, how many gold answers it is), for an arm that may be degenerate."""
    row = arm(name, value=sum(scores) / len(scores), n=len(scores), latency_mean_ms=latency, p95=p95, prompt=prompt,
              training={"train_examples": train_examples} if training else None,
              forgetting=None if forgetting is None else (forgetting if training else 0.0),
              retrieval={"recall_at_k": 0.9} if retrieval else None, answers=answers,
              added_by_harness=added_by_harness)
    return row, scores


def _pairs(metric: str, scores: dict[str, list[float]], decision: DecisionConfig) -> Comparisons:
    by_id = {name: {f"ex{i}": s for i, s in enumerate(sc)} for name, sc in scores.items()}
    return Comparisons(metric=metric, alpha=decision.alpha, power=decision.power, confidence=0.95,
                       pairs=paired_comparisons(by_id, seed=0, alpha=decision.alpha, power=decision.power))


def decide(*strategies, decision=None, curves=(), tokens=None, content=None, missing_baselines=None) -> Recommendation:
    """The verdict on the strategies, built as compare builds it: costs on every row, paired
    comparisons (the Holm family) on the arms that are not degenerate. `content`: each strategy's
    lenient (contains) scores, when the task has them. Checks that the verdict renders, with a
    number in every reason."""
    decision = decision or DecisionConfig()
    rows = add_costs([r for r, _ in strategies], PRICES, 100_000_000, decision.monthly_requests, tokens=tokens)
    fair = {r.name for r in rows if not judge.degenerate_row(r)}
    comparisons = _pairs("accuracy", {r.name: sc for r, sc in strategies if r.name in fair}, decision)
    lenient = None if content is None else _pairs("contains", {k: v for k, v in content.items() if k in fair},
                                                  decision)
    rec = recommend(rows, comparisons, [Curve.model_validate(c) for c in curves], decision, lenient,
                    missing_baselines=missing_baselines)
    assert not rec.verdict and not rec.reasons and not rec.missing  # the English is explain's
    told = explain(rec)
    assert told.verdict
    # Every reason carries its figures, but the one that names the baselines the harness added.
    numbered = [x for x in rec.findings if x.type not in ("missing", "baselines_added")]
    assert len(told.reasons) == len(numbered) + len(found(rec, "baselines_added"))
    for reason in told.reasons:
        if not reason.startswith("baselines: "):
            assert re.search(r"\d", reason), f"a reason without a number: {reason}"
    return rec


def found(rec: Recommendation, type_: str, **fields) -> list:
    """The findings of `type_` whose fields have the given values."""
    return [x for x in rec.findings if x.type == type_ and all(getattr(x, k) == v for k, v in fields.items())]


def one(rec: Recommendation, type_: str, **fields):
    """The one finding of `type_` with those fields."""
    hits = found(rec, type_, **fields)
    assert len(hits) == 1, f"{len(hits)} {type_} findings with {fields}: {[x.type for x in rec.findings]}"
    return hits[0]


def pair_of(rec: Recommendation, a: str, b: str):
    """The `Pair` finding of b against a."""
    hits = [p for p in found(rec, "pair") if (p.estimate.a, p.estimate.b) == (a, b)]
    assert len(hits) == 1, [(p.estimate.a, p.estimate.b) for p in found(rec, "pair")]
    return hits[0]


def names_in_pairs(rec: Recommendation) -> set[str]:
    return {n for p in found(rec, "pair") for n in (p.estimate.a, p.estimate.b)}


def missing(rec: Recommendation) -> list[str]:
    return [m.what for m in found(rec, "missing")]


def verdict_of(rec: Recommendation) -> tuple:
    return rec.kind, rec.cause, rec.best, rec.alternative, rec.subject


def test_fine_tune_wins():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few, latency=900, prompt=450), strategy("lora", lora, training=True))
    assert verdict_of(rec) == ("fine_tune", None, "lora", "few_shot", None)
    assert rec.gaps == []
    p = pair_of(rec, "few_shot", "lora")
    assert p.estimate.diff == pytest.approx(0.15) and p.estimate.n == 300
    assert p.test.name == "mcnemar_exact" and p.test.significant
    j = one(rec, "judgement", arm="lora")
    assert j.against == "few_shot" and j.outcome == "better" and j.estimate.ci_low >= j.margin == 0.02
    be = one(rec, "break_even", arm="lora", against="few_shot")
    assert be.requests is not None and be.requests > 0 and be.months == pytest.approx(be.requests / 100_000)
    assert one(rec, "forgetting", arm="lora").status == "within"
    assert missing(rec) == ["retrieval"]


def test_dont_fine_tune_use_rag():
    rag, lora = paired(300, both=200, only_a=40, only_b=5)
    zero, _ = paired(300, both=150, only_a=0, only_b=0)
    rec = decide(strategy("zero_shot", zero), strategy("rag", rag, latency=600, prompt=700, retrieval=True),
                 strategy("lora", lora, training=True))
    assert verdict_of(rec) == ("dont_fine_tune", None, "rag", "rag", None)
    j = one(rec, "judgement", arm="lora")
    assert j.against == "rag" and j.outcome == "worse" and j.estimate.diff == pytest.approx(-35 / 300)
    assert missing(rec) == []


# RAG 63.3%, zero-shot 58.3%, LoRA 63.0% on 300 examples. Zero-shot is not significantly worse than
# RAG (it is right on 45 examples RAG gets wrong, wrong on 60 RAG gets right), and LoRA is zero-shot
# plus 14 examples. The old rules compared LoRA with zero-shot, the cheapest arm not significantly
# worse than RAG, and said "fine-tune" on "+4.7 vs zero_shot", although LoRA is below RAG.
RAG = right_on(300, range(0, 130), range(175, 235))
ZERO = right_on(300, range(0, 175))
LORA_BELOW_RAG = right_on(300, range(0, 189))


def test_fine_tuning_is_compared_with_the_best_arm_not_a_cheaper_one():
    rec = decide(strategy("zero_shot", ZERO), strategy("rag", RAG, latency=600, prompt=700, retrieval=True),
                 strategy("lora", LORA_BELOW_RAG, training=True))
    assert pair_of(rec, "rag", "lora").estimate.diff == pytest.approx(-1 / 300)
    assert not [p for p in found(rec, "pair") if {p.estimate.a, p.estimate.b} == {"zero_shot", "lora"}]
    # -0.3 points [95% CI about -6, +6]: neither shown better by 2 points nor within 2 points of RAG.
    j = one(rec, "judgement", arm="lora")
    assert j.against == "rag" and j.outcome == "undecided"
    assert j.estimate.ci_low < -0.02 and j.estimate.ci_high > 0.02
    assert j.examples_needed is not None and j.examples_needed > 300
    assert verdict_of(rec) == ("not_enough_evidence", "examples", "rag", "rag", "lora")


def test_fine_tuning_significantly_worse_than_the_best_arm_is_not_fine_tuned():
    # LoRA is RAG minus 25 examples: significantly worse than RAG. Against zero-shot (the old
    # comparison) it differed on 80 examples either way, which was "not enough evidence".
    lora = right_on(300, range(0, 130), range(175, 210))
    rec = decide(strategy("zero_shot", ZERO), strategy("rag", RAG, latency=600, prompt=700, retrieval=True),
                 strategy("lora", lora, training=True))
    assert verdict_of(rec) == ("dont_fine_tune", None, "rag", "rag", None)
    j = one(rec, "judgement", arm="lora")
    assert (j.against, j.outcome) == ("rag", "worse") and j.estimate.diff == pytest.approx(-25 / 300)


def test_every_fine_tuned_arm_is_reported_against_the_best_arm():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    _, checkpoint = paired(300, both=180, only_a=5, only_b=30)
    rec = decide(strategy("few_shot", few, latency=900, prompt=450), strategy("lora", lora, training=True),
                 strategy("checkpoint", checkpoint, training=True))
    assert pair_of(rec, "few_shot", "lora").estimate.diff == pytest.approx(0.15)
    assert pair_of(rec, "few_shot", "checkpoint").estimate.diff == pytest.approx(25 / 300)
    assert {j.arm: j.against for j in found(rec, "judgement")} == {"lora": "few_shot", "checkpoint": "few_shot"}
    assert verdict_of(rec) == ("fine_tune", None, "lora", "few_shot", None)


@pytest.mark.parametrize("lora_latency", [194.0, 206.0])
def test_identical_arms_do_not_fine_tune_whatever_the_latency_noise(lora_latency):
    # A/A: the same 97% on 1,000 examples and the same tokens; the merged adapter measured 3% faster
    # or slower by noise. Equal tokens cost equal, so there is no saving to pay for training.
    zero, lora = paired(1000, both=970, only_a=0, only_b=0)
    tokens = {name: {f"ex{i}": (100, 0, 0) for i in range(1000)} for name in ("zero_shot", "lora")}
    rec = decide(strategy("zero_shot", zero), strategy("lora", lora, latency=lora_latency, training=True),
                 tokens=tokens)
    assert verdict_of(rec) == ("dont_fine_tune", None, "zero_shot", "zero_shot", None)
    j = one(rec, "judgement", arm="lora")
    assert j.outcome == "equivalent" and j.estimate.diff == pytest.approx(0.0)
    assert j.paid_back is False and j.alternative == "zero_shot" and j.payback_months == 12
    be = one(rec, "break_even", arm="lora", against="zero_shot")
    assert be.requests is None and be.months is None
    assert (be.saving_usd, be.saving_usd_ci_low, be.saving_usd_ci_high) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)


def test_a_saving_whose_interval_includes_zero_is_no_saving():
    # LoRA's prompts are 1 token shorter on average, but vary by 100 tokens either way.
    few, lora = paired(300, both=200, only_a=2, only_b=2)
    tokens = {"few_shot": {f"ex{i}": (100, 0, 0) for i in range(300)},
              "lora": {f"ex{i}": (99 + (100 if i % 2 else -100), 0, 0) for i in range(300)}}
    rec = decide(strategy("few_shot", few), strategy("lora", lora, prompt=99, training=True), tokens=tokens)
    assert verdict_of(rec) == ("dont_fine_tune", None, "few_shot", "few_shot", None)
    be = one(rec, "break_even", arm="lora", against="few_shot")
    assert be.requests is None
    assert be.saving_usd > 0 and be.saving_usd_ci_low < 0 < be.saving_usd_ci_high
    assert one(rec, "judgement", arm="lora").paid_back is False


def test_no_worthwhile_difference_and_no_saving_means_few_shot():
    few, lora = paired(2000, both=1000, only_a=20, only_b=20)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True))
    assert verdict_of(rec) == ("dont_fine_tune", None, "few_shot", "few_shot", None)
    j = one(rec, "judgement", arm="lora")
    assert j.outcome == "equivalent" and j.paid_back is False
    assert one(rec, "break_even", arm="lora").requests is None


def test_no_worthwhile_difference_but_cheaper_requests_pay_back():
    few, lora = paired(2000, both=1000, only_a=20, only_b=20)
    rec = decide(strategy("few_shot", few, latency=1200, prompt=450),
                 strategy("lora", lora, latency=200, training=True))
    # $1/h over the pooled (1.2 + 0.2) s per (450 + 100) tokens: 350 fewer tokens save $0.000247 per
    # request, paying back 600 s of training ($0.167) within 12 months at 100,000 a month.
    saving = 350 * (1.0 / 3600) * 1.4 / 550
    assert verdict_of(rec) == ("fine_tune", None, "lora", "few_shot", None)
    j = one(rec, "judgement", arm="lora")
    assert j.outcome == "equivalent" and j.paid_back is True and j.alternative == "few_shot"
    be = one(rec, "break_even", arm="lora", against="few_shot")
    assert be.saving_usd == pytest.approx(saving)
    assert be.requests == pytest.approx(600 / 3600 / saving, abs=0.5)
    assert be.months == pytest.approx(be.requests / 100_000) and be.months <= be.payback_months == 12


def test_a_real_gain_inside_the_minimum_lets_cost_decide():
    # +1.0 point [95% CI about +0.6, +1.4] on 4,000 examples: real, but shown within 2 points.
    few, lora = paired(4000, both=2000, only_a=20, only_b=60)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True))
    assert verdict_of(rec) == ("dont_fine_tune", None, "few_shot", "few_shot", None)
    j = one(rec, "judgement", arm="lora")
    assert j.outcome == "equivalent" and j.estimate.diff == pytest.approx(0.01) and j.paid_back is False
    assert 0 < j.estimate.ci_low and j.estimate.ci_high < j.margin == 0.02
    smaller = DecisionConfig(min_gain=0.005)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True), decision=smaller)
    assert verdict_of(rec) == ("fine_tune", None, "lora", "few_shot", None)
    j = one(rec, "judgement", arm="lora")
    assert j.outcome == "better" and j.margin == 0.005 and 0.005 <= j.estimate.ci_low < 0.01


def test_a_gain_counts_by_its_lower_bound():
    # Changed: +3.0 points, significant, was "fine-tune" on its point estimate. Its interval (about
    # +1, +5) includes gains below the 2-point minimum, so more examples must settle it.
    few, lora = paired(1000, both=500, only_a=30, only_b=60)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True))
    assert verdict_of(rec) == ("not_enough_evidence", "examples", "few_shot", "few_shot", "lora")
    j = one(rec, "judgement", arm="lora")
    assert j.outcome == "undecided" and j.estimate.diff == pytest.approx(0.03)
    assert pair_of(rec, "few_shot", "lora").test.significant and 0 < j.estimate.ci_low < 0.02
    assert j.examples_needed is not None and j.examples_needed > 1000


def test_not_enough_evidence_says_how_many_more_examples():
    # Changed: the number needed now comes from the interval (the examples that would bring it clear of
    # the nearest threshold if the difference held), not from the smallest detectable effect.
    few, lora = paired(40, both=20, only_a=2, only_b=4)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True))
    ids = [f"ex{i}" for i in range(40)]
    pair = paired_comparisons({"few_shot": dict(zip(ids, few)), "lora": dict(zip(ids, lora))},
                              seed=0, alpha=0.05, power=0.8)[0]
    # +5.0 points: the lower end must come above 2 points, 3 points below the estimate.
    needed = math.ceil(40 * ((pair.ci_high - pair.ci_low) / 2 / 0.03) ** 2)
    j = one(rec, "judgement", arm="lora")
    assert j.outcome == "undecided" and j.estimate.n == 40 and j.estimate.diff == pytest.approx(0.05)
    assert j.examples_needed == needed
    assert needed > 400
    assert verdict_of(rec) == ("not_enough_evidence", "examples", "few_shot", "few_shot", "lora")


def test_fewer_examples_than_the_minimum_are_not_enough_evidence():
    # Changed: both arms right on all 5 examples had no detectable effect, which skipped the evidence
    # check and fell through to "fine-tune" on cost.
    rec = decide(strategy("few_shot", [1.0] * 5, latency=900, prompt=450), strategy("lora", [1.0] * 5, training=True))
    assert (rec.kind, rec.cause, rec.subject) == ("not_enough_evidence", "examples", "lora")
    j = one(rec, "judgement", arm="lora")
    assert (j.outcome, j.estimate.n, j.min_examples, j.examples_needed) == ("too_few", 5, MIN_EXAMPLES, None)
    few, lora = paired(MIN_EXAMPLES - 1, both=0, only_a=0, only_b=MIN_EXAMPLES - 1)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True))
    assert (rec.kind, rec.cause) == ("not_enough_evidence", "examples")
    j = one(rec, "judgement", arm="lora")
    assert (j.outcome, j.estimate.n) == ("too_few", 29)


def test_arms_that_score_the_same_on_every_example_are_not_enough_evidence():
    rec = decide(strategy("few_shot", [1.0] * 40, latency=900, prompt=450),
                 strategy("lora", [1.0] * 40, training=True))
    assert verdict_of(rec) == ("not_enough_evidence", "examples", "few_shot", "few_shot", "lora")
    j = one(rec, "judgement", arm="lora")
    assert (j.outcome, j.estimate.n, j.estimate.a, j.estimate.b) == ("no_variation", 40, "few_shot", "lora")
    assert pair_of(rec, "few_shot", "lora").mde is None
    # All right against all wrong is no lack of evidence.
    rec = decide(strategy("few_shot", [1.0] * 40), strategy("lora", [0.0] * 40, training=True))
    assert verdict_of(rec) == ("dont_fine_tune", None, "few_shot", "few_shot", None)
    assert one(rec, "judgement", arm="lora").outcome == "worse"


def test_forgetting_over_budget():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True, forgetting=0.2))
    assert verdict_of(rec) == ("dont_fine_tune", None, "few_shot", "few_shot", None)
    g = one(rec, "forgetting", arm="lora")
    assert g.status == "over" and g.budget == 0.05
    assert (g.delta_loss, g.delta_loss_ci_low, g.delta_loss_ci_high) == pytest.approx((0.2, 0.2, 0.2))
    assert not found(rec, "judgement")  # an arm over the budget is out before it is judged
    relaxed = DecisionConfig(forgetting_budget=0.25)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True, forgetting=0.2), decision=relaxed)
    assert rec.kind == "fine_tune" and one(rec, "forgetting", arm="lora").status == "within"


def with_forgetting(strategy_and_scores, **deltas):
    row, scores = strategy_and_scores
    return row.model_copy(update={"forgetting": row.forgetting.model_copy(update=deltas)}), scores


MEASURED = dict(delta_loss=0.032, delta_loss_ci_low=0.02, delta_loss_ci_high=0.04, delta_qa_contains=-0.05,
                delta_qa_contains_ci_low=-0.09, delta_qa_contains_ci_high=-0.01)


def test_forgetting_is_judged_by_its_interval():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few), with_forgetting(strategy("lora", lora, training=True), **MEASURED),
                 decision=DecisionConfig(forgetting_budget=0.1))
    assert verdict_of(rec) == ("fine_tune", None, "lora", "few_shot", None)
    g = one(rec, "forgetting", arm="lora")
    assert g.status == "within" and g.budget == 0.1
    assert {k: getattr(g, k) for k in MEASURED} == pytest.approx(MEASURED)
    # The same point estimate with an interval reaching over a 0.035 budget: it cannot be told.
    rec = decide(strategy("few_shot", few), with_forgetting(strategy("lora", lora, training=True), **MEASURED),
                 decision=DecisionConfig(forgetting_budget=0.035))
    assert verdict_of(rec) == ("not_enough_evidence", "forgetting_unsure", "few_shot", "few_shot", "lora")
    g = one(rec, "forgetting", arm="lora")
    assert (g.status, g.budget) == ("unsure", 0.035)
    assert one(rec, "judgement", arm="lora").outcome == "better"  # it would have earned it
    # Over the budget only when the whole interval is.
    rec = decide(strategy("few_shot", few), with_forgetting(strategy("lora", lora, training=True), **MEASURED),
                 decision=DecisionConfig(forgetting_budget=0.015))
    assert verdict_of(rec) == ("dont_fine_tune", None, "few_shot", "few_shot", None)
    assert one(rec, "forgetting", arm="lora").status == "over"


def test_forgetting_that_cannot_be_told_does_not_hold_up_a_worse_arm():
    rag, lora = paired(300, both=200, only_a=40, only_b=5)
    rec = decide(strategy("rag", rag, retrieval=True),
                 with_forgetting(strategy("lora", lora, training=True), delta_loss_ci_high=0.1))
    assert verdict_of(rec) == ("dont_fine_tune", None, "rag", "rag", None)
    assert one(rec, "forgetting", arm="lora").status == "unsure"
    assert one(rec, "judgement", arm="lora").outcome == "worse"


def test_latency_slo_violated_by_the_fine_tuned_model():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few, p95=300), strategy("lora", lora, p95=800, training=True),
                 decision=DecisionConfig(latency_slo_ms=500))
    assert verdict_of(rec) == ("dont_fine_tune", None, "few_shot", "few_shot", None)
    o = one(rec, "over_slo")
    assert (o.arm, o.p95_ms, o.slo_ms) == ("lora", 800, 500)


def test_latency_slo_only_the_fine_tuned_model_meets():
    few, lora = paired(300, both=200, only_a=10, only_b=10)
    rec = decide(strategy("few_shot", few, p95=2000), strategy("lora", lora, p95=300, training=True),
                 decision=DecisionConfig(latency_slo_ms=500))
    assert verdict_of(rec) == ("fine_tune", None, "lora", None, None)
    o = one(rec, "over_slo")
    assert (o.arm, o.p95_ms, o.slo_ms) == ("few_shot", 2000, 500)
    assert not found(rec, "judgement")  # nothing left to hold it against


def test_latency_slo_no_strategy_meets():
    few, lora = paired(300, both=200, only_a=10, only_b=10)
    rec = decide(strategy("few_shot", few, p95=2000), strategy("lora", lora, p95=900, training=True),
                 decision=DecisionConfig(latency_slo_ms=500))
    assert verdict_of(rec) == ("cannot_decide", "all_over_slo", None, None, None)
    assert {(o.arm, o.p95_ms, o.slo_ms) for o in found(rec, "over_slo")} == {("few_shot", 2000, 500),
                                                                            ("lora", 900, 500)}


def test_fine_tuning_not_run_says_what_is_missing():
    # Changed data: few_shot is 0.5 points better, shown within 2 points by TOST on 2,000 examples,
    # and costs 5x more per request. (The old 150 examples only showed "not significantly worse".)
    zero, few = paired(2000, both=1000, only_a=35, only_b=45)
    rec = decide(strategy("zero_shot", zero, latency=200), strategy("few_shot", few, latency=1000, prompt=450))
    assert verdict_of(rec) == ("cannot_decide", "no_fine_tuning", "zero_shot", None, None)
    assert missing(rec) == ["fine_tuning", "retrieval"]
    c = one(rec, "cheaper_equivalent")
    assert (c.arm, c.instead_of, c.margin) == ("zero_shot", "few_shot", 0.02)
    assert (c.estimate.a, c.estimate.b) == ("few_shot", "zero_shot") and c.estimate.diff == pytest.approx(-0.005)
    assert -0.02 < c.estimate.ci_low and c.estimate.ci_high < 0.02
    assert c.per_request_usd < c.instead_of_per_request_usd
    assert rec.findings[0].type == "quality" and rec.findings[0].arm == "zero_shot"


def test_a_cheaper_arm_not_shown_equivalent_does_not_replace_the_best():
    # Changed: 1 point worse and not significantly so on 150 examples used to be as good; its
    # interval reaches past 2 points, so the best arm stays.
    zero, few = paired(150, both=40, only_a=5, only_b=7)
    rec = decide(strategy("zero_shot", zero, latency=200), strategy("few_shot", few, latency=1000, prompt=450))
    assert verdict_of(rec) == ("cannot_decide", "no_fine_tuning", "few_shot", None, None)
    assert not found(rec, "cheaper_equivalent")


def test_forgetting_not_measured():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True, forgetting=None))
    assert verdict_of(rec) == ("cannot_decide", "forgetting_not_measured", "few_shot", None, "lora")
    assert one(rec, "missing", what="forgetting").arm == "lora"


def test_only_fine_tuning_run():
    lora = [1.0] * 30 + [0.0] * 10
    rec = decide(strategy("lora", lora, training=True))
    assert verdict_of(rec) == ("cannot_decide", "no_baseline", "lora", None, None)


def _point(value, labelled, q):
    m = {"value": q, "ci_low": q - 0.05, "ci_high": q + 0.05}
    return {"value": value, "labelled_examples": labelled, "run_id": 1, "n_examples": 100,
            "quality": {"metric": "accuracy", **m}, "metrics": {"accuracy": m}}


def learning_curves(lora_quality) -> list[dict]:
    """few_shot at k = 0, 1, 4, 8 (best 71% at k=4), lora at 125, 250 and 1,000 labelled examples."""
    return [
        {"strategy": "few_shot", "param": "k", "fine_tuning": False,
         "points": [_point(k, k, q) for k, q in [(0, 0.5), (1, 0.6), (4, 0.71), (8, 0.7)]]},
        {"strategy": "lora", "param": "train_fraction", "fine_tuning": True,
         "points": [_point(f, round(f * 1000), q) for f, q in zip((0.125, 0.25, 1.0), lora_quality)]},
    ]


# 80% at 250 examples is above 71% only on the estimates: the intervals overlap. 90% at 1,000 is
# above it clearly, and that is where the curve is said to overtake.
OVERTAKES, NEVER = (0.6, 0.8, 0.9), (0.5, 0.6, 0.7)


@pytest.mark.parametrize("lora_quality", [OVERTAKES, NEVER])
def test_learning_curves_say_how_much_data_fine_tuning_needs(lora_quality):
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True), curves=learning_curves(lora_quality))
    o = one(rec, "overtake")
    assert (o.metric, o.best_curve, o.best_param, o.best.value) == ("accuracy", "few_shot", "k", 4)
    assert (o.best.quality, o.best.ci_low, o.best.ci_high) == pytest.approx((0.71, 0.66, 0.76))
    if lora_quality == OVERTAKES:
        assert (o.outcome, o.curve, o.param, o.clear) == ("overtakes", "lora", "train_fraction", True)
        assert (o.point.labelled_examples, o.point.value) == (1000, 1.0)
        assert o.point.quality == pytest.approx(0.9)
    else:
        assert (o.outcome, o.most_labelled, o.point) == ("never", 1000, None)
    assert not found(rec, "curve")  # both curves answer the question


def test_a_learning_curve_that_cannot_answer_is_listed():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True), curves=learning_curves(NEVER)[1:])
    assert not found(rec, "overtake")
    c = one(rec, "curve")
    assert (c.strategy, c.param, [p.labelled_examples for p in c.points]) == ("lora", "train_fraction",
                                                                             [125, 250, 1000])


# -- knowledge or format (short answers: a strict metric and the lenient contains) -------------------

N = 300


def short(name, strict: range, lenient: range, *, training=False, retrieval=False, demos=0):
    """A short-answer row right (strictly) on `strict` and containing the gold answer on `lenient`."""
    row, scores = strategy(name, right_on(N, strict), training=training, retrieval=retrieval)
    contains = right_on(N, lenient)
    mean = sum(contains) / N
    lenient = Interval(value=mean, ci_low=mean, ci_high=mean)
    row = row.model_copy(update={"metrics": {**row.metrics, "contains": lenient},
                                 "axes": {"demos": {"k": demos}} if demos else {}})
    return (row, scores), contains


def decide_short(*arms):
    return decide(*(a for a, _ in arms), content={a[0].name: c for a, c in arms})


SA_ZERO = short("zero_shot", range(0, 15), range(0, 30))
SA_RAG = short("rag", range(0, 20), range(0, 150), retrieval=True)
SA_RAG_DEMOS = short("rag_demos", range(0, 60), range(0, 150), retrieval=True, demos=4)
# Fine-tuning taught the answer format: strictly right far more often, the gold answer no more often.
SA_FORMAT_LORA = short("lora", range(0, 150), range(10, 150), training=True)


def test_a_win_on_format_alone_goes_to_retrieval_with_demonstrations():
    rec = decide_short(SA_ZERO, SA_RAG, SA_RAG_DEMOS, SA_FORMAT_LORA)
    assert verdict_of(rec) == ("dont_fine_tune", None, "rag_demos", "rag_demos", None)
    assert rec.gaps == ["knowledge", "format"]
    assert [x.type for x in rec.findings[:2]] == ["knowledge_gap", "format_gap"]  # the gaps are told first
    k = one(rec, "knowledge_gap")
    assert k.without == "zero_shot" and k.with_retrieval in ("rag", "rag_demos") and k.test.significant
    assert (k.estimate.metric, k.estimate.a, k.estimate.b) == ("contains", "zero_shot", k.with_retrieval)
    assert k.estimate.diff == pytest.approx(0.4)
    g = one(rec, "format_gap")
    assert (g.arm, g.strict.metric, g.content.metric, g.instead) == ("lora", "accuracy", "contains", "rag_demos")
    assert g.strict.diff == pytest.approx(90 / 300)  # against rag_demos, the best on accuracy
    assert (g.instead_estimate.a, g.instead_estimate.b) == ("lora", "rag_demos")
    assert g.instead_estimate.ci_low > -g.margin
    assert one(rec, "judgement", arm="lora").outcome == "better"  # it won, on format


def test_a_win_on_format_alone_without_that_arm_says_to_run_it():
    rec = decide_short(SA_ZERO, SA_RAG, SA_FORMAT_LORA)
    assert verdict_of(rec) == ("not_enough_evidence", "format_only", "rag", "rag", "lora")
    assert rec.gaps == ["knowledge", "format"]
    g = one(rec, "format_gap")
    assert g.arm == "lora" and g.instead is None and g.instead_estimate is None


def test_a_win_on_content_is_fine_tuning():
    knows = short("lora", range(0, 250), range(0, 250), training=True)
    rec = decide_short(SA_ZERO, SA_RAG, SA_RAG_DEMOS, knows)
    assert verdict_of(rec) == ("fine_tune", None, "lora", "rag_demos", None)
    assert rec.gaps == ["knowledge"] and not found(rec, "format_gap")


def test_retrieval_that_finds_nothing_new_is_no_knowledge_gap():
    useless = short("rag", range(0, 15), range(0, 30), retrieval=True)
    rec = decide_short(SA_ZERO, useless)
    assert rec.gaps == [] and not found(rec, "knowledge_gap") and not found(rec, "format_gap")


def test_fine_tuning_without_the_facts_retrieval_supplies_is_not_recommended():
    """The shipped elements task's shape: retrieval raises content; lora, no better or worse than the
    best prompt on the strict metric (the interval straddles), contains the gold answer far less
    often than retrieval."""
    rag = short("rag", range(0, 30), range(0, 90), retrieval=True)
    rag_demos = short("rag_demos", range(0, 33), range(0, 40), retrieval=True, demos=4)
    lora = short("lora", range(10, 36), range(10, 28), training=True)
    rec = decide_short(SA_ZERO, rag, rag_demos, lora)
    assert verdict_of(rec) == ("dont_fine_tune", None, "rag_demos", "rag_demos", None)
    assert rec.gaps == ["knowledge"]
    assert one(rec, "judgement", arm="lora").outcome == "undecided"
    lacks = one(rec, "lacks_knowledge")
    assert (lacks.arm, lacks.against, lacks.estimate.metric) == ("lora", "rag", "contains")
    assert lacks.estimate.diff == pytest.approx(-72 / 300) and lacks.test.significant
    # Without the content pairs the same strict figures leave it open.
    rec = decide(SA_ZERO[0], rag[0], rag_demos[0], lora[0])
    assert (rec.kind, rec.cause, rec.subject) == ("not_enough_evidence", "examples", "lora")


def test_a_lead_on_format_alone_among_prompts_is_said():
    """The shipped countries task's shape: few_shot is strictly right more often, while zero_shot's
    answers contain the gold answer far more often (it answers in sentences)."""
    zero = short("zero_shot", range(0, 0), range(0, 138))
    few = short("few_shot", range(0, 36), range(0, 48))
    rec = decide_short(zero, few)
    assert verdict_of(rec) == ("cannot_decide", "no_fine_tuning", "few_shot", None, None)
    lead = one(rec, "format_lead")
    assert (lead.arm, lead.other, lead.metric) == ("few_shot", "zero_shot", "accuracy")
    assert (lead.estimate.metric, lead.estimate.a, lead.estimate.b) == ("contains", "few_shot", "zero_shot")
    assert lead.estimate.diff == pytest.approx(0.3)
    # Not said when the leader contains the gold answer as often.
    as_often = short("zero_shot", range(0, 0), range(0, 48))
    assert not found(decide_short(as_often, few), "format_lead")


def hosted(row, name="gpt-big", usd_in=2.5, usd_out=10.0):
    """The row as a hosted model's: its own prices, size unknown."""
    return row.model_copy(update={"model": name, "model_params": None,
                                  "usd_per_mtok": {"input": usd_in, "output": usd_out}})


def local(row, name="smollm2-135m-instruct", params=134_515_008):
    return row.model_copy(update={"model": name, "model_params": params})


def test_a_small_local_model_matching_a_hosted_one_is_priced_against_it():
    # Equivalent on 2,000 examples; the hosted model costs $2.50 per million prompt tokens, the local
    # one the machine's price of its measured seconds.
    big, lora = paired(2000, both=1000, only_a=20, only_b=20)
    (big_row, _), (lora_row, _) = strategy("big", big, prompt=450), strategy("lora", lora, training=True)
    rec = decide((hosted(big_row), big), (local(lora_row), lora))
    assert verdict_of(rec) == ("fine_tune", None, "lora", "big", None)
    m = one(rec, "models")
    assert (m.arm.arm, m.arm.model, m.arm.hosted, m.arm.params) == ("lora", "smollm2-135m-instruct", False,
                                                                    134_515_008)
    assert (m.against.arm, m.against.model, m.against.hosted, m.against.params) == ("big", "gpt-big", True, None)
    assert m.outcome == "equivalent" and m.margin == 0.02 and m.estimate.diff == pytest.approx(0.0)
    # lora's request: 100 tokens at $1/h over 0.2 s per 100 tokens; big's: 450 tokens at $2.50/M.
    assert m.cost_share == pytest.approx((0.2 / 3600) / (450 * 2.5e-6))
    assert m.break_even_requests is not None and m.break_even_requests > 0
    c = one(rec, "cost", arm="big")
    assert c.basis == "api" and c.per_request_flops is None  # no FLOPs: size unknown
    assert c.per_request_usd == pytest.approx(450 * 2.5e-6)


def test_a_hosted_model_ahead_is_said_to_be_ahead():
    big, lora = paired(300, both=150, only_a=60, only_b=5)
    (big_row, _), (lora_row, _) = strategy("big", big), strategy("lora", lora, training=True)
    rec = decide((hosted(big_row), big), (local(lora_row), lora))
    assert verdict_of(rec) == ("dont_fine_tune", None, "big", "big", None)
    m = one(rec, "models")
    assert (m.arm.arm, m.against.arm, m.outcome) == ("lora", "big", "worse")
    assert m.estimate.diff == pytest.approx(-55 / 300)
    assert m.cost_share == pytest.approx((0.2 / 3600) / (100 * 2.5e-6))  # 22%


def test_arms_on_one_model_get_no_models_finding():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True))
    assert not found(rec, "models")


def test_a_hosted_arm_that_is_not_the_alternative_is_still_held_against_the_fine_tuned_one():
    # The local zero-shot arm is the best without fine-tuning; the hosted arm, behind it, is what
    # the team pays for today, so the verdict says how the fine-tuned arm compares with it too.
    zero, lora = paired(300, both=100, only_a=5, only_b=120)
    big, _ = paired(300, both=60, only_a=0, only_b=0)
    (zero_row, _), (big_row, _) = strategy("zero_shot", zero), strategy("big", big, prompt=400)
    (lora_row, _) = strategy("lora", lora, training=True)
    rec = decide((local(zero_row), zero), (hosted(big_row), big), (local(lora_row), lora))
    assert verdict_of(rec) == ("fine_tune", None, "lora", "zero_shot", None)
    m = one(rec, "models")
    assert (m.arm.arm, m.against.arm, m.against.hosted, m.outcome) == ("lora", "big", True, "better")
    assert m.estimate.diff == pytest.approx(160 / 300)
    assert m.cost_share == pytest.approx((0.2 / 3600) / (400 * 2.5e-6))  # 6%
    assert m.break_even_requests == pytest.approx(176, abs=0.5)


# -- degenerate arms and fair baselines (issue 23) -----------------------------------------------------

def test_a_degenerate_arm_ahead_is_left_out_and_fine_tuning_is_judged_against_the_fair_one():
    # 85% of the 100 gold answers are "positive", and zero_shot answers "positive" for all of them:
    # 85% accuracy from a prompt that fails the model. raw, a fair prompt, is right on 60%; lora on 80%.
    zero = right_on(100, range(0, 85))
    raw = right_on(100, range(0, 60))
    lora = right_on(100, range(0, 80))
    arms = [strategy("raw", raw), strategy("lora", lora, training=True)]
    rec = decide(strategy("zero_shot", zero, answers=("positive", 100, 85)), *arms)
    d = one(rec, "degenerate")
    assert (d.arm, d.fine_tuned, d.answer, d.count, d.n, d.threshold) == ("zero_shot", False, "positive", 100, 100,
                                                                         judge.DEGENERATE_SHARE)
    j = one(rec, "judgement", arm="lora")
    assert (j.against, j.outcome) == ("raw", "better") and j.estimate.diff == pytest.approx(0.2)
    assert verdict_of(rec) == ("fine_tune", None, "lora", "raw", None)
    assert names_in_pairs(rec) == {"raw", "lora"}
    # No finding but its own names the degenerate arm: no quality, pair, cost, break-even or latency.
    for x in rec.findings:
        if x.type != "degenerate":
            assert "zero_shot" not in x.model_dump_json(), x
    # The same arm not known to be degenerate (older rows carry no answers) would be the baseline.
    control = decide(strategy("zero_shot", zero), *arms)
    assert one(control, "judgement", arm="lora").against == "zero_shot"
    assert control.kind != "fine_tune"


def test_a_fine_tuned_arm_against_a_degenerate_prompt_and_a_fair_one():
    """Issue 23's sentiment task: zero_shot answers one label for every one of 100 reviews (50%), a
    raw-format prompt the harness added is right on 77%, lora on 83%. The gain is +6 against raw, not
    +33 against zero_shot, and 100 examples do not show it."""
    zero = right_on(100, range(0, 50))
    raw, lora = paired(100, both=72, only_a=5, only_b=11)
    rec = decide(strategy("zero_shot", zero, answers=("negative", 100, 50)),
                 strategy("raw", raw, added_by_harness=True), strategy("lora", lora, training=True))
    d = one(rec, "degenerate", arm="zero_shot")
    assert (d.answer, d.count, d.n, d.fine_tuned) == ("negative", 100, 100, False)
    assert one(rec, "baselines_added").arms == ["raw"]
    j = one(rec, "judgement", arm="lora")
    assert (j.against, j.outcome) == ("raw", "undecided") and j.estimate.diff == pytest.approx(0.06)
    assert j.examples_needed is not None and j.examples_needed > 100
    assert not found(rec, "judgement", against="zero_shot") and "zero_shot" not in names_in_pairs(rec)
    assert pair_of(rec, "raw", "lora").test.comparisons == 1  # the Holm family has no degenerate arm
    assert verdict_of(rec) == ("not_enough_evidence", "examples", "raw", "raw", "lora")
    assert "fair_baseline" not in missing(rec)


DEGENERATE_ZERO = strategy("zero_shot", right_on(100, range(0, 50)), answers=("positive", 100, 50))
DEGENERATE_FEW = strategy("few_shot", right_on(100, range(3, 53)), answers=("negative", 95, 50), prompt=400)
LORA_83 = strategy("lora", right_on(100, range(0, 83)), training=True)


def test_only_degenerate_prompting_arms_is_no_fair_baseline():
    rec = decide(DEGENERATE_ZERO, DEGENERATE_FEW, LORA_83)
    assert verdict_of(rec) == ("not_enough_evidence", "no_fair_baseline", "lora", None, "lora")
    assert {(d.arm, d.answer, d.count) for d in found(rec, "degenerate")} == {("zero_shot", "positive", 100),
                                                                             ("few_shot", "negative", 95)}
    assert one(rec, "missing", what="fair_baseline").suggest == FALLBACK_BASELINE
    assert not found(rec, "judgement") and not found(rec, "pair")
    assert one(rec, "quality", arm="lora").value == pytest.approx(0.83)


def test_only_degenerate_prompting_arms_suggests_the_baselines_not_run():
    raw = {"raw": {"prompt": {"format": "raw"}}}
    rec = decide(DEGENERATE_ZERO, DEGENERATE_FEW, LORA_83, missing_baselines=raw)
    assert (rec.kind, rec.cause) == ("not_enough_evidence", "no_fair_baseline")
    assert one(rec, "missing", what="fair_baseline").suggest == raw  # once, not with the fallback too


def test_baselines_not_run_beside_a_fine_tuned_arm_are_named_missing():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    baselines = {"raw": {"prompt": {"format": "raw"}},
                 "raw_calibrated": {"prompt": {"format": "raw"}, "calibrate": True}}
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True), missing_baselines=baselines)
    assert verdict_of(rec) == ("fine_tune", None, "lora", "few_shot", None)  # named, not held against it
    assert one(rec, "missing", what="fair_baseline").suggest == baselines
    assert missing(rec) == ["retrieval", "fair_baseline"]
    # Without a fine-tuned arm there is nothing they would be a baseline for.
    zero, few = paired(300, both=150, only_a=5, only_b=20)
    rec = decide(strategy("zero_shot", zero), strategy("few_shot", few), missing_baselines=baselines)
    assert missing(rec) == ["fine_tuning", "retrieval"]


def test_baselines_added_by_the_harness_are_named():
    few, raw = paired(300, both=180, only_a=5, only_b=20)
    _, lora = paired(300, both=180, only_a=5, only_b=50)
    cal = right_on(300, range(0, 170))
    rec = decide(strategy("few_shot", few), strategy("raw", raw, added_by_harness=True),
                 strategy("raw_calibrated", cal, added_by_harness=True), strategy("lora", lora, training=True))
    assert one(rec, "baselines_added").arms == ["raw", "raw_calibrated"]
    assert rec.best == "lora" and one(rec, "judgement", arm="lora").against == "raw"
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True))
    assert not found(rec, "baselines_added")


def test_an_eval_set_that_is_mostly_one_label_makes_answering_it_no_failure():
    # 95 of 100 gold answers are "positive"; zero_shot answers "positive" on 95: it is not degenerate.
    zero = right_on(100, range(0, 95))
    zero_shot, lora = strategy("zero_shot", zero, answers=("positive", 95, 95)), strategy(
        "lora", right_on(100, range(0, 96)), training=True)
    rec = decide(zero_shot, lora)
    assert not found(rec, "degenerate")
    assert one(rec, "judgement", arm="lora").against == "zero_shot"
    assert rec.cause != "no_fair_baseline" and rec.alternative == "zero_shot"
    # Answering the minority label as often is a failure.
    rec = decide(strategy("zero_shot", right_on(100, range(95, 100)), answers=("negative", 95, 5)), lora)
    assert one(rec, "degenerate").answer == "negative"
    assert (rec.kind, rec.cause) == ("not_enough_evidence", "no_fair_baseline")


@pytest.mark.parametrize("count, gold_count, n, expected", [
    (90, 50, 100, True),  # 90% is degenerate
    (89, 50, 100, False),
    (100, 89, 100, True),
    (100, 90, 100, False),  # the gold answers are as uniform
    (0, 0, 0, False),
])
def test_the_degenerate_threshold(count, gold_count, n, expected):
    assert judge.DEGENERATE_SHARE == 0.9
    assert judge.degenerate(count, gold_count, n) is expected


def test_answer_spread_counts_normalised_answers_and_their_gold():
    top, count, gold = judge.answer_spread([" Positive", "positive ", "POSITIVE", "negative"],
                                           ["positive", "negative", "negative", "negative"])
    assert (top, count, gold) == ("positive", 3, 1)
    assert judge.answer_spread([], []) == ("", 0, 0)


def test_a_degenerate_fine_tuned_arm_is_no_fine_tuning():
    few = right_on(100, range(0, 70))
    lora = right_on(100, range(0, 50))
    rec = decide(strategy("few_shot", few), strategy("lora", lora, training=True, answers=("positive", 98, 50)))
    assert verdict_of(rec) == ("cannot_decide", "no_fine_tuning", "few_shot", None, None)
    d = one(rec, "degenerate")
    assert (d.arm, d.fine_tuned, d.answer, d.count) == ("lora", True, "positive", 98)
    assert not found(rec, "judgement") and "fine_tuning" not in missing(rec)  # it was run, and failed


def test_a_degenerate_prompting_arm_beside_fine_tuned_arms_alone_asks_for_a_fair_baseline():
    """The one report whose verdict a degenerate arm changes: fine-tuned arms alone cannot be decided
    (no baseline); beside a degenerate prompt, the verdict says which fair baseline to add."""
    alone = decide(LORA_83)
    assert (alone.kind, alone.cause) == ("cannot_decide", "no_baseline")
    rec = decide(DEGENERATE_ZERO, LORA_83)
    assert (rec.kind, rec.cause, rec.best) == ("not_enough_evidence", "no_fair_baseline", "lora")


def test_an_older_report_without_answers_has_no_degenerate_arm():
    zero, lora = right_on(100, range(0, 50)), right_on(100, range(0, 83))
    rec = decide(strategy("zero_shot", zero), strategy("lora", lora, training=True))
    assert not found(rec, "degenerate") and one(rec, "judgement", arm="lora").against == "zero_shot"


def test_an_interval_clear_of_the_thresholds_still_needs_a_significant_test():
    # lora +13 points [+2, +24] on 100 examples, but p=0.07 after Holm over three pairs: the examples
    # that settle it are those at which 13 points becomes detectable (18.2 points at 100 examples).
    outcome, needed = judge.gain(100, 0.13, 0.02, 0.24, significant=False, mde=0.182, margin=0.02)
    assert (outcome, needed) == ("undecided", math.ceil(100 * (0.182 / 0.13) ** 2))
