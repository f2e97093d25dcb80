"""`harness gate`: may this fine-tuned checkpoint ship?

The candidate checkpoint runs on the task's eval set and forgetting probe through the same runner
and store as a compare (so a re-run with the same checkpoint reuses its run). It is paired, example
by example, with a baseline: a stored run, another checkpoint, or by default the base model
prompted zero-shot. Each rule of the task's `gate:` section (or its flag) then passes, fails, is
inconclusive or is skipped, with the numbers that decided it.

A rule on a measured difference passes only when its interval shows the candidate is within the
limit, and fails only when it shows the candidate is beyond it: too few examples to tell is
inconclusive, never a pass, so a small eval set cannot wave a regression through.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.armspec import parse_arm
from harness.baselines import on_model
from harness.config import GateConfig
from harness.errors import HarnessError
from harness.format import pct, pts
from harness.results import (
    ArmResult,
    Forgetting,
    GateBaseline,
    GateCandidate,
    GateResult,
    PairedDifference,
    Provenance,
    Rule,
)
from harness.verdict.judge import answer_spread, degenerate, non_inferiority
from harness.verdict.text import paired_test_name

# How a gate's outcome reads wherever it is shown (printed, step summary, dashboard): what needs
# attention in capitals.
WORD = {"pass": "passed", "fail": "FAILED", "inconclusive": "INCONCLUSIVE"}
ICON = {"pass": "✅", "fail": "❌", "inconclusive": "❔", "skipped": "➖"}


def _rule(name: str, outcome: str, threshold: float | None, observed: float | None, message: str) -> Rule:
    return Rule(name=name, outcome=outcome, threshold=threshold, observed=observed, message=message)


def _drop_rule(rules: GateConfig, metric: str, candidate: ArmResult, baseline: ArmResult, diff: PairedDifference,
               baseline_scores: Sequence[float], candidate_scores: Sequence[float], seed: int,
               degenerate_baseline: bool) -> Rule:
    """Non-inferiority: the candidate must be shown to lose no more than `max_drop`."""
    from harness.stats import MIN_EXAMPLES, paired_bootstrap_ci

    evidence = (f"{metric} {pct(baseline.value(metric))} -> {pct(candidate.value(metric))}: "
                f"{pts(diff.diff)} points [95% CI {pts(diff.ci_low)}, {pts(diff.ci_high)}] on "
                f"{diff.n} paired examples, {paired_test_name(diff.test)} p={diff.p_value:.3g}")
    if rules.max_drop is None:
        return _rule("max_drop", "skipped", None, -diff.diff, f"no drop limit set ({evidence})")
    margin, alpha = rules.max_drop, rules.alpha
    if degenerate_baseline:
        return _rule("max_drop", "inconclusive", margin, -diff.diff,
                     f"{evidence}; the baseline answers one thing for nearly every example under every fair prompt, "
                     f"so no drop against it shows anything: name a baseline that does the task (--baseline or "
                     f"--baseline-checkpoint)")
    # Each end of a two-sided interval at 1 - 2 alpha is a one-sided (1 - alpha) bound.
    low, high = paired_bootstrap_ci(baseline_scores, candidate_scores, seed, confidence=1 - 2 * alpha)
    allowed = f"the {100 * margin:.1f} points allowed"
    outcome, needed = non_inferiority(diff.n, diff.diff, low, high, margin)
    if outcome == "too_few":
        result, why = "inconclusive", (f"lower bound {pts(low)} >= {pts(-margin)}, but on {diff.n} paired examples "
                                       f"the interval cannot be trusted to show it; at least {MIN_EXAMPLES} needed")
    elif outcome == "non_inferior":
        result, why = "pass", f"lower bound {pts(low)} >= {pts(-margin)}: shown to lose at most {allowed}"
    elif outcome == "inferior":
        result, why = "fail", f"upper bound {pts(high)} < {pts(-margin)}: shown to lose more than {allowed}"
    else:
        settle = ("the estimate sits on the margin, so more examples decide it only if the difference moves"
                  if needed is None else
                  f"about {needed:,} paired examples would decide it if the difference held at {pts(diff.diff)} points")
        result, why = "inconclusive", (f"bounds {pts(low)} and {pts(high)} straddle {pts(-margin)}: not shown to lose "
                                       f"at most {allowed}, nor more; {settle}")
    return _rule("max_drop", result, margin, -diff.diff, f"{evidence}; one-sided {100 * (1 - alpha):g}% {why}")


def _forgetting_rule(rules: GateConfig, f: Forgetting) -> Rule:
    """The rise in general-text loss, judged on its interval like the drop."""
    if rules.max_forgetting is None:
        return _rule("max_forgetting", "skipped", None, f.delta_loss, "no forgetting limit set")
    limit = rules.max_forgetting
    outcome, why = {"within": ("pass", "the interval is within the limit"),
                    "over": ("fail", "the interval is above the limit"),
                    "unsure": ("inconclusive", "the interval straddles the limit; more probe text (forgetting.text) "
                                               "narrows it")}[f.against(limit)]
    return _rule("max_forgetting", outcome, limit, f.delta_loss,
                 f"general-text loss {f.base.loss:.3f} -> {f.adapted.loss:.3f} nats/token ({f.delta_loss:+.3f} "
                 f"[95% CI {f.delta_loss_ci_low:+.3f}, {f.delta_loss_ci_high:+.3f}]; limit +{limit:g}), "
                 f"general questions answered {pts(f.delta_qa_contains)} points: {why}")


def evaluate_rules(rules: GateConfig, metric: str, candidate: ArmResult, baseline: ArmResult,
                   diff: PairedDifference, *, baseline_scores: Sequence[float], candidate_scores: Sequence[float],
                   seed: int, degenerate_baseline: bool = False) -> list[Rule]:
    """Every rule's outcome. The scores are per example, paired in order; `diff` is their paired
    difference candidate - baseline (`harness.stats.paired_difference`); `seed` is the task's."""
    quality = candidate.metrics[metric]
    out = []

    if rules.min_quality is None:
        out.append(_rule("min_quality", "skipped", None, quality.value, "no minimum quality set"))
    else:
        ok = quality.value >= rules.min_quality
        out.append(_rule("min_quality", "pass" if ok else "fail", rules.min_quality, quality.value,
                         f"{metric} {pct(quality.value)} [95% CI {pct(quality.ci_low)}, "
                         f"{pct(quality.ci_high)}] {'>=' if ok else '<'} minimum {pct(rules.min_quality)}"))

    out.append(_drop_rule(rules, metric, candidate, baseline, diff, baseline_scores, candidate_scores, seed,
                          degenerate_baseline))
    out.append(_forgetting_rule(rules, candidate.forgetting))

    p95 = candidate.latency_ms.p95
    if rules.max_latency_p95_ms is None:
        out.append(_rule("max_latency_p95_ms", "skipped", None, p95, f"no latency ceiling set (p95 {p95:.0f} ms)"))
    else:
        ok = p95 <= rules.max_latency_p95_ms
        out.append(_rule("max_latency_p95_ms", "pass" if ok else "fail", rules.max_latency_p95_ms, p95,
                         f"p95 {p95:.0f} ms {'<=' if ok else '>'} ceiling {rules.max_latency_p95_ms:.0f} ms"))
    return out


def verdict(rules: list[Rule]) -> str:
    """The gate's outcome: fail when any rule fails, else inconclusive when any rule is, else pass."""
    outcomes = {r.outcome for r in rules}
    return "fail" if "fail" in outcomes else "inconclusive" if "inconclusive" in outcomes else "pass"


def _checkpoint_run(session, path: str | Path) -> ArmResult:
    from harness.compare import run_one

    return run_one(session, parse_arm("checkpoint", {"path": str(Path(path).resolve())}, session.task.config,
                                      "gate"))


def _baseline(session, baseline_run: int | None, baseline_checkpoint: str | None) -> tuple[ArmResult, dict]:
    """The baseline's report row and a description of it."""
    from harness.compare import run_one

    task, store = session.task, session.store
    if baseline_run is not None:
        try:
            run = store.run(baseline_run)
        except KeyError:
            raise HarnessError("--baseline", f"no run {baseline_run} in {store.path}") from None
        if run["task"] != task.config.name or run["status"] != "finished" or not run["summary"]:
            raise HarnessError("--baseline", f"run {baseline_run} is a {run['status']} run of task "
                                             f"'{run['task']}'; name a finished run of '{task.config.name}'")
        return ArmResult.model_validate(run["summary"]), {"kind": "run",
                                                          "label": f"run {baseline_run} ({run['strategy']})"}
    if baseline_checkpoint is not None:
        return _checkpoint_run(session, baseline_checkpoint), {"kind": "checkpoint", "label": str(baseline_checkpoint)}
    zero_shot = run_one(session, parse_arm("zero_shot", {}, task.config, "gate"))
    described = {"kind": "base_model", "label": f"{task.config.model} zero-shot"}
    if not _degenerate(session, zero_shot):
        return zero_shot, described
    # The zero-shot prompt leaves the model on one answer: a drop against it shows nothing, so the
    # candidate is held against the best fair baseline that does answer (harness/baselines.py).
    fair = [run_one(session, spec) for spec in on_model(task.config, task.config.model, {"zero_shot"}, "gate")]
    fair = [r for r in fair if not _degenerate(session, r)]
    metric = task.config.decision.metric or task.config.metric_names[0]
    if not fair:
        return zero_shot, {**described, "degenerate": True}
    best = max(fair, key=lambda r: (r.value(metric), r.name))
    return best, {"kind": "base_model", "label": f"{task.config.model} {best.name} ({best.made_of}), the fairest "
                                                 f"prompt: zero-shot answers one thing"}


def _degenerate(session, row: ArmResult) -> bool:
    examples = session.store.examples(row.run_id)
    _, count, gold = answer_spread((e["prediction"] for e in examples), (e["target"] for e in examples))
    return degenerate(count, gold, len(examples))


def judge(rules: GateConfig, metric: str, candidate: ArmResult, baseline: ArmResult, described: dict,
          baseline_scores: Sequence[float], candidate_scores: Sequence[float], *, seed: int, power: float,
          task: str, task_file: str, checkpoint: str, provenance: Provenance) -> GateResult:
    """The gate's result for a candidate and its baseline, scored on the same examples (paired in order)."""
    from harness.stats import paired_difference

    diff = paired_difference(baseline_scores, candidate_scores, seed=seed, alpha=rules.alpha, power=power)
    outcomes = evaluate_rules(rules, metric, candidate, baseline, diff, baseline_scores=baseline_scores,
                              candidate_scores=candidate_scores, seed=seed,
                              degenerate_baseline=described.get("degenerate", False))
    outcome = verdict(outcomes)
    return GateResult(
        task=task, task_file=task_file, checkpoint=checkpoint, passed=outcome == "pass", outcome=outcome,
        metric=metric,
        candidate=GateCandidate(run_id=candidate.run_id, reused=candidate.reused, checkpoint=candidate.checkpoint,
                                quality=candidate.metrics[metric], latency_p95_ms=candidate.latency_ms.p95,
                                forgetting_delta_loss=candidate.forgetting.delta_loss),
        baseline=GateBaseline(**described, run_id=baseline.run_id, quality=baseline.metrics[metric]),
        difference=diff, rules=outcomes, provenance=provenance)


def gate(checkpoint: str | Path, task_path: str | Path, *, store_path: str | Path, baseline_run: int | None = None,
         baseline_checkpoint: str | None = None, overrides: dict | None = None, limit: int | None = None,
         progress: bool = True, mlflow: str | None = None, tracked: dict | None = None) -> GateResult:
    """Evaluate the checkpoint, judge every rule and record the result in the store; then, with tracking
    on, log it to MLflow as a run (its URL into `tracked`). A tracking server that fails raises
    TrackingError carrying the stored result."""
    from pydantic import ValidationError

    from harness.compare import open_session, stored_scores

    with open_session(task_path, limit=limit, store_path=store_path, progress=progress, mlflow=mlflow) as session:
        task = session.task
        try:
            rules = GateConfig.model_validate({**task.config.gate.model_dump(), **(overrides or {})})
        except ValidationError as e:
            err = e.errors()[0]
            raise HarnessError(f"--{str(err['loc'][0]).replace('_', '-')}", err["msg"]) from None
        metric = rules.metric or task.config.metric_names[0]
        candidate = _checkpoint_run(session, checkpoint)
        baseline, described = _baseline(session, baseline_run, baseline_checkpoint)

        a = stored_scores(session.store, baseline.run_id, metric)
        b = stored_scores(session.store, candidate.run_id, metric)
        ids = sorted(a.keys() & b.keys())
        if len(ids) < len(b):
            raise HarnessError("--baseline", f"{described['label']} scored {len(ids)} of the candidate's {len(b)} "
                                             "eval examples; run the baseline on the same eval set (and --limit)")
        result = judge(rules, metric, candidate, baseline, described, [a[i] for i in ids], [b[i] for i in ids],
                       seed=task.config.seed, power=task.config.decision.power, task=task.config.name,
                       task_file=str(task.path), checkpoint=str(checkpoint), provenance=session.provenance)
        result.gate_id = session.store.save_gate(task.config.name, str(checkpoint), candidate.run_id,
                                                 baseline.run_id, result.passed,
                                                 result.model_dump(mode="json", exclude={"gate_id"}))
        if session.tracking is not None:
            from harness.tracking import Tracker, TrackingError

            tracker = None
            try:
                tracker = Tracker(session.tracking)
                run_id = tracker.log_gate(result)
            except TrackingError as e:
                raise TrackingError(e.where, f"{e.message}; the gate result is stored as gate result "
                                             f"{result.gate_id} in {store_path}", report=result) from None
            finally:
                if tracker is not None:
                    tracker.close()
            if tracked is not None:
                tracked.update(run=tracker.url(run_id))
        return result


def summary_text(result: GateResult) -> list[str]:
    """One line per rule, then the verdict: what the command prints."""
    mark = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "skipped": "skip"}
    lines = [f"gate: {result.checkpoint} on task '{result.task}' against {result.baseline.label}"]
    lines += [f"  {mark[r.outcome]}  {r.name}: {r.message}" for r in result.rules]
    last = f"gate {WORD[result.outcome]}"
    if result.outcome == "fail":
        last += f": {', '.join(result.failed)}"
        if result.inconclusive:
            last += f" (inconclusive: {', '.join(result.inconclusive)})"
    elif result.outcome == "inconclusive":
        last += f": {', '.join(result.inconclusive)}"
    lines.append(last)
    return lines


def markdown(result: GateResult) -> str:
    """The GitHub step summary: a table of rules."""
    out = [f"### Gate {WORD[result.outcome]}: `{result.checkpoint}` on task `{result.task}`", "",
           f"Baseline: {result.baseline.label}. Metric: {result.metric}.", "",
           "| rule | outcome | threshold | observed | detail |", "|---|---|---|---|---|"]
    for r in result.rules:
        threshold = "-" if r.threshold is None else f"{r.threshold:g}"
        observed = "-" if r.observed is None else f"{r.observed:.4g}"
        out.append(f"| {r.name} | {ICON[r.outcome]} {r.outcome} | {threshold} | {observed} | "
                   f"{r.message.replace('|', '/')} |")
    return "\n".join(out) + "\n"


def _write_suite(name: str, cases, path: str | Path) -> None:
    from junitparser import JUnitXml, TestSuite

    suite = TestSuite(name)
    for case in cases:
        suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    xml.write(str(path), pretty=True)


def write_junit(result: GateResult, path: str | Path) -> None:
    """One test case per rule, so CI systems list each rule with its message. An inconclusive rule is
    an error of type "inconclusive": neither a pass nor a regression."""
    from junitparser import Error, Failure, Skipped, TestCase

    cases = []
    for r in result.rules:
        case = TestCase(r.name, classname=f"gate.{result.task}")
        if r.outcome == "fail":
            case.result = [Failure(r.message)]
        elif r.outcome == "inconclusive":
            case.result = [Error(r.message, type_="inconclusive")]
        elif r.outcome == "skipped":
            case.result = [Skipped(r.message)]
        else:
            case.system_out = r.message
        cases.append(case)
    _write_suite(f"harness gate: {result.task}", cases, path)


def write_junit_error(message: str, task_file: str, path: str | Path) -> None:
    """A gate that could not run (exit 2 or 4) as one errored test case."""
    from junitparser import Error, TestCase

    case = TestCase("gate", classname=f"gate.{Path(task_file).stem}")
    case.result = [Error(message)]
    _write_suite("harness gate", [case], path)


def append_step_summary(result: GateResult) -> str | None:
    """Append to $GITHUB_STEP_SUMMARY when GitHub Actions set it; returns the path written."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown(result))
    return path
