"""`harness compare`: validate everything, then run each strategy through the runner into the store.

Order matters for "nothing half-written": the task, its data, its metrics and the model are all
checked before the store is opened."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness.data import TaskData, config_fingerprint, load_data
from harness.errors import HarnessError
from harness.metrics import MetricError, load_metric
from harness.models import load_backend
from harness.runner import peak_memory_mb, run_strategy
from harness.stats import bootstrap_ci
from harness.store import Store
from harness.task import LoadedTask, load_task


def _percentile(values, q):
    import numpy as np

    return float(np.percentile(values, q)) if values else 0.0


def summarise(task, name: str, run_id: int, examples: list[dict], extra: dict) -> dict:
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
    n = len(examples)
    return {
        "name": name,
        "run_id": run_id,
        "n_examples": n,
        "quality": {"metric": headline, **metrics[headline]},
        "metrics": metrics,
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95),
                       "mean": sum(latencies) / n},
        "throughput_eps": n / (sum(latencies) / 1000) if sum(latencies) else None,
        "tokens": {"prompt_mean": sum(e["prompt_tokens"] for e in examples) / n,
                   "output_mean": sum(e["output_tokens"] for e in examples) / n},
        **extra,
    }


@dataclass
class Session:
    """Everything one compare shares across its strategy runs."""

    task: LoadedTask
    data: TaskData
    backend: object
    store: Store
    provenance: dict
    force: bool = False
    progress: bool = True

    @property
    def task_config(self) -> dict:
        return self.task.config.model_dump(mode="json", exclude={"description", "strategies"})


def run_one(session: Session, name: str, params) -> dict:
    """One strategy with one parameter set: reused from the store when finished, resumed when
    interrupted, otherwise prepared and evaluated. Returns its report row."""
    from tqdm.auto import tqdm

    from strategies import build

    cfg, store, data = session.task.config, session.store, session.data
    key = config_fingerprint({"task": session.task_config, "strategy": name,
                              "params": params.model_dump(mode="json"), "data": data.hash})
    existing = store.run_by_key(key)
    if existing is not None and existing["status"] == "finished" and not session.force:
        return {**store.run(existing["id"])["summary"], "reused": True}
    strategy = build(name, params, session.task)
    # Prepare before the run row exists: a strategy that fails on bad input (an empty corpus, a
    # missing target module) leaves nothing half-written in the store.
    t0 = time.perf_counter()
    eval_backend = strategy.prepare(data, session.backend)
    prepare_s = time.perf_counter() - t0
    run_id = store.start_run(key, task=cfg.name, strategy=name, model=cfg.model,
                             config={"task": session.task_config, "params": params.model_dump(mode="json")},
                             provenance=session.provenance, force=session.force)
    done = store.done_ids(run_id)
    todo = [ex for ex in data.eval if ex.id not in done]
    with tqdm(total=len(data.eval), initial=len(done), desc=f"{name:>10}", unit="ex",
              disable=not session.progress, leave=False) as bar:
        run_strategy(session.task, strategy, eval_backend, todo,
                     on_batch=lambda results: store.add_examples(run_id, results), progress=bar.update)
    examples = store.examples(run_id)
    summary = summarise(session.task, name, run_id, examples,
                        {"params": params.model_dump(mode="json"), "prepare_s": prepare_s,
                         "peak_memory_mb": peak_memory_mb(), "resumed_from": len(done),
                         **strategy.summary(examples)})
    store.finish_run(run_id, summary, strategy.record())
    return {**summary, "reused": False}


def compare(task_path: str | Path, *, strategies: list[str] | None = None, limit: int | None = None,
            store_path: str | Path, force: bool = False, progress: bool = True) -> dict:
    from harness.provenance import provenance
    from strategies import config_class, known_strategies

    task = load_task(task_path, limit=limit)
    cfg = task.config
    names = strategies or list(cfg.strategies)
    for name in names:
        if name not in known_strategies():
            raise HarnessError("--strategies", f"unknown strategy '{name}'; known: {', '.join(known_strategies())}")
    data = load_data(task)
    for m in cfg.metric_names:
        try:
            load_metric(m)
        except MetricError as e:
            raise HarnessError(f"{task.path}: metrics", str(e)) from None
    backend = load_backend(cfg.model, task.path.parent)

    store = Store(store_path)
    prov = {**provenance(), "task_file": str(task.path), "data_hash": data.hash, "data_source": cfg.data.source}
    session = Session(task, data, backend, store, prov, force=force, progress=progress)
    try:
        rows = [run_one(session, name, task.strategy_configs.get(name) or config_class(name)()) for name in names]
        report = {
            "task": cfg.name,
            "task_file": str(task.path),
            "model": cfg.model,
            "model_params": backend.n_params,
            "task_type": cfg.type,
            "n_examples": len(data.eval),
            "data_hash": data.hash,
            "provenance": prov,
            "strategies": rows,
        }
        report["comparison_id"] = store.save_comparison(cfg.name, report)
        return report
    finally:
        store.close()
