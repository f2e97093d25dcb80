"""`harness compare`: validate everything, then run each arm through the runner into the store.

Order matters for "nothing half-written": the task, its data, its metrics and the model are all
checked before the store is opened."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.arm import build
from harness.armspec import SHORTHANDS, ArmSpec, parse_arm
from harness.cost import add_costs
from harness.data import TaskData, config_fingerprint, load_data
from harness.decide import recommend
from harness.errors import HarnessError
from harness.forgetting import ForgettingMeter, unchanged
from harness.measure import latency_mean_ci, peak_memory_mb, provenance, timer
from harness.metrics import LENIENT, MetricError, load_metric
from harness.backends import Backend, HostedModel, Model, load_backend, model_key, model_label
from harness.results import (ArmResult, Assumptions, Comparisons, ComparisonReport, Curve, CurvePoint, Forgetting,
                             Provenance)
from harness.prompting import scoring
from harness.runner import calibration, run_strategy
from harness.stats import CONFIDENCE, bootstrap_ci, paired_comparisons
from harness.store import Store
from harness.task import LoadedTask, load_task


# Bumped whenever a stored row's fields or the way one is measured change.
ROW_SCHEMA = 3


def _percentile(values, q):
    import numpy as np

    return float(np.percentile(values, q)) if values else 0.0


def summarise(task, name: str, run_id: int, examples: list[dict], extra: dict) -> ArmResult:
    """The report row of one strategy, computed from its stored examples (so a resumed run and a
    fresh one summarise identically)."""
    cfg = task.config
    metrics = {}
    for m in cfg.metric_names:
        values = [e["scores"][m] for e in examples]
        lo, hi = bootstrap_ci(values, cfg.seed)
        metrics[m] = {"value": sum(values) / len(values), "ci_low": lo, "ci_high": hi}
    headline = cfg.metric_names[0]
    latencies = [e["latency_ms"] for e in examples]
    latency_low, latency_high = latency_mean_ci(latencies, cfg.seed, CONFIDENCE)
    n = len(examples)
    return ArmResult.model_validate({
        "name": name,
        "run_id": run_id,
        "n_examples": n,
        "quality": {"metric": headline, **metrics[headline]},
        "metrics": metrics,
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95),
                       "mean": sum(latencies) / n, "mean_ci_low": latency_low, "mean_ci_high": latency_high},
        "throughput_eps": n / (sum(latencies) / 1000) if sum(latencies) else None,
        "tokens": {"prompt_mean": sum(e["prompt_tokens"] for e in examples) / n,
                   "output_mean": sum(e["output_tokens"] for e in examples) / n,
                   # A store older than the prefix cache has no such column: nothing was cached then.
                   "cached_mean": sum(e.get("cached_tokens", 0) for e in examples) / n},
        **extra,
    })


@dataclass
class Session:
    """Everything one compare shares across its arm runs: each model is loaded once."""

    task: LoadedTask
    data: TaskData
    backend: Backend  # the task's model
    store: Store
    provenance: Provenance
    arms: list[ArmSpec] = field(default_factory=list)
    force: bool = False
    progress: bool = True

    _backends: dict[str, Backend] = field(default_factory=dict)
    # Runs finished by this session: with --force, a later arm of the same configuration reuses
    # the run just made instead of replacing it under the earlier arm's row.
    _finished: set[str] = field(default_factory=set)
    _forgetting: dict[str, ForgettingMeter] = field(default_factory=dict)

    def backend_for(self, model: Model) -> Backend:
        if model == self.task.config.model:
            return self.backend
        if model not in self._backends:
            self._backends[model] = load_backend(model, self.task.path.parent)
        return self._backends[model]

    @property
    def task_config(self) -> dict:
        # Prices, decision thresholds and learning curves change no run's results, so they stay out
        # of the run key: editing them reuses every stored run. So does the overflow rule: a prompt
        # it would refuse never runs, and one it cuts is cut the same way either way.
        # Unset, `prompt.scoring` follows the model (its backend's capabilities, which the model's own
        # entry identifies): leaving it out keeps the keys of runs stored before it existed.
        prompt = {"overflow"} | ({"scoring"} if self.task.config.prompt.scoring is None else set())
        dumped = self.task.config.model_dump(mode="json", exclude={"description": True, "strategies": True,
                                                                    "cost": True, "decision": True,
                                                                    "learning_curves": True, "gate": True,
                                                                    "prompt": prompt})
        # A local model's defaults are left out, so `model: NAME` and `model: {name: NAME}` share runs.
        return {**dumped, "model": model_key(self.task.config.model)}

    def forgetting(self, model: Model, backend: Backend) -> Forgetting | None:
        """The change on the probe from `model`'s base weights to `backend`'s (None: no weights here)."""
        if not backend.has_weights:
            return None
        # Created on first use: a compare whose runs all come from the store measures nothing.
        if model not in self._forgetting:
            self._forgetting[model] = ForgettingMeter(self.task, self.backend_for(model))
        return self._forgetting[model].delta(backend)


def run_key(session: Session, spec: ArmSpec, strategy) -> str:
    """The store's key of one arm's run: what its results depend on. The arm's name is not in it,
    so two arms that are the same configuration share one run. Inputs beyond the parameters and the
    task data (a corpus's content, a checkpoint's digests) are in it too, so editing them makes a new
    run instead of reusing a stale one; so is the row's schema, so a run measured the way an older
    harness measured is measured again rather than misread."""
    return config_fingerprint({"task": session.task_config, "arm": spec.axes(), "data": session.data.hash,
                               "schema": ROW_SCHEMA, **strategy.fingerprint()})


def run_one(session: Session, spec: ArmSpec) -> ArmResult:
    """One arm: reused from the store when finished, resumed when interrupted, otherwise prepared
    and evaluated. Returns its report row."""
    from tqdm.auto import tqdm

    cfg, store, data, name = session.task.config, session.store, session.data, spec.name
    strategy = build(spec, session.task)
    key = run_key(session, spec, strategy)
    existing = store.run_by_key(key)
    if existing is not None and existing["status"] == "finished" and (not session.force or key in session._finished):
        return ArmResult.model_validate(store.run(existing["id"])["summary"]).model_copy(
            update={"reused": True, "name": name, "params": spec.params})
    backend = session.backend_for(spec.model)
    arm_task = session.task.for_arm(spec)
    prompt = arm_task.config.prompt
    # Prepare before the run row exists: an arm that fails on bad input (an empty corpus, a
    # missing target module) leaves nothing half-written in the store.
    with timer() as prepared:
        eval_backend = strategy.prepare(data, backend)
        # Recomputed on a resumed run: three prompts, deterministic, so a resumed run's later
        # examples are calibrated exactly as its earlier ones.
        bias = calibration(arm_task, strategy, eval_backend, data.eval[0]) if prompt.calibrate else None
    run_id = store.start_run(key, task=cfg.name, strategy=name, model=model_label(spec.model),
                             config={"task": session.task_config, "arm": spec.axes()},
                             provenance=session.provenance.model_dump(mode="json"), force=session.force)
    done = store.done_ids(run_id)
    todo = [ex for ex in data.eval if ex.id not in done]
    with tqdm(total=len(data.eval), initial=len(done), desc=f"{name:>10}", unit="ex",
              disable=not session.progress, leave=False) as bar:
        if hasattr(eval_backend, "on_status"):  # a hosted model: its requests in flight and retries
            eval_backend.on_status = lambda **status: bar.set_postfix(status, refresh=False)
        run_strategy(arm_task, strategy, eval_backend, todo, bias=bias,
                     on_batch=lambda results: store.add_examples(run_id, results), progress=bar.update)
    examples = store.examples(run_id)
    summary = summarise(session.task, name, run_id, examples,
                        {"params": spec.params, "axes": spec.axes(), "made_of": spec.describe(prompt),
                         "prompt_format": prompt.format, "calibration": bias, "scoring": scoring(arm_task, backend),
                         "model": model_label(spec.model), "model_params": backend.n_params,
                         "usd_per_mtok": _prices(spec.model), "weights": strategy.weights,
                         "prepare_s": prepared.s, "peak_memory_mb": peak_memory_mb(), "resumed_from": len(done),
                         # Base weights cannot have forgotten anything: nothing is measured for them
                         # (compare shows their zero change beside an arm that changed weights).
                         "forgetting": session.forgetting(spec.model, eval_backend) if strategy.weights != "base"
                         else None,
                         "forgetting_note": None if backend.has_weights else "not measured: no access to weights",
                         **strategy.summary(examples)})
    store.finish_run(run_id, summary.model_dump(mode="json"), strategy.record())
    session._finished.add(key)
    return summary


def _prices(model: Model) -> dict[str, float] | None:
    if not isinstance(model, HostedModel):
        return None
    cached = model.usd_per_mtok_cached_input
    return {"input": model.usd_per_mtok_input, "output": model.usd_per_mtok_output,
            "cached_input": model.usd_per_mtok_input if cached is None else cached}


def _labelled_examples(row: ArmResult) -> int | None:
    """How many labelled train examples a run learned from: a fine-tuned model's training set, or
    an in-context arm's demonstrations (none: zero)."""
    if row.training is not None:
        return row.training.train_examples
    if row.axes.get("plugin"):
        return None
    return (row.axes.get("demos") or {}).get("k", 0)


def learning_curve(session: Session, curve, points: list[ArmSpec]) -> Curve:
    """One run per point of a learning curve; a point equal to a run already done is reused."""
    rows = [run_one(session, spec) for spec in points]
    return Curve(strategy=curve.strategy, param=curve.param, fine_tuning=any(r.fine_tuned for r in rows),
                 points=[CurvePoint(value=value, labelled_examples=_labelled_examples(r), run_id=r.run_id,
                                    n_examples=r.n_examples, quality=r.quality, metrics=r.metrics, reused=r.reused)
                         for value, r in zip(curve.values, rows)])


@contextmanager
def open_session(task_path: str | Path, *, strategies: list[str] | None = None, limit: int | None = None,
                 store_path: str | Path, force: bool = False, progress: bool = True):
    """Validate the task, its data, metrics and model (everything that can be wrong with the input),
    and only then open the store. `strategies`: the arms to run (empty: the task's), checked here
    too; None for a session that builds its own (the gate's)."""
    task = load_task(task_path, limit=limit)
    cfg = task.config
    for name in strategies or ():
        if name not in task.arms and name not in SHORTHANDS:
            raise HarnessError("--strategies", f"unknown arm '{name}'; the task's arms: {', '.join(task.arms)} "
                                               f"(or a shorthand: {', '.join(SHORTHANDS)})")
    data = load_data(task)
    for m in cfg.metric_names:
        try:
            load_metric(m)
        except MetricError as e:
            raise HarnessError(f"{task.path}: metrics", str(e)) from None
    backends = {cfg.model: load_backend(cfg.model, task.path.parent, f"{task.path}: model")}
    arms = [] if strategies is None else arms_to_run(task, strategies, data, backends)

    store = Store(store_path)
    for b in backends.values():
        if hasattr(b, "use_cache"):  # a hosted model's answers are kept in the store
            b.use_cache(store)
    prov = Provenance(**provenance(), task_file=str(task.path), data_hash=data.hash, data_source=cfg.data.source)
    backend = backends.pop(cfg.model)
    try:
        yield Session(task, data, backend, store, prov, arms, force=force, progress=progress, _backends=backends)
    finally:
        store.close()


def stored_scores(store: Store, run_id: int, metric: str) -> dict[str, float]:
    """One run's per-example scores, by example id: what paired statistics pair on."""
    return {e["example_id"]: e["scores"][metric] for e in store.examples(run_id)}


def arms_to_run(task: LoadedTask, names: list[str], data: TaskData, backends: dict[str, Backend]) -> list[ArmSpec]:
    """The arms named on the command line (default: the task's), each built and checked with its
    prompts (`Arm.check_prompts`), so that a missing corpus or embedder, a template naming no column
    or a prompt too long fails before the store is opened. A shorthand absent from the task file runs
    with its defaults. `backends`: model -> loaded backend, with the task's; an arm's other model is
    loaded into it."""
    specs = []
    for name in names or task.arms:
        spec = task.arms.get(name)
        if spec is None:
            try:
                spec = parse_arm(name, {}, task.config, f"{task.path}: strategies")
            except HarnessError as e:
                field = e.where.rpartition(".")[2]
                raise HarnessError(e.where, f"required to run {name}; add `{name}: {{{field}: ...}}` to the "
                                            f"task's strategies") from None
        specs.append(spec)
    for spec in specs + [point for _, points in task.curves for point in points]:
        strategy = build(spec, task)
        if hasattr(strategy, "check"):
            strategy.check()
        if hasattr(strategy, "check_prompts"):
            if spec.model not in backends:
                backends[spec.model] = load_backend(spec.model, task.path.parent,
                                                    f"{task.path}: strategies.{spec.name}.model")
            strategy.check_prompts(data, backends[spec.model])
    return specs


def compare(task_path: str | Path, *, strategies: list[str] | None = None, limit: int | None = None,
            store_path: str | Path, force: bool = False, progress: bool = True) -> ComparisonReport:
    with open_session(task_path, strategies=strategies or [], limit=limit, store_path=store_path, force=force,
                      progress=progress) as session:
        task, data, store, backend = session.task, session.data, session.store, session.backend
        cfg = task.config
        rows = [run_one(session, spec) for spec in session.arms]
        # Beside an arm that changed its model's weights, the base weights' zero change, from the base
        # measurement that arm's row carries.
        measured = {r.model: r.forgetting for r in rows if r.fine_tuned and r.forgetting is not None}
        rows = [r.model_copy(update={"forgetting": unchanged(measured[r.model])})
                if not r.fine_tuned and r.usd_per_mtok is None and r.forgetting is None and r.model in measured else r
                for r in rows]
        curves = [learning_curve(session, curve, points) for curve, points in task.curves]
        decision = cfg.decision
        metric = decision.metric or cfg.metric_names[0]
        # Paired by example id, from the store: a reused run's examples count like a fresh one's.
        tokens = {r.name: {e["example_id"]: (e["prompt_tokens"], e["output_tokens"], e.get("cached_tokens", 0))
                           for e in store.examples(r.run_id)} for r in rows}
        rows = add_costs(rows, cfg.cost, backend.n_params, decision.monthly_requests, tokens, cfg.seed)

        def pairs_on(name: str) -> Comparisons:
            scores = {r.name: stored_scores(store, r.run_id, name) for r in rows}
            return Comparisons(metric=name, alpha=decision.alpha, power=decision.power, confidence=CONFIDENCE,
                               pairs=paired_comparisons(scores, seed=cfg.seed, alpha=decision.alpha,
                                                        power=decision.power))

        comparisons = pairs_on(metric)
        content = pairs_on(LENIENT) if LENIENT in cfg.metric_names and metric != LENIENT else None
        report = ComparisonReport(
            task=cfg.name, task_file=str(task.path), model=model_label(cfg.model), model_params=backend.n_params,
            task_type=cfg.type, n_examples=len(data.eval), data_hash=data.hash, provenance=session.provenance,
            strategies=rows, comparisons=comparisons, content=content, learning_curves=curves,
            assumptions=Assumptions(cost=cfg.cost, decision=decision),
            recommendation=recommend(rows, comparisons, curves, decision, content))
        report.comparison_id = store.save_comparison(cfg.name,
                                                     report.model_dump(mode="json", exclude={"comparison_id"}))
        return report
