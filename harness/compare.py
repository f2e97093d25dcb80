"""`harness compare`: validate everything, then run each strategy through the runner into the store.

Order matters for "nothing half-written": the task, its data, its metrics and the model are all
checked before the store is opened."""

from __future__ import annotations

import time
from pathlib import Path

from harness.data import config_fingerprint, load_data
from harness.errors import HarnessError
from harness.metrics import MetricError, load_metric
from harness.models import load_backend
from harness.runner import peak_memory_mb, run_strategy
from harness.stats import bootstrap_ci
from harness.store import Store
from harness.task import load_task


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


def compare(task_path: str | Path, *, strategies: list[str] | None = None, limit: int | None = None,
            store_path: str | Path, force: bool = False, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    from harness.provenance import provenance
    from strategies import build, config_class, known_strategies

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
    task_config = cfg.model_dump(mode="json", exclude={"description", "strategies"})
    rows = []
    try:
        for name in names:
            params = task.strategy_configs.get(name) or config_class(name)()
            key = config_fingerprint({"task": task_config, "strategy": name, "params": params.model_dump(mode="json"),
                                      "data": data.hash})
            existing = store.run_by_key(key)
            if existing is not None and existing["status"] == "finished" and not force:
                rows.append({**store.run(existing["id"])["summary"], "reused": True})
                continue
            run_id = store.start_run(key, task=cfg.name, strategy=name, model=cfg.model,
                                     config={"task": task_config, "params": params.model_dump(mode="json")},
                                     provenance=prov, force=force)
            done = store.done_ids(run_id)
            strategy = build(name, params, task)
            t0 = time.perf_counter()
            eval_backend = strategy.prepare(data, backend)
            prepare_s = time.perf_counter() - t0
            todo = [ex for ex in data.eval if ex.id not in done]
            with tqdm(total=len(data.eval), initial=len(done), desc=f"{name:>10}", unit="ex",
                      disable=not progress, leave=False) as bar:
                run_strategy(task, strategy, eval_backend, todo,
                             on_batch=lambda results: store.add_examples(run_id, results), progress=bar.update)
            examples = store.examples(run_id)
            summary = summarise(task, name, run_id, examples,
                                {"prepare_s": prepare_s, "peak_memory_mb": peak_memory_mb(),
                                 "resumed_from": len(done), **strategy.summary(examples)})
            store.finish_run(run_id, summary, strategy.record())
            rows.append({**summary, "reused": False})
        report = {
            "task": cfg.name,
            "task_file": str(task.path),
            "model": cfg.model,
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
