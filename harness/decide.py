"""The recommendation: is fine-tuning worth it for this task, or does a prompting or retrieval
strategy do the job?

A pure function of the typed rows of a comparison (each with its `cost`), their paired `comparisons`,
the learning curves and the task's `decision:` settings. The rules, in order:

1. A strategy whose p95 latency is over the SLO is out.
2. A fine-tuned strategy whose loss on general text rose by more than the forgetting budget is
   out; one whose forgetting was not measured cannot be judged.
3. The alternative is the best strategy without fine-tuning, or a cheaper one that is not
   significantly worse than it.
4. The best fine-tuned strategy against that alternative, paired on the same examples:
   - significantly better by at least the minimum worthwhile gain: fine-tune;
   - significantly worse: don't;
   - no significant difference, and the eval set is too small to detect the minimum gain:
     not enough evidence, with the number of examples that would do;
   - otherwise (a real but small gain, or no worthwhile difference): fine-tune only if its
     one-time cost is paid back by cheaper requests within the payback period.

Every reason states its numbers; what was not run is listed under `missing`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from harness.format import pct, pts, usd
from harness.results import Recommendation

if TYPE_CHECKING:
    from harness.results import ArmResult, Comparisons, Curve, CurvePoint, Pair
    from harness.task import DecisionConfig


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


def _difference(pair: Pair, comparisons: Comparisons) -> str:
    level = round(100 * comparisons.confidence)
    return (f"{pair.b} vs {pair.a}: {pts(pair.diff)} points [{level}% CI {pts(pair.ci_low)}, "
            f"{pts(pair.ci_high)}], {_test_text(pair, comparisons)}; {_detectable(pair, comparisons)}")


def _quality_text(row: ArmResult, metric: str) -> str:
    q = row.metrics[metric]
    return (f"quality: {row.name} {pct(q.value)} {metric} [95% CI {pct(q.ci_low)}, "
            f"{pct(q.ci_high)}] on {row.n_examples} examples")


def _cost_text(row: ArmResult) -> str:
    c = row.cost
    return (f"cost ({c.basis.replace('_', '-')}): {row.name} {usd(1000 * c.per_request_usd)} per 1,000 "
            f"requests ({c.per_request_flops:.3g} FLOPs each), {usd(c.monthly_usd)}/month at "
            f"{c.monthly_requests:,} requests")


def _latency_text(rows: list[ArmResult], slo: float | None) -> str:
    ceiling = f"SLO {slo:.0f} ms" if slo is not None else "no SLO set"
    return "latency p95: " + ", ".join(f"{r.name} {r.latency_ms.p95:.0f} ms" for r in rows) + f" ({ceiling})"


def _break_even_text(ft: ArmResult, alt: ArmResult, payback_months: float) -> str:
    c = ft.cost
    one_time = (f"{ft.name} one-time {usd(c.one_time_usd)} ({c.one_time_s:.0f} s of training, "
                f"{c.one_time_flops:.3g} FLOPs)")
    be = c.break_even[alt.name]
    if be.requests is None:
        return (f"{one_time}; never paid back: its requests cost {usd(1000 * c.per_request_usd)} per 1,000, "
                f"{alt.name}'s {usd(1000 * alt.cost.per_request_usd)}")
    return (f"{one_time}; paid back after {be.requests:,.0f} requests, {be.months:.2g} months at "
            f"{c.monthly_requests:,}/month (payback period {payback_months:g} months)")


def _alternative(rows: list[ArmResult], comparisons: Comparisons, metric: str, reasons: list[str]) -> ArmResult:
    """The best strategy without fine-tuning, or the cheapest one not significantly worse than it."""
    best = max(rows, key=lambda r: r.value(metric))
    as_good = [best] + [r for r in rows if r is not best and not comparisons.pair(best.name, r.name).significant]
    pick = min(as_good, key=lambda r: r.cost.per_request_usd)
    if pick is not best:
        pair = comparisons.pair(best.name, pick.name)
        reasons.append(f"{pick.name} is not significantly worse than {best.name} ({pts(pair.diff)} points, "
                       f"Holm p={pair.p_holm:.3g}) and costs {usd(1000 * pick.cost.per_request_usd)} "
                       f"vs {usd(1000 * best.cost.per_request_usd)} per 1,000 requests")
    return pick


def _curves_text(curves: list[Curve], metric: str) -> list[str]:
    """How much labelled data fine-tuning needs to beat in-context learning, from the curves."""
    def q(point: CurvePoint) -> float:
        return point.metrics[metric].value

    tuned = [c for c in curves if c.fine_tuning]
    in_context = [(c, p) for c in curves if not c.fine_tuning for p in c.points]
    if not (tuned and in_context):
        return [f"learning curve {c.strategy}: " + ", ".join(f"{c.param}={p.value} {pct(q(p))}" for p in c.points)
                for c in curves]
    icl_curve, icl = max(in_context, key=lambda cp: q(cp[1]))
    best_icl = f"the best in-context result ({icl_curve.strategy} {icl_curve.param}={icl.value}: {pct(q(icl))})"
    out = []
    for c in tuned:
        points = sorted(c.points, key=lambda p: p.labelled_examples)
        wins = [p for p in points if q(p) > q(icl)]
        if wins:
            out.append(f"learning curves: {c.strategy} beats {best_icl} from {wins[0].labelled_examples} "
                       f"labelled examples ({pct(q(wins[0]))})")
        else:
            out.append(f"learning curves: {c.strategy} stays below {best_icl} up to "
                       f"{points[-1].labelled_examples} labelled examples ({pct(q(points[-1]))})")
    return out


def recommend(rows: list[ArmResult], comparisons: Comparisons, curves: list[Curve],
              decision: DecisionConfig) -> Recommendation:
    """The verdict on rows that carry their `cost`, their paired `comparisons` and learning curves."""
    metric = comparisons.metric
    reasons: list[str] = []
    missing: list[str] = []

    def verdict(text: str, best: ArmResult | None) -> Recommendation:
        return Recommendation(verdict=text, best_strategy=best.name if best else None, metric=metric,
                              reasons=reasons + _curves_text(curves, metric), missing=missing)

    tuned = [r for r in rows if r.fine_tuned]
    others = [r for r in rows if not r.fine_tuned]
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
    unmeasured, within = [], []
    for r in tuned:
        f = r.forgetting
        if f is None:
            unmeasured.append(r.name)
            missing.append(f"forgetting of {r.name}: not measured")
            continue
        over = f.delta_loss > decision.forgetting_budget
        reasons.append(f"forgetting: {r.name} changes loss on general text by {f.delta_loss:+.3f} nats/token "
                       f"(budget {decision.forgetting_budget:.3f}{': over budget' if over else ''}), "
                       f"general-question F1 by {pts(f.delta_qa_f1)} points")
        if not over:
            within.append(r)
    tuned = within

    # 3. The alternative without fine-tuning.
    alt = _alternative(others, comparisons, metric, reasons) if others else None

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
    ft = max(tuned, key=lambda r: r.value(metric))
    if alt is None:
        reasons.extend([_quality_text(ft, metric), _cost_text(ft)])
        if not all(r.fine_tuned for r in rows):  # every alternative was over the latency SLO
            return verdict("fine-tune", ft)
        return verdict("cannot decide: no prompting or retrieval strategy was run to compare against", ft)

    # 4. Fine-tuning against the alternative, on the same examples.
    pair = comparisons.pair(alt.name, ft.name)
    gain, min_gain = pair.diff, decision.min_gain
    reasons[:0] = [_quality_text(ft, metric), _quality_text(alt, metric), _difference(pair, comparisons)]
    reasons.extend([_cost_text(ft), _cost_text(alt), _break_even_text(ft, alt, decision.payback_months),
                    _latency_text([ft, alt], slo)])
    if pair.significant and gain >= min_gain:
        reasons.append(f"gain {pts(gain)} points is significant and at least the {100 * min_gain:.1f}-point "
                       f"minimum worth having")
        return verdict("fine-tune", ft)
    if pair.significant and gain < 0:
        reasons.append(f"{ft.name} is significantly worse by {100 * -gain:.1f} points")
        return verdict(f"don't fine-tune: use {alt.name}", alt)
    if not pair.significant and pair.mde is not None and pair.mde > min_gain:
        needed = math.ceil(pair.n * (pair.mde / min_gain) ** 2)
        reasons.append(f"evidence: detecting the {100 * min_gain:.1f}-point minimum gain needs about {needed:,} "
                       f"eval examples, {needed - pair.n:,} more than the {pair.n} scored")
        return verdict(f"not enough evidence: about {needed - pair.n:,} more eval examples needed", alt)
    if pair.significant:
        reasons.append(f"gain {pts(gain)} points is real but below the {100 * min_gain:.1f}-point minimum "
                       f"worth having, so cost decides")
    else:
        reasons.append(f"no worthwhile difference: the eval set would detect {100 * min_gain:.1f} points "
                       f"and found none, so cost decides")
    months = ft.cost.break_even[alt.name].months
    if months is not None and months <= decision.payback_months:
        return verdict("fine-tune", ft)
    return verdict(f"don't fine-tune: use {alt.name}", alt)
