"""The one place the verdict becomes English: its sentence, one line per finding, and what was not
run. The terminal, the Markdown/HTML report, the dashboard and the gate's summary all read these
lines, so a figure reads the same wherever it is shown."""

from __future__ import annotations

import json
import re
from functools import singledispatch

from harness.format import pct, pts, usd
from harness.results import Recommendation
from harness.verdict import findings as f


def paired_test_name(test: str) -> str:
    return "exact McNemar" if test == "mcnemar_exact" else "paired permutation"


def _level(confidence: float) -> int:
    return round(100 * confidence)


def _interval(e: f.Estimate) -> str:
    return f"{pts(e.diff)} points [{_level(e.confidence)}% CI {pts(e.ci_low)}, {pts(e.ci_high)}]"


def _test(t: f.PairedTest) -> str:
    m = t.comparisons
    return (f"{paired_test_name(t.name)} p={t.p_value:.3g} (Holm-adjusted over {m} comparison{'s' * (m != 1)}: "
            f"{t.p_holm:.3g})")


def _lenient(e: f.Estimate) -> str:
    return f"{e.b} vs {e.a} on {e.metric}: {_interval(e)}"


def _tost(e: f.Estimate, margin: float) -> str:
    alpha = (1 - e.confidence) / 2
    return (f"TOST: {e.b} vs {e.a} {_interval(e)} lies within {100 * margin:.1f} points either way (two one-sided "
            f"tests at alpha={alpha:.3g} each)")


def _minimum(margin: float) -> str:
    return f"the {100 * margin:.1f}-point minimum worth having"


def _model(m: f.ModelRef) -> str:
    size = f", {m.params / 1e6:.0f}M parameters" if m.params else ""
    return f"{m.arm} ({m.model}, {'hosted' if m.hosted else 'local'}{size})"


def _quality_of(p: f.PointQuality) -> str:
    return f"{pct(p.quality)}"


@singledispatch
def line(finding) -> str:
    """One finding as one line of the verdict's reasons."""
    raise TypeError(f"no text for {type(finding).__name__}")


@line.register
def _(q: f.Quality) -> str:
    return (f"quality: {q.arm} {pct(q.value)} {q.metric} [{_level(q.confidence)}% CI {pct(q.ci_low)}, "
            f"{pct(q.ci_high)}] on {q.n} examples")


@line.register
def _(p: f.Pair) -> str:
    e, m = p.estimate, p.test.comparisons
    detectable = ("every example scored the same under both" if p.mde is None else
                  f"{e.n} examples detect differences of {100 * p.mde:.1f} points or more "
                  f"(alpha={p.alpha:g}/{m}, power={p.power:g})")
    return f"{e.b} vs {e.a}: {_interval(e)}, {_test(p.test)}; {detectable}"


@line.register
def _(j: f.Judgement) -> str:
    e = j.estimate
    if j.outcome == "too_few":
        return (f"evidence: {e.b} and {e.a} share {e.n} scored examples, fewer than the {j.min_examples} the "
                f"intervals need")
    if j.outcome == "no_variation":
        return (f"evidence: {e.b} and {e.a} each scored the same on all {e.n} examples, so no difference between "
                f"them can be estimated")
    if j.outcome == "better":
        return (f"gain: {j.arm} beats {j.against} by at least {pts(e.ci_low)} points (the interval's lower end), "
                f"at least {_minimum(j.margin)}")
    if j.outcome == "worse":
        return f"{j.arm} is significantly worse than {j.against} by {100 * -e.diff:.1f} points"
    if j.outcome == "equivalent":
        return (f"no worthwhile difference: {_tost(e, j.margin)}, so cost decides: {j.arm} is "
                f"{'' if j.paid_back else 'not '}paid back against {j.alternative} within {j.payback_months:g} months")
    if j.examples_needed is None:
        return (f"evidence: {j.arm} vs {j.against} {_interval(e)} sits on {_minimum(j.margin)}; more examples "
                f"decide it only if the difference moves")
    return (f"evidence: {j.arm} vs {j.against} {_interval(e)} shows neither a gain of {_minimum(j.margin)}, nor a "
            f"difference within it either way, nor a loss; about {j.examples_needed:,} eval examples would settle "
            f"it if the difference held, {j.examples_needed - e.n:,} more than the {e.n} scored")


@line.register
def _(g: f.Forgetting) -> str:
    note = {"within": "", "over": ": over budget",
            "unsure": ": the interval straddles it, more probe text would tell"}[g.status]
    return (f"forgetting: {g.arm} changes loss on general text by {g.delta_loss:+.3f} nats/token "
            f"[95% CI {g.delta_loss_ci_low:+.3f}, {g.delta_loss_ci_high:+.3f}] (budget {g.budget:.3f}{note}), "
            f"general questions answered by {pts(g.delta_qa_contains)} points [95% CI "
            f"{pts(g.delta_qa_contains_ci_low)}, {pts(g.delta_qa_contains_ci_high)}]")


@line.register
def _(c: f.Cost) -> str:
    flops = f" ({c.per_request_flops:.3g} FLOPs each)" if c.per_request_flops is not None else ""
    return (f"cost ({c.basis.replace('_', '-')}): {c.arm} {usd(1000 * c.per_request_usd)} per 1,000 "
            f"requests{flops}, {usd(c.monthly_usd)}/month at {c.monthly_requests:,} requests")


@line.register
def _(b: f.BreakEven) -> str:
    one_time = (f"{b.arm} one-time {usd(b.one_time_usd)} ({b.one_time_s:.0f} s of training, "
                f"{b.one_time_flops:.3g} FLOPs)")
    ci = (b.saving_usd_ci_low, b.saving_usd_ci_high)
    # Every request dearer (a longer prompt, a bigger model): said as a cost, not as a negative saving.
    if (b.saving_usd_ci_high if b.saving_usd_ci_high is not None else b.saving_usd) < 0:
        extra = f" [95% CI {usd(-1000 * ci[1])}, {usd(-1000 * ci[0])}]" if ci[0] is not None else ""
        return (f"{one_time}; {b.arm} costs {usd(-1000 * b.saving_usd)} more per 1,000 requests than "
                f"{b.against}{extra}, so it is never paid back")
    saving = f"{b.arm} saves {usd(1000 * b.saving_usd)} per 1,000 requests against {b.against}"
    if ci[0] is not None:
        saving += f" [95% CI {usd(1000 * ci[0])}, {usd(1000 * ci[1])}]"
    if b.requests is None:
        return f"{one_time}; no saving shown: {saving}, so it is never paid back"
    return (f"{one_time}; {saving}: paid back after {b.requests:,.0f} requests, {b.months:.2g} months at "
            f"{b.monthly_requests:,}/month (payback period {b.payback_months:g} months)")


@line.register
def _(lat: f.Latency) -> str:
    ceiling = f"SLO {lat.slo_ms:.0f} ms" if lat.slo_ms is not None else "no SLO set"
    return "latency p95: " + ", ".join(f"{arm} {p95:.0f} ms" for arm, p95 in lat.p95_ms.items()) + f" ({ceiling})"


@line.register
def _(o: f.OverSlo) -> str:
    return f"latency: {o.arm} p95 {o.p95_ms:.0f} ms is over the {o.slo_ms:.0f} ms SLO"


@line.register
def _(c: f.CheaperEquivalent) -> str:
    return (f"{c.arm} is as good as {c.instead_of} and cheaper ({usd(1000 * c.per_request_usd)} vs "
            f"{usd(1000 * c.instead_of_per_request_usd)} per 1,000 requests): {_tost(c.estimate, c.margin)}")


@line.register
def _(m: f.AcrossModels) -> str:
    other, margin = m.against.arm, f"{100 * m.margin:.1f} points"
    shown = f"{m.estimate.b} vs {m.estimate.a} {_interval(m.estimate)}"
    quality = {
        "better": f"beats {other} ({shown})",
        "equivalent": f"matches {other} within {margin} ({shown}, TOST)",
        "non_inferior": f"is at most {margin} worse than {other} ({shown}: non-inferior, the interval's lower end)",
        "worse": f"is behind {other} ({shown})",
        "undecided": f"is not shown to be as good as {other} ({shown})",
    }[m.outcome]
    text = f"models: {_model(m.arm)} {quality}, at {100 * m.cost_share:.0f}% of {_model(m.against)}'s cost per request"
    if m.outcome in ("worse", "undecided"):
        return text
    return text + (f"; break-even after {m.break_even_requests:,.0f} requests" if m.break_even_requests is not None
                   else "; no saving per request is shown, so no break-even")


@line.register
def _(d: f.Distillation) -> str:
    shown = {"non_inferior": f"shown to lose at most {100 * d.margin:.1f} points against its teacher",
             "inferior": f"shown worse than its teacher by more than {100 * d.margin:.1f} points",
             "undecided": "neither shown within nor beyond the margin" + (
                 f" (about {d.examples_needed:,} paired examples would settle it)" if d.examples_needed else ""),
             "too_few": "on too few examples to judge"}[d.outcome]
    kept = ("" if d.kept_share is None else
            f"keeps {pct(d.kept_share)} of {d.teacher}'s quality [{_level(d.estimate.confidence)}% CI "
            f"{pct(d.kept_share_ci_low)}, {pct(d.kept_share_ci_high)}], ")
    cost = "" if d.cost_share is None else f", at {pct(d.cost_share)} of its cost per request"
    if d.break_even_requests is not None:
        cost += f"; its labelling and training pay back after {d.break_even_requests:,.0f} requests"
    gold = "" if d.gold is None else (f"; against {d.gold_arm}, trained on the gold labels: {_interval(d.gold)} "
                                      f"(what the labels were worth)")
    filtered = "" if d.kept is None or d.kept == d.answers else (
        f" ({d.kept:,} of {d.answers:,} kept; dropped: "
        + ", ".join(f"{n:,} {_DROPPED[reason]}" for reason, n in sorted(d.dropped.items())) + ")")
    return (f"distillation: {d.student}, trained on {d.teacher}'s answers{filtered}, {kept}{_interval(d.estimate)}: "
            f"{shown}{cost}{gold}")


_DROPPED = {"empty": "empty", "no_label": "outside the task's answers", "low_confidence": "below min_confidence"}


@line.register
def _(k: f.KnowledgeGap) -> str:
    return (f"gap: knowledge. Retrieval supplies facts the model lacks: answers containing the gold answer, "
            f"{_lenient(k.estimate)}, {_test(k.test)}")


@line.register
def _(k: f.LacksKnowledge) -> str:
    return (f"knowledge: {k.arm} has no retrieval and contains the gold answer less often than {k.against}: "
            f"{_lenient(k.estimate)}, {_test(k.test)}; fine-tuning did not supply the facts retrieval does")


@line.register
def _(g: f.FormatGap) -> str:
    if g.by == "decoding":
        return (f"gap: format. {g.arm} wins on {g.content.metric}, but {g.instead}, decoding under the schema without "
                f"fine-tuning, is as good on the fields: {_lenient(g.instead_estimate)}, the interval's lower end "
                f"above -{100 * g.margin:.1f} points (non-inferiority); {g.arm}'s lead over the best arm without "
                f"fine-tuning on {g.strict.metric} (format): {_interval(g.strict)}")
    text = (f"gap: format. {g.arm} wins on {g.strict.metric} ({_interval(g.strict)}) but not on answers containing "
            f"the gold answer: {_lenient(g.content)}, {_test(g.test)}")
    if g.instead is None:
        return text
    return (text + f"; {g.instead} (retrieval and demonstrations) is as good on content: "
                   f"{_lenient(g.instead_estimate)}, the interval's lower end above -{100 * g.margin:.1f} points "
                   f"(non-inferiority)")


@line.register
def _(g: f.FieldsLead) -> str:
    return (f"fields: {g.arm} beats {g.against}, the best arm decoding under the schema, on the fields themselves: "
            f"{_lenient(g.estimate)}, {_test(g.test)}; fine-tuning adds content, not only format")


@line.register
def _(g: f.FormatLead) -> str:
    return (f"format: {g.arm} leads on {g.metric}, but {g.other} contains the gold answer more often: "
            f"{_lenient(g.estimate)}, {_test(g.test)}; {g.arm}'s lead is answer format: {g.other}'s answers hold the "
            f"gold answer more often, but not in the form {g.metric} scores")


def overtake_sentence(o: f.Overtake) -> str:
    """Where fine-tuning overtakes in-context learning, or why nothing shows it."""
    if o.outcome == "no_fine_tuning_curve":
        return "No fine-tuning learning curve, so nothing shows where fine-tuning overtakes in-context learning."
    if o.outcome == "no_in_context_curve":
        return "No in-context learning curve, so nothing shows where fine-tuning overtakes in-context learning."

    def quality(p: f.PointQuality) -> str:
        return f"{pct(p.quality)} {o.metric} [95% CI {pct(p.ci_low)}, {pct(p.ci_high)}]"

    against = f"the best in-context result ({o.best_curve} {o.best_param}={o.best.value}: {quality(o.best)})"
    if o.outcome == "never":
        return f"Fine-tuning never overtakes {against}, up to {o.most_labelled:,} labelled examples."
    at = f"at {o.point.labelled_examples:,} labelled examples ({o.param}={o.point.value}: {quality(o.point)})"
    if o.clear:
        return f"{o.curve} overtakes {against} {at}, its 95% interval entirely above."
    return (f"{o.curve} overtakes {against} {at} on point estimate only: the 95% intervals overlap at every number "
            f"of labelled examples tried.")


@line.register
def _(o: f.Overtake) -> str:
    return "learning curves: " + overtake_sentence(o)


@line.register
def _(c: f.CurveListed) -> str:
    if c.labels_by:
        return (f"learning curve {c.strategy}, on {c.labels_by}'s answers: " + ", ".join(
            f"{p.labelled_examples:,} answers {_quality_of(p)}" for p in c.points))
    return f"learning curve {c.strategy}: " + ", ".join(f"{c.param}={p.value} {_quality_of(p)}" for p in c.points)


@line.register
def _(d: f.Degenerate) -> str:
    return (f"degenerate: {d.arm} answers '{d.answer}' for {d.count} of {d.n} examples ({pct(d.count / d.n)}, at "
            f"least {pct(d.threshold)}), so no gain is measured against it")


@line.register
def _(b: f.BaselinesAdded) -> str:
    return (f"baselines: {', '.join(b.arms)} added by the harness, the fairest prompts the task file lacked "
            f"(decision.baselines: none turns this off)")


def _entry(entry) -> str:
    """A task-file entry in YAML's flow style: {prompt: {format: raw}}."""
    if isinstance(entry, dict):
        return "{" + ", ".join(f"{k}: {_entry(v)}" for k, v in entry.items()) + "}"
    # A string other than a bare word as YAML's double-quoted scalar: a template's braces and newlines
    # on one line.
    if entry is None or isinstance(entry, bool) or (isinstance(entry, str) and not re.fullmatch(r"[\w.-]+", entry)):
        return json.dumps(entry)
    return str(entry)


def missing_line(m: f.Missing) -> str:
    """What was not run, as the "not run" lines say it."""
    if m.what == "fine_tuning":
        return "fine-tuning: no strategy with a training run (e.g. lora)"
    if m.what == "retrieval":
        return "retrieval: no strategy with a retrieval index (e.g. rag)"
    if m.what == "forgetting":
        return f"forgetting of {m.arm}: not measured"
    if m.what == "constrained_decoding":
        return ("constrained decoding: no arm generates under the schema (`constrained: {decoding: {json_schema: "
                "true}}`), the alternative to fine-tuning for format")
    arms = ", ".join(f"`{name}: {_entry(entry)}`" for name, entry in m.suggest.items())
    return f"fair baseline: {arms} (the prompting arms a fine-tuned arm should be held against)"


def sentence(rec: Recommendation) -> str:
    """The verdict in one line: its kind, and what it names."""
    by_type = {}
    for x in rec.findings:
        by_type.setdefault(x.type, []).append(x)
    if rec.kind == "fine_tune":
        return "fine-tune"
    if rec.kind == "dont_fine_tune":
        return f"don't fine-tune: use {rec.alternative}"
    if rec.kind == "cannot_decide":
        return "cannot decide: " + {
            "all_over_slo": lambda: f"no strategy meets the {by_type['over_slo'][0].slo_ms:.0f} ms latency SLO",
            "nothing_within_limits": lambda: "no strategy is within both the latency SLO and the forgetting budget",
            "forgetting_not_measured": lambda: "forgetting was not measured for " + ", ".join(
                m.arm for m in by_type["missing"] if m.what == "forgetting"),
            "no_fine_tuning": lambda: _no_fine_tuning(by_type) + (
                f" (best without it: {rec.best})" if rec.best else ""),
            "no_baseline": lambda: "no prompting or retrieval strategy was run to compare against",
        }[rec.cause]()
    return "not enough evidence: " + _what_is_missing(rec, by_type)


def _no_fine_tuning(by_type: dict) -> str:
    failed = [d.arm for d in by_type.get("degenerate", []) if d.fine_tuned]
    if failed:
        return (f"no fine-tuned arm does the task: {', '.join(failed)} answer{'s' * (len(failed) == 1)} one thing for "
                f"nearly every example")
    return "no fine-tuning strategy was run"


def _what_is_missing(rec: Recommendation, by_type: dict) -> str:
    if rec.cause == "forgetting_unsure":
        g = next(x for x in by_type["forgetting"] if x.arm == rec.subject)
        return f"whether {g.arm} forgets more than the {g.budget:.3f} nats/token budget cannot be told"
    if rec.cause == "format_only":
        return (f"{rec.subject} wins on answer format only; run an arm with retrieval and demonstrations (context: "
                f"retrieval, demos: {{k: 4}}) before fine-tuning")
    if rec.cause == "no_fair_baseline":
        add = next(m for m in by_type["missing"] if m.what == "fair_baseline")
        return (f"every arm without fine-tuning gives one answer for nearly every example, so {rec.subject} has no "
                f"fair baseline to beat; add {', '.join(add.suggest)}")
    j = next(x for x in by_type["judgement"] if x.arm == rec.subject)
    e = j.estimate
    if j.outcome == "too_few":
        return f"{e.n} eval examples, at least {j.min_examples} needed"
    if j.outcome == "no_variation":
        return (f"{e.b} and {e.a} each scored the same on all {e.n} eval examples; a harder or more varied eval set "
                f"is needed")
    if j.examples_needed is None:
        return f"the difference sits on the {100 * j.margin:.1f}-point minimum gain"
    return f"about {j.examples_needed - e.n:,} more eval examples needed"


def explain(rec: Recommendation) -> Recommendation:
    """The recommendation with its English filled in from its findings."""
    return rec.model_copy(update={
        "verdict": sentence(rec), "best_strategy": rec.best,
        "reasons": [line(x) for x in rec.findings if not isinstance(x, f.Missing)],
        "missing": [missing_line(x) for x in rec.findings if isinstance(x, f.Missing)]})
