"""The recommendation: is fine-tuning worth it for this task, or does a prompting or retrieval
strategy do the job?

A pure function of the typed rows of a comparison (each with its `cost`), their paired `comparisons`,
the learning curves and the task's `decision:` settings. It returns the verdict as data: a `kind`,
the arms it names and typed findings with their numbers, in the order they are told; no English
(harness/verdict/text.py renders it). A difference counts by its paired interval (the 95% one stored
on each pair), never by its point estimate alone (harness/verdict/judge.py). The rules, in order:

0. A degenerate arm (one answer for at least 90% of the examples, harness/verdict/judge.py) is named
   and left out: a gain over a prompt that fails the model is no gain, and adding such an arm never
   changes the verdict. When every arm without fine-tuning is degenerate there is no fair baseline:
   not enough evidence, naming the baselines to add.
1. A strategy whose p95 latency is over the SLO is out.
2. A fine-tuned strategy is within the forgetting budget when the upper end of its general-text
   loss interval is, and out when the lower end is over. Otherwise it cannot be told: a strategy
   the rules below would recommend gets "not enough evidence" instead. One whose forgetting was
   not measured cannot be judged.
3. The best strategy without fine-tuning has the highest quality (a tie goes to the cheaper). The
   alternative to use is that one, or a cheaper one shown equivalent to it: its paired interval
   against the best lies inside +-min_gain (two one-sided tests at (1 - 0.95) / 2 each).
4. Every fine-tuned strategy against the best one, paired on the same examples (judge.gain):
   - fewer than MIN_EXAMPLES examples, or both strategies scored the same on every example (no
     detectable effect): not enough evidence;
   - significantly better (Holm), with the interval's lower end at least min_gain: fine-tune;
   - significantly worse: don't;
   - the interval inside +-min_gain (equivalent): cost decides: fine-tune only if its one-time
     cost is paid back within the payback period by requests shown cheaper than the alternative's
     (a break-even exists only when the saving's interval is above zero);
   - otherwise the interval straddles a threshold: not enough evidence, with about how many
     examples would settle it.
5. Fine-tune with the best strategy that earned it; else not enough evidence if any fine-tuned
   strategy could not be judged; else don't, and use the alternative.
6. Knowledge or format (short answers, where the lenient `contains` is measured next to the strict
   metric, its pairs in `content`):
   - knowledge: an arm with retrieval answers more questions with the gold answer (lenient,
     significant) than the best arm without it. A fine-tuned arm without retrieval that rule 4
     could not judge, and that is shown worse on content than the best arm with retrieval, did not
     learn what retrieval supplies: don't fine-tune;
   - format: the fine-tuned winner beats the best arm without fine-tuning on the strict metric but is
     not shown better on the lenient one. Then an arm with retrieval and demonstrations whose lenient
     score is shown no worse than the winner's (non-inferior by min_gain, the interval's lower end) is
     recommended instead; if the task has no such arm, the verdict says to run one first;
   - the best arm without fine-tuning on the strict metric contains the gold answer significantly
     less often than another arm without it: its lead is format, and the findings say so.

What was not run is a `missing` finding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.curves import gold, overtake_finding, plotted_curves
from harness.results import Recommendation
from harness.stats import MIN_EXAMPLES
from harness.verdict import findings as f
from harness.verdict import judge

if TYPE_CHECKING:
    from harness.config import DecisionConfig
    from harness.results import ArmResult, Comparisons, Curve, Pair


def estimate(pair: Pair, comparisons: Comparisons) -> f.Estimate:
    return f.Estimate(a=pair.a, b=pair.b, metric=comparisons.metric, n=pair.n, diff=pair.diff, ci_low=pair.ci_low,
                      ci_high=pair.ci_high, confidence=comparisons.confidence)


def paired_test(pair: Pair, comparisons: Comparisons) -> f.PairedTest:
    return f.PairedTest(name=pair.test, p_value=pair.p_value, p_holm=pair.p_holm,
                        comparisons=pair.holm_over or len(comparisons.pairs), significant=pair.significant)


def _pair(pair: Pair, comparisons: Comparisons) -> f.Pair:
    return f.Pair(estimate=estimate(pair, comparisons), test=paired_test(pair, comparisons), mde=pair.mde,
                  alpha=comparisons.alpha, power=comparisons.power)


def _quality(row: ArmResult, metric: str, confidence: float) -> f.Quality:
    q = row.metrics[metric]
    return f.Quality(arm=row.name, metric=metric, value=q.value, ci_low=q.ci_low, ci_high=q.ci_high,
                     confidence=confidence, n=row.n_examples)


def _cost(row: ArmResult) -> f.Cost:
    c = row.cost
    return f.Cost(arm=row.name, basis=c.basis, per_request_usd=c.per_request_usd, per_request_flops=c.per_request_flops,
                  monthly_usd=c.monthly_usd, monthly_requests=c.monthly_requests)


def _break_even(ft: ArmResult, alt: ArmResult, payback_months: float) -> f.BreakEven:
    c, be = ft.cost, ft.cost.break_even[alt.name]
    return f.BreakEven(arm=ft.name, against=alt.name, one_time_usd=c.one_time_usd, one_time_s=c.one_time_s,
                       one_time_flops=c.one_time_flops, saving_usd=be.saving_usd,
                       saving_usd_ci_low=be.saving_usd_ci_low, saving_usd_ci_high=be.saving_usd_ci_high,
                       requests=be.requests, months=be.months, monthly_requests=c.monthly_requests,
                       payback_months=payback_months)


def _forgetting(row: ArmResult, budget: float) -> f.Forgetting:
    g = row.forgetting
    return f.Forgetting(arm=row.name, status=g.against(budget), budget=budget, delta_loss=g.delta_loss,
                        delta_loss_ci_low=g.delta_loss_ci_low, delta_loss_ci_high=g.delta_loss_ci_high,
                        delta_qa_contains=g.delta_qa_contains, delta_qa_contains_ci_low=g.delta_qa_contains_ci_low,
                        delta_qa_contains_ci_high=g.delta_qa_contains_ci_high)


def _model_ref(row: ArmResult) -> f.ModelRef:
    return f.ModelRef(arm=row.name, model=row.model, hosted=row.usd_per_mtok is not None, params=row.model_params)


def _serving(row: ArmResult) -> tuple[str | None, bool]:
    return row.model, row.usd_per_mtok is not None


def _top(rows: list[ArmResult], metric: str) -> ArmResult | None:
    """The best of `rows` on `metric` (a tie goes to the name, so the choice is reproducible)."""
    return max(rows, key=lambda r: (r.value(metric), r.name), default=None)


def _ranked(rows: list[ArmResult], metric: str) -> list[ArmResult]:
    # Highest quality first; a tie goes to the cheaper, then to the first by name, so the order the
    # strategies are listed in never changes the verdict.
    return sorted(rows, key=lambda r: (-r.value(metric), r.cost.per_request_usd, r.name))


def _on_other_models(ft: ArmResult, alt: ArmResult, others: list[ArmResult], metric: str) -> list[ArmResult]:
    """Per model the fine-tuned arm does not run on (another local model, or a hosted one): the arm
    without fine-tuning to hold it against, the alternative if it runs there, else that model's best."""
    groups: dict[tuple[str | None, bool], list[ArmResult]] = {}
    for r in others:
        if _serving(r) != _serving(ft):
            groups.setdefault(_serving(r), []).append(r)
    return [alt if alt in group else _top(group, metric) for group in groups.values()]


def _across_models(ft: ArmResult, alt: ArmResult, comparisons: Comparisons, min_gain: float) -> f.AcrossModels:
    """A fine-tuned arm against an arm on another model (a small local model fine-tuned against a
    large hosted one): how close in quality, at what share of the cost, and when the training is
    paid back."""
    pair = comparisons.pair(alt.name, ft.name)
    outcome = judge.standing(pair.diff, pair.ci_low, pair.ci_high, pair.significant, min_gain)
    share = ft.cost.per_request_usd / alt.cost.per_request_usd if alt.cost.per_request_usd else float("inf")
    be = ft.cost.break_even.get(alt.name)
    return f.AcrossModels(arm=_model_ref(ft), against=_model_ref(alt), outcome=outcome,
                          estimate=estimate(pair, comparisons), margin=min_gain, cost_share=share,
                          break_even_requests=be.requests if be is not None else None)


def teacher(row: ArmResult) -> str | None:
    """The arm whose answers a fine-tuned row was trained on (None: the gold labels)."""
    weights = row.axes.get("weights")
    return next(iter(weights.values())).get("teacher") if isinstance(weights, dict) else None


def _distillation(student: ArmResult, rows: list[ArmResult], comparisons: Comparisons,
                  margin: float) -> f.Distillation:
    """A student against its teacher (non-inferiority within `margin`), and against the arm trained on
    the gold labels by the same method on the same model, if any."""
    taught_by = _named(rows, teacher(student))
    pair = comparisons.pair(taught_by.name, student.name)
    outcome, needed = judge.non_inferiority(pair.n, pair.diff, pair.ci_low, pair.ci_high, margin)
    base = taught_by.value(comparisons.metric)
    share = {"kept_share": None, "kept_share_ci_low": None, "kept_share_ci_high": None} if not base else {
        "kept_share": student.value(comparisons.metric) / base, "kept_share_ci_low": 1 + pair.ci_low / base,
        "kept_share_ci_high": 1 + pair.ci_high / base}
    cost, be = taught_by.cost.per_request_usd, student.cost.break_even.get(taught_by.name)
    gold = next((r for r in rows if r.fine_tuned and teacher(r) is None and r.model == student.model
                 and r.weights == student.weights and r.retrieval is None), None)
    return f.Distillation(student=student.name, teacher=taught_by.name, outcome=outcome, margin=margin,
                          estimate=estimate(pair, comparisons), examples_needed=needed, **share,
                          cost_share=student.cost.per_request_usd / cost if cost else None,
                          break_even_requests=be.requests if be is not None else None,
                          gold_arm=gold.name if gold else None,
                          gold=estimate(comparisons.pair(gold.name, student.name), comparisons) if gold else None,
                          **({"answers": student.labelling.answers, "kept": student.labelling.kept,
                              "dropped": student.labelling.dropped} if student.labelling else {}))


def _judge(ft: ArmResult, best: ArmResult, alt: ArmResult, comparisons: Comparisons,
           decision: DecisionConfig) -> f.Judgement:
    """A fine-tuned strategy against the best strategy without fine-tuning (rule 4)."""
    pair, margin = comparisons.pair(best.name, ft.name), decision.min_gain
    outcome, needed = judge.gain(pair.n, pair.diff, pair.ci_low, pair.ci_high, pair.significant, pair.mde, margin)
    paid = {}
    if outcome == "equivalent":
        be = ft.cost.break_even[alt.name]
        paid = {"alternative": alt.name, "payback_months": decision.payback_months,
                "paid_back": be.months is not None and be.months <= decision.payback_months}
    return f.Judgement(arm=ft.name, against=best.name, outcome=outcome, margin=margin,
                       estimate=estimate(pair, comparisons), min_examples=MIN_EXAMPLES, examples_needed=needed,
                       **paid)


def _earns(j: f.Judgement) -> str:
    """What a judgement means for the verdict: "fine-tune", "don't" or "unsure"."""
    if j.outcome == "better" or (j.outcome == "equivalent" and j.paid_back):
        return "fine-tune"
    return "don't" if j.outcome in ("worse", "equivalent") else "unsure"


def _alternative(others: list[ArmResult], comparisons: Comparisons,
                 min_gain: float) -> tuple[ArmResult, f.CheaperEquivalent | None]:
    """The best strategy without fine-tuning (the first of `others`, ranked), or the cheapest one
    shown equivalent to it (rule 3)."""
    best = others[0]
    as_good = [r for r in others[1:] if comparisons.pair(best.name, r.name).n >= MIN_EXAMPLES
               and judge.equivalent(comparisons.pair(best.name, r.name).ci_low,
                                    comparisons.pair(best.name, r.name).ci_high, min_gain)]
    pick = min([best, *as_good], key=lambda r: r.cost.per_request_usd)
    if pick is best:
        return best, None
    return pick, f.CheaperEquivalent(arm=pick.name, instead_of=best.name, per_request_usd=pick.cost.per_request_usd,
                                     instead_of_per_request_usd=best.cost.per_request_usd,
                                     estimate=estimate(comparisons.pair(best.name, pick.name), comparisons),
                                     margin=min_gain)


def _curves(curves: list[Curve], metric: str) -> list[f.Overtake | f.CurveListed]:
    """How much labelled data fine-tuning needs to beat in-context learning, from the curves; a
    curve that cannot answer that (no labelled-example count, or no curve of the other kind) is
    listed as it is."""
    plotted = gold(plotted_curves(curves))
    compared = plotted if any(c.fine_tuning for c in plotted) and not all(c.fine_tuning for c in plotted) else []
    out: list[f.Overtake | f.CurveListed] = [overtake_finding(compared, metric)] if compared else []
    return out + [f.CurveListed(strategy=c.strategy, param=c.param, metric=metric, labels_by=c.labels_by, points=[
        f.PointQuality(value=p.value, labelled_examples=p.labelled_examples, quality=p.metrics[metric].value,
                       ci_low=p.metrics[metric].ci_low, ci_high=p.metrics[metric].ci_high) for p in c.points])
        for c in curves if c not in compared]


def _with_demos_and_retrieval(row: ArmResult) -> bool:
    return row.retrieval is not None and bool((row.axes.get("demos") or {}).get("k"))


def _knowledge(others: list[ArmResult], content: Comparisons) -> f.KnowledgeGap | None:
    """The knowledge gap, when retrieval raises lenient correctness (rule 6)."""
    with_retrieval = _top([r for r in others if r.retrieval is not None], content.metric)
    without = _top([r for r in others if r.retrieval is None], content.metric)
    if with_retrieval is None or without is None:
        return None
    pair = content.pair(without.name, with_retrieval.name)
    if not (pair.significant and pair.ci_low > 0):
        return None
    return f.KnowledgeGap(with_retrieval=with_retrieval.name, without=without.name,
                          estimate=estimate(pair, content), test=paired_test(pair, content))


def _lacks_knowledge(ft: ArmResult, others: list[ArmResult], content: Comparisons) -> f.LacksKnowledge | None:
    """A fine-tuned arm without retrieval that loses to retrieval on content (rule 6), if it does."""
    top = _top([r for r in others if r.retrieval is not None], content.metric)
    if ft.retrieval is not None or top is None:
        return None
    pair = content.pair(top.name, ft.name)
    if not (pair.significant and pair.diff < 0):
        return None
    return f.LacksKnowledge(arm=ft.name, against=top.name, estimate=estimate(pair, content),
                            test=paired_test(pair, content))


def _format_lead(best: ArmResult, others: list[ArmResult], comparisons: Comparisons,
                 content: Comparisons) -> f.FormatLead | None:
    """When the best arm without fine-tuning on the strict metric contains the gold answer
    significantly less often than another such arm (rule 6): its lead is answer format."""
    shown = [(content.pair(best.name, r.name), r) for r in others if r is not best]
    shown = [(p, r) for p, r in shown if p.significant and p.ci_low > 0]
    if not shown:
        return None
    pair, knows = max(shown, key=lambda pr: (pr[0].diff, pr[1].name))
    return f.FormatLead(arm=best.name, other=knows.name, metric=comparisons.metric, estimate=estimate(pair, content),
                        test=paired_test(pair, content))


def _format_only(ft: ArmResult, others: list[ArmResult], comparisons: Comparisons, content: Comparisons,
                 decision: DecisionConfig) -> f.FormatGap | None:
    """When the fine-tuned winner `ft` wins on answer format alone (rule 6), with the arm with
    retrieval and demonstrations shown as good on content, if the task has one."""
    best_content = max(others, key=lambda r: (r.value(content.metric), -r.cost.per_request_usd, r.name))
    pair = content.pair(best_content.name, ft.name)
    if pair.significant and pair.diff > 0:
        return None
    strict = comparisons.pair(_top(others, comparisons.metric).name, ft.name)
    margin = decision.min_gain
    as_good = [(content.pair(ft.name, r.name), r) for r in others if _with_demos_and_retrieval(r)]
    as_good = [(p, r) for p, r in as_good if p.ci_low > -margin]
    instead = {}
    if as_good:
        p, pick = max(as_good, key=lambda pr: (pr[1].value(content.metric), pr[1].name))
        instead = {"instead": pick.name, "instead_estimate": estimate(p, content)}
    return f.FormatGap(arm=ft.name, strict=estimate(strict, comparisons), content=estimate(pair, content),
                       test=paired_test(pair, content), margin=margin, **instead)


def _constrained(row: ArmResult) -> bool:
    return bool((row.axes.get("decoding") or {}).get("json_schema"))


def _decoding_gap(ft: ArmResult, others: list[ArmResult], comparisons: Comparisons, form: Comparisons,
                  decision: DecisionConfig) -> f.FormatGap | f.FieldsLead | None:
    """Structured task, `ft` the best fine-tuned arm: when it beats the best arm decoding freely on
    the fields and the best schema-constrained arm without fine-tuning is as good on them
    (non-inferior by min_gain), the gap was format and that arm is the alternative; when it beats the
    constrained arm too, its lead is the fields themselves. None when no constrained arm ran or
    neither is shown."""
    constrained = [r for r in others if _constrained(r)]
    free = [r for r in others if not _constrained(r)]
    if not constrained:
        return None
    pick = max(constrained, key=lambda r: (r.value(comparisons.metric), -r.cost.per_request_usd, r.name))
    pair, margin = comparisons.pair(ft.name, pick.name), decision.min_gain
    if pair.significant and pair.diff < 0:
        back = comparisons.pair(pick.name, ft.name)
        return f.FieldsLead(arm=ft.name, against=pick.name, estimate=estimate(back, comparisons),
                            test=paired_test(back, comparisons))
    top = _top(free, comparisons.metric)
    beats_free = top is not None and comparisons.pair(top.name, ft.name).significant and \
        comparisons.pair(top.name, ft.name).diff > 0
    if not (beats_free and pair.ci_low > -margin):
        return None
    return f.FormatGap(arm=ft.name, strict=estimate(form.pair(top.name, ft.name), form),
                       content=estimate(comparisons.pair(pick.name, ft.name), comparisons),
                       test=paired_test(pair, comparisons), margin=margin, instead=pick.name,
                       instead_estimate=estimate(pair, comparisons), by="decoding")


def _degenerate(row: ArmResult) -> f.Degenerate | None:
    if not judge.degenerate_row(row):
        return None
    a = row.answers
    return f.Degenerate(arm=row.name, fine_tuned=row.fine_tuned, answer=a.top, count=a.count, n=row.n_examples,
                        threshold=judge.DEGENERATE_SHARE)


# When every fair baseline was run and answered one thing: demonstrations in the plain format often
# unstick a small model that a bare prompt leaves on one answer.
FALLBACK_BASELINE = {"few_shot_raw": {"demos": {"k": 4}, "prompt": {"format": "raw"}}}


def _named(rows: list[ArmResult], name: str) -> ArmResult:
    return next(r for r in rows if r.name == name)


@dataclass(frozen=True)
class _Verdict:
    kind: str
    cause: str | None = None
    best: ArmResult | None = None
    alternative: ArmResult | None = None
    subject: str | None = None


def recommend(rows: list[ArmResult], comparisons: Comparisons, curves: list[Curve], decision: DecisionConfig,
              content: Comparisons | None = None, missing_baselines: dict[str, dict] | None = None,
              form: Comparisons | None = None) -> Recommendation:
    """The verdict on rows that carry their `cost`, their paired `comparisons` and learning curves;
    `content`: the pairs on the lenient metric, when the task measures it beside a strict one;
    `missing_baselines`: the fair prompting baselines for this task that were not run (the task
    turned them off), by arm name, as task-file entries (harness/baselines.py); `form`: a structured
    task's pairs on the format measure (schema_valid), its decision metric being the fields."""
    metric, confidence = comparisons.metric, comparisons.confidence
    gaps: list[f.KnowledgeGap | f.FormatGap] = []
    told: list = []  # the findings in the order they are told, after the gaps
    missing: list[f.Missing] = []
    missing_baselines = missing_baselines or {}

    def verdict(v: _Verdict) -> Recommendation:
        return Recommendation(
            kind=v.kind, cause=v.cause, metric=metric, subject=v.subject,
            best=v.best.name if v.best else None, alternative=v.alternative.name if v.alternative else None,
            gaps=[{"knowledge_gap": "knowledge", "format_gap": "format"}[g.type] for g in gaps],
            findings=[*gaps, *told, *_curves(curves, metric), *missing])

    degenerate = [d for r in rows if (d := _degenerate(r)) is not None]
    told.extend(degenerate)
    # Students against their teachers, whatever else the verdict finds: the question distillation asks.
    told.extend(_distillation(r, rows, comparisons, decision.min_gain) for r in rows
                if r.fine_tuned and teacher(r) in {o.name for o in rows})
    if added := [r.name for r in rows if r.added_by_harness]:
        told.append(f.BaselinesAdded(arms=added))
    unfair = {d.arm for d in degenerate}
    no_fair_baseline = any(not r.fine_tuned for r in rows) and all(r.name in unfair for r in rows if not r.fine_tuned)
    if not any(r.fine_tuned for r in rows):
        missing.append(f.Missing(what="fine_tuning"))
    rows = [r for r in rows if r.name not in unfair]
    tuned = _ranked([r for r in rows if r.fine_tuned], metric)
    others = _ranked([r for r in rows if not r.fine_tuned], metric)
    ran_tuning = bool(tuned)
    if not any(r.retrieval for r in rows):
        missing.append(f.Missing(what="retrieval"))
    if missing_baselines and ran_tuning:
        missing.append(f.Missing(what="fair_baseline", suggest=missing_baselines))
    named = any("decoding" in entry for entry in (missing_baselines or {}).values())
    if form is not None and ran_tuning and not named and not any(_constrained(r) for r in rows):
        missing.append(f.Missing(what="constrained_decoding",
                                 suggest={"constrained": {"decoding": {"json_schema": True}}}))

    # 1. Latency SLO.
    slo = decision.latency_slo_ms
    if slo is not None:
        too_slow = [r for r in rows if r.latency_ms.p95 > slo]
        told.extend(f.OverSlo(arm=r.name, p95_ms=r.latency_ms.p95, slo_ms=slo) for r in too_slow)
        if too_slow and len(too_slow) == len(rows):
            return verdict(_Verdict("cannot_decide", "all_over_slo"))
        tuned = [r for r in tuned if r not in too_slow]
        others = [r for r in others if r not in too_slow]

    # 2. Forgetting budget.
    unmeasured, judged, forgetting_unsure = [], [], set()
    for r in tuned:
        if r.forgetting is None:
            unmeasured.append(r.name)
            missing.append(f.Missing(what="forgetting", arm=r.name))
            continue
        found = _forgetting(r, decision.forgetting_budget)
        told.append(found)
        if found.status != "over":
            judged.append(r)
        if found.status == "unsure":
            forgetting_unsure.add(r.name)
    tuned = judged

    # 3. The best strategy without fine-tuning, and the alternative to use.
    best = others[0] if others else None
    alt, cheaper = _alternative(others, comparisons, decision.min_gain) if others else (None, None)
    if cheaper is not None:
        told.append(cheaper)
    if content is not None and (knowledge := _knowledge(others, content)):
        gaps.append(knowledge)
    if content is not None and best is not None and (lead := _format_lead(best, others, comparisons, content)):
        told.append(lead)

    if not ran_tuning:
        if alt is not None:
            told.insert(0, _quality(alt, metric, confidence))
            told.extend(_pair(comparisons.pair(r.name, alt.name), comparisons) for r in others if r is not alt)
            told.extend([_cost(alt), f.Latency(p95_ms={alt.name: alt.latency_ms.p95}, slo_ms=slo)])
        return verdict(_Verdict("cannot_decide", "no_fine_tuning", best=alt))
    if not tuned:
        if unmeasured:
            return verdict(_Verdict("cannot_decide", "forgetting_not_measured", best=alt, subject=unmeasured[0]))
        if alt is None:
            return verdict(_Verdict("cannot_decide", "nothing_within_limits"))
        told.extend([_quality(alt, metric, confidence), _cost(alt)])
        return verdict(_Verdict("dont_fine_tune", best=alt, alternative=alt))
    if alt is None:
        ft = tuned[0]
        told.extend([_quality(ft, metric, confidence), _cost(ft)])
        if no_fair_baseline:
            # Every arm without fine-tuning answered one thing: there is no fair baseline to beat.
            if not missing_baselines:
                missing.append(f.Missing(what="fair_baseline", suggest=FALLBACK_BASELINE))
            return verdict(_Verdict("not_enough_evidence", "no_fair_baseline", best=ft, subject=ft.name))
        if not any(not r.fine_tuned for r in rows):
            return verdict(_Verdict("cannot_decide", "no_baseline", best=ft))
        # Every arm without fine-tuning is over the SLO (their findings say so): the fine-tuned one
        # wins unless its forgetting cannot be told.
        if ft.name in forgetting_unsure:
            return verdict(_Verdict("not_enough_evidence", "forgetting_unsure", best=ft, subject=ft.name))
        return verdict(_Verdict("fine_tune", best=ft))
    # 4. Every fine-tuned strategy against the best one without, on the same examples.
    judgements = [_judge(ft, best, alt, comparisons, decision) for ft in tuned]
    earned = {j.arm: _earns(j) for j in judgements}
    lacking = {}
    if gaps and gaps[0].type == "knowledge_gap":
        for j in judgements:
            if earned[j.arm] == "unsure" and (lacks := _lacks_knowledge(_named(tuned, j.arm), others, content)):
                earned[j.arm], lacking[j.arm] = "don't", lacks
    without = [best] if alt is best else [best, alt]
    told[:0] = [_quality(r, metric, confidence) for r in without]
    for j in judgements:
        ft = _named(tuned, j.arm)
        told.extend([_quality(ft, metric, confidence), _pair(comparisons.pair(best.name, ft.name), comparisons), j])
        if j.arm in lacking:
            told.append(lacking[j.arm])
        told.extend([_cost(ft), _break_even(ft, alt, decision.payback_months)])
        told.extend(_across_models(ft, other, comparisons, decision.min_gain)
                    for other in _on_other_models(ft, alt, others, metric))
    told.extend([*map(_cost, without), f.Latency(p95_ms={r.name: r.latency_ms.p95 for r in [*tuned, alt]},
                                                 slo_ms=slo)])
    for j in judgements:
        # Only a strategy that would be recommended needs its forgetting told.
        if earned[j.arm] == "fine-tune" and j.arm in forgetting_unsure:
            earned[j.arm] = "forgetting_unsure"

    # 5. The verdict: judgements are in rank order, so the first that earned one gives it.
    winners = [j for j in judgements if earned[j.arm] == "fine-tune"]
    if winners and content is not None and others:
        gap = _format_only(_named(tuned, winners[0].arm), others, comparisons, content, decision)
        if gap is not None:
            gaps.append(gap)
            if gap.instead is not None:
                pick = _named(others, gap.instead)
                return verdict(_Verdict("dont_fine_tune", best=pick, alternative=pick))
            return verdict(_Verdict("not_enough_evidence", "format_only", best=alt, alternative=alt,
                                    subject=winners[0].arm))
    decoding = _decoding_gap(tuned[0], others, comparisons, form, decision) if form is not None and others else None
    if isinstance(decoding, f.FormatGap):
        # Shown as good as the fine-tuned arm on the fields, with no training to own.
        gaps.append(decoding)
        pick = _named(others, decoding.instead)
        return verdict(_Verdict("dont_fine_tune", best=pick, alternative=pick))
    elif decoding is not None:
        told.append(decoding)
    if winners:
        return verdict(_Verdict("fine_tune", best=_named(tuned, winners[0].arm), alternative=alt))
    unsure = [j for j in judgements if earned[j.arm] in ("unsure", "forgetting_unsure")]
    if unsure:
        j = unsure[0]
        cause = "forgetting_unsure" if earned[j.arm] == "forgetting_unsure" else "examples"
        return verdict(_Verdict("not_enough_evidence", cause, best=alt, alternative=alt, subject=j.arm))
    return verdict(_Verdict("dont_fine_tune", best=alt, alternative=alt))
