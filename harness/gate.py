"""`harness gate`: may this fine-tuned checkpoint ship?

The candidate checkpoint runs on the task's eval set and forgetting probe through the same runner
and store as a compare (so a re-run with the same checkpoint reuses its run). It is paired, example
by example, with a baseline: a stored run, another checkpoint, or by default the base model
prompted zero-shot. Each rule of the task's `gate:` section (or its flag) then passes, fails or is
skipped, with the numbers that decided it.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness import registry
from harness.errors import HarnessError
from harness.format import pct, pts
from harness.results import ArmResult, GateBaseline, GateCandidate, GateResult, PairedDifference, Rule
from harness.task import GateConfig

EXIT_PASS, EXIT_REGRESSION = 0, 1


def _rule(name: str, outcome: str, threshold: float | None, observed: float | None, message: str) -> Rule:
    return Rule(name=name, outcome=outcome, threshold=threshold, observed=observed, message=message)


def evaluate_rules(rules: GateConfig, metric: str, candidate: ArmResult, baseline: ArmResult,
                   diff: PairedDifference) -> list[Rule]:
    """Every rule's outcome. `diff` is the paired difference candidate - baseline."""
    quality = candidate.metrics[metric]
    out = []

    if rules.min_quality is None:
        out.append(_rule("min_quality", "skipped", None, quality.value, "no minimum quality set"))
    else:
        ok = quality.value >= rules.min_quality
        out.append(_rule("min_quality", "pass" if ok else "fail", rules.min_quality, quality.value,
                         f"{metric} {pct(quality.value)} [95% CI {pct(quality.ci_low)}, "
                         f"{pct(quality.ci_high)}] {'>=' if ok else '<'} minimum {pct(rules.min_quality)}"))

    drop = -diff.diff
    test = "exact McNemar" if diff.test == "mcnemar_exact" else "paired permutation"
    evidence = (f"{metric} {pct(baseline.value(metric))} -> {pct(quality.value)}: "
                f"{pts(diff.diff)} points [95% CI {pts(diff.ci_low)}, {pts(diff.ci_high)}] on "
                f"{diff.n} paired examples, {test} p={diff.p_value:.3g}")
    if rules.max_drop is None:
        out.append(_rule("max_drop", "skipped", None, drop, f"no drop limit set ({evidence})"))
    else:
        significant = diff.p_value < rules.alpha
        failed = significant and drop > rules.max_drop
        if failed:
            why = f"significant drop (p < {rules.alpha:g}) larger than the {100 * rules.max_drop:.1f} points allowed"
        elif not significant:
            why = f"not significant at {rules.alpha:g}"
        else:
            why = f"within the {100 * rules.max_drop:.1f} points allowed"
        out.append(_rule("max_drop", "fail" if failed else "pass", rules.max_drop, drop, f"{evidence}: {why}"))

    forgetting = candidate.forgetting
    if rules.max_forgetting is None:
        out.append(_rule("max_forgetting", "skipped", None, forgetting.delta_loss, "no forgetting limit set"))
    else:
        ok = forgetting.delta_loss <= rules.max_forgetting
        out.append(_rule("max_forgetting", "pass" if ok else "fail", rules.max_forgetting, forgetting.delta_loss,
                         f"general-text loss {forgetting.base.loss:.3f} -> {forgetting.adapted.loss:.3f} "
                         f"nats/token ({forgetting.delta_loss:+.3f}; limit +{rules.max_forgetting:g}), "
                         f"general QA F1 {forgetting.delta_qa_f1:+.3f}"))

    p95 = candidate.latency_ms.p95
    if rules.max_latency_p95_ms is None:
        out.append(_rule("max_latency_p95_ms", "skipped", None, p95, f"no latency ceiling set (p95 {p95:.0f} ms)"))
    else:
        ok = p95 <= rules.max_latency_p95_ms
        out.append(_rule("max_latency_p95_ms", "pass" if ok else "fail", rules.max_latency_p95_ms, p95,
                         f"p95 {p95:.0f} ms {'<=' if ok else '>'} ceiling {rules.max_latency_p95_ms:.0f} ms"))
    return out


def _checkpoint_run(session, path: str | Path) -> ArmResult:
    from harness.compare import run_one

    return run_one(session, "checkpoint", registry.config_class("checkpoint")(path=str(Path(path).resolve())))


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
    return run_one(session, "zero_shot", registry.config_class("zero_shot")()), {
        "kind": "base_model", "label": f"{task.config.model} zero-shot"}


def gate(checkpoint: str | Path, task_path: str | Path, *, store_path: str | Path, baseline_run: int | None = None,
         baseline_checkpoint: str | None = None, overrides: dict | None = None, limit: int | None = None,
         progress: bool = True) -> GateResult:
    """Evaluate the checkpoint, judge every rule and record the result in the store."""
    from pydantic import ValidationError

    from harness.compare import open_session, stored_scores
    from harness.stats import paired_difference

    with open_session(task_path, limit=limit, store_path=store_path, progress=progress) as session:
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
        diff = paired_difference([a[i] for i in ids], [b[i] for i in ids], seed=task.config.seed,
                                 alpha=rules.alpha, power=task.config.decision.power)
        outcomes = evaluate_rules(rules, metric, candidate, baseline, diff)
        result = GateResult(
            task=task.config.name, task_file=str(task.path), checkpoint=str(checkpoint),
            passed=all(r.outcome != "fail" for r in outcomes), metric=metric,
            candidate=GateCandidate(run_id=candidate.run_id, reused=candidate.reused, checkpoint=candidate.checkpoint,
                                    quality=candidate.metrics[metric], latency_p95_ms=candidate.latency_ms.p95,
                                    forgetting_delta_loss=candidate.forgetting.delta_loss),
            baseline=GateBaseline(**described, run_id=baseline.run_id, quality=baseline.metrics[metric]),
            difference=diff, rules=outcomes, provenance=session.provenance)
        result.gate_id = session.store.save_gate(task.config.name, str(checkpoint), candidate.run_id,
                                                 baseline.run_id, result.passed,
                                                 result.model_dump(mode="json", exclude={"gate_id"}))
        return result


def summary_text(result: GateResult) -> list[str]:
    """One line per rule, then the verdict: what the command prints."""
    mark = {"pass": "PASS", "fail": "FAIL", "skipped": "skip"}
    lines = [f"gate: {result.checkpoint} on task '{result.task}' against {result.baseline.label}"]
    lines += [f"  {mark[r.outcome]}  {r.name}: {r.message}" for r in result.rules]
    lines.append("gate passed" if result.passed else f"gate FAILED: {', '.join(result.failed)}")
    return lines


def markdown(result: GateResult) -> str:
    """The GitHub step summary: a table of rules."""
    icon = {"pass": "✅", "fail": "❌", "skipped": "➖"}
    head = "passed" if result.passed else "FAILED"
    out = [f"### Gate {head}: `{result.checkpoint}` on task `{result.task}`", "",
           f"Baseline: {result.baseline.label}. Metric: {result.metric}.", "",
           "| rule | outcome | threshold | observed | detail |", "|---|---|---|---|---|"]
    for r in result.rules:
        threshold = "-" if r.threshold is None else f"{r.threshold:g}"
        observed = "-" if r.observed is None else f"{r.observed:.4g}"
        out.append(f"| {r.name} | {icon[r.outcome]} {r.outcome} | {threshold} | {observed} | "
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
    """One test case per rule, so CI systems list each rule with its message."""
    from junitparser import Failure, Skipped, TestCase

    cases = []
    for r in result.rules:
        case = TestCase(r.name, classname=f"gate.{result.task}")
        if r.outcome == "fail":
            case.result = [Failure(r.message)]
        elif r.outcome == "skipped":
            case.result = [Skipped(r.message)]
        else:
            case.system_out = r.message
        cases.append(case)
    _write_suite(f"harness gate: {result.task}", cases, path)


def write_junit_error(message: str, task_file: str, path: str | Path) -> None:
    """A gate that could not run (exit 2) as one errored test case."""
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
