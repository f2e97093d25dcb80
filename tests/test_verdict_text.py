"""The verdict's English (harness/verdict/text.py), golden: the sentences and reason lines the
product prints, rendered by `explain` from the verdicts test_decide.py builds on the same data.
Elsewhere tests assert on the verdict as data; a rewording is a change to these tests alone."""

from __future__ import annotations

import math
import typing

import pytest

from harness.config import DecisionConfig
from harness.results import Recommendation
from harness.stats import MIN_EXAMPLES, paired_comparisons
from harness.verdict import findings as f
from harness.verdict.text import explain, line, missing_line, sentence
from tests.test_decide import (
    DEGENERATE_FEW,
    DEGENERATE_ZERO,
    LORA_83,
    LORA_BELOW_RAG,
    MEASURED,
    NEVER,
    OVERTAKES,
    RAG,
    SA_FORMAT_LORA,
    SA_RAG,
    SA_RAG_DEMOS,
    SA_ZERO,
    ZERO,
    decide,
    decide_short,
    hosted,
    learning_curves,
    local,
    paired,
    right_on,
    short,
    strategy,
    with_forgetting,
)

NO_RETRIEVAL = "retrieval: no strategy with a retrieval index (e.g. rag)"


def told(*strategies, **kwargs) -> Recommendation:
    return explain(decide(*strategies, **kwargs))


def text(rec: Recommendation) -> str:
    return "\n".join(rec.reasons)


def test_fine_tune():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = told(strategy("few_shot", few, latency=900, prompt=450), strategy("lora", lora, training=True))
    assert rec.verdict == "fine-tune" and rec.best_strategy == "lora"
    assert "lora vs few_shot: +15.0 points" in text(rec) and "exact McNemar" in text(rec)
    assert "paid back after" in text(rec) and "forgetting: lora" in text(rec)
    assert any(r.startswith("gain: lora beats few_shot by at least +") and "the 2.0-point minimum worth having" in r
               for r in rec.reasons)
    assert rec.missing == [NO_RETRIEVAL]


def test_dont_fine_tune_use_rag():
    rag, lora = paired(300, both=200, only_a=40, only_b=5)
    zero, _ = paired(300, both=150, only_a=0, only_b=0)
    rec = told(strategy("zero_shot", zero), strategy("rag", rag, latency=600, prompt=700, retrieval=True),
               strategy("lora", lora, training=True))
    assert rec.verdict == "don't fine-tune: use rag" and rec.best_strategy == "rag"
    assert "lora is significantly worse than rag by 11.7 points" in rec.reasons
    assert rec.missing == []


def test_not_enough_evidence_says_how_many_more_examples():
    few, lora = paired(40, both=20, only_a=2, only_b=4)
    rec = told(strategy("few_shot", few), strategy("lora", lora, training=True))
    ids = [f"ex{i}" for i in range(40)]
    pair = paired_comparisons({"few_shot": dict(zip(ids, few)), "lora": dict(zip(ids, lora))},
                              seed=0, alpha=0.05, power=0.8)[0]
    needed = math.ceil(40 * ((pair.ci_high - pair.ci_low) / 2 / 0.03) ** 2)
    assert rec.verdict == f"not enough evidence: about {needed - 40:,} more eval examples needed"
    evidence = next(r for r in rec.reasons if r.startswith("evidence: lora vs few_shot +5.0 points"))
    assert evidence.endswith(f"shows neither a gain of the 2.0-point minimum worth having, nor a difference within it "
                             f"either way, nor a loss; about {needed:,} eval examples would settle it if the "
                             f"difference held, {needed - 40:,} more than the 40 scored")


def test_not_enough_evidence_against_the_best_arm():
    rec = told(strategy("zero_shot", ZERO), strategy("rag", RAG, latency=600, prompt=700, retrieval=True),
               strategy("lora", LORA_BELOW_RAG, training=True))
    assert "lora vs rag: -0.3 points" in text(rec) and "lora vs zero_shot" not in text(rec)
    assert rec.verdict.startswith("not enough evidence: about ") and rec.verdict.endswith(" more eval examples needed")
    few, lora = paired(1000, both=500, only_a=30, only_b=60)
    rec = told(strategy("few_shot", few), strategy("lora", lora, training=True))
    assert any(r.startswith("evidence: lora vs few_shot +3.0 points") and "shows neither" in r for r in rec.reasons)


def test_too_few_examples_and_no_variation():
    rec = told(strategy("few_shot", [1.0] * 5, latency=900, prompt=450), strategy("lora", [1.0] * 5, training=True))
    assert rec.verdict == f"not enough evidence: 5 eval examples, at least {MIN_EXAMPLES} needed"
    assert (f"evidence: lora and few_shot share 5 scored examples, fewer than the {MIN_EXAMPLES} the intervals need"
            in rec.reasons)
    rec = told(strategy("few_shot", [1.0] * 40, latency=900, prompt=450), strategy("lora", [1.0] * 40, training=True))
    assert rec.verdict == ("not enough evidence: lora and few_shot each scored the same on all 40 eval examples; "
                           "a harder or more varied eval set is needed")
    assert ("evidence: lora and few_shot each scored the same on all 40 examples, so no difference between them can "
            "be estimated") in rec.reasons


def test_no_worthwhile_difference_and_no_saving():
    zero, lora = paired(1000, both=970, only_a=0, only_b=0)
    tokens = {name: {f"ex{i}": (100, 0, 0) for i in range(1000)} for name in ("zero_shot", "lora")}
    rec = told(strategy("zero_shot", zero), strategy("lora", lora, latency=194.0, training=True), tokens=tokens)
    assert rec.verdict == "don't fine-tune: use zero_shot"
    tost = next(r for r in rec.reasons if r.startswith("no worthwhile difference: TOST: lora vs zero_shot +0.0 points"))
    assert tost.endswith("lies within 2.0 points either way (two one-sided tests at alpha=0.025 each), so cost "
                         "decides: lora is not paid back against zero_shot within 12 months")
    assert any("no saving shown: lora saves $0 per 1,000 requests against zero_shot [95% CI $0, $0], so it is never "
               "paid back" in r for r in rec.reasons)


def test_dearer_requests_are_a_cost_not_a_negative_saving():
    zero, lora = paired(1000, both=970, only_a=0, only_b=0)
    tokens = {"zero_shot": {f"ex{i}": (100, 0, 0) for i in range(1000)},
              "lora": {f"ex{i}": (150, 0, 0) for i in range(1000)}}
    rec = told(strategy("zero_shot", zero), strategy("lora", lora, prompt=150, training=True), tokens=tokens)
    dearer = next(r for r in rec.reasons if r.startswith("lora one-time"))
    # 50 more prompt tokens a request, in point estimate and interval alike.
    assert ("; lora costs $0.0222 more per 1,000 requests than zero_shot [95% CI $0.0222, $0.0222], so it is never "
            "paid back") in dearer


def test_cheaper_requests_pay_back():
    few, lora = paired(2000, both=1000, only_a=20, only_b=20)
    rec = told(strategy("few_shot", few, latency=1200, prompt=450), strategy("lora", lora, latency=200, training=True))
    saving = 350 * (1.0 / 3600) * 1.4 / 550
    assert rec.verdict == "fine-tune"
    assert any(r.startswith("no worthwhile difference: TOST: lora vs few_shot") and r.endswith(
        "so cost decides: lora is paid back against few_shot within 12 months") for r in rec.reasons)
    assert any(f"paid back after {600 / 3600 / saving:,.0f} requests" in r and "(payback period 12 months)" in r
               for r in rec.reasons)


def test_forgetting():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = told(strategy("few_shot", few), with_forgetting(strategy("lora", lora, training=True), **MEASURED),
               decision=DecisionConfig(forgetting_budget=0.1))
    assert ("forgetting: lora changes loss on general text by +0.032 nats/token [95% CI +0.020, +0.040] "
            "(budget 0.100), general questions answered by -5.0 points [95% CI -9.0, -1.0]") in rec.reasons
    rec = told(strategy("few_shot", few), with_forgetting(strategy("lora", lora, training=True), **MEASURED),
               decision=DecisionConfig(forgetting_budget=0.035))
    assert rec.verdict == ("not enough evidence: whether lora forgets more than the 0.035 nats/token budget "
                           "cannot be told")
    assert any("(budget 0.035: the interval straddles it, more probe text would tell)" in r for r in rec.reasons)
    rec = told(strategy("few_shot", few), strategy("lora", lora, training=True, forgetting=0.2))
    assert rec.verdict == "don't fine-tune: use few_shot"
    assert any("+0.200 nats/token [95% CI +0.200, +0.200] (budget 0.050: over budget)" in r for r in rec.reasons)


def test_latency():
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = told(strategy("few_shot", few, p95=300), strategy("lora", lora, p95=800, training=True),
               decision=DecisionConfig(latency_slo_ms=500))
    assert "latency: lora p95 800 ms is over the 500 ms SLO" in rec.reasons
    few, lora = paired(300, both=200, only_a=10, only_b=10)
    rec = told(strategy("few_shot", few, p95=2000), strategy("lora", lora, p95=900, training=True),
               decision=DecisionConfig(latency_slo_ms=500))
    assert rec.verdict == "cannot decide: no strategy meets the 500 ms latency SLO" and rec.best_strategy is None


def test_cannot_decide():
    zero, few = paired(2000, both=1000, only_a=35, only_b=45)
    rec = told(strategy("zero_shot", zero, latency=200), strategy("few_shot", few, latency=1000, prompt=450))
    assert rec.verdict == "cannot decide: no fine-tuning strategy was run (best without it: zero_shot)"
    assert rec.missing == ["fine-tuning: no strategy with a training run (e.g. lora)", NO_RETRIEVAL]
    assert any(r.startswith("zero_shot is as good as few_shot and cheaper") and "TOST: zero_shot vs few_shot -0.5 "
               "points" in r for r in rec.reasons)
    assert rec.reasons[0] == "quality: zero_shot 51.7% accuracy [95% CI 46.8%, 56.8%] on 2000 examples"

    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = told(strategy("few_shot", few), strategy("lora", lora, training=True, forgetting=None))
    assert rec.verdict == "cannot decide: forgetting was not measured for lora"
    assert "forgetting of lora: not measured" in rec.missing

    rec = told(strategy("lora", [1.0] * 30 + [0.0] * 10, training=True))
    assert rec.verdict == "cannot decide: no prompting or retrieval strategy was run to compare against"


@pytest.mark.parametrize("lora_quality, expected", [
    (OVERTAKES, "lora overtakes the best in-context result (few_shot k=4: 71.0% accuracy [95% CI 66.0%, 76.0%]) at "
                "1,000 labelled examples (train_fraction=1.0: 90.0% accuracy [95% CI 85.0%, 95.0%]), its 95% interval "
                "entirely above."),
    (NEVER, "Fine-tuning never overtakes the best in-context result (few_shot k=4: 71.0% accuracy [95% CI 66.0%, "
            "76.0%]), up to 1,000 labelled examples."),
])
def test_learning_curves(lora_quality, expected):
    few, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = told(strategy("few_shot", few), strategy("lora", lora, training=True), curves=learning_curves(lora_quality))
    assert f"learning curves: {expected}" in rec.reasons


def test_overtaking_on_point_estimates_only_and_without_a_curve():
    on_points = f.Overtake(metric="accuracy", outcome="overtakes", best_curve="few_shot", best_param="k",
                           best=f.PointQuality(value=4, labelled_examples=4, quality=0.71, ci_low=0.66, ci_high=0.76),
                           curve="lora", param="train_fraction", clear=False,
                           point=f.PointQuality(value=0.25, labelled_examples=250, quality=0.8, ci_low=0.7,
                                                ci_high=0.9))
    assert line(on_points) == (
        "learning curves: lora overtakes the best in-context result (few_shot k=4: 71.0% accuracy [95% CI 66.0%, "
        "76.0%]) at 250 labelled examples (train_fraction=0.25: 80.0% accuracy [95% CI 70.0%, 90.0%]) on point "
        "estimate only: the 95% intervals overlap at every number of labelled examples tried.")
    assert line(f.Overtake(metric="accuracy", outcome="no_fine_tuning_curve")) == (
        "learning curves: No fine-tuning learning curve, so nothing shows where fine-tuning overtakes in-context "
        "learning.")
    assert line(f.Overtake(metric="accuracy", outcome="no_in_context_curve")) == (
        "learning curves: No in-context learning curve, so nothing shows where fine-tuning overtakes in-context "
        "learning.")


def test_knowledge_and_format():
    rec = explain(decide_short(SA_ZERO, SA_RAG, SA_RAG_DEMOS, SA_FORMAT_LORA))
    assert rec.verdict == "don't fine-tune: use rag_demos"
    assert any(r.startswith("gap: knowledge") and "vs zero_shot on contains: +40.0" in r for r in rec.reasons)
    fmt = next(r for r in rec.reasons if r.startswith("gap: format"))
    assert "lora wins on accuracy" in fmt and "rag_demos (retrieval and demonstrations) is as good on content" in fmt

    rec = explain(decide_short(SA_ZERO, SA_RAG, SA_FORMAT_LORA))
    assert rec.verdict == ("not enough evidence: lora wins on answer format only; run an arm with retrieval and "
                           "demonstrations (context: retrieval, demos: {k: 4}) before fine-tuning")

    rag = short("rag", range(0, 30), range(0, 90), retrieval=True)
    rag_demos = short("rag_demos", range(0, 33), range(0, 40), retrieval=True, demos=4)
    lora = short("lora", range(10, 36), range(10, 28), training=True)
    rec = explain(decide_short(SA_ZERO, rag, rag_demos, lora))
    assert any("knowledge: lora has no retrieval and contains the gold answer less often than rag" in r
               for r in rec.reasons)

    rec = explain(decide_short(short("zero_shot", range(0, 0), range(0, 138)), short("few_shot", range(0, 36),
                                                                                      range(0, 48))))
    lead = next(r for r in rec.reasons if r.startswith("format: few_shot leads on accuracy"))
    assert "zero_shot contains the gold answer more often: zero_shot vs few_shot on contains: +30.0 points" in lead


def test_models():
    big, lora = paired(2000, both=1000, only_a=20, only_b=20)
    (big_row, _), (lora_row, _) = strategy("big", big, prompt=450), strategy("lora", lora, training=True)
    rec = told((hosted(big_row), big), (local(lora_row), lora))
    across = [r for r in rec.reasons if r.startswith("models: ")]
    share = (0.2 / 3600) / (450 * 2.5e-6)
    assert len(across) == 1 and across[0].startswith(
        "models: lora (smollm2-135m-instruct, local, 135M parameters) matches big within 2.0 points (lora vs big "
        "+0.0 points [95% CI -0.6, +0.6], TOST)")
    assert f", at {100 * share:.0f}% of big (gpt-big, hosted)'s cost per request; break-even after " in across[0]
    assert "cost (api): big $1.13 per 1,000 requests, " in text(rec)

    big, lora = paired(300, both=150, only_a=60, only_b=5)
    (big_row, _), (lora_row, _) = strategy("big", big), strategy("lora", lora, training=True)
    rec = told((hosted(big_row), big), (local(lora_row), lora))
    assert ("models: lora (smollm2-135m-instruct, local, 135M parameters) is behind big (lora vs big -18.3 points "
            "[95% CI -23.0, -13.3]), at 22% of big (gpt-big, hosted)'s cost per request") in rec.reasons

    zero, lora = paired(300, both=100, only_a=5, only_b=120)
    big, _ = paired(300, both=60, only_a=0, only_b=0)
    (zero_row, _), (big_row, _) = strategy("zero_shot", zero), strategy("big", big, prompt=400)
    (lora_row, _) = strategy("lora", lora, training=True)
    rec = told((local(zero_row), zero), (hosted(big_row), big), (local(lora_row), lora))
    across = [r for r in rec.reasons if r.startswith("models: ")]
    assert len(across) == 1 and across[0].startswith(
        "models: lora (smollm2-135m-instruct, local, 135M parameters) beats big (lora vs big +53.3 points "
        "[95% CI +47.7, +59.0]), at 6% of big")
    assert "(gpt-big, hosted)'s cost per request; break-even after 176 requests" in across[0]


# -- degenerate arms and fair baselines ----------------------------------------------------------------

def test_degenerate_and_no_fair_baseline():
    rec = told(DEGENERATE_ZERO, DEGENERATE_FEW, LORA_83)
    assert rec.verdict == ("not enough evidence: every arm without fine-tuning gives one answer for nearly every "
                           "example, so lora has no fair baseline to beat; add few_shot_raw")
    assert ("degenerate: zero_shot answers 'positive' for 100 of 100 examples (100.0%, at least 90.0%), so no gain "
            "is measured against it") in rec.reasons
    assert ("degenerate: few_shot answers 'negative' for 95 of 100 examples (95.0%, at least 90.0%), so no gain is "
            "measured against it") in rec.reasons
    assert rec.missing == [NO_RETRIEVAL, "fair baseline: `few_shot_raw: {demos: {k: 4}, prompt: {format: raw}}` (the "
                                         "prompting arms a fine-tuned arm should be held against)"]
    rec = told(DEGENERATE_ZERO, DEGENERATE_FEW, LORA_83,
               missing_baselines={"raw": {"prompt": {"format": "raw"}},
                                  "raw_calibrated": {"prompt": {"format": "raw"}, "calibrate": True}})
    assert rec.verdict.endswith("so lora has no fair baseline to beat; add raw, raw_calibrated")
    assert ("fair baseline: `raw: {prompt: {format: raw}}`, `raw_calibrated: {prompt: {format: raw}, calibrate: true}` "
            "(the prompting arms a fine-tuned arm should be held against)") in rec.missing


def test_a_degenerate_fine_tuned_arm():
    rec = told(strategy("few_shot", right_on(100, range(0, 70))),
               strategy("lora", right_on(100, range(0, 50)), training=True, answers=("positive", 98, 50)))
    assert rec.verdict == ("cannot decide: no fine-tuned arm does the task: lora answers one thing for nearly every "
                           "example (best without it: few_shot)")


def test_baselines_added():
    few, raw = paired(300, both=180, only_a=5, only_b=20)
    _, lora = paired(300, both=180, only_a=5, only_b=50)
    rec = told(strategy("few_shot", few), strategy("raw", raw, added_by_harness=True),
               strategy("lora", lora, training=True))
    assert ("baselines: raw added by the harness, the fairest prompts the task file lacked (decision.baselines: none "
            "turns this off)") in rec.reasons


def test_every_finding_has_its_line():
    kinds = typing.get_args(typing.get_args(f.Finding)[0])
    assert f.Missing in kinds
    for kind in kinds:
        if kind is not f.Missing:
            assert line.dispatch(kind) is not line.dispatch(object), f"no line for {kind.__name__}"
    with pytest.raises(TypeError):
        line(f.Missing(what="retrieval"))
    assert missing_line(f.Missing(what="forgetting", arm="lora")) == "forgetting of lora: not measured"


# -- stored reports ----------------------------------------------------------------------------------

@pytest.mark.parametrize("old_verdict, kind", [
    ("fine-tune", "fine_tune"),
    ("don't fine-tune: use rag", "dont_fine_tune"),
    ("not enough evidence: about 1,212 more eval examples needed", "not_enough_evidence"),
    ("cannot decide: no fine-tuning strategy was run (best without it: zero_shot)", "cannot_decide"),
])
def test_an_older_stored_report_still_loads(old_verdict, kind):
    stored = {"verdict": old_verdict, "best_strategy": "rag", "metric": "accuracy",
              "reasons": ["lora is significantly worse than rag by 11.7 points"], "missing": [NO_RETRIEVAL]}
    rec = Recommendation.model_validate(stored)
    assert (rec.kind, rec.best, rec.cause, rec.findings) == (kind, "rag", None, [])
    assert (rec.verdict, rec.best_strategy, rec.reasons, rec.missing) == (
        old_verdict, "rag", stored["reasons"], stored["missing"])


def test_a_stored_report_keeps_its_typed_findings():
    rec = told(DEGENERATE_ZERO, strategy("raw", right_on(100, range(0, 77)), added_by_harness=True), LORA_83,
               missing_baselines={"raw_calibrated": {"prompt": {"format": "raw"}, "calibrate": True}})
    again = Recommendation.model_validate_json(rec.model_dump_json())
    assert again == rec
    assert [type(x) for x in again.findings] == [type(x) for x in rec.findings]
    assert sentence(again) == rec.verdict and explain(again) == rec
