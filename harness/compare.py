"""`harness compare`: validate everything, then run each arm through the runner into the store.

Order matters for "nothing half-written": the task, its data, its metrics and the model are all
checked before the store is opened."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from harness.arm import build
from harness.armspec import SHORTHANDS, ArmSpec, parse_arm
from harness.backends.base import Backend, HasWeights, Remote
from harness.baselines import fair_baselines
from harness.config import HostedModel, Model, Task, model_key, model_label
from harness.cost import add_costs
from harness.data import TaskData, config_fingerprint, load_data
from harness.distill import check_confidence, check_labels, taught, teacher_labels, teacher_of
from harness.errors import HarnessError
from harness.forgetting import ForgettingMeter, unchanged
from harness.measure import latency_mean_ci, peak_memory_mb, provenance, timer
from harness.metrics import LENIENT, MetricError, load_metric, structured
from harness.prompting import scoring
from harness.registry import load_backend
from harness.results import (
    Answers,
    ArmResult,
    Assumptions,
    ComparisonReport,
    Comparisons,
    Curve,
    CurvePoint,
    Forgetting,
    Provenance,
)
from harness.runner import calibration, run_strategy
from harness.stats import CONFIDENCE, bootstrap_ci, paired_comparisons
from harness.store import Store
from harness.strategy import Checked, ChecksPrompts
from harness.task import LoadedTask, load_task
from harness.tracking import Settings, Tracker, TrackingError, settings
from harness.verdict import judge
from harness.verdict.decide import recommend
from harness.verdict.text import explain

# Bumped whenever a stored row's fields or the way one is measured change.
ROW_SCHEMA = 3


def _percentile(values, q):
    import numpy as np

    return float(np.percentile(values, q)) if values else 0.0


def summarise(cfg: Task, name: str, run_id: int, examples: list[dict], extra: dict) -> ArmResult:
    """The report row of one strategy, computed from its stored examples (so a resumed run and a
    fresh one summarise identically)."""
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
    # Of `arms`, the fair baselines the harness added; the ones it did not add (decision.baselines:
    # none), as task-file entries for the verdict to name.
    added: frozenset[str] = frozenset()
    missing_baselines: dict[str, dict] = field(default_factory=dict)
    force: bool = False
    progress: bool = True
    # MLflow: where this command logs (None: it does not), and its runs once connected.
    tracking: Settings | None = None
    tracker: Tracker | None = None

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
        return task_config(self.task)

    def forgetting(self, model: Model, backend: Backend) -> Forgetting | None:
        """The change on the probe from `model`'s base weights to `backend`'s (None: no weights here)."""
        if not isinstance(backend, HasWeights):
            return None
        # Created on first use: a compare whose runs all come from the store measures nothing.
        if model not in self._forgetting:
            self._forgetting[model] = ForgettingMeter(self.task, self.backend_for(model))
        return self._forgetting[model].delta(backend)


def task_config(task: LoadedTask) -> dict:
    """The task's part of every run key: its config without the sections that change no result."""
    # Prices, decision thresholds, learning curves and tracking change no run's results, so they stay
    # out of the run key: editing them reuses every stored run. So does the overflow rule: a prompt
    # it would refuse never runs, and one it cuts is cut the same way either way.
    # Unset, `prompt.scoring` follows the model (its backend's capabilities, which the model's own
    # entry identifies): leaving it out keeps the keys of runs stored before it existed.
    prompt = {"overflow"} | ({"scoring"} if task.config.prompt.scoring is None else set())
    dumped = task.config.model_dump(mode="json", exclude={"description": True, "strategies": True, "cost": True,
                                                          "decision": True, "learning_curves": True, "gate": True,
                                                          "tracking": True, "prompt": prompt})
    # Unset, stop sequences stay out of the key, so runs stored before they existed are reused.
    if not dumped["limits"]["stop"]:
        del dumped["limits"]["stop"]
    # A local model's defaults are left out, so `model: NAME` and `model: {name: NAME}` share runs.
    return {**dumped, "model": model_key(task.config.model)}


def training_hash(task: LoadedTask, data: TaskData, spec: ArmSpec) -> str:
    """The data hash an arm's run (and trained weights) are keyed by: the task data's, and for a
    student (harness/distill.py) also its teacher's labelling run's, known without running it."""
    teacher = teacher_of(spec)
    if teacher is None:
        return data.hash
    return config_fingerprint({"data": data.hash, "labels_by": labelling_key(task, data, task.arms[teacher])})


def labelling_key(task: LoadedTask, data: TaskData, teacher: ArmSpec) -> str:
    """The store's key of a teacher's labelling run."""
    taught_data = dataclasses.replace(data, hash=training_hash(task, data, teacher))
    return config_fingerprint({"labels_train_inputs": key_of(task, taught_data, teacher, build(teacher, task))})


def arm_data(session: Session, spec: ArmSpec) -> TaskData:
    """The data an arm runs on: the task's, or for a student, the train inputs labelled by its
    teacher: the teacher's answers, run once through the runner and stored like any run."""
    teacher_name = teacher_of(spec)
    if teacher_name is None:
        return session.data
    teacher, store = session.task.arms[teacher_name], session.store
    key = labelling_key(session.task, session.data, teacher)
    existing = store.run_by_key(key)
    # --force labels again once per compare (a hosted teacher's answers still come from its cache).
    redo = session.force and key not in session._finished
    if existing is None or existing["status"] != "finished" or redo:
        _label(session, teacher, key, force=redo)
        session._finished.add(key)
        existing = store.run_by_key(key)
    examples = store.examples(existing["id"])
    answers, dropped = teacher_labels(session.task.config, examples, spec.weights.config.min_confidence)
    if not answers:
        raise HarnessError(spec.weights.where, f"none of {teacher_name}'s {len(examples)} answers can be "
                                               f"trained on (dropped: {dict(dropped)}); check the "
                                               f"teacher's answers in the store (run '{teacher_name} (labels)')")
    return taught(session.data, answers, training_hash(session.task, session.data, spec))


def labelling(session: Session, spec: ArmSpec) -> dict | None:
    """A student's teacher's labelling run, summed for its cost (None: not a student)."""
    teacher_name = teacher_of(spec)
    if teacher_name is None:
        return None
    teacher = session.task.arms[teacher_name]
    run = session.store.run_by_key(labelling_key(session.task, session.data, teacher))
    examples = session.store.examples(run["id"])
    kept, dropped = teacher_labels(session.task.config, examples, spec.weights.config.min_confidence)
    return {"teacher": teacher_name, "answers": len(examples), "kept": len(kept), "dropped": dict(dropped),
            "seconds": sum(e["latency_ms"] for e in examples) / 1000,
            **{f"{kind}_tokens": sum(e.get(f"{kind}_tokens", 0) for e in examples)
               for kind in ("prompt", "output", "cached")},
            "usd_per_mtok": _prices(teacher.model)}


def _label(session: Session, teacher: ArmSpec, key: str, force: bool = False) -> None:
    """The teacher's answers on its students' inputs (`TaskData.teacher_inputs`), stored as a run
    (resumed when interrupted)."""
    from tqdm.auto import tqdm

    store, train = session.store, session.data.teacher_inputs
    strategy = build(teacher, session.task)
    arm_task = session.task.for_arm(teacher)
    with timer() as prepared:
        backend = strategy.prepare(arm_data(session, teacher), session.backend_for(teacher.model))
        bias = (calibration(arm_task, strategy, backend, session.data.eval[0]) if arm_task.config.prompt.calibrate
                else None)
    run_id = store.start_run(key, task=session.task.config.name, strategy=f"{teacher.name} (labels)",
                             model=model_label(teacher.model),
                             config={"task": session.task_config, "arm": teacher.axes(),
                                     "labels": "unlabeled inputs" if session.data.unlabeled else "train inputs"},
                             provenance=session.provenance.model_dump(mode="json"), force=force)
    done = store.done_ids(run_id)
    with tqdm(total=len(train), initial=len(done), desc=f"{teacher.name:>10} labels", unit="ex",
              disable=not session.progress, leave=False) as bar:
        if isinstance(backend, Remote):
            backend.on_status = lambda **status: bar.set_postfix(status, refresh=False)
        run_strategy(arm_task, strategy, backend, [ex for ex in train if ex.id not in done], bias=bias,
                     on_batch=lambda results: store.add_examples(run_id, results), progress=bar.update)
    examples = store.examples(run_id)
    store.finish_run(run_id, {"labels_by": teacher.name, "examples": len(examples), "prepare_s": prepared.s,
                              "seconds": sum(e["latency_ms"] for e in examples) / 1000}, strategy.record())


def run_key(task: LoadedTask, data: TaskData, spec: ArmSpec, strategy) -> str:
    """The store's key of one arm's run: what its results depend on. The arm's name is not in it,
    so two arms that are the same configuration share one run. Inputs beyond the parameters and the
    task data (a corpus's content, a checkpoint's digests, a student's teacher's labelling run) are in
    it too, so editing them makes a new run instead of reusing a stale one; so is the row's schema, so
    a run measured the way an older harness measured is measured again rather than misread."""
    return key_of(task, dataclasses.replace(data, hash=training_hash(task, data, spec)), spec, strategy)


def key_of(task: LoadedTask, data: TaskData, spec: ArmSpec, strategy) -> str:
    return config_fingerprint({"task": task_config(task), "arm": spec.axes(), "data": data.hash,
                               "schema": ROW_SCHEMA, **strategy.fingerprint()})


def run_one(session: Session, spec: ArmSpec) -> ArmResult:
    """One arm: reused from the store when finished, resumed when interrupted, otherwise prepared
    and evaluated. Returns its report row."""
    from tqdm.auto import tqdm

    cfg, store, name = session.task.config, session.store, spec.name
    strategy = build(spec, session.task)
    key = run_key(session.task, session.data, spec, strategy)
    existing = store.run_by_key(key)
    if existing is not None and existing["status"] == "finished" and (not session.force or key in session._finished):
        return ArmResult.model_validate(store.run(existing["id"])["summary"]).model_copy(
            update={"reused": True, "name": name, "params": spec.params})
    data = arm_data(session, spec)
    backend = session.backend_for(spec.model)
    arm_task = session.task.for_arm(spec)
    prompt = arm_task.config.prompt
    # Prepare before the run row exists: an arm that fails on bad input (an empty corpus, a
    # missing target module) leaves nothing half-written in the store.
    # Inside the arm's MLflow run, when tracking: a Trainer logs its loss curve there.
    with timer() as prepared, (session.tracker.arm(name) if session.tracker else nullcontext()):
        try:
            eval_backend = strategy.prepare(data, backend)
        except HarnessError as e:
            # A student's training data is what its teacher's answers left: too few is their doing.
            taught_by = labelling(session, spec)
            if taught_by is None or not taught_by["dropped"]:
                raise
            raise HarnessError(e.where, f"{e.message}; {taught_by['kept']} of {taught_by['teacher']}'s "
                                        f"{taught_by['answers']} answers are trained on (dropped: "
                                        f"{taught_by['dropped']})") from None
        # Recomputed on a resumed run: three prompts, deterministic, so a resumed run's later
        # examples are calibrated exactly as its earlier ones.
        bias = calibration(arm_task, strategy, eval_backend, data.eval[0]) if prompt.calibrate else None
    run_id = store.start_run(key, task=cfg.name, strategy=name, model=model_label(spec.model),
                             config={"task": session.task_config, "arm": spec.axes()},
                             provenance=session.provenance.model_dump(mode="json"), force=session.force)
    done = store.done_ids(run_id)
    todo = [ex for ex in data.eval if ex.id not in done]
    with timer() as evaluated:
        with tqdm(total=len(data.eval), initial=len(done), desc=f"{name:>10}", unit="ex",
                  disable=not session.progress, leave=False) as bar:
            if isinstance(eval_backend, Remote):  # a hosted model: its requests in flight and retries
                eval_backend.on_status = lambda **status: bar.set_postfix(status, refresh=False)
            run_strategy(arm_task, strategy, eval_backend, todo, bias=bias, constrained=spec.decoding is not None,
                         on_batch=lambda results: store.add_examples(run_id, results), progress=bar.update)
        examples = store.examples(run_id)
        # Base weights cannot have forgotten anything: nothing is measured for them (compare shows their
        # zero change beside an arm that changed weights).
        forgetting = session.forgetting(spec.model, eval_backend) if strategy.weights != "base" else None
    summary = summarise(cfg, name, run_id, examples,
                        {"params": spec.params, "axes": spec.axes(), "made_of": spec.describe(prompt),
                         "prompt_format": prompt.format, "calibration": bias, "scoring": scoring(arm_task, backend),
                         "model": model_label(spec.model), "model_params": backend.n_params,
                         "usd_per_mtok": _prices(spec.model), "weights": strategy.weights,
                         "prepare_s": prepared.s, "peak_memory_mb": peak_memory_mb(), "resumed_from": len(done),
                         "labelling": labelling(session, spec), "forgetting": forgetting,
                         "wall_s": prepared.s + evaluated.s,
                         "forgetting_note": None if isinstance(backend, HasWeights)
                         else "not measured: no access to weights",
                         **strategy.summary(examples)})
    store.finish_run(run_id, summary.model_dump(mode="json"), strategy.record())
    session._finished.add(key)
    return summary


def _answers(examples: list[dict]) -> Answers | None:
    top, count, gold = judge.answer_spread((e["prediction"] for e in examples), (e["target"] for e in examples))
    return Answers(top=top, count=count, gold_count=gold) if examples else None


def _prices(model: Model) -> dict[str, float] | None:
    if not isinstance(model, HostedModel):
        return None
    cached = model.usd_per_mtok_cached_input
    return {"input": model.usd_per_mtok_input, "output": model.usd_per_mtok_output,
            "cached_input": model.usd_per_mtok_input if cached is None else cached}


def _labelled_examples(row: ArmResult) -> int | None:
    """How many labelled train examples a run learned from: a fine-tuned model's training set (a
    student's: its teacher's answers), or an in-context arm's demonstrations (none: zero)."""
    if row.training is not None:
        return row.training.train_examples
    if row.axes.get("plugin"):
        return None
    return (row.axes.get("demos") or {}).get("k", 0)


def learning_curve(session: Session, curve, points: list[ArmSpec]) -> Curve:
    """One run per point of a learning curve; a point equal to a run already done is reused."""
    rows = [run_one(session, spec) for spec in points]
    return Curve(strategy=curve.strategy, param=curve.param, fine_tuning=any(r.fine_tuned for r in rows),
                 labels_by=teacher_of(points[0]) if points else None,
                 points=[CurvePoint(value=value, labelled_examples=_labelled_examples(r), run_id=r.run_id,
                                    n_examples=r.n_examples, quality=r.quality, metrics=r.metrics, reused=r.reused)
                         for value, r in zip(curve.values, rows)])


@contextmanager
def open_session(task_path: str | Path, *, strategies: list[str] | None = None, limit: int | None = None,
                 store_path: str | Path, force: bool = False, progress: bool = True, mlflow: str | None = None):
    """Validate the task, its data, metrics and model (everything that can be wrong with the input),
    and only then open the store. `strategies`: the arms to run (empty: the task's), checked here
    too; None for a session that builds its own (the gate's). `mlflow`: a tracking URI (--mlflow)."""
    checked = check_input(task_path, strategies=strategies, limit=limit, mlflow=mlflow)
    task, data, backends = checked.task, checked.data, checked.backends
    cfg = task.config

    store = Store(store_path)
    for b in backends.values():
        if isinstance(b, Remote):  # a hosted model's answers are kept in the store
            b.use_cache(store)
    prov = Provenance(**provenance(), task_file=str(task.path), data_hash=data.hash, data_source=cfg.data.source)
    backend = backends.pop(cfg.model)
    try:
        yield Session(task, data, backend, store, prov, checked.arms, frozenset(a.name for a in checked.added),
                      checked.missing, force=force, progress=progress, tracking=checked.tracking,
                      _backends=backends)
    finally:
        store.close()


@dataclass
class CheckedInput:
    """What `check_input` found valid: the task, its data, the loaded backends (model -> backend), the
    arms to run with the fair baselines added and those not added, and where tracking logs."""

    task: LoadedTask
    data: TaskData
    backends: dict
    arms: list[ArmSpec]
    added: list[ArmSpec]
    missing: dict[str, dict]
    tracking: Settings | None
    built: dict = field(default_factory=dict)  # arm name -> its checked strategy


def check_input(task_path: str | Path, *, strategies: list[str] | None = None, limit: int | None = None,
                mlflow: str | None = None) -> CheckedInput:
    """Everything that can be wrong with the input of a compare (or a gate, `strategies` None),
    checked without opening the store: `harness validate` runs exactly this."""
    task = load_task(task_path, limit=limit)
    cfg = task.config
    for name in strategies or ():
        if name not in task.arms and name not in SHORTHANDS:
            raise HarnessError("--strategies", f"unknown arm '{name}'; the task's arms: {', '.join(task.arms)} "
                                               f"(or a shorthand: {', '.join(SHORTHANDS)})")
    if strategies:
        # A learning curve belongs to its arm: a run of other arms trains none of its points.
        task = LoadedTask(cfg, task.path, task.arms, [(c, p) for c, p in task.curves if c.strategy in strategies])
    data = load_data(task)
    # A structured task's metrics are the harness's own functions (config.py checked the names).
    for m in cfg.metric_names if cfg.type != "structured" else ():
        try:
            load_metric(m)
        except MetricError as e:
            raise HarnessError(f"{task.path}: metrics", str(e)) from None
    tracking = settings(cfg, mlflow, str(task.path))
    backends = {cfg.model: load_backend(cfg.model, task.path.parent, f"{task.path}: model")}
    built: dict = {}
    arms, added, missing = (([], [], {}) if strategies is None
                            else arms_to_run(task, strategies, data, backends, built))
    return CheckedInput(task, data, backends, arms, added, missing, tracking, built)


def stored_scores(store: Store, run_id: int, metric: str) -> dict[str, float]:
    """One run's per-example scores, by example id: what paired statistics pair on."""
    return {e["example_id"]: e["scores"][metric] for e in store.examples(run_id)}


def arms_to_run(task: LoadedTask, names: list[str], data: TaskData, backends: dict[str, Backend],
                built: dict | None = None) -> tuple[list[ArmSpec], list[ArmSpec], dict[str, dict]]:
    """The arms named on the command line (default: the task's) and the fair baselines they lack
    (harness/baselines.py), each built and checked with its prompts (`Arm.check_prompts`), so that a
    missing corpus or embedder, a template naming no column or a prompt too long fails before the
    store is opened. A shorthand absent from the task file runs with its defaults. `backends`: model
    -> loaded backend, with the task's; an arm's other model is loaded into it. Returns the arms, the
    baselines added to them, and those not added (decision.baselines: none) as task-file entries.
    `built`, when given, receives each arm's checked strategy by name (learning-curve points not included)."""
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
    points = [point for _, points in task.curves for point in points]
    # A student is held against its teacher: a teacher not named is run too (its answers are made anyway).
    teachers = {t: task.arms[t] for spec in specs + points if (t := teacher_of(spec)) is not None}
    specs += [spec for name, spec in teachers.items() if name not in {s.name for s in specs}]
    added, missing = fair_baselines(task.config, specs, f"{task.path}: strategies")
    specs += added
    check_labels(task.path, task.config, task.arms, specs + points, data)
    for i, spec in enumerate(specs + points):
        strategy = build(spec, task)
        if built is not None and i < len(specs):
            built[spec.name] = strategy
        if isinstance(strategy, Checked):
            strategy.check()
        if isinstance(strategy, ChecksPrompts):
            if spec.model not in backends:
                backends[spec.model] = load_backend(spec.model, task.path.parent,
                                                    f"{task.path}: strategies.{spec.name}.model")
            # A student trains on every input its teacher answers; their answers are not known yet.
            inputs = dataclasses.replace(data, train=data.teacher_inputs) if teacher_of(spec) else data
            strategy.check_prompts(inputs, backends[spec.model])
    for spec in specs + points:
        if (teacher := teacher_of(spec)) is not None:
            taught_by = task.arms[teacher]
            check_confidence(spec, scoring(task.for_arm(taught_by), backends[taught_by.model]), task.config.type)
    return specs, added, missing


def compare(task_path: str | Path, *, strategies: list[str] | None = None, limit: int | None = None,
            store_path: str | Path, force: bool = False, progress: bool = True, mlflow: str | None = None,
            tracked: dict | None = None) -> ComparisonReport:
    """Run the comparison and store it. With tracking on (`mlflow`, the task's `tracking`, or
    $MLFLOW_TRACKING_URI) it is then logged to MLflow, and `tracked` (when given) receives the parent
    run's URL and each arm's run; a tracking server that fails raises TrackingError carrying the
    stored report."""
    with open_session(task_path, strategies=strategies or [], limit=limit, store_path=store_path, force=force,
                      progress=progress, mlflow=mlflow) as session:
        failed = None
        if session.tracking is not None:
            try:
                session.tracker = Tracker(session.tracking)
                session.tracker.start_comparison(session.task.config.name, {})
            except TrackingError as e:  # the comparison runs and is stored all the same
                session.tracker, failed = None, e
        try:
            try:
                report = _compare(session)
            except BaseException:
                if session.tracker is not None:
                    session.tracker.fail()
                raise
            if session.tracker is not None:
                try:
                    arms = session.tracker.log_comparison(report, session.store)
                    if tracked is not None:
                        tracked.update(parent=session.tracker.url(session.tracker.parent), arms=arms)
                except TrackingError as e:
                    failed = e
        finally:
            if session.tracker is not None:
                session.tracker.close()
        if failed is not None:
            raise TrackingError(failed.where, f"{failed.message}; the comparison is stored as comparison "
                                              f"{report.comparison_id} in {store_path}", report=report)
        return report


def _compare(session: Session) -> ComparisonReport:
    """The comparison of the session's arms, stored; its report."""
    task, data, store, backend = session.task, session.data, session.store, session.backend
    cfg = task.config
    rows = [run_one(session, spec) for spec in session.arms]
    examples = {r.name: store.examples(r.run_id) for r in rows}
    # From the stored examples, so a run stored before answers were counted is judged too.
    rows = [r.model_copy(update={"added_by_harness": r.name in session.added,
                                 "answers": _answers(examples[r.name])}) for r in rows]
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
                       for e in examples[r.name]} for r in rows}
    rows = add_costs(rows, cfg.cost, backend.n_params, decision.monthly_requests, tokens, cfg.seed)

    # The verdict measures no gain against a degenerate arm: its pairs are a Holm family of their
    # own, so adding one changes no test the verdict reads.
    degenerate = frozenset(r.name for r in rows if judge.degenerate_row(r))

    def pairs_on(name: str) -> Comparisons:
        scores = {r.name: stored_scores(store, r.run_id, name) for r in rows}
        return Comparisons(metric=name, alpha=decision.alpha, power=decision.power, confidence=CONFIDENCE,
                           pairs=paired_comparisons(scores, seed=cfg.seed, alpha=decision.alpha,
                                                    power=decision.power, apart=degenerate))

    comparisons = pairs_on(metric)
    content = pairs_on(LENIENT) if LENIENT in cfg.metric_names and metric != LENIENT else None
    form = pairs_on(structured.FORMAT) if cfg.type == "structured" and metric != structured.FORMAT else None
    report = ComparisonReport(
        task=cfg.name, task_file=str(task.path), model=model_label(cfg.model), model_params=backend.n_params,
        task_type=cfg.type, n_examples=len(data.eval), data_hash=data.hash, provenance=session.provenance,
        strategies=rows, comparisons=comparisons, content=content, learning_curves=curves,
        assumptions=Assumptions(cost=cfg.cost, decision=decision),
        recommendation=explain(recommend(rows, comparisons, curves, decision, content,
                                         missing_baselines=session.missing_baselines, form=form)))
    report.comparison_id = store.save_comparison(cfg.name,
                                                 report.model_dump(mode="json", exclude={"comparison_id"}))
    return report
