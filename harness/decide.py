"""The recommendation: is fine-tuning worth it for this task, or does a prompting or retrieval
strategy do the job?

A pure function of the typed rows of a comparison (each with its `cost`), their paired `comparisons`,
the learning curves and the task's `decision:` settings. A difference counts by its paired interval
(the 95% one stored on each pair), never by its point estimate alone. The rules, in order:

1. A strategy whose p95 latency is over the SLO is out.
2. A fine-tuned strategy is within the forgetting budget when the upper end of its general-text
   loss interval is, and out when the lower end is over. Otherwise it cannot be told: a strategy
   the rules below would recommend gets "not enough evidence" instead. One whose forgetting was
   not measured cannot be judged.
3. The best strategy without fine-tuning has the highest quality (a tie goes to the cheaper). The
   alternative to use is that one, or a cheaper one shown equivalent to it: its paired interval
   against the best lies inside +-min_gain (two one-sided tests at (1 - 0.95) / 2 each).
4. Every fine-tuned strategy against the best one, paired on the same examples:
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
     less often than another arm without it: its lead is format, and the reasons say so.

Every reason states its numbers; what was not run is listed under `missing`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.curves import overtake_text, plotted_curves
from harness.format import pct, pts, usd
from harness.results import Recommendation
from harness.stats import MIN_EXAMPLES

if TYPE_CHECKING:
    from harness.results import ArmResult, Comparisons, Curve, Pair
    from harness.task import DecisionConfig


@dataclass
class _Judgement:
    """One fine-tuned strategy against the best strategy without fine-tuning."""

    arm: ArmResult
    outcome: str  # "fine-tune", "don't" or "unsure"
    reason: str
    verdict: str = ""  # when unsure, what the verdict says is missing


def _test_text(pair: Pair, comparisons: Comparisons) -> str:
    name = "exact McNemar" if pair.test == "mcnemar_exact" else "paired permutation"
    m = len(comparisons.pairs)
    return f"{name} p={pair.p_value:.3g} (Holm-adjusted over {m} comparison{'s' * (m != 1)}: {pair.p_holm:.3g})"


def _detectable(pair: Pair, comparisons: Comparisons) -> str:
    if pair.mde is None:
        return "every example scored the same under both"
    m = len(comparisons.pairs)
    return (f"{pair.n} examples detect differences of {100 * pair.mde:.1f} points or more "
            f"(alpha={comparisons.alpha:g}/{m}, power={comparisons.power:g})")


def _interval(pair: Pair, comparisons: Comparisons) -> str:
    level = round(100 * comparisons.confidence)
    return f"{pts(pair.diff)} points [{level}% CI {pts(pair.ci_low)}, {pts(pair.ci_high)}]"


def _difference(pair: Pair, comparisons: Comparisons) -> str:
    return (f"{pair.b} vs {pair.a}: {_interval(pair, comparisons)}, {_test_text(pair, comparisons)}; "
            f"{_detectable(pair, comparisons)}")


def _equivalent(pair: Pair, margin: float) -> bool:
    # The stored interval inside the margin is two one-sided tests at (1 - confidence) / 2 each:
    # harness.stats.tost at that alpha and the compare's seed decides the same on the same interval.
    return -margin < pair.ci_low and pair.ci_high < margin


def _tost_text(pair: Pair, comparisons: Comparisons, margin: float) -> str:
    alpha = (1 - comparisons.confidence) / 2
    return (f"TOST: {pair.b} vs {pair.a} {_interval(pair, comparisons)} lies within {100 * margin:.1f} points "
            f"either way (two one-sided tests at alpha={alpha:.3g} each)")


def _quality_text(row: ArmResult, metric: str) -> str:
    q = row.metrics[metric]
    return (f"quality: {row.name} {pct(q.value)} {metric} [95% CI {pct(q.ci_low)}, "
            f"{pct(q.ci_high)}] on {row.n_examples} examples")


def _cost_text(row: ArmResult) -> str:
    c = row.cost
    flops = f" ({c.per_request_flops:.3g} FLOPs each)" if c.per_request_flops is not None else ""
    return (f"cost ({c.basis.replace('_', '-')}): {row.name} {usd(1000 * c.per_request_usd)} per 1,000 "
            f"requests{flops}, {usd(c.monthly_usd)}/month at "
            f"{c.monthly_requests:,} requests")


def _latency_text(rows: list[ArmResult], slo: float | None) -> str:
    ceiling = f"SLO {slo:.0f} ms" if slo is not None else "no SLO set"
    return "latency p95: " + ", ".join(f"{r.name} {r.latency_ms.p95:.0f} ms" for r in rows) + f" ({ceiling})"


def _break_even_text(ft: ArmResult, alt: ArmResult, payback_months: float) -> str:
    c, be = ft.cost, ft.cost.break_even[alt.name]
    one_time = (f"{ft.name} one-time {usd(c.one_time_usd)} ({c.one_time_s:.0f} s of training, "
                f"{c.one_time_flops:.3g} FLOPs)")
    saving = f"{ft.name} saves {usd(1000 * be.saving_usd)} per 1,000 requests against {alt.name}"
    if be.saving_usd_ci_low is not None:
        saving += f" [95% CI {usd(1000 * be.saving_usd_ci_low)}, {usd(1000 * be.saving_usd_ci_high)}]"
    if be.requests is None:
        return f"{one_time}; no saving shown: {saving}, so it is never paid back"
    return (f"{one_time}; {saving}: paid back after {be.requests:,.0f} requests, {be.months:.2g} months at "
            f"{c.monthly_requests:,}/month (payback period {payback_months:g} months)")


def _model_text(row: ArmResult) -> str:
    where = "hosted" if row.usd_per_mtok is not None else "local"
    size = f", {row.model_params / 1e6:.0f}M parameters" if row.model_params else ""
    return f"{row.name} ({row.model}, {where}{size})"


def _serving(row: ArmResult) -> tuple[str | None, bool]:
    return row.model, row.usd_per_mtok is not None


def _on_other_models(ft: ArmResult, alt: ArmResult, others: list[ArmResult], metric: str) -> list[ArmResult]:
    """Per model the fine-tuned arm does not run on (another local model, or a hosted one): the arm
    without fine-tuning to hold it against, the alternative if it runs there, else that model's best."""
    groups: dict[tuple[str | None, bool], list[ArmResult]] = {}
    for r in others:
        if _serving(r) != _serving(ft):
            groups.setdefault(_serving(r), []).append(r)
    return [alt if alt in group else _top(group, metric) for group in groups.values()]


def _across_models(ft: ArmResult, alt: ArmResult, comparisons: Comparisons, min_gain: float) -> str:
    """A fine-tuned arm against an arm on another model (a small local model fine-tuned against a
    large hosted one): how close in quality, at what share of the cost, and when the training is
    paid back."""
    pair, margin = comparisons.pair(alt.name, ft.name), f"{100 * min_gain:.1f} points"
    shown = f"{pair.b} vs {pair.a} {_interval(pair, comparisons)}"
    as_good = True
    if pair.significant and pair.ci_low > 0:
        quality = f"beats {alt.name} ({shown})"
    elif _equivalent(pair, min_gain):
        quality = f"matches {alt.name} within {margin} ({shown}, TOST)"
    elif pair.ci_low > -min_gain:
        quality = f"is at most {margin} worse than {alt.name} ({shown}: non-inferior, the interval's lower end)"
    else:
        as_good = False
        quality = (f"is behind {alt.name} ({shown})" if pair.significant and pair.diff < 0
                   else f"is not shown to be as good as {alt.name} ({shown})")
    share = ft.cost.per_request_usd / alt.cost.per_request_usd if alt.cost.per_request_usd else math.inf
    text = f"models: {_model_text(ft)} {quality}, at {100 * share:.0f}% of {_model_text(alt)}'s cost per request"
    if not as_good:
        return text
    be = ft.cost.break_even.get(alt.name)
    return text + (f"; break-even after {be.requests:,.0f} requests" if be is not None and be.requests is not None
                   else "; no saving per request is shown, so no break-even")


def _forgetting(row: ArmResult, budget: float) -> tuple[str, str]:
    """("within", "over" or "unsure", the reason) for a fine-tuned row whose forgetting was measured."""
    f = row.forgetting
    status = f.against(budget)
    note = {"within": "", "over": ": over budget",
            "unsure": ": the interval straddles it, more probe text would tell"}[status]
    return status, (f"forgetting: {row.name} changes loss on general text by {f.delta_loss:+.3f} nats/token "
                    f"[95% CI {f.delta_loss_ci_low:+.3f}, {f.delta_loss_ci_high:+.3f}] (budget {budget:.3f}{note}), "
                    f"general questions answered by {pts(f.delta_qa_contains)} points [95% CI "
                    f"{pts(f.delta_qa_contains_ci_low)}, {pts(f.delta_qa_contains_ci_high)}]")


def _too_few(pair: Pair) -> tuple[str, str] | None:
    """(the reason, what the verdict says is missing) when the pair cannot be judged on these examples
    at all, else None."""
    if pair.n < MIN_EXAMPLES:
        return (f"evidence: {pair.b} and {pair.a} share {pair.n} scored examples, fewer than the {MIN_EXAMPLES} "
                f"the intervals need", f"{pair.n} eval examples, at least {MIN_EXAMPLES} needed")
    if pair.mde is None and not pair.significant:
        return (f"evidence: {pair.b} and {pair.a} each scored the same on all {pair.n} examples, so no "
                f"difference between them can be estimated",
                f"{pair.b} and {pair.a} each scored the same on all {pair.n} eval examples; a harder or more "
                f"varied eval set is needed")
    return None


def _examples_needed(pair: Pair, min_gain: float) -> int | None:
    """About how many paired examples would settle the pair if the difference held at its estimate:
    the interval narrows as 1/sqrt(n) until it clears the nearest threshold (lower end over min_gain,
    the whole interval inside +-min_gain, or upper end below zero). None when the estimate sits on
    min_gain, where no number of examples settles it."""
    d, half = pair.diff, (pair.ci_high - pair.ci_low) / 2
    slack = max(d - min_gain, min_gain - abs(d), -d)
    if math.isclose(slack, 0.0, abs_tol=1e-9):
        return None
    # The examples scored did not settle it, so fewer cannot.
    return max(pair.n + 1, math.ceil(pair.n * (half / slack) ** 2))


def _judge(ft: ArmResult, best: ArmResult, alt: ArmResult, comparisons: Comparisons,
           decision: DecisionConfig) -> _Judgement:
    """A fine-tuned strategy against the best strategy without fine-tuning (rule 4)."""
    pair, min_gain = comparisons.pair(best.name, ft.name), decision.min_gain
    minimum = f"the {100 * min_gain:.1f}-point minimum worth having"
    too_few = _too_few(pair)
    if too_few is not None:
        return _Judgement(ft, "unsure", *too_few)
    if pair.significant and pair.ci_low >= min_gain:
        return _Judgement(ft, "fine-tune", f"gain: {ft.name} beats {best.name} by at least {pts(pair.ci_low)} points "
                                           f"(the interval's lower end), at least {minimum}")
    if pair.significant and pair.diff < 0:
        return _Judgement(ft, "don't", f"{ft.name} is significantly worse than {best.name} by "
                                       f"{100 * -pair.diff:.1f} points")
    if _equivalent(pair, min_gain):
        be = ft.cost.break_even[alt.name]
        paid_back = be.months is not None and be.months <= decision.payback_months
        return _Judgement(ft, "fine-tune" if paid_back else "don't",
                          f"no worthwhile difference: {_tost_text(pair, comparisons, min_gain)}, so cost decides: "
                          f"{ft.name} is {'' if paid_back else 'not '}paid back against {alt.name} within "
                          f"{decision.payback_months:g} months")
    needed = _examples_needed(pair, min_gain)
    if needed is None:
        return _Judgement(ft, "unsure", f"evidence: {ft.name} vs {best.name} {_interval(pair, comparisons)} sits on "
                                        f"{minimum}; more examples decide it only if the difference moves",
                          f"the difference sits on the {100 * min_gain:.1f}-point minimum gain")
    return _Judgement(ft, "unsure", f"evidence: {ft.name} vs {best.name} {_interval(pair, comparisons)} shows "
                                    f"neither a gain of {minimum}, nor a difference within it either way, nor a "
                                    f"loss; about {needed:,} eval examples would settle it if the difference held, "
                                    f"{needed - pair.n:,} more than the {pair.n} scored",
                      f"about {needed - pair.n:,} more eval examples needed")


def _ranked(rows: list[ArmResult], metric: str) -> list[ArmResult]:
    # Highest quality first; a tie goes to the cheaper, then to the first by name, so the order the
    # strategies are listed in never changes the verdict.
    return sorted(rows, key=lambda r: (-r.value(metric), r.cost.per_request_usd, r.name))


def _alternative(others: list[ArmResult], comparisons: Comparisons, min_gain: float,
                 reasons: list[str]) -> ArmResult:
    """The best strategy without fine-tuning (the first of `others`, ranked), or the cheapest one
    shown equivalent to it (rule 3)."""
    best = others[0]
    as_good = [r for r in others[1:] if _too_few(comparisons.pair(best.name, r.name)) is None
               and _equivalent(comparisons.pair(best.name, r.name), min_gain)]
    pick = min([best, *as_good], key=lambda r: r.cost.per_request_usd)
    if pick is not best:
        reasons.append(f"{pick.name} is as good as {best.name} and cheaper ({usd(1000 * pick.cost.per_request_usd)} "
                       f"vs {usd(1000 * best.cost.per_request_usd)} per 1,000 requests): "
                       f"{_tost_text(comparisons.pair(best.name, pick.name), comparisons, min_gain)}")
    return pick


def _curves_text(curves: list[Curve], metric: str) -> list[str]:
    """How much labelled data fine-tuning needs to beat in-context learning, from the curves; a
    curve that cannot answer that (no labelled-example count, or no curve of the other kind) is
    listed as it is."""
    plotted = plotted_curves(curves)
    compared = plotted if any(c.fine_tuning for c in plotted) and not all(c.fine_tuning for c in plotted) else []
    out = ["learning curves: " + overtake_text(compared, metric)] if compared else []
    return out + [f"learning curve {c.strategy}: " + ", ".join(f"{c.param}={p.value} {pct(p.metrics[metric].value)}"
                                                               for p in c.points) for c in curves if c not in compared]


def _with_demos_and_retrieval(row: ArmResult) -> bool:
    return row.retrieval is not None and bool((row.axes.get("demos") or {}).get("k"))


def _lenient_text(pair: Pair, content: Comparisons) -> str:
    return f"{pair.b} vs {pair.a} on {content.metric}: {_interval(pair, content)}"


def _top(rows: list[ArmResult], metric: str) -> ArmResult | None:
    """The best of `rows` on `metric` (a tie goes to the name, so the choice is reproducible)."""
    return max(rows, key=lambda r: (r.value(metric), r.name), default=None)


def _knowledge(others: list[ArmResult], content: Comparisons) -> str | None:
    """The knowledge gap's reason, when retrieval raises lenient correctness (rule 6)."""
    with_retrieval = _top([r for r in others if r.retrieval is not None], content.metric)
    without = _top([r for r in others if r.retrieval is None], content.metric)
    if with_retrieval is None or without is None:
        return None
    pair = content.pair(without.name, with_retrieval.name)
    if not (pair.significant and pair.ci_low > 0):
        return None
    return (f"gap: knowledge. Retrieval supplies facts the model lacks: answers containing the gold answer, "
            f"{_lenient_text(pair, content)}, {_test_text(pair, content)}")


def _lacks_knowledge(ft: ArmResult, others: list[ArmResult], content: Comparisons) -> str | None:
    """The reason a fine-tuned arm without retrieval loses to retrieval on content (rule 6), if it does."""
    top = _top([r for r in others if r.retrieval is not None], content.metric)
    if ft.retrieval is not None or top is None:
        return None
    pair = content.pair(top.name, ft.name)
    if not (pair.significant and pair.diff < 0):
        return None
    return (f"knowledge: {ft.name} has no retrieval and contains the gold answer less often than {top.name}: "
            f"{_lenient_text(pair, content)}, {_test_text(pair, content)}; fine-tuning did not supply the facts "
            f"retrieval does")


def _format_lead(best: ArmResult, others: list[ArmResult], comparisons: Comparisons,
                 content: Comparisons) -> str | None:
    """When the best arm without fine-tuning on the strict metric contains the gold answer
    significantly less often than another such arm (rule 6): its lead is answer format."""
    shown = [(content.pair(best.name, r.name), r) for r in others if r is not best]
    shown = [(p, r) for p, r in shown if p.significant and p.ci_low > 0]
    if not shown:
        return None
    pair, knows = max(shown, key=lambda pr: (pr[0].diff, pr[1].name))
    return (f"format: {best.name} leads on {comparisons.metric}, but {knows.name} contains the gold answer more "
            f"often: {_lenient_text(pair, content)}, {_test_text(pair, content)}; {best.name}'s lead is answer "
            f"format: {knows.name}'s answers hold the gold answer more often, but not in the form "
            f"{comparisons.metric} scores")


def _format_only(ft: ArmResult, others: list[ArmResult], comparisons: Comparisons, content: Comparisons,
                 decision: DecisionConfig) -> tuple[str, ArmResult | None] | None:
    """When the fine-tuned winner `ft` wins on answer format alone (rule 6): the reason, and the arm
    with retrieval and demonstrations shown as good on content (None if the task has none that is)."""
    best_content = max(others, key=lambda r: (r.value(content.metric), -r.cost.per_request_usd, r.name))
    pair = content.pair(best_content.name, ft.name)
    if pair.significant and pair.diff > 0:
        return None
    strict = comparisons.pair(_top(others, comparisons.metric).name, ft.name)
    reason = (f"gap: format. {ft.name} wins on {comparisons.metric} ({_interval(strict, comparisons)}) but not on "
              f"answers containing the gold answer: {_lenient_text(pair, content)}, {_test_text(pair, content)}")
    margin = decision.min_gain
    as_good = [(content.pair(ft.name, r.name), r) for r in others if _with_demos_and_retrieval(r)]
    as_good = [(p, r) for p, r in as_good if p.ci_low > -margin]
    if not as_good:
        return reason, None
    p, pick = max(as_good, key=lambda pr: (pr[1].value(content.metric), pr[1].name))
    return (reason + f"; {pick.name} (retrieval and demonstrations) is as good on content: {_lenient_text(p, content)}, "
                     f"the interval's lower end above -{100 * margin:.1f} points (non-inferiority)"), pick


def recommend(rows: list[ArmResult], comparisons: Comparisons, curves: list[Curve],
              decision: DecisionConfig, content: Comparisons | None = None) -> Recommendation:
    """The verdict on rows that carry their `cost`, their paired `comparisons` and learning curves;
    `content`: the pairs on the lenient metric, when the task measures it beside a strict one."""
    metric = comparisons.metric
    reasons: list[str] = []
    missing: list[str] = []
    gaps: dict[str, str] = {}  # the kind of gap -> its reason, told first

    def verdict(text: str, best: ArmResult | None) -> Recommendation:
        return Recommendation(verdict=text, best_strategy=best.name if best else None, metric=metric,
                              reasons=[*gaps.values(), *reasons, *_curves_text(curves, metric)], missing=missing,
                              gaps=list(gaps))

    tuned = _ranked([r for r in rows if r.fine_tuned], metric)
    others = _ranked([r for r in rows if not r.fine_tuned], metric)
    ran_tuning = bool(tuned)
    if not ran_tuning:
        missing.append("fine-tuning: no strategy with a training run (e.g. lora)")
    if not any(r.retrieval for r in rows):
        missing.append("retrieval: no strategy with a retrieval index (e.g. rag)")

    # 1. Latency SLO.
    slo = decision.latency_slo_ms
    if slo is not None:
        too_slow = [r for r in rows if r.latency_ms.p95 > slo]
        for r in too_slow:
            reasons.append(f"latency: {r.name} p95 {r.latency_ms.p95:.0f} ms is over the {slo:.0f} ms SLO")
        if len(too_slow) == len(rows):
            return verdict(f"cannot decide: no strategy meets the {slo:.0f} ms latency SLO", None)
        tuned = [r for r in tuned if r not in too_slow]
        others = [r for r in others if r not in too_slow]

    # 2. Forgetting budget.
    unmeasured, judged, forgetting_unsure = [], [], set()
    for r in tuned:
        if r.forgetting is None:
            unmeasured.append(r.name)
            missing.append(f"forgetting of {r.name}: not measured")
            continue
        status, reason = _forgetting(r, decision.forgetting_budget)
        reasons.append(reason)
        if status != "over":
            judged.append(r)
        if status == "unsure":
            forgetting_unsure.add(r.name)
    tuned = judged

    # 3. The best strategy without fine-tuning, and the alternative to use.
    best = others[0] if others else None
    alt = _alternative(others, comparisons, decision.min_gain, reasons) if others else None
    if content is not None and (knowledge := _knowledge(others, content)):
        gaps["knowledge"] = knowledge
    if content is not None and best is not None and (lead := _format_lead(best, others, comparisons, content)):
        reasons.append(lead)

    if not ran_tuning:
        reasons.insert(0, _quality_text(alt, metric))
        reasons.extend(_difference(comparisons.pair(r.name, alt.name), comparisons) for r in others if r is not alt)
        reasons.extend([_cost_text(alt), _latency_text([alt], slo)])
        return verdict(f"cannot decide: no fine-tuning strategy was run (best without it: {alt.name})", alt)
    if not tuned:
        if alt is None:
            return verdict("cannot decide: no strategy is within both the latency SLO and the forgetting budget", None)
        if unmeasured:
            return verdict(f"cannot decide: forgetting was not measured for {', '.join(unmeasured)}", alt)
        reasons.extend([_quality_text(alt, metric), _cost_text(alt)])
        return verdict(f"don't fine-tune: use {alt.name}", alt)
    if alt is None:
        ft = tuned[0]
        reasons.extend([_quality_text(ft, metric), _cost_text(ft)])
        if all(r.fine_tuned for r in rows):
            return verdict("cannot decide: no prompting or retrieval strategy was run to compare against", ft)
        judgements = [_Judgement(ft, "fine-tune", f"every strategy without fine-tuning is over the {slo:.0f} ms SLO")]
        reasons.append(judgements[0].reason)
    else:
        # 4. Every fine-tuned strategy against the best one without, on the same examples.
        judgements = [_judge(ft, best, alt, comparisons, decision) for ft in tuned]
        for j in judgements:
            lacks = _lacks_knowledge(j.arm, others, content) if "knowledge" in gaps and j.outcome == "unsure" else None
            if lacks:
                j.outcome, j.reason = "don't", f"{j.reason}; {lacks}"
        without = [best] if alt is best else [best, alt]
        reasons[:0] = [_quality_text(r, metric) for r in without]
        for j in judgements:
            reasons.extend([_quality_text(j.arm, metric), _difference(comparisons.pair(best.name, j.arm.name),
                                                                      comparisons), j.reason,
                            _cost_text(j.arm), _break_even_text(j.arm, alt, decision.payback_months)])
            reasons.extend(_across_models(j.arm, other, comparisons, decision.min_gain)
                           for other in _on_other_models(j.arm, alt, others, metric))
        reasons.extend([*map(_cost_text, without), _latency_text([*tuned, alt], slo)])
    for j in judgements:
        # Only a strategy that would be recommended needs its forgetting told.
        if j.outcome == "fine-tune" and j.arm.name in forgetting_unsure:
            j.outcome = "unsure"
            j.verdict = (f"whether {j.arm.name} forgets more than the {decision.forgetting_budget:.3f} nats/token "
                         f"budget cannot be told")

    # 5. The verdict: judgements are in rank order, so the first that earned one gives it.
    winners = [j for j in judgements if j.outcome == "fine-tune"]
    if winners and content is not None and others:
        found = _format_only(winners[0].arm, others, comparisons, content, decision)
        if found is not None:
            gaps["format"], pick = found
            if pick is not None:
                return verdict(f"don't fine-tune: use {pick.name}", pick)
            return verdict(f"not enough evidence: {winners[0].arm.name} wins on answer format only; run an arm with "
                           f"retrieval and demonstrations (context: retrieval, demos: {{k: 4}}) before fine-tuning",
                           alt)
    if winners:
        return verdict("fine-tune", winners[0].arm)
    unsure = [j for j in judgements if j.outcome == "unsure"]
    if unsure:
        return verdict(f"not enough evidence: {unsure[0].verdict}", alt)
    return verdict(f"don't fine-tune: use {alt.name}", alt)
